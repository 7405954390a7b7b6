# cachegate — the everyday commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PAIRS ?= ../shared/data/qqp_dev.jsonl

.PHONY: install run demo test lint bench eval train-verifier clean

install: $(STAMP)

# PyTorch first, from the local CPU wheel: otherwise pip resolves sentence-transformers'
# torch requirement to a multi-GB CUDA build. The tests need both extras: [train] for the
# torch embedder, [dev] for pytest, the linters and the openai client.
$(STAMP): pyproject.toml scripts/install-system-packages.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,train]'
	bash scripts/install-system-packages.sh
	@touch $(STAMP)

run: install
	$(BIN)/cachegate serve --config configs/default.yaml

demo: install
	$(BIN)/cachegate demo

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# mypy reads its files and settings from pyproject.toml: the runtime and the tools.
lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# VS=litellm also measures the LiteLLM proxy side by side; it gets a venv of its own,
# so nothing of it enters the project's.
LITELLM_VENV := bench/.litellm-venv
LITELLM_VERSION := 1.108.7

bench: install $(if $(filter litellm,$(VS)),$(LITELLM_VENV)/bin/litellm)
	$(BIN)/cachegate bench $(if $(QUICK),--quick) $(if $(VS),--vs $(VS)) --json bench/results/bench$(if $(QUICK),-quick).json

$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)'

eval: install
	$(BIN)/cachegate eval --pairs $(PAIRS) --split heldout --json bench/results/eval-qqp-heldout.json
	$(BIN)/cachegate eval --pairs bench/data/news_pairs.jsonl --split all --json bench/results/eval-news.json
	$(BIN)/cachegate eval --pairs bench/data/support_pairs.jsonl --split all --json bench/results/eval-support.json
	$(BIN)/cachegate eval --pairs bench/data/prompt_pairs.jsonl --split report --json bench/results/eval-prompts.json
	$(BIN)/cachegate eval --pairs bench/data/prompt_fresh_pairs.jsonl --split report --json bench/results/eval-fresh-report.json
	$(BIN)/cachegate eval --pairs bench/data/prompt_check_pairs.jsonl --split all --json bench/results/eval-check.json
	$(BIN)/cachegate eval --pairs bench/data/prompt_blind_pairs.jsonl --split all --json bench/results/eval-blind.json

# One epoch on Quora's train split, the qqp_extra pairs no measured pair shares a question
# with, and the prompt pairs the script trains on by default (x3), as shipped; a second
# stage at a lower learning rate was tried on 2026-12-02 and ranked worse (docs/quality.md).
train-verifier: install
	$(BIN)/python -m scripts.train_verifier --pairs $(PAIRS) --train-extra --resume

clean:
	rm -rf .cachegate .pytest_cache .ruff_cache .mypy_cache test-artifacts
