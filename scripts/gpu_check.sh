#!/usr/bin/env bash
# The GPU checks of issue 12, in one run on the device machine (see the device tool's
# README): every CUDA-marked test, then the device benchmark, results under $OUT.
#
#   device run: bash scripts/gpu_check.sh          (timeout_s about 540; carry .whl)
#
# The machine's python3 holds a CUDA build of PyTorch, torchvision and Lightning; what it
# lacks (torchcodec for nvJPEG, pyspng, simplejpeg, zlib-ng, zstandard) travels as cp312 wheels in
# .whl/, made here beforehand:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl torchcodec==<the release matching its torch> pyspng simplejpeg \
#       zlib-ng zstandard
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD"
fi
python3 - >"$OUT/environment.txt" 2>&1 <<'PY'
import torch, torchvision
from segments_torch import codecs
print("torch", torch.__version__, "torchvision", torchvision.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
print("torchcodec", codecs._TORCHCODEC is not None, "pyspng", codecs._PYSPNG is not None)
PY
# Every test marked gpu, then the target tests (their CUDA cases run where CUDA is).
timeout 240 python3 -m pytest -p no:cacheprovider -q -m gpu tests 2>&1 | tee "$OUT/gpu-tests.log"
timeout 120 python3 -m pytest -p no:cacheprovider -q tests/test_targets.py tests/test_device.py \
    2>&1 | tail -30 >"$OUT/target-tests.log"
timeout 150 python3 benchmarks/bench_device.py --cuda --rounds 5 --passes 1 --items 64 \
    >"$OUT/bench-device.txt" 2>&1
cat "$OUT/environment.txt" "$OUT/bench-device.txt"
