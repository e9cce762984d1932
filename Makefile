# The two commands a newcomer types: `make demo` and `make test`. Both run `make setup`, which
# installs what is missing (Debian packages, the virtual environment) and is quick when nothing is.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := data/demo
# chromium: the browser the web tests drive (headless, through Playwright; it bundles the
# SwiftShader software WebGL it needs); fonts-liberation: text for its pages and screenshots
APT_PACKAGES := fluidsynth fluid-soundfont-gm chromium fonts-liberation
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# This machine keeps a CPU build of torch on disk; use it rather than downloading a CUDA build.
PIP_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

VENDOR := src/soundatlas/web/static/vendor
WEB_STAMP := $(VENDOR)/.installed

.PHONY: setup system-packages demo test bench clean-demo

setup: system-packages $(STAMP) $(WEB_STAMP)

system-packages:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(PIP_LINKS) -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# three.js from the npm registry (exact version in package-lock.json), served by the page itself:
# no CDN. Copied, not committed (built assets stay out of git).
$(WEB_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/three/addons/controls
	cp node_modules/three/build/three.module.js node_modules/three/build/three.core.js $(VENDOR)/three/
	cp node_modules/three/examples/jsm/controls/OrbitControls.js $(VENDOR)/three/addons/controls/
	cp node_modules/three/LICENSE $(VENDOR)/three/
	@touch $@

$(DEMO)/metadata.csv: | setup
	$(BIN)/soundatlas demo-library $(DEMO)

demo: setup $(DEMO)/metadata.csv
	$(BIN)/soundatlas map $(DEMO)
	$(BIN)/soundatlas info --atlas $(DEMO)/.soundatlas
	$(BIN)/soundatlas serve --atlas $(DEMO)/.soundatlas --port 8000

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_cqt.py
	$(BIN)/python benchmarks/bench_index.py

clean-demo:
	rm -rf $(DEMO)
