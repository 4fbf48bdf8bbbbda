"""Subcommands from the adf.commands entry points: a broken plugin never breaks `adf run`."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import typer
from typer.testing import CliRunner

from adf_core import cli


def broken_register(app: typer.Typer) -> None:
    @app.command("broken")
    def broken(value: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        """Annotations that cannot be resolved fail when typer builds the command."""


def test_a_broken_plugin_is_left_out_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = EntryPoint("broken", f"{__name__}:broken_register", "adf.commands")
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [plugin])
    before = list(cli.app.registered_commands)

    cli._register_plugins()

    assert cli.app.registered_commands == before
    assert "subcommands 'broken' unavailable" in capsys.readouterr().err
    result = CliRunner().invoke(cli.app, ["validate", "-f", "examples/product-sync-local.yaml"])
    assert (result.exit_code, result.stdout.strip()) == (0, "valid")


def test_installed_plugins_add_their_commands() -> None:
    names = {c.name for c in typer.main.get_group(cli.app).commands.values()}
    assert {"run", "validate"} <= names


@pytest.mark.parametrize(
    ("argv", "runs"),
    [(["/usr/local/bin/adf", "run", "-f", "f.yaml"], True), (["adf", "run"], True),
     (["adf", "crds"], False), (["adf", "--help"], False), (["pytest", "run"], False)],
)  # fmt: skip
def test_only_adf_run_skips_the_plugins(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], runs: bool
) -> None:
    """`adf run` (a run pod) loads no plugin commands; every other command line does."""
    monkeypatch.setattr("sys.argv", argv)
    assert cli._runs_a_flow() is runs
