PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE_REPO := var/repos/hello
# config/sluice.yaml's activate signals the pid this file holds
EXAMPLE_HOST_PIDFILE := var/host/hello.pid
CHROMIUM := /usr/bin/chromium

.PHONY: run test check venv test-tools bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,flower]'     # flower: tests/integration/test_flower.py
	touch $@

$(EXAMPLE_REPO)/.git:
	mkdir -p $(dir $(EXAMPLE_REPO))
	git init --quiet --initial-branch=master $(EXAMPLE_REPO)
	cp -R examples/hello-functions/. $(EXAMPLE_REPO)/
	cd $(EXAMPLE_REPO) && git add -A && \
	  git -c user.name=Sluice -c user.email=sluice@localhost commit --quiet -m "Example function app"

# The example host (examples/host/serve.py) serves the live release on 127.0.0.1:7071 beside
# `sluice up`, which activates it (SIGHUP to its pidfile) and checks its health after each
# switch; it stops when `sluice up` does (Ctrl-C included).
run: venv $(EXAMPLE_REPO)/.git
	@mkdir -p $(dir $(EXAMPLE_HOST_PIDFILE))
	$(BIN)/python examples/host/serve.py --target var/sites/hello --pidfile $(EXAMPLE_HOST_PIDFILE) & \
	  host=$$!; trap 'kill $$host 2>/dev/null; wait $$host' EXIT; trap 'exit 130' INT TERM; \
	  $(BIN)/sluice --config config/sluice.yaml up

test: venv check test-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Static checks, before any test runs: lint, the packages' layering, types.
check: venv
	$(BIN)/ruff check orchestrator workers tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

# Tools some tests need from Debian, installed when missing and we are root (apt-get update
# first; quiet; non-interactive): chromium for the dashboard's browser test (a test tool's own
# browser download is not used), docker-compose to validate docker-compose.yml (no Docker
# engine runs here; `config` needs none), bubblewrap for the builds' sandbox (bwrap), npm for
# the Node builds (tests/integration/test_builds.py). If
# apt-get is missing or fails, the build goes on and the tests that need them skip, saying why.
test-tools:
	@packages=""; \
	[ -x $(CHROMIUM) ] || packages="$$packages chromium"; \
	command -v bwrap >/dev/null 2>&1 || packages="$$packages bubblewrap"; \
	command -v npm >/dev/null 2>&1 || packages="$$packages npm"; \
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 \
	  || packages="$$packages docker-compose"; \
	[ -n "$$packages" ] || exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: not installing$$packages (needs root and apt-get): the tests using them skip"; \
	  exit 0; \
	fi; \
	echo "make: installing$$packages from Debian for the tests"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq >/dev/null 2>&1 || echo "make: apt-get update failed"; \
	for package in $$packages; do \
	  apt-get install -y -qq $$package >/dev/null 2>&1 \
	    || echo "make: could not install $$package: the tests using it skip"; \
	done

bench: venv
	$(BIN)/python bench/deploy_tree.py

clean:
	rm -rf $(VENV) var
