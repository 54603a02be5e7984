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

.PHONY: book test venv notebooks sync lock browser clean

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

clean:
	rm -rf _build
