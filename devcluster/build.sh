#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from the wrapper modules in devcluster/go/
# into a cache folder outside the clone, keyed by version, so later runs (CI's fresh clones included)
# reuse them. Idempotent: returns at once when the binaries are already there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=devcluster/versions.env
source "$here/versions.env"
cache=${ADF_CACHE:-$HOME/.cache/adf}
jobs=${ADF_BUILD_JOBS:-2}

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -modcacherw" GOPROXY=${GOPROXY:-}
[ -n "$GOPROXY" ] || unset GOPROXY

# build_module NAME DIR OUTDIR LDFLAGS BINARY=PACKAGE...: the binaries share GOCACHE, so the second
# one mostly only links.
build_module() {
  local name=$1 moddir=$2 out=$3 ldflags=$4
  shift 4
  local missing=0 spec
  for spec in "$@"; do [ -x "$out/bin/${spec%%=*}" ] || missing=1; done
  if [ "$missing" = 0 ]; then
    echo "devcluster: $name binaries cached in $out/bin"
    return
  fi
  echo "devcluster: building $name into $out/bin (cold builds take tens of minutes on 2 cores)"
  local start=$SECONDS
  mkdir -p "$out"
  rm -rf "$out/bin.partial"
  (
    cd "$moddir"
    export GOMODCACHE="$out/gomodcache" GOCACHE="$out/gocache"
    for spec in "$@"; do
      go build -p "$jobs" -ldflags "$ldflags" -o "$out/bin.partial/${spec%%=*}" "${spec#*=}"
    done
  )
  # Rename last, so an interrupted build is never mistaken for a finished one.
  rm -rf "$out/bin"
  mv "$out/bin.partial" "$out/bin"
  echo "devcluster: built $name in $((SECONDS - start)) s"
}

minor=${K8S_VERSION#*.}
minor=${minor%%.*}
k8s_ld="-s -w"
for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  k8s_ld="$k8s_ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

build_module "etcd v$ETCD_VERSION" "$here/go/etcd" "$cache/etcd-v$ETCD_VERSION" "-s -w" \
  etcd=go.etcd.io/etcd/server/v3
build_module "kubernetes v$K8S_VERSION" "$here/go/k8s" "$cache/k8s-v$K8S_VERSION" "$k8s_ld" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager
