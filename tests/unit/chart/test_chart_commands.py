"""Every command the chart runs exists in the project, with every flag the chart passes.

The chart's containers start `adf …` (the console script) and `python -m adf_operator`; a renamed
subcommand or flag would only show as a crash-looping pod after `helm install`. The typer (click)
commands behind both are inspected directly, so the check needs no image and no cluster.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from chart_helpers import CHART, Objects, containers, workloads

import adf_core.cli
from adf_operator.__main__ import cli as operator_cli

ROOT = Path(__file__).resolve().parents[3]
# Value sets that switch on every optional flag of the chart's commands.
FLAG_VALUES: dict[str, Any] = {
    "watch": {"scope": "namespaces", "namespaces": ["shop"]},
    "heartbeat": {
        "allowCidrs": ["10.0.0.0/8"],
        "trustForwardedFor": True,
        "dashboard": {"openReadOnly": True},
        "logFormat": "json",
    },
}
NO_DASHBOARD: dict[str, Any] = {"heartbeat": {"dashboard": {"enabled": False}}}


def resolve(command: list[str]) -> Any:
    """The click command a container's argv runs, e.g. adf heartbeat serve -> `serve`."""
    if command[:3] == ["python", "-m", "adf_operator"]:
        return typer.main.get_command(operator_cli)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts, f"{command[0]} is not a console script of the project"
    assert scripts[command[0]] == "adf_core.console:main"  # which runs adf_core.cli.app
    found = typer.main.get_command(adf_core.cli.app)
    for word in command[1:]:
        subcommands = getattr(found, "commands", {})
        assert word in subcommands, f"`{' '.join(command)}`: no subcommand {word!r}"
        found = subcommands[word]
    return found


def options(command: Any) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize(
    "values", [{}, FLAG_VALUES, NO_DASHBOARD], ids=["default", "all-flags", "no-dashboard"]
)
def test_chart_commands_and_flags_exist(
    values: dict[str, Any], render: Callable[..., Objects]
) -> None:
    seen = set()
    for obj in workloads(render(values)):
        for c in containers(obj):
            command = resolve(c["command"])
            seen.add(" ".join(c["command"]))
            for arg in c.get("args", []):
                flag = arg.split("=", 1)[0]
                assert flag in options(command), f"{' '.join(c['command'])} has no option {flag}"
    assert seen == {"python -m adf_operator", "adf heartbeat serve", "adf heartbeat ping"}


def test_run_pod_command_exists() -> None:
    """The operator's run pods start `adf run`; the chart ships the image they run in."""
    assert "--spec-env" in options(resolve(["adf", "run"]))
    assert CHART.exists()
