#!/usr/bin/env bash
# `make e2e-kind`: the chart on a real cluster. Needs Docker, kind, kubectl and helm on PATH, and
# pulls postgres:16 from Docker Hub. The project's own machines have no Docker, so this never runs
# in CI there; `make e2e` checks the same on the local control plane.
#
# kind cluster -> image built and loaded -> helm install -> PostgreSQL in the cluster with 500
# products -> a DataFlow every minute -> the chart's CronJob pings the heartbeat -> the run
# succeeds and the rows are in the sink -> helm upgrade keeps the token -> helm uninstall leaves
# nothing. KEEP=1 keeps the cluster afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-adf-e2e}
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
image=active-data-flow:$version
release=adf
system=adf-system
ns=shop
step() { printf '\n== %s\n' "$*"; }

step "kind cluster $cluster"
kind create cluster --name "$cluster" --wait 120s
[ "${KEEP:-0}" = 1 ] || trap 'kind delete cluster --name "$cluster"' EXIT

step "image $image"
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

step "helm install"
helm install "$release" charts/active-data-flow -n "$system" --create-namespace --wait --timeout 5m
token() { kubectl -n "$system" get secret "$release-active-data-flow-heartbeat-token" -o jsonpath='{.data.token}'; }
token_before=$(token)

step "PostgreSQL with 500 products"
kubectl create namespace "$ns"
kubectl -n "$ns" create deployment postgres --image=postgres:16 --port=5432
kubectl -n "$ns" set env deployment/postgres POSTGRES_PASSWORD=e2e
kubectl -n "$ns" expose deployment postgres --port=5432
kubectl -n "$ns" rollout status deployment/postgres --timeout=180s
psql() { kubectl -n "$ns" exec deploy/postgres -- psql -U postgres -v ON_ERROR_STOP=1 -tA "$@"; }
until psql -c 'select 1' >/dev/null 2>&1; do sleep 2; done
psql -c 'create database shop' -c 'create database warehouse'
psql -d shop -c "create table products (id int primary key, name text, price numeric);
  insert into products select g, 'Product ' || g, g * 1.5 from generate_series(1, 500) g"

step "DataFlow, every minute"
url=postgresql+psycopg://postgres:e2e@postgres.$ns.svc:5432
kubectl -n "$ns" create secret generic pg --from-literal=source="$url/shop" --from-literal=sink="$url/warehouse"
kubectl -n "$ns" apply -f - <<YAML
apiVersion: activedataflow.io/v1alpha1
kind: DataFlow
metadata: {name: pg-sync}
spec:
  source: {sql: {url: {secretKeyRef: {name: pg, key: source}}, table: products}}
  sink: {sql: {url: {secretKeyRef: {name: pg, key: sink}}, table: exports, mode: upsert, keys: [id]}}
  schedule: {every: 1m}
YAML

step "the CronJob pings, the run succeeds"
kubectl -n "$ns" wait dataflow/pg-sync --for=jsonpath='{.status.lastRunPhase}'=Succeeded --timeout=240s
kubectl -n "$ns" get dataflows,dataflowruns
test "$(psql -d warehouse -c 'select count(*) from exports')" = 500

step "helm upgrade keeps the token"
helm upgrade "$release" charts/active-data-flow -n "$system" --reuse-values --set operator.logFormat=json --wait
test "$(token)" = "$token_before"

step "helm uninstall leaves nothing"
kubectl -n "$ns" delete dataflows --all --wait
helm uninstall "$release" -n "$system" --wait
kubectl -n "$system" wait pods --all --for=delete --timeout=120s
test -z "$(kubectl -n "$system" get deploy,cronjobs,jobs,pods,secrets -l app.kubernetes.io/instance=$release -o name)"
test -z "$(kubectl -n "$ns" get jobs -o name)"
step "e2e-kind passed"
