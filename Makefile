# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves, from the committed lock
# (requirements/*.txt, hashed): a fresh clone installs exactly what the tests passed with. `make lock` refreshes it;
# `make test-latest` runs the suite on the newest releases the pyproject ranges admit, to find a breaking release.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.6.2
# The extras the tests need: model backends on tiny local models, Ray, Postgres checkpoints, the UI.
TEST_EXTRAS := dev,vlm,rl,client,diffusion,dist,ui
export OMP_NUM_THREADS ?= 1

.PHONY: demo test venv lint bench calibrate clean lock test-latest

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION)

# Locked third-party packages (hash-checked), then the project itself without resolving anything.
$(VENV)/.installed: requirements/core.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --no-cache-dir --require-hashes -r requirements/core.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
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
# Triton is left out: xgrammar asks for it on Linux x86_64 for its CUDA kernels only (CPU logits never import it),
# and it is 1 GB installed, a quarter of the test venv: CI once ran out of disk installing this lock. The lock keeps
# it (pip-compile's output, unedited); the install reads a copy without its entry, takes exactly the locked packages
# (--no-deps: the lock is complete) and `pip check` may report that one missing requirement and nothing else.
# --no-cache-dir: no second copy of every download in ~/.cache.
LOCK_SKIP := triton
$(VENV)/.installed-hf: requirements/test.txt $(VENV)/.installed
	awk '/^[^ #]/ {skip = ($$0 ~ /^($(LOCK_SKIP))==/)} !skip' requirements/test.txt > $(VENV)/test-lock.txt
	$(BIN)/python -m pip install -q --no-cache-dir --require-hashes --no-deps -r $(VENV)/test-lock.txt
	$(BIN)/python -m pip check > $(VENV)/pip-check.txt || ! grep -Ev '^[^ ]+ [^ ]+ requires ($(LOCK_SKIP)), which is not installed\.$$' $(VENV)/pip-check.txt
	touch $@

test: venv $(VENV)/.installed-hf
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# Refresh the lock from pyproject.toml's ranges (newest releases that satisfy them), for this machine's Python.
lock:
	$(PY) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION)
	.venv-lock/bin/pip-compile -q --upgrade --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	    --no-emit-find-links $(foreach e,$(subst $(comma), ,$(TEST_EXTRAS)),--extra $(e)) \
	    -o requirements/test.txt pyproject.toml requirements/test.in
	.venv-lock/bin/pip-compile -q --upgrade --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	    --no-emit-find-links --extra dev -c requirements/test.txt -o requirements/core.txt pyproject.toml \
	    requirements/core.in

# Not in CI's path: the newest releases the ranges admit, in a venv of its own.
test-latest:
	rm -rf .venv-latest
	$(PY) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q "torch==2.13.0" -e ".[$(TEST_EXTRAS)]" "transformers[serving]>=5.0,<6"
	.venv-latest/bin/python -m pytest -q

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/diagnose.py

calibrate: venv
	$(BIN)/rnr calibrate

clean:
	rm -rf $(VENV) .venv-lock .venv-latest examples examples-restored .pytest_cache

comma := ,
