# Entry points named in the README. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch: on the dev/CI machines pip takes it from local disk in ~20 s. Elsewhere
# override it (e.g. a CPU-only wheel index through PIP_EXTRA_INDEX_URL) to avoid a CUDA build.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= serve,train,dev
STAMP  := $(VENV)/.installed
DEMO_FRAMES := tests/fixtures/brackets/frobisher/IMG_2600.jpg \
               tests/fixtures/brackets/frobisher/IMG_2601.jpg \
               tests/fixtures/brackets/frobisher/IMG_2602.jpg

.PHONY: setup demo test lint typecheck pytest clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

## demo: the main job on the embedded default: merge the bundled bracket (EXIF exposures) to out/
demo: $(STAMP)
	@mkdir -p out
	$(BIN)/emvnet enhance $(DEMO_FRAMES) -o out/frobisher.exr
	$(BIN)/emvnet enhance $(DEMO_FRAMES) -o out/frobisher.png
	$(BIN)/emvnet enhance $(DEMO_FRAMES) -o out/frobisher.uhdr.jpg
	@echo "wrote out/frobisher.exr (linear HDR), out/frobisher.png (tonemapped preview) and out/frobisher.uhdr.jpg (Ultra HDR: HDR on phones, the preview elsewhere)"

## test: lint, type-check and the whole test suite (what CI runs)
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
