"""Test-only stand-in for a kubelet: runs the project's own pods as local processes.

There is no scheduler and no kubelet in the dev control plane. This runner registers one Ready node,
binds pending pods to it, and for each pod runs its container's command/args as a local process in
the runner's own Python environment (its venv's bin directory comes first on PATH, so `adf`
resolves). It writes the pod status a kubelet would write (Running, then terminated with exit
code, reason and termination message), kills the process when the pod is deleted and then
finalises the deletion. Job finalizers are left to the job controller.

Paths: each pod gets a root folder (pods/<ns>/<pod>/root). A volume mounted at /etc/x is a folder
under that root, and any occurrence of a mount path (or the termination-message path) in command,
args, env values and workingDir is rewritten to the mapped folder. The process also gets
ADF_POD_ROOT and ADF_TERMINATION_LOG.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import fnmatch
import functools
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from devcluster.controlplane import kubeconfig, parent_death_signal, pod_dir

log = logging.getLogger("devcluster.podrunner")

DEFAULT_IMAGES = "*active-data-flow"
SA_TOKEN_SECONDS = 86400
MAX_GRACE_SECONDS = 10
MESSAGE_LIMIT = 4096
MERGE_PATCH = "application/merge-patch+json"
Pod = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_path(pod: Pod) -> str:
    meta = pod["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"


def image_repository(image: str) -> str:
    """The image name without tag or digest: 'reg:5000/a/b:1.0@sha256:…' -> 'reg:5000/a/b'."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def image_allowed(image: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(image_repository(image), p) for p in patterns)


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, $$ is a literal $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, value)


class ConfigError(Exception):
    """A referenced Secret/ConfigMap key is missing (kubelet: CreateContainerConfigError)."""


class Unsupported(Exception):
    """The pod needs something this runner does not emulate; it is not run."""


IPS_PER_BLOCK = 65024  # 256 * 254 usable addresses in one 127.X.0.0/16


