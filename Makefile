PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE_REPO := var/repos/hello

.PHONY: run test venv bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(EXAMPLE_REPO)/.git:
	mkdir -p $(dir $(EXAMPLE_REPO))
	git init --quiet --initial-branch=master $(EXAMPLE_REPO)
	cp -R examples/hello-functions/. $(EXAMPLE_REPO)/
	cd $(EXAMPLE_REPO) && git add -A && \
	  git -c user.name=Sluice -c user.email=sluice@localhost commit --quiet -m "Example function app"

run: venv $(EXAMPLE_REPO)/.git
	$(BIN)/sluice --config config/sluice.yaml up

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/deploy_tree.py

clean:
	rm -rf $(VENV) var
