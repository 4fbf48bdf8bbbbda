# ActiveDataFlow for Kubernetes. `make help` lists the targets.
SHELL := /bin/bash
# .venv's interpreter: the distribution's own Python when it is 3.11 or newer (and can make a venv),
# else python3 from PATH; `make install PYTHON=...` picks another. Debian's is an optimised build
# (statically linked), as the image's python:3.11-slim is; a plain ./configure --enable-shared build
# such as pyenv's default runs the engine ~10 % slower and starts it ~60 ms later (bench/RESULTS.md).
SYSTEM_PYTHON = $(shell /usr/bin/python3 -c 'import ensurepip, sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo /usr/bin/python3)
PYTHON ?= $(or $(SYSTEM_PYTHON),python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
HELM = $(shell $(PY) -c 'from devcluster.controlplane import binary_paths; print(binary_paths()["helm"])')

.DEFAULT_GOAL := help
.PHONY: help install test unit lint crds check-crds manifests check-manifests chart-lint demo demo-local \
	bench bench-engine bench-operator bench-heartbeat soak e2e e2e-kind cluster-up cluster-down cluster-env cluster-build

help: ## Show this help
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(STAMP) ## Create .venv and install the project editable with dev extras

lint: $(STAMP) ## ruff, mypy and the import contract (adf_core never imports the operator)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy adf_core adf_operator devcluster soak bench
	$(VENV)/bin/lint-imports

crds: $(STAMP) ## Regenerate the CRDs (manifests/crds, the chart's crds/, manifests/install)
	$(VENV)/bin/adf crds --output-dir manifests/crds
	$(PY) scripts/render_manifests.py

check-crds: $(STAMP) ## Fail when the committed CRDs differ from the models
	$(VENV)/bin/adf crds --check --output-dir manifests/crds

manifests: $(STAMP) ## Render manifests/install and the chart's crds/ from the chart and manifests/crds
	$(PY) scripts/render_manifests.py

check-manifests: $(STAMP) ## Fail when manifests/install or the chart's crds/ are stale
	$(PY) scripts/render_manifests.py --check

chart-lint: $(STAMP) cluster-build ## helm lint --strict with every value set in charts/active-data-flow/ci
	for f in charts/active-data-flow/ci/*-values.yaml; do $(HELM) lint --strict charts/active-data-flow -f $$f || exit 1; done

unit: $(STAMP) ## Unit tests only (SQLite, pure functions)
	$(VENV)/bin/pytest -m "not postgres and not integration and not e2e"

test: $(STAMP) ## Everything: lint, CRD drift, unit, PostgreSQL, control-plane integration
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory check-crds check-manifests
	$(VENV)/bin/pytest

demo: $(STAMP) cluster-build ## The whole stack on the local control plane with SQLite source and sink
	$(PY) scripts/demo_cluster.py

demo-local: $(STAMP) ## The engine alone: the example flow on SQLite through `adf run`, no cluster
	$(PY) -m adf_core.demo

bench: bench-engine bench-operator bench-heartbeat ## All benchmarks: engine, operator, heartbeat

bench-engine: $(STAMP) ## Engine throughput and memory against the baselines (needs PostgreSQL)
	$(PY) -m bench

bench-operator: $(STAMP) cluster-build ## 200 flows triggered at once on a private control plane
	$(PY) -m bench.operator_bench --flows 200

bench-heartbeat: $(STAMP) cluster-build ## One ping with 1,000 flows due on a private control plane
	$(PY) -m bench.heartbeat_bench --flows 1000

soak: $(STAMP) cluster-build ## Reliability scenarios in their long form; writes soak/RESULTS.md
	$(PY) -m soak

e2e: $(STAMP) cluster-build ## helm install on the local control plane; flows run end to end
	$(VENV)/bin/pytest tests/e2e

e2e-kind: ## The same checks on a kind cluster (needs Docker, kind, kubectl, helm)
	bash scripts/e2e_kind.sh

cluster-build: ## Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kubectl, helm
	bash devcluster/build.sh
	bash devcluster/install-tools.sh

cluster-up: $(STAMP) cluster-build ## Start the local control plane in the background
	$(PY) -m devcluster up

cluster-down: $(STAMP) ## Stop the local control plane
	$(PY) -m devcluster down

cluster-env: $(STAMP) ## Print `export KUBECONFIG=…` for the running control plane
	@$(PY) -m devcluster env
