"""Drive the engine as a black box through its CLI: `adf run -f FILE --output json`.

The tests and the benchmark run the engine exactly as a run pod does (a separate process, the
manifest in a file, database URLs from secretKeyRef environment variables), so a crash test can
SIGKILL it and a measurement sees its real start-up cost and memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from adf_core.spec import secret_env_name

ADF = Path(sys.executable).with_name("adf")
SOURCE_SECRET = ("source-db", "url")
SINK_SECRET = ("sink-db", "url")


def secret_ref(name: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def flow_env(source_url: str, sink_url: str, termination_log: Path) -> dict[str, str]:
    """Process environment carrying both URLs as secrets (never in the manifest or argv)."""
    env = dict(os.environ)
    env[secret_env_name(*SOURCE_SECRET)] = source_url
    env[secret_env_name(*SINK_SECRET)] = sink_url
    env["ADF_TERMINATION_LOG"] = str(termination_log)
    return env


def manifest(
    name: str,
    source: dict[str, Any],
    sink: dict[str, Any],
    transform: list[dict[str, Any]] | None = None,
    schema: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A DataFlow manifest whose source/sink URLs come from the two well-known secrets.

    `source` and `sink` are the fields of the sql connectors; `schema` makes messages Typed.
    """
    typed = {"schema": schema} if schema else {}
    return {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": "tests"},
        "spec": {
            "source": {"sql": {"url": secret_ref(*SOURCE_SECRET), **source}, **typed},
            "transform": transform or [],
            "sink": {"sql": {"url": secret_ref(*SINK_SECRET), **sink}},
            **spec,
        },
    }


def write_manifest(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class AdfResult:
    """What one `adf run` left behind: exit code, output and the parsed JSON summary."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        """The last JSON line on stdout (the run summary)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                parsed: dict[str, Any] = json.loads(line)
                return parsed
        raise AssertionError(f"no JSON summary in output:\n{self.stdout}\n{self.stderr}")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_command(path: Path, *args: str) -> list[str]:
    return [str(ADF), "run", "-f", str(path), "--output", "json", *args]


def run_flow(path: Path, env: dict[str, str], *args: str, timeout: float = 300) -> AdfResult:
    """Run a flow to its end and return its result."""
    done = subprocess.run(
        run_command(path, *args), env=env, capture_output=True, text=True, timeout=timeout
    )
    return AdfResult(done.returncode, done.stdout, done.stderr)


def start_flow(path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start a flow without waiting (to observe or kill it mid-run)."""
    return subprocess.Popen(
        run_command(path, *args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


FLOWS_DIR = Path(__file__).with_name("flows")
# The python step of most test flows: tests.support.flows.exports.to_export, loaded by path.
EXPORT_STEP: dict[str, Any] = {"python": {"callable": "exports:to_export", "path": str(FLOWS_DIR)}}


def exported(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Source product rows as EXPORT_STEP writes them (the SKU upper-cased)."""
    return [(r[0], r[1], r[2].upper(), *r[3:]) for r in rows]
