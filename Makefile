# Two commands: `make serve` starts the server, `make test` runs the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: serve test browser lint bench fuzz fuzz-invoke clean

# constraints.txt pins what CI tested (diffusers internals are relied on); see its header.
$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

serve: $(INSTALLED)
	$(VENV)/bin/enfugue-serve run $(ARGS)

# The browser tier's headless Chromium and its driver, from Debian's packages, where this machine
# may install them (as root or with password-less sudo); tests/browser skips, saying why, without.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=no; fi; \
	  if [ "$$sudo" = no ] || ! command -v apt-get >/dev/null; then \
	    echo "chromium: cannot install it here (needs apt-get as root); the browser tests will skip"; \
	  else \
	    echo "installing chromium and chromium-driver for the browser tests"; \
	    $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	      chromium chromium-driver >/dev/null || echo "chromium: install failed; the browser tests will skip"; \
	  fi; \
	fi

# Without PYTEST_ARGS: the API tier first, with torch unimportable (the ingress, the Store, the
# Planner and the fake role need none of it), then every other tier, tests/gpu on the CPU (tiny
# models, small sizes: everything but CUDA; on a GPU machine: pytest --gpu tests/gpu).
test: $(INSTALLED) browser
	$(VENV)/bin/ruff check .
ifeq ($(strip $(PYTEST_ARGS)),)
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -p tests.no_torch tests/api
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest --ignore=tests/api --gpu --gpu-device cpu
else
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)
endif

bench: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m bench.overhead
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m bench.api_latency

# The long fuzzing run: FUZZ_EXAMPLES generated requests per operation (the test run does 10).
fuzz: $(INSTALLED)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -p tests.no_torch tests/api/test_fuzz.py

# The long property run: INVOKE_PAYLOADS random invoke bodies on the real roles (the test run does 30).
fuzz-invoke: $(INSTALLED)
	INVOKE_PAYLOADS=$${INVOKE_PAYLOADS:-500} HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest tests/deployments/test_invoke_property.py

clean:
	rm -rf $(VENV)
