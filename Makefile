# upgrader — developer entry points. `make test` is the README's test command and what
# CI runs; `make demo` is the README's demo. Both set up what they need themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= $(CURDIR)/.lab-demo
DEMO_TARGET ?= v1.28.4

.PHONY: test lint typecheck unit deps venv sshd demo bench chaos fuzz security clean

venv: $(STAMP)

# Both distributions of this repository: upgrader (the product) and upgrader-lab (the simulated
# cluster, lab/), which adds `upgrader lab` through an entry point.
$(STAMP): pyproject.toml lab/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' -e ./lab
	@touch $(STAMP)

# Debian packages the lab and the SSH transport tests run for real: OpenSSH's server
# (openssh-server); sudo (lab nodes are entered as a non-root user who reaches root through
# the real sudo with Debian's default sudoers); the lab's Debian nodes run the machine's real
# apt, dpkg, gpg/gpgv and curl (gnupg, gpgv, curl, ca-certificates).
LAB_DEBS := openssh-server:/usr/sbin/sshd sudo:/usr/bin/sudo gnupg:/usr/bin/gpg \
	gpgv:/usr/bin/gpgv curl:/usr/bin/curl ca-certificates:/etc/ssl/certs/ca-certificates.crt
sshd:
	@missing=; for d in $(LAB_DEBS); do [ -e "$${d#*:}" ] || missing="$$missing $${d%%:*}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing$$missing (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || { echo "error: could not install$$missing with apt-get" >&2; exit 1; }; \
	else \
	  echo "error: missing Debian packages; install them: sudo apt-get install$$missing" >&2; exit 1; \
	fi

deps: venv sshd

lint: venv
	$(VENV)/bin/ruff check upgrader lab tests
	$(VENV)/bin/ruff format --check upgrader lab tests
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy upgrader lab/upgrader_lab

# Three pytest workers (pytest-xdist), one test file each at a time, on CI's two cores: the lab
# tests mostly wait on their simulated nodes (a two-worker run kept the cores about a quarter
# busy), so a third file side by side costs little; more would crowd the timing-sensitive
# signal and reboot tests. The smoke tests (the longest files) go first
# (tests/integration/conftest.py). `make test TEST_WORKERS=0` runs everything in one process;
# `PYTEST_ARGS="-m 'not smoke'"` leaves the benchmark and campaign smoke tests out.
TEST_WORKERS ?= 3
PYTEST_ARGS ?=
test: deps lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=20 -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

unit: venv
	$(VENV)/bin/pytest -q tests/unit

demo: deps
	@bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_TARGET)"

# Campaigns outside the default test run; each prints a table and writes bench/results/*.json.
bench: deps
	$(PY) -m bench.run all

chaos: deps
	$(PY) -m bench.chaos

fuzz: deps
	$(PY) -m bench.fuzz

security: deps
	$(PY) -m bench.security

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info lab/build lab/*.egg-info
