"""`adf` subcommands of the operator (crds, trigger, runs), loaded through the adf.commands entry point."""

import typer


def register(app: typer.Typer) -> None:
    """Add the operator's subcommands to the `adf` CLI."""
