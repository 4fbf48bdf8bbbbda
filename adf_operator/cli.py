"""`adf crds`, `adf trigger` and `adf runs`: the operator's subcommands of the `adf` CLI.

Loaded through the ``adf.commands`` entry point group, so the engine's CLI needs no operator import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adf_operator import crds as crd_gen


def crds(
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Directory of the CRD YAML files.")
    ] = Path("manifests/crds"),
    check: Annotated[
        bool, typer.Option("--check", help="Only compare; exit 1 with a diff on any drift.")
    ] = False,
) -> None:
    """Generate the DataFlow and DataFlowRun CRDs from the pydantic models."""
    if check:
        diff = crd_gen.drift(output_dir)
        if diff:
            typer.echo(diff, nl=False)
            typer.echo(f"CRDs in {output_dir} are out of date: run `make crds`.", err=True)
            raise typer.Exit(1)
        typer.echo(f"CRDs in {output_dir} are up to date.")
        return
    for path in crd_gen.write(output_dir):
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the operator's subcommands to the `adf` CLI."""
    app.command("crds")(crds)
