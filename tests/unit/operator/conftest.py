"""Fixtures of the operator's unit tests."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from operator_bodies import flow_body

from adf_operator.cli import register


@pytest.fixture
def operator_app() -> typer.Typer:
    """A Typer app holding only the operator's subcommands, as `adf` registers them."""
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Keep subcommand names even when only one command is registered."""

    return app


@pytest.fixture
def flow() -> dict[str, Any]:
    return flow_body()
