"""Start and stop a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)
plus the test-only pod runner, as local processes on loopback addresses.

Every process runs in its own process group so it can be stopped with everything it spawned; pids
are written to the state folder so a detached cluster (`python -m devcluster up`) can be stopped by
a later `down`, and an attached one (the pytest fixture) is stopped on exit, failure or interrupt.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import functools
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
NODE_NAME = "adf-devnode"
CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "deployment-controller",
    "replicaset-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
)
# Stop order: the pod runner first (it kills pod processes), etcd last.
PROCESS_ORDER = ("podrunner", "kube-controller-manager", "kube-apiserver", "etcd")


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message names the log to read."""


class ProcessExited(ControlPlaneError):
    """A component exited while starting, most often because a port picked as free was taken."""


def versions() -> dict[str, str]:
    """Pinned versions, shared with build.sh and install-tools.sh through versions.env."""
    pairs = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def cache_dir() -> Path:
    return Path(os.environ.get("ADF_CACHE") or Path.home() / ".cache" / "adf")


def default_state_dir() -> Path:
    return Path(os.environ.get("ADF_DEVCLUSTER_DIR") or cache_dir() / "devcluster-state")


def binary_paths() -> dict[str, Path]:
    """Where build.sh and install-tools.sh put the binaries: keyed by version, outside the clone."""
    v = versions()
    k8s = cache_dir() / f"k8s-v{v['K8S_VERSION']}" / "bin"
    tools = cache_dir() / f"tools-kubectl-{v['KUBECTL_VERSION']}-helm-{v['HELM_VERSION']}" / "bin"
    return {
        "etcd": cache_dir() / f"etcd-v{v['ETCD_VERSION']}" / "bin" / "etcd",
        "kube-apiserver": k8s / "kube-apiserver",
        "kube-controller-manager": k8s / "kube-controller-manager",
        "kubectl": tools / "kubectl",
        "helm": tools / "helm",
    }


def tools_bin_dir() -> Path:
    return binary_paths()["kubectl"].parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie has already exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by pid, SIGKILL it if it is still there after timeout."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server_names: tuple[str, ...] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if server_names:
        sans: list[x509.GeneralName] = []
        for name in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(signer, hashes.SHA256())


