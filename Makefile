# The two Quickstart commands, `make demo` and `make test`, each set up (or reuse) the
# isolated environment .venv inside the clone with the pinned development set.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Azurite, the Azure Storage emulator the az:// tests start on 127.0.0.1 (npm package);
# without npm those tests skip.
AZURITE := .tools/azurite/node_modules/.bin/azurite-blob

.PHONY: demo test lint typecheck unit docs bench clean-venv azurite

$(STAMP): pyproject.toml setup.cfg requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation -e .
	touch $(STAMP)

azurite:
	@if [ -x $(AZURITE) ]; then :; \
	elif command -v npm >/dev/null; then \
		npm install --prefix .tools/azurite --no-audit --no-fund --silent azurite@3.37.0; \
	else echo "npm not found: the Azure (az://) tests will skip"; fi

demo: $(STAMP)
	$(BIN)/segments-torch demo

test: lint typecheck unit docs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) azurite
	$(BIN)/python -m pytest

# The docs site (mkdocs.yml) into site/; --strict fails on broken links, missing references
# and docstring warnings. The variable silences Material's banner about MkDocs 2.0.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_release.py
	$(BIN)/python benchmarks/bench_decoders.py
	$(BIN)/python benchmarks/bench_dataset.py
	$(BIN)/python benchmarks/bench_targets.py
	$(BIN)/python benchmarks/bench_storage.py
	$(BIN)/python benchmarks/bench_labels.py
	$(BIN)/python benchmarks/bench_device.py
	$(BIN)/python benchmarks/bench_resize.py
	$(BIN)/python benchmarks/bench_preview.py
	$(BIN)/python benchmarks/bench_export.py

clean-venv:
	rm -rf $(VENV)
