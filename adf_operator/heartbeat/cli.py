"""`adf heartbeat serve|ping`, loaded through the adf.commands entry point."""

import typer


def register(app: typer.Typer) -> None:
    """Add the heartbeat subcommands to the `adf` CLI."""
