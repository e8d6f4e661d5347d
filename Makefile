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

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# OpenSSH server for the lab and the SSH transport tests (Debian package openssh-server);
# the lab's Debian nodes run the machine's real apt, dpkg, gpg/gpgv and curl (gnupg, gpgv,
# curl, ca-certificates).
LAB_DEBS := openssh-server gnupg gpgv curl ca-certificates
sshd:
	@if [ -x /usr/sbin/sshd ] && command -v gpg gpgv curl dpkg-deb apt-get >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing $(LAB_DEBS) (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(LAB_DEBS) >/dev/null) \
	    || { echo "error: could not install $(LAB_DEBS) with apt-get" >&2; exit 1; }; \
	else \
	  echo "error: sshd, gpg, gpgv or curl not found; install them: sudo apt-get install $(LAB_DEBS)" >&2; exit 1; \
	fi

deps: venv sshd

lint: venv
	$(VENV)/bin/ruff check upgrader tests
	$(VENV)/bin/ruff format --check upgrader tests

typecheck: venv
	$(VENV)/bin/mypy upgrader

test: deps lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=20

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
