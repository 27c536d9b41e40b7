# Two commands: `make serve` starts the server, `make test` runs the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: serve test lint bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

serve: $(INSTALLED)
	$(VENV)/bin/enfugue-serve run $(ARGS)

test: $(INSTALLED)
	$(VENV)/bin/ruff check .
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/invoke_latency.py

clean:
	rm -rf $(VENV)
