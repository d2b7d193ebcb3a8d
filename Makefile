# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 1

.PHONY: demo test venv lint bench calibrate clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Re-install when pyproject changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/rnr examples examples
	$(BIN)/rnr diagnose examples/
	rm -rf examples-restored
	$(BIN)/rnr restore examples/ --out examples-restored

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/diagnose.py

calibrate: venv
	$(BIN)/rnr calibrate

clean:
	rm -rf $(VENV) examples examples-restored .pytest_cache
