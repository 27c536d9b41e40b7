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

# Without PYTEST_ARGS: the API tier first, with torch unimportable (the ingress, the Store, the
# Planner and the fake role need none of it), then every other tier.
test: $(INSTALLED)
	$(VENV)/bin/ruff check .
ifeq ($(strip $(PYTEST_ARGS)),)
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -p tests.no_torch tests/api
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest --ignore=tests/api
else
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)
endif

bench: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m bench.overhead
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m bench.api_latency

clean:
	rm -rf $(VENV)