class PathMap:
    """Maps in-container absolute paths (mounts, termination log) to folders under the pod root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._prefixes: list[str] = []

    def add(self, container_path: str) -> Path:
        self._prefixes.append(container_path.rstrip("/") or "/")
        self._prefixes.sort(key=len, reverse=True)
        return self.local(container_path)

    def local(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def rewrite(self, text: str) -> str:
        """Map every in-container path in one pass, so a mapped path is never mapped again.

        (A pod that mounts /tmp while the pod root itself lies under /tmp would otherwise see
        its already-mapped paths mapped a second time.)
        """
        if not self._prefixes:
            return text
        alternatives = "|".join(map(re.escape, self._prefixes))  # longest first
        pattern = r"(?<![\w./-])(" + alternatives + r")(?=$|[/\s:;,'\"=])"
        return re.sub(pattern, lambda match: str(self.local(match.group(1))), text)


class Runner:
    """Watches all pods; one PodWorker thread per pod bound to this node."""

    def __init__(
        self,
        api: client.ApiClient,
        state_dir: Path,
        node_name: str,
        images: list[str],
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.state_dir = state_dir
        self.node_name = node_name
        self.images = images
        self.stopping = threading.Event()
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        # Each runner takes its own 127.X.0.0/16 block, so pods of two control planes running
        # side by side (a demo and a test session) never share an address and a port.
        self._next_ip = random.randrange(250) * IPS_PER_BLOCK

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API call with plain dicts in and out: pods are handled as the API sends them."""
        params = self.api.param_serialize(
            method,
            path,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(*params).response  # the urllib3 response, body read
        if not 200 <= resp.status < 300:
            raise ApiException(http_resp=resp)
        data: dict[str, Any] = json.loads(resp.data)
        return data

    def allocate_ip(self) -> str:
        """A distinct loopback address per pod: 127.X.0.1, 127.X.0.2, … in this runner's block."""
        with self._lock:
            self._next_ip += 1
            n = self._next_ip
        return f"127.{1 + n // IPS_PER_BLOCK}.{(n // 254) % 256}.{n % 254 + 1}"

    def register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {"kubernetes.io/os": "linux"}},
        }
        with contextlib.suppress(ApiException):
            self.request("POST", "/api/v1/nodes", node)
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "adf pod runner is ready",
            "lastHeartbeatTime": now(),
            "lastTransitionTime": now(),
        }
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": "8Gi", "pods": "250"}
        status = {
            "status": {
                "conditions": [ready],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "capacity": capacity,
                "allocatable": capacity,
                "nodeInfo": {
                    "kubeletVersion": "adf-podrunner",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "adf://local",
                    "kernelVersion": "",
                    "osImage": "",
                    "kubeProxyVersion": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            }
        }
        self.request("PATCH", f"/api/v1/nodes/{self.node_name}/status", status, MERGE_PATCH)

    def run(self) -> None:
        self.register_node()
        log.info("node %s registered", self.node_name)
        while not self.stopping.is_set():
            try:
                listing = self.request("GET", "/api/v1/pods")
                for pod in listing["items"]:
                    self.handle("ADDED", pod)
                self.forget_missing({pod["metadata"]["uid"] for pod in listing["items"]})
                rv = listing["metadata"]["resourceVersion"]
                w = watch.Watch()  # type: ignore[no-untyped-call]
                for event in w.stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=60,
                    deserialize=False,
                ):
                    if self.stopping.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        break
                    if event["type"] == "ERROR":
                        break  # usually 410 Gone: list again
                    self.handle(event["type"], event["object"])
            except Exception:
                if self.stopping.is_set():
                    break
                log.exception("watch failed; listing again")
                self.stopping.wait(1)

    def handle(self, kind: str, pod: Pod) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        with self._lock:
            worker = self._workers.get(uid)
        if kind == "DELETED":
            if worker:
                worker.gone()
                with self._lock:
                    self._workers.pop(uid, None)
            return
        node = spec.get("nodeName")
        if meta.get("deletionTimestamp"):
            if worker:
                worker.delete_requested()
            elif node == self.node_name:
                self.finalize_deletion(pod)
            return
        if not node:
            self.bind(pod)
        elif node == self.node_name and worker is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return  # finished before this runner started: nothing to run
            worker = PodWorker(self, pod)
            with self._lock:
                self._workers[uid] = worker
            worker.start()

    def forget_missing(self, uids: set[str]) -> None:
        """Pods deleted while no watch was open: their DELETED event was never seen."""
        with self._lock:
            missing = [uid for uid in self._workers if uid not in uids]
            workers = [self._workers.pop(uid) for uid in missing]
        for worker in workers:
            worker.gone()

    def bind(self, pod: Pod) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.request("POST", f"{pod_path(pod)}/binding", binding)
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], e.body)

    def finalize_deletion(self, pod: Pod) -> None:
        """What the kubelet does once the containers are gone: delete with grace period 0."""
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            self.request("DELETE", pod_path(pod), body)
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def event(self, pod: Pod, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "source": {"component": "adf-podrunner", "host": self.node_name},
            "reportingComponent": "adf-podrunner",
            "firstTimestamp": now(),
            "lastTimestamp": now(),
            "count": 1,
        }
        try:
            self.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)
        except ApiException as e:
            log.warning("event for %s/%s failed: %s", meta["namespace"], meta["name"], e.body)

    def shutdown(self) -> None:
        self.stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.gone()
        for worker in workers:
            worker.join(timeout=MAX_GRACE_SECONDS + 5)


