"""`adf crds`, `adf trigger` and `adf runs`: the operator's subcommands of the `adf` CLI.

Loaded through the ``adf.commands`` entry point group, so the engine's CLI needs no operator import.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from adf_operator import crds as crd_gen
from adf_operator import names

NamespaceOption = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace; default: the kubeconfig context's."),
]


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


@contextmanager
def _api_errors() -> Iterator[None]:
    """Turn client and API failures into one clear line and exit code 1."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        from adf_operator.kube import api_message

        typer.echo(f"adf: Kubernetes API error {exc.status}: {api_message(exc)}", err=True)
        raise typer.Exit(1) from None
    except (ConfigException, HTTPError) as exc:
        typer.echo(f"adf: cannot reach the Kubernetes API: {exc}", err=True)
        raise typer.Exit(1) from None


def _with_flow(
    name: str, namespace: str | None, act: Callable[[str, dict[str, Any]], None]
) -> None:
    from adf_operator import kube

    with _api_errors():
        ns = namespace or kube.current_namespace()
        flow = kube.get_object(names.FLOW_PLURAL, ns, name)
        if flow is None:
            typer.echo(f"adf: DataFlow {name} not found in namespace {ns}", err=True)
            raise typer.Exit(1)
        act(ns, flow)


def trigger(
    name: Annotated[str, typer.Argument(help="The DataFlow to run now.")],
    namespace: NamespaceOption = None,
) -> None:
    """Run a DataFlow now (sets its activedataflow.io/run-now annotation for the operator)."""
    from adf_operator import kube

    def act(ns: str, flow: dict[str, Any]) -> None:
        request = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        patch = {"metadata": {"annotations": {names.RUN_NOW: request}}}
        kube.patch_object(names.FLOW_PLURAL, ns, name, patch)
        run = names.manual_run_name(name, request)
        typer.echo(f"dataflow {ns}/{name} triggered: run {run} (see `adf runs {name} -n {ns}`)")

    _with_flow(name, namespace, act)


def runs(
    name: Annotated[str, typer.Argument(help="The DataFlow whose runs to list.")],
    namespace: NamespaceOption = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="table or json.", show_default=True)
    ] = "table",
) -> None:
    """List the runs of a DataFlow, newest first, with phase, rows and message."""
    from adf_operator import kube

    if output not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--output")

    def act(ns: str, flow: dict[str, Any]) -> None:
        items = list(reversed(kube.list_runs(ns, name)))
        if output == "json":
            typer.echo(json.dumps(items, indent=2))
            return
        table = Table("RUN", "TRIGGER", "PHASE", "READ", "WRITTEN", "SKIPPED", "FAILED")
        table.add_column("STARTED")
        table.add_column("DURATION")
        table.add_column("MESSAGE", overflow="fold")
        for run in items:
            st = run.get("status") or {}
            counts = [st.get(k) for k in ("rowsRead", "rowsWritten", "rowsSkipped", "rowsFailed")]
            table.add_row(
                run["metadata"]["name"],
                run["spec"].get("trigger", ""),
                st.get("phase") or "Pending",
                *("" if c is None else str(c) for c in counts),
                st.get("startTime") or "",
                st.get("duration") or "",
                st.get("message") or "",
            )
        Console(width=None if sys.stdout.isatty() else 200).print(table)

    _with_flow(name, namespace, act)


def register(app: typer.Typer) -> None:
    """Add the operator's subcommands to the `adf` CLI (the kubernetes client loads lazily)."""
    app.command("crds")(crds)
    app.command("trigger")(trigger)
    app.command("runs")(runs)
