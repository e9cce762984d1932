# The two commands a newcomer types: `make demo` and `make test`. Both run `make setup`, which
# installs what is missing (Debian packages, the virtual environment) and is quick when nothing is.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := data/demo
# fluidsynth and fluid-soundfont-gm: what renders the demo library, and its SoundFont
APT_PACKAGES := fluidsynth fluid-soundfont-gm
# What only `make test` needs. chromium: the browser the web tests drive (headless, through
# Playwright; it bundles the SwiftShader software WebGL it needs); fonts-liberation: text for
# its pages and screenshots; musescore-general-soundfont-small: an .sf3 bank (Vorbis-compressed
# samples), which the test of rendering from an .sf3 SoundFont needs. Where the archive lacks
# one (Ubuntu has no chromium package), the tests that need it are skipped, naming it.
TEST_APT_PACKAGES := chromium fonts-liberation musescore-general-soundfont-small
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# WHEELS=DIR: a local folder of wheels pip may take packages from (used when given, never needed).
# PIP_EXTRA: more pip options, e.g. the CPU-only torch build on a machine without one on disk:
#   make setup PIP_EXTRA='--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple'
WHEELS ?=
PIP_EXTRA ?=
PIP_LINKS := $(if $(WHEELS),--find-links $(WHEELS)) $(PIP_EXTRA)

VENDOR := src/soundatlas/web/static/vendor
WEB_STAMP := $(VENDOR)/.installed

.PHONY: setup system-packages test-packages demo test bench wheel clean-demo

setup: system-packages $(STAMP) $(WEB_STAMP)

system-packages:
	@extra=""; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || extra="$$extra python3-venv"; \
	command -v node >/dev/null 2>&1 || extra="$$extra nodejs"; \
	command -v npm >/dev/null 2>&1 || extra="$$extra npm"; \
	SUDO="$(SUDO)" sh tools/apt_install.sh $(APT_PACKAGES) $$extra

test-packages:
	@SUDO="$(SUDO)" sh tools/apt_install.sh --optional "the tests that need them are \
	skipped, naming them (a browser: .venv/bin/playwright install chromium)" $(TEST_APT_PACKAGES)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(PIP_LINKS) -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# three.js from the npm registry (exact version in package-lock.json), served by the page itself:
# no CDN. Copied, not committed (built assets stay out of git).
$(WEB_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	$(PYTHON) tools/vendor_assets.py
	@touch $@

$(DEMO)/metadata.csv: | setup
	$(BIN)/soundatlas demo-library $(DEMO)

demo: setup $(DEMO)/metadata.csv
	$(BIN)/soundatlas map $(DEMO)
	$(BIN)/soundatlas info --atlas $(DEMO)/.soundatlas
	$(BIN)/soundatlas serve --atlas $(DEMO)/.soundatlas --port 8000

# TEST_JOBS: pytest processes (pytest-xdist); each takes whole test files, so a file's shared
# fixtures are built once. 2 fits the CI machine's two cores.
TEST_JOBS ?= 2

test: setup test-packages
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile

# A wheel that is a complete install: the shipped model and the page, three.js included.
wheel: setup
	rm -rf build
	$(BIN)/pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w dist .
	@ls dist/soundatlas-*.whl

bench: setup
	$(BIN)/python benchmarks/bench_cqt.py
	$(BIN)/python benchmarks/bench_index.py

clean-demo:
	rm -rf $(DEMO)
