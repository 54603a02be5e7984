# The two commands of the README:
#   make book   set up .venv, run every chapter at its defaults, render _build/html
#   make test   set up .venv, run the whole test suite (unit, notebooks, book, browser)
# Both are idempotent: .venv is rebuilt only when the pins change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Datasets: $RESNET_NB_DATA if set, else ./data in this checkout (chapters run from
# notebooks/, so a relative default would point elsewhere).
RESNET_NB_DATA ?= $(CURDIR)/data
export RESNET_NB_DATA

.PHONY: book test test-fast venv notebooks sync lock browser clean oldest

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --path-output . -n -W --keep-going
	@echo "Book built: open _build/html/index.html"

browser:
	@command -v chromium >/dev/null || command -v /usr/bin/chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: install Debian's 'chromium' package (apt-get install chromium)"; exit 1; fi; }

test: $(STAMP) browser
	$(PY) -m pytest

test-fast: $(STAMP)  ## unit tests only, without the slow ones (no notebooks, no book): ~minutes
	$(PY) -m pytest tests -m "not slow and not book" -p no:nbval \
	  -o addopts="-ra --strict-markers --durations=10"

# Developer helpers (not needed by readers)
notebooks: $(STAMP)  ## refresh every .ipynb from its .py and re-run it in place
	$(PY) -m resnet_nb.chapters execute notebooks/*.py

sync: $(STAMP)       ## pair every .py with its .ipynb without running anything
	$(VENV)/bin/jupytext --sync notebooks/*.py

lock:                ## re-resolve requirements.txt from requirements.in
	rm -rf /tmp/resnet-nb-lock && $(PYTHON) -m venv /tmp/resnet-nb-lock
	/tmp/resnet-nb-lock/bin/pip install --quiet -r requirements.in
	{ echo "# Exact pins for the README commands and CI, resolved from requirements.in"; \
	  echo "# (regenerate with: make lock). Python 3.11, x86_64."; \
	  /tmp/resnet-nb-lock/bin/pip freeze --all | grep -vE '^(pip|setuptools|wheel)=='; } > requirements.txt

# The oldest supported torch/torchvision (pyproject.toml's minimum) in .venv-oldest, every
# other test dependency at its pin in requirements.txt; runs the unit tests only (no
# notebooks, no book). PyPI's Linux wheels pull the CUDA libraries: a few GB, once.
# Measured: 2.5.1/0.20.1 passes every unit test; 2.4.1/0.19.1 does not (the two-process
# torchrun test hangs past its 180 s limit), so pyproject.toml says torch>=2.5.
OLDEST_TORCH       ?= 2.5.1
OLDEST_TORCHVISION ?= 0.20.1
OLDEST_VENV        := .venv-oldest
OLDEST_STAMP       := $(OLDEST_VENV)/.installed-torch-$(OLDEST_TORCH)
OLDEST_DEPS        := pytest pytest-timeout numpy pillow matplotlib pyyaml tqdm onnx onnxruntime \
                      onnxscript jupytext nbformat papermill ipykernel

$(OLDEST_STAMP): requirements.txt
	rm -rf $(OLDEST_VENV) && $(PYTHON) -m venv $(OLDEST_VENV)
	grep -iE '^($(shell echo $(OLDEST_DEPS) | tr ' ' '|'))==' requirements.txt > $(OLDEST_VENV)/constraints.txt
	$(OLDEST_VENV)/bin/pip install --quiet --disable-pip-version-check -c $(OLDEST_VENV)/constraints.txt \
	  torch==$(OLDEST_TORCH) torchvision==$(OLDEST_TORCHVISION) $(OLDEST_DEPS) \
	  "setuptools>=68"  # pyproject.toml's build requirement: the install-cell test builds
	@touch $@

oldest: $(OLDEST_STAMP)  ## unit tests on the oldest supported torch (not the notebooks or the book)
	$(OLDEST_VENV)/bin/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	PYTHONPATH=$(CURDIR) $(OLDEST_VENV)/bin/python -m pytest tests -m "not book" -p no:nbval \
	  -p no:cacheprovider -o addopts="-ra --strict-markers" --ignore=tests/test_book.py \
	  --ignore=tests/test_book_ext.py

clean:
	rm -rf _build
