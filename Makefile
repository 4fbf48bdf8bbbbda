# ActiveDataFlow for Kubernetes. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install test unit lint typecheck crds check-crds demo bench cluster-up cluster-down cluster-env cluster-build

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(STAMP) ## Create .venv and install the project editable with dev extras

lint: $(STAMP) ## ruff, mypy and the import contract (adf_core never imports the operator)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy adf_core adf_operator
	$(VENV)/bin/lint-imports

crds: $(STAMP) ## Regenerate the CRDs in manifests/crds from the pydantic models
	$(VENV)/bin/adf crds --output-dir manifests/crds

check-crds: $(STAMP) ## Fail when the committed CRDs differ from the models
	$(VENV)/bin/adf crds --check --output-dir manifests/crds

unit: $(STAMP) ## Unit tests only (SQLite, pure functions)
	$(VENV)/bin/pytest -m "not postgres and not integration and not e2e"

test: $(STAMP) ## Everything: lint, CRD drift, unit, PostgreSQL, control-plane integration
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory check-crds
	$(VENV)/bin/pytest

demo: $(STAMP) ## Run the example flow locally on SQLite and show the result
	$(PY) -m adf_core.demo

bench: $(STAMP) ## Throughput and memory against the baselines (needs PostgreSQL)
	$(PY) -m bench

cluster-build: ## Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kubectl, helm
	bash devcluster/build.sh
	bash devcluster/install-tools.sh

cluster-up: $(STAMP) cluster-build ## Start the local control plane in the background
	$(PY) -m devcluster up

cluster-down: $(STAMP) ## Stop the local control plane
	$(PY) -m devcluster down

cluster-env: $(STAMP) ## Print `export KUBECONFIG=…` for the running control plane
	@$(PY) -m devcluster env
