# Qinglian: `make demo` runs a hall on this machine, `make test` the whole suite.
# Both install what they need: Debian packages (apt-get) and .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SECONDS ?= 0
DEBS := mosquitto mosquitto-clients socat

.PHONY: all setup demo test bench soak clean system-deps

all: setup

setup: $(VENV)/.installed build/mplib/.done system-deps

# Debian packages for the real parts: the broker, its clients, a PTY bridge for mpremote.
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
	$(PY) -m pytest -q -m "not soak" tests

soak: setup
	$(PY) -m pytest -q -m soak tests

bench: setup
	$(PY) -m bench

clean:
	rm -rf build demo-run .pytest_cache