def write_pki(pki: Path) -> None:
    """A CA, the API server's serving cert, an admin client cert (system:masters), the SA key."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "adf-devcluster-ca")])
    ca = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        server_key,
        ca_name,
        ca_key,
        server_names=(
            "127.0.0.1",
            "10.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ),
    )
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _issue(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
            ]
        ),
        admin_key,
        ca_name,
        ca_key,
        client=True,
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca.crt": _pem_cert(ca),
        "server.crt": _pem_cert(server),
        "server.key": _pem_key(server_key),
        "admin.crt": _pem_cert(admin),
        "admin.key": _pem_key(admin_key),
        "sa.key": _pem_key(sa_key),
    }
    for name, data in files.items():
        path = pki / name
        path.write_bytes(data)
        path.chmod(0o600)


def kubeconfig(server: str, ca_pem: bytes, user: dict[str, str], namespace: str = "default") -> str:
    """A one-context kubeconfig with everything inline, so it can be copied anywhere."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "adf-devcluster",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [
            {
                "name": "adf-devcluster",
                "context": {"cluster": "adf-devcluster", "user": "user", "namespace": namespace},
            }
        ],
        "current-context": "adf-devcluster",
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class ControlPlane:
    """One control plane instance living in state_dir.

    attached=True (tests): processes die with this Python process (parent-death signal, atexit,
    SIGTERM handler). attached=False (`make cluster-up`): they outlive it and `down` stops them.
    """

    state_dir: Path = field(default_factory=default_state_dir)
    attached: bool = True
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120.0, attempts: int = 3) -> None:
        """Start everything and return once the API is ready and the pod runner's node is Ready.

        A fresh cluster every time (etcd data and pod folders are wiped). Free ports are picked
        before the processes bind them, so a concurrent instance can steal one: retried.
        """
        if self.attached:
            atexit.register(self.stop)
            _stop_on_sigterm()
        for attempt in range(1, attempts + 1):
            try:
                self._start(timeout)
                return
            except ProcessExited:
                if attempt == attempts:
                    raise

    def _start(self, timeout: float) -> None:
        bins = binary_paths()
        missing = [str(p) for p in bins.values() if not p.exists()]
        if missing:
            raise ControlPlaneError(
                f"missing {', '.join(missing)}: run `bash devcluster/build.sh` and "
                "`bash devcluster/install-tools.sh` (or `python -m devcluster build`)"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("etcd", "pods"):
            shutil.rmtree(self.state_dir / stale, ignore_errors=True)
        pki = self.state_dir / "pki"
        try:
            write_pki(pki)
            self.ports = {"etcd": free_port(), "etcd-peer": free_port(), "apiserver": free_port()}
            self._write_state()
            self._start_etcd(bins["etcd"], timeout)
            self._start_apiserver(bins["kube-apiserver"], pki, timeout)
            self.kubeconfig_path.write_text(
                kubeconfig(
                    self.server,
                    (pki / "ca.crt").read_bytes(),
                    {
                        "client-certificate-data": _b64(pki / "admin.crt"),
                        "client-key-data": _b64(pki / "admin.key"),
                    },
                )
            )
            self.kubeconfig_path.chmod(0o600)
            self._spawn(
                "kube-controller-manager",
                [
                    str(bins["kube-controller-manager"]),
                    f"--kubeconfig={self.kubeconfig_path}",
                    "--leader-elect=false",
                    "--secure-port=0",
                    f"--controllers={','.join(CONTROLLERS)}",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    "--v=1",
                ],
            )
            self._spawn(
                "podrunner",
                [
                    sys.executable,
                    "-m",
                    "devcluster.podrunner",
                    f"--kubeconfig={self.kubeconfig_path}",
                    f"--state-dir={self.state_dir}",
                    f"--node-name={NODE_NAME}",
                ],
                env={**os.environ, "PYTHONPATH": _pythonpath()},
            )
            deadline = time.monotonic() + timeout
            self._wait(
                lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default"),
                deadline,
                "kube-controller-manager (the default ServiceAccount)",
            )
            self._wait(self._node_ready, deadline, "the pod runner's node (podrunner.log)")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process this instance (or a detached one in state_dir) started, pods too."""
        pids = self.pids or self._read_state().get("pids", {})
        for name in PROCESS_ORDER:
            pid = pids.get(name)
            if pid:
                stop_group(pid)
        for pid_file in (self.state_dir / "pods").glob("*/*/*.pid"):
            # Only left when the runner died without cleaning up; remove so a reused pid is safe.
            with contextlib.suppress(OSError, ValueError):
                stop_group(int(pid_file.read_text()), timeout=2)
            pid_file.unlink(missing_ok=True)
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        self._procs.clear()
        self.pids = {}
        state = self.state_dir / "state.json"
        if state.exists():
            state.unlink()

    def running(self) -> bool:
        pids: dict[str, int] = self._read_state().get("pids", {})
        return bool(pids) and all(pid_alive(p) for p in pids.values())

    def all_pids(self) -> list[int]:
        """Every pid started so far, pod processes included (tests check none is left)."""
        return [*self.pids.values(), *pod_pids(self.state_dir)]

    @classmethod
    def load(cls, state_dir: Path) -> ControlPlane:
        """The detached instance recorded in state_dir (by `up`)."""
        cp = cls(state_dir=state_dir, attached=False)
        state = cp._read_state()
        cp.pids, cp.ports = state.get("pids", {}), state.get("ports", {})
        return cp

    def _start_etcd(self, etcd: Path, timeout: float) -> None:
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        self._spawn(
            "etcd",
            [
                str(etcd),
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as r:
                return bool(json.load(r).get("health") == "true")

        self._wait(healthy, time.monotonic() + timeout, "etcd (etcd.log)")

    def _start_apiserver(self, apiserver: Path, pki: Path, timeout: float) -> None:
        port = self.ports["apiserver"]
        self._spawn(
            "kube-apiserver",
            [
                str(apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki / 'server.crt'}",
                f"--tls-private-key-file={pki / 'server.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                f"--service-account-issuer=https://127.0.0.1:{port}",
                f"--service-account-key-file={pki / 'sa.key'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait(
            lambda: self._get("/readyz"),
            time.monotonic() + timeout,
            "kube-apiserver /readyz (kube-apiserver.log)",
        )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=(
                    functools.partial(parent_death_signal, signal.SIGTERM)
                    if self.attached
                    else None
                ),
            )
        self._procs.append(proc)
        self.pids[name] = proc.pid
        self._write_state()

    def _wait(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while True:
            for name, pid in self.pids.items():
                if not pid_alive(pid):
                    raise ProcessExited(f"{name} exited; see {self.log_dir / (name + '.log')}")
            with contextlib.suppress(OSError, ValueError, KeyError):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out waiting for {what} in {self.log_dir}")
            time.sleep(0.1)

    def _ssl(self) -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        return ctx

    def _get(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.server + path, context=self._ssl(), timeout=5) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError:
            return False

    def _node_ready(self) -> bool:
        url = f"{self.server}/api/v1/nodes/{NODE_NAME}"
        try:
            with urllib.request.urlopen(url, context=self._ssl(), timeout=5) as r:
                node: dict[str, Any] = json.load(r)
        except urllib.error.HTTPError:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {"pids": self.pids, "ports": self.ports, "kubeconfig": str(self.kubeconfig_path)}
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))

    def _read_state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return data


def pod_pids(state_dir: Path) -> list[int]:
    """Pids of pod processes the runner started and has not seen exit (pods/<ns>/<pod>/*.pid)."""
    pids = []
    for path in (state_dir / "pods").glob("*/*/*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(path.read_text()))
    return pids


def pod_dir(state_dir: Path, namespace: str, pod: str) -> Path:
    return state_dir / "pods" / namespace / pod


def pod_log_path(state_dir: Path, namespace: str, pod: str, container: str | None = None) -> Path:
    """Where the runner keeps a container's output (stdout and stderr); the first one by default."""
    directory = pod_dir(state_dir, namespace, pod)
    if container is None:
        logs = sorted(directory.glob("*.log"))
        return logs[0] if logs else directory / "missing.log"
    return directory / f"{container}.log"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _pythonpath() -> str:
    """Let the runner import devcluster even when the project is not installed in this Python."""
    return os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p)


def parent_death_signal(sig: int) -> None:
    """In a child (preexec_fn): get sig when the parent thread dies, even by SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, sig)


def _stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so pytest (or a with block) unwinds and stops the processes."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # only possible in the main thread

            def _interrupt(signum: int, frame: object) -> None:
                raise KeyboardInterrupt(f"signal {signum}")

            signal.signal(signal.SIGTERM, _interrupt)
