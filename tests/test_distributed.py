"""The dataset under ``torchrun``: 2 processes on 127.0.0.1 (gloo, CPU), each reading its
``DistributedSampler`` share through a DataLoader.

This file is also the program ``torchrun`` runs (see :func:`worker`): each rank writes what
it read to ``<out>/rank<N>.json`` (and its items to ``rank<N>.pt``), and the tests check
the shares: disjoint and complete in each epoch, reshuffled between epochs, padded or cut as
``DistributedSampler`` documents when the ranks do not divide the samples, and ranks
sharing one cache folder over loopback HTTP end with a complete cache and the same items as
a local read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from segments_torch import SegmentsDataset
from segments_torch.demo import RELEASE_PATH

WORLD = 2
# Demo rows by status: LABELED 0 2 4, REVIEWED 1 3 7, REJECTED 5, UNLABELED 6.
SIX = ("LABELED", "REVIEWED")  # rows 0 1 2 3 4 7
SEVEN = ("LABELED", "REVIEWED", "REJECTED")  # rows 0 1 2 3 4 5 7


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torchrun(
    script: str | os.PathLike[str], *args: str, nproc: int = WORLD, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``script args`` under ``python -m torch.distributed.run`` with ``nproc``
    processes on 127.0.0.1 and a free port; stdout and stderr captured."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


# -- the program torchrun runs ---------------------------------------------------------------


def _epoch(
    dataset: SegmentsDataset, sampler: DistributedSampler[Any], epoch: int, workers: int = 0
) -> list[int]:
    """The release rows this rank reads in one epoch."""
    sampler.set_epoch(epoch)
    loader = DataLoader(
        dataset, batch_size=2, sampler=sampler, num_workers=workers, collate_fn=dataset.collate_fn
    )
    return [int(target["image_id"]) for _, targets in loader for target in targets]


def worker(argv: Sequence[str]) -> None:
    """One rank: read epochs through ``DistributedSampler`` and write down what was read.

    ``shares``: for the 6 LABELED/REVIEWED demo samples and for 7 (REJECTED too), with
    and without ``drop_last``, the rows read in epochs 0 and 1 and the sampler's indices.
    ``cache``: the release at a URL, assets into a shared ``--cache-dir`` through a
    DataLoader worker process, two epochs, then
    every sample read again (from the cache) and saved for comparison.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("shares", "cache"))
    parser.add_argument("release")
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache-dir")
    args = parser.parse_args(argv)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    record: dict[str, Any] = {"world": world}
    if args.mode == "shares":
        for name, statuses in (("six", SIX), ("seven", SEVEN)):
            dataset = SegmentsDataset(args.release, filter_by=statuses)
            for drop_last in (False, True):
                sampler: DistributedSampler[Any] = DistributedSampler(
                    dataset, shuffle=True, seed=0, drop_last=drop_last
                )
                record[f"{name} drop_last={drop_last}"] = {
                    "rows": [_epoch(dataset, sampler, epoch) for epoch in (0, 1)],
                    "indices": list(sampler),  # epoch 1's
                    "all_rows": dataset.rows.tolist(),
                }
    else:
        dataset = SegmentsDataset(args.release, cache_dir=args.cache_dir)
        sampler = DistributedSampler(dataset, shuffle=True, seed=0)
        record["rows"] = [_epoch(dataset, sampler, epoch, workers=1) for epoch in (0, 1)]
        dist.barrier()  # every rank's epochs are done: the cache is complete
        items = [dataset[i] for i in range(len(dataset))]
        torch.save(
            {int(t["image_id"]): (image, t) for image, t in items}, args.out / f"rank{rank}.pt"
        )
    (args.out / f"rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


# -- the tests ---------------------------------------------------------------------------


def _run_worker(*args: str) -> None:
    result = torchrun(__file__, *args)
    assert result.returncode == 0, result.stderr[-4000:]


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(WORLD)]


def test_ranks_read_disjoint_complete_shares_reshuffled_each_epoch(tmp_path):
    _run_worker("shares", str(RELEASE_PATH), str(tmp_path))
    ranks = _records(tmp_path)
    assert [r["world"] for r in ranks] == [WORLD, WORLD]

    # 6 samples, 2 ranks: 3 each, disjoint, together every sample once; drop_last
    # changes nothing when the ranks divide the samples.
    for key in ("six drop_last=False", "six drop_last=True"):
        assert ranks[0][key]["all_rows"] == [0, 1, 2, 3, 4, 7]
        for epoch in (0, 1):
            shares = [r[key]["rows"][epoch] for r in ranks]
            assert [len(s) for s in shares] == [3, 3], key
            assert not set(shares[0]) & set(shares[1])
            assert sorted(shares[0] + shares[1]) == [0, 1, 2, 3, 4, 7]
        # set_epoch reshuffles: the same rank reads another selection or order.
        assert [r[key]["rows"][0] for r in ranks] != [r[key]["rows"][1] for r in ranks]
    assert ranks[0]["six drop_last=False"]["rows"] == ranks[0]["six drop_last=True"]["rows"]

    # 7 samples, 2 ranks, no drop_last: the shuffled indices are padded to 8 by repeating
    # the first, which lands last on rank 1, so one sample is read twice in the epoch.
    key = "seven drop_last=False"
    all_rows = ranks[0][key]["all_rows"]
    assert all_rows == [0, 1, 2, 3, 4, 5, 7]
    for epoch in (0, 1):
        shares = [r[key]["rows"][epoch] for r in ranks]
        assert [len(s) for s in shares] == [4, 4]
        assert sorted(set(shares[0]) | set(shares[1])) == all_rows
        assert shares[1][-1] == shares[0][0]
        assert Counter(shares[0] + shares[1]).most_common(2)[1][1] == 1  # only that one twice
        assert Counter(shares[0] + shares[1])[shares[0][0]] == 2
    indices = [r[key]["indices"] for r in ranks]  # epoch 1, interleaved: rank r takes r::2
    interleaved = [i for pair in zip(*indices, strict=True) for i in pair]
    assert interleaved[-1] == interleaved[0]
    assert [all_rows[i] for i in indices[0]] == ranks[0][key]["rows"][1]

    # With drop_last the tail is cut instead: 3 each, disjoint, one sample left out.
    key = "seven drop_last=True"
    for epoch in (0, 1):
        shares = [r[key]["rows"][epoch] for r in ranks]
        assert [len(s) for s in shares] == [3, 3]
        assert not set(shares[0]) & set(shares[1])
        assert len(set(all_rows) - set(shares[0]) - set(shares[1])) == 1


def test_ranks_share_one_cache_over_http(tmp_path, file_server):
    from tests.items import assert_same_item

    served = tmp_path / "demo"
    shutil.copytree(RELEASE_PATH.parent, served, ignore=shutil.ignore_patterns("*.py", "__*"))
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    _run_worker(
        "cache", file_server.url_for("demo/release.json"), str(out), "--cache-dir", str(cache)
    )

    ranks = _records(out)
    for epoch in (0, 1):
        shares = [r["rows"][epoch] for r in ranks]
        assert sorted(shares[0] + shares[1]) == [0, 1, 2, 3, 4, 7]
    # Epoch 0's shares are disjoint, so each asset was downloaded once, by one rank; epoch
    # 1 and the final read of every sample by every rank found it in the shared cache.
    local = SegmentsDataset(RELEASE_PATH)
    assets = [
        url
        for i in range(len(local))
        for url in (local.sample_info(i).image_url, local.sample_info(i).bitmap_url)
    ]
    assert len(assets) == 12
    assert {url: file_server.count(f"demo/{url}") for url in assets} == dict.fromkeys(assets, 1)
    cached = sorted(p.read_bytes() for p in cache.rglob("*") if p.is_file())
    assert cached == sorted((served / url).read_bytes() for url in assets)
    # Every rank's items equal a local read of the same samples.
    reference = {int(local[i][1]["image_id"]): local[i] for i in range(len(local))}
    for rank in range(WORLD):
        items = torch.load(out / f"rank{rank}.pt", weights_only=False)
        assert sorted(items) == sorted(reference)
        for row, item in items.items():
            assert_same_item(item, reference[row])


if __name__ == "__main__":
    worker(sys.argv[1:])