class PodWorker(threading.Thread):
    """Runs one pod from bind to deletion, writing its status like a kubelet would."""

    def __init__(self, runner: Runner, pod: Pod) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.runner = runner
        self.pod = pod
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = pod_dir(runner.state_dir, self.ns, self.name)
        self.paths = PathMap(self.dir / "root")
        self.ip = runner.allocate_ip()
        self.started_at = now()
        self._deleting = threading.Event()
        self._gone = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def delete_requested(self) -> None:
        self._deleting.set()

    def gone(self) -> None:
        """The pod object no longer exists (or the runner stops): kill, write nothing."""
        self._gone.set()
        self._deleting.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:
            log.exception("pod %s/%s", self.ns, self.name)
            self.runner.event(self.pod, "Warning", "PodRunnerError", f"{type(e).__name__}: {e}")
            self._deleting.wait()
        finally:
            self._kill()
        if not self._gone.is_set():
            with contextlib.suppress(Exception):
                self.runner.finalize_deletion(self.pod)

    def _run(self) -> None:
        spec = self.pod["spec"]
        containers = spec["containers"]
        c = containers[0]
        try:
            if len(containers) != 1 or spec.get("initContainers"):
                raise Unsupported("only pods with exactly one container and no init containers")
            if not image_allowed(c["image"], self.runner.images):
                self.runner.event(
                    self.pod,
                    "Warning",
                    "ImageNotAllowed",
                    f"image {c['image']!r} is not on the pod runner's allow-list "
                    f"{self.runner.images}; the pod is not run",
                )
                self._waiting(c, "ImageNotAllowed", f"image {c['image']} is not allowed")
                self._deleting.wait()
                return
            if self.dir.exists():
                shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
            self._prepare_volumes(c)
            term_local = self.paths.add(c.get("terminationMessagePath", "/dev/termination-log"))
            term_local.parent.mkdir(parents=True, exist_ok=True)
            term_local.symlink_to(self.dir / "termination-log")
        except Unsupported as e:
            self.runner.event(self.pod, "Warning", "Unsupported", str(e))
            self._waiting(c, "Unsupported", str(e))
            self._deleting.wait()
            return
        policy = spec.get("restartPolicy", "Always")
        last_state: dict[str, Any] = {}
        while not self._deleting.is_set():
            try:
                argv, env, cwd = self._process_config(c)
            except ConfigError as e:
                self.runner.event(self.pod, "Warning", "Failed", f"Error: {e}")
                self._waiting(c, "CreateContainerConfigError", str(e))
                self._deleting.wait(2)
                continue
            terminated = self._run_once(c, argv, env, cwd, last_state)
            failed = terminated["exitCode"] != 0
            restart = policy == "Always" or (policy == "OnFailure" and failed)
            if not restart or self._deleting.is_set():
                phase = "Failed" if failed else "Succeeded"
                self._patch_status(phase, c, {"terminated": terminated}, last_state, ready=False)
                break
            self.restarts += 1
            last_state = {"terminated": terminated}
            self._patch_status(
                "Running", c, {"waiting": {"reason": "CrashLoopBackOff"}}, last_state, ready=False
            )
            self._deleting.wait(min(2.0 ** (self.restarts - 1), 30.0))
        self._deleting.wait()

    def _run_once(
        self,
        c: dict[str, Any],
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        last_state: dict[str, Any],
    ) -> dict[str, Any]:
        name = c["name"]
        term_log = self.dir / "termination-log"
        term_log.unlink(missing_ok=True)
        started = now()
        with open(self.dir / f"{name}.log", "ab") as out:
            try:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=functools.partial(parent_death_signal, signal.SIGKILL),
                )
            except OSError as e:
                out.write(f"adf-podrunner: cannot start {argv}: {e}\n".encode())
                return {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": str(e),
                    "startedAt": started,
                    "finishedAt": now(),
                }
        pid_file = self.dir / f"{name}.pid"
        pid_file.write_text(str(self._proc.pid))
        self._patch_status(
            "Running", c, {"running": {"startedAt": started}}, last_state, ready=True
        )
        while True:
            try:
                code = self._proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if self._deleting.is_set():
                    self._kill()
        pid_file.unlink(missing_ok=True)
        exit_code = 128 - code if code < 0 else code
        message = ""
        if term_log.exists():
            message = term_log.read_text(errors="replace")[:MESSAGE_LIMIT]
        if (
            not message
            and exit_code
            and c.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            tail = (self.dir / f"{name}.log").read_bytes()[-MESSAGE_LIMIT:]
            message = "\n".join(tail.decode(errors="replace").splitlines()[-80:])
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started,
            "finishedAt": now(),
            "containerID": f"adf://{self._proc.pid}",
        }
        if message:
            terminated["message"] = message
        return terminated

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=min(grace, 2 if self._gone.is_set() else MAX_GRACE_SECONDS))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # The pod may have left children in its process group; they go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _waiting(self, c: dict[str, Any], reason: str, message: str) -> None:
        self._patch_status(
            "Pending", c, {"waiting": {"reason": reason, "message": message}}, {}, ready=False
        )

    def _patch_status(
        self,
        phase: str,
        c: dict[str, Any],
        state: dict[str, Any],
        last_state: dict[str, Any],
        *,
        ready: bool,
    ) -> None:
        if self._gone.is_set():
            return
        t = now()
        running = phase == "Running"
        terminal = phase in ("Succeeded", "Failed")

        def cond(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
            d = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": t,
            }
            if reason and not ok:
                d["reason"] = reason
            return d

        not_ready = "PodCompleted" if terminal else "ContainersNotReady"
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.started_at,
            "conditions": [
                cond("PodReadyToStartContainers", not terminal),
                cond("Initialized", True),
                cond("Ready", ready, not_ready),
                cond("ContainersReady", ready, not_ready),
                cond("PodScheduled", True),
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": "",
                    "ready": ready,
                    "started": running and "running" in state,
                    "restartCount": self.restarts,
                    "state": state,
                    "lastState": last_state,
                }
            ],
        }
        try:
            self.runner.request(
                "PATCH", f"{pod_path(self.pod)}/status", {"status": status}, MERGE_PATCH
            )
        except ApiException as e:
            if e.status == 404:
                self.gone()
            else:
                log.warning("status of %s/%s: %s", self.ns, self.name, e.body)

    # --- volumes, env, command -------------------------------------------------------------

    def _prepare_volumes(self, c: dict[str, Any]) -> None:
        """Materialise the mounted volumes under the pod folder and link them from the root."""
        by_name = {v["name"]: v for v in self.pod["spec"].get("volumes", [])}
        folders: dict[str, Path] = {}
        for mount in c.get("volumeMounts", []):
            vol = by_name[mount["name"]]
            if vol["name"] not in folders:
                folder = self.dir / "volumes" / vol["name"]
                folder.mkdir(parents=True)
                self._fill_volume(vol, folder)
                folders[vol["name"]] = folder
            source = folders[vol["name"]] / mount.get("subPath", "")
            target = self.paths.add(mount["mountPath"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)

    def _fill_volume(self, vol: dict[str, Any], folder: Path) -> None:
        if "emptyDir" in vol:
            return
        if "configMap" in vol or "secret" in vol:
            self._fill_source(vol, folder)
            return
        if "projected" in vol:
            for source in vol["projected"].get("sources", []):
                if "serviceAccountToken" in source:
                    self._service_account(folder, source["serviceAccountToken"])
                elif "configMap" in source or "secret" in source:
                    self._fill_source(source, folder)
                elif "downwardAPI" in source:
                    for item in source["downwardAPI"].get("items", []):
                        path = item["fieldRef"]["fieldPath"]
                        (folder / item["path"]).write_text(self._field(path))
            return
        kinds = sorted(set(vol) - {"name"})
        raise Unsupported(f"volume {vol['name']!r} of type {kinds} is not emulated")

    def _fill_source(self, source: dict[str, Any], folder: Path) -> None:
        kind = "configMap" if "configMap" in source else "secret"
        ref = source[kind]
        name = ref.get("name") or ref.get("secretName", "")
        try:
            data = self._read_data(kind, name)
        except ConfigError:
            if ref.get("optional"):
                return
            raise Unsupported(f"{kind} {name!r} does not exist") from None
        items = ref.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                continue
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])

    def _read_data(self, kind: str, name: str) -> dict[str, bytes]:
        resource = "configmaps" if kind == "configMap" else "secrets"
        try:
            obj = self.runner.request("GET", f"/api/v1/namespaces/{self.ns}/{resource}/{name}")
        except ApiException as e:
            raise ConfigError(f"{kind} {name!r} not found") from e
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        if kind == "secret":
            data = {k: base64.b64decode(v) for k, v in data.items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _service_account(self, folder: Path, token_source: dict[str, Any]) -> None:
        """Instead of a mounted token: a kubeconfig with a token minted for the pod's SA."""
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        request: dict[str, Any] = {
            "spec": {
                "expirationSeconds": SA_TOKEN_SECONDS,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.name,
                    "uid": self.uid,
                },
            }
        }
        if token_source.get("audience"):
            request["spec"]["audiences"] = [token_source["audience"]]
        result = self.runner.request(
            "POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", request
        )
        token = result["status"]["token"]
        cfg = self.runner.api.configuration
        ca = Path(cfg.ssl_ca_cert).read_bytes()
        (folder / token_source.get("path", "token")).write_text(token)
        (folder / "ca.crt").write_bytes(ca)
        (folder / "namespace").write_text(self.ns)
        (self.dir / "kubeconfig").write_text(
            kubeconfig(cfg.host, ca, {"token": token}, namespace=self.ns)
        )

    def _field(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.ns,
            "metadata.uid": self.uid,
            "spec.nodeName": self.runner.node_name,
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.podIP": self.ip,
            "status.hostIP": "127.0.0.1",
        }
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        return str(fields.get(path, ""))

    def _process_config(self, c: dict[str, Any]) -> tuple[list[str], dict[str, str], Path]:
        venv_bin = str(Path(sys.executable).parent)
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        env: dict[str, str] = {
            "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")]),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "HOSTNAME": self.name,
            "PYTHONUNBUFFERED": "1",
            "ADF_POD_ROOT": str(self.paths.root),
            "ADF_TERMINATION_LOG": str(self.dir / "termination-log"),
        }
        if (self.dir / "kubeconfig").exists():
            env["KUBECONFIG"] = str(self.dir / "kubeconfig")
        for source in c.get("envFrom", []):
            kind = "configMap" if "configMapRef" in source else "secret"
            ref = source.get("configMapRef") or source.get("secretRef") or {}
            try:
                data = self._read_data(kind, ref["name"])
            except ConfigError:
                if ref.get("optional"):
                    continue
                raise
            prefix = source.get("prefix", "")
            env.update(
                {
                    prefix + k: self.paths.rewrite(v.decode(errors="replace"))
                    for k, v in data.items()
                }
            )
        for var in c.get("env", []):
            if "valueFrom" in var:
                value = self._value_from(var["valueFrom"])
                if value is None:
                    continue
                env[var["name"]] = self.paths.rewrite(value)
            else:
                env[var["name"]] = expand(self.paths.rewrite(var.get("value", "")), env)
        # Rewrite before expanding: expanded values are rewritten already (and the base
        # environment, pointing into the state folder, must never be).
        argv = [
            expand(self.paths.rewrite(a), env)
            for a in (c.get("command") or [os.environ.get("ADF_POD_RUNNER_ENTRYPOINT", "adf")])
            + c.get("args", [])
        ]
        cwd = self.paths.root
        if c.get("workingDir"):
            cwd = self.paths.local(c["workingDir"])
            cwd.mkdir(parents=True, exist_ok=True)
        return argv, env, cwd

    def _value_from(self, source: dict[str, Any]) -> str | None:
        for kind, key in (("configMap", "configMapKeyRef"), ("secret", "secretKeyRef")):
            if key in source:
                ref = source[key]
                try:
                    data = self._read_data(kind, ref["name"])
                    return data[ref["key"]].decode(errors="replace")
                except (ConfigError, KeyError):
                    if ref.get("optional"):
                        return None
                    raise ConfigError(f"{kind} {ref['name']!r} has no key {ref['key']!r}") from None
        if "fieldRef" in source:
            return self._field(source["fieldRef"]["fieldPath"])
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--node-name", required=True)
    parser.add_argument(
        "--images",
        default=os.environ.get("ADF_POD_RUNNER_IMAGES", DEFAULT_IMAGES),
        help="comma-separated glob patterns matched against the image repository",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(message)s")
    api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    runner = Runner(
        api,
        args.state_dir,
        args.node_name,
        [p.strip() for p in args.images.split(",") if p.strip()],
    )

    def stop(signum: int, frame: object) -> None:
        runner.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    thread = threading.Thread(target=runner.run, name="watch", daemon=True)
    thread.start()
    while not runner.stopping.wait(0.5):
        if not thread.is_alive():
            break
    runner.shutdown()
    log.info("stopped")


if __name__ == "__main__":
    main()
