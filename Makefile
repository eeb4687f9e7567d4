# qkd-sdn: two commands on a fresh machine — `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSPKG := libyang2-dev libyang2-tools gcc pkg-config iproute2 prometheus chromium

.PHONY: setup demo test lint types unit bindings protos check-generated clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@bash .ci/system-packages $(SYSPKG)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/qkdsdn lab run

test: setup lint types
	$(PY) -m pytest -q --durations=15 tests

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: setup
	$(VENV)/bin/mypy

# Generated code: never edited by hand; tests check that it regenerates byte-identical.
bindings: setup
	$(PY) -m yang.generate

protos: setup
	$(PY) -m common.protos.generate

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
