# Qinglian: `make demo` runs a hall on this machine, `make test` the whole suite.
# Both install what they need: Debian packages (apt-get) and .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SECONDS ?= 0
# make soak HOURS=N: how long the chaos run (tests/test_chaos_hall.py) lasts
HOURS ?= 1
# make test JOBS=N: pytest workers (pytest-xdist); auto is one per core, JOBS=1 runs the suite in order
JOBS ?= auto
DEBS := mosquitto mosquitto-clients socat chromium openssl lintian python3-pil python3-yaml espeak-ng sox alsa-utils

.PHONY: all setup demo test bench soak clean system-deps deb

all: setup

setup: $(VENV)/.installed build/mplib/.done system-deps

# Debian packages for the real parts: the broker, its clients, a PTY bridge for
# mpremote, a browser for the hall screen's tests, openssl for the TLS tests' certificates,
# lintian for the agent's Debian package (tests/test_deb.py, make deb), espeak-ng (its Mandarin voice
# `cmn`) and alsa-utils for the hall's call announcements, sox to measure them in tests.
system-deps:
	@bash tools/system-deps.sh $(DEBS)

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

build/mplib/.done: tools/mplib.py $(VENV)/.installed
	$(PY) -m tools.mplib --dest build/mplib
	@touch $@

demo: setup
	$(PY) -m tools.demo --seconds $(SECONDS)

test: setup
	$(PY) -m pytest -q -n $(JOBS) --dist worksteal -m "not soak" tests

soak: setup
	QL_SOAK_HOURS=$(HOURS) $(PY) -m pytest -q -s -m soak tests

bench: setup
	$(PY) -m bench

# The agent as a Debian package for the hall's Pi (tools/deb.py, deploy/debian/):
# build/deb/qinglian-agent_<version>_all.deb, then lintian, which fails on errors.
deb: $(VENV)/.installed
	@bash tools/system-deps.sh lintian
	$(PY) -m tools.deb
	lintian build/deb/qinglian-agent_*_all.deb

clean:
	rm -rf build demo-run .pytest_cache

# Real-board checks (hardware/): pyright from npm against the MicroPython board
# stubs, each port's stubs in a venv of their own; the Debian CJK font that
# tools/fontgen.py rasterises for the display.
.PHONY: hardware-deps typecheck
STUBS_VERSION := 1.29.0.post1
STDLIB_STUBS_VERSION := 1.29.0.post2
setup: hardware-deps

hardware-deps: node_modules/.installed build/stubs-esp32/.installed build/stubs-rp2/.installed
	@bash tools/system-deps.sh fonts-wqy-microhei

node_modules/.installed: package.json package-lock.json
	@bash tools/system-deps.sh nodejs npm
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

build/stubs-%/.installed:
	@echo "stubs: micropython-$*-stubs $(STUBS_VERSION) into build/stubs-$*"
	@rm -rf build/stubs-$*
	$(PYTHON) -m venv build/stubs-$*
	build/stubs-$*/bin/pip install -q micropython-$*-stubs==$(STUBS_VERSION) micropython-stdlib-stubs==$(STDLIB_STUBS_VERSION)
	@ln -sfn $$(cd build/stubs-$* && echo lib/python3*/site-packages) build/stubs-$*/site-packages
	@touch $@

typecheck: hardware-deps build/mplib/.done
	$(PY) -m pytest -q tests/test_hardware_typecheck.py
