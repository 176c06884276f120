# Two entry points: `make demo` (set up, compile the default model, C-simulate it against PyTorch) and `make test`
# (set up + run the tests).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= out/demo

.PHONY: demo test test-slow lint bench clean

# Reinstall only when the pins or the package metadata change.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/streamtensor compile gpt2 --size tiny --mode prefill --seq-len 16 -o $(DEMO_OUT)
	$(VENV)/bin/streamtensor verify $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest -n 2 -q

test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/fifo_sizing.py

clean:
	rm -rf $(VENV) out build .pytest_cache .ruff_cache
