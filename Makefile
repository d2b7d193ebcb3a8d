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

# The tests also build tiny models locally (no hub) and run the model backends on them: torch 2.13.0 is the CPU
# build on these machines; the vlm, rl, diffusion and dist extras bring transformers, xgrammar, TRL, peft, datasets,
# diffusers and Ray; ui brings Gradio (the browser tests drive Debian's chromium, installed by .ci/run);
# transformers[serving] gives the loopback server the OpenAI-compatible client is tested against.
$(VENV)/.installed-hf: $(VENV)/.installed
	$(BIN)/python -m pip install -q "torch==2.13.0" -e ".[dev,vlm,rl,client,diffusion,dist,ui]" "transformers[serving]>=5.0,<6"
	touch $@

test: venv $(VENV)/.installed-hf
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/diagnose.py

calibrate: venv
	$(BIN)/rnr calibrate

clean:
	rm -rf $(VENV) examples examples-restored .pytest_cache
