"""The ``adf`` command line: ``adf run``, ``adf validate``, ``adf --version``.

``adf run -f flow.yaml`` runs a DataFlow manifest — the same YAML that ``kubectl apply`` reads —
once, locally or in a run pod (``adf run --spec-env ADF_DATAFLOW`` reads the manifest as JSON from
that environment variable). A ``secretKeyRef: {name, key}`` is read from the environment variable
``ADF_SECRET_<NAME>_<KEY>`` (upper case, every non-alphanumeric character as ``_``; e.g.
``shop-db``/``url`` → ``ADF_SECRET_SHOP_DB_URL``), exactly as the operator injects it in a pod.

Exit codes: 0 ok, 3 invalid spec, 4 connection / unknown table, column or callable, 5 data
failure (:class:`adf_core.errors.ExitCode`). The run summary is always written to
``$ADF_TERMINATION_LOG`` (else ``/dev/termination-log`` when writable).

Other packages add subcommands through the entry-point group ``adf.commands``: each entry point
is a callable ``register(app: typer.Typer) -> None`` (the operator's ``adf crds``/``trigger``/
``runs`` and ``adf heartbeat`` come this way). ``adf_core`` itself never imports them.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import sys
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adf_core import __version__
from adf_core.console import gc_paused
from adf_core.errors import AdfError, ExitCode, SpecError
from adf_core.spec import DataFlow, load_dataflow
from adf_core.summary import Summary, write_termination_log

if TYPE_CHECKING:
    from rich.console import Console

WINDOW_FROM_ENV = "ADF_WINDOW_FROM"
WINDOW_TO_ENV = "ADF_WINDOW_TO"

app = typer.Typer(
    name="adf",
    help="ActiveDataFlow: run source → transform → sink data flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@cache
def _stderr() -> Console:
    """The console of error lines (never wrapped); rich is imported only when one is printed."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


class Output(StrEnum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"adf {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """ActiveDataFlow: scheduled source → transform → sink data pipelines."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _yaml_documents(text: str, origin: str) -> list[Any]:
    import yaml  # only here: a run pod's manifest comes as JSON (--spec-env), ~13 ms of its start

    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise SpecError(f"{origin}: invalid YAML{where}: {problem}") from None


def load_manifest(file: str | None, spec_env: str | None) -> tuple[DataFlow, Path]:
    """The single DataFlow of a manifest file, stdin (``-``) or an environment variable."""
    if (file is None) == (spec_env is None):
        raise SpecError("give exactly one of -f FILE or --spec-env VAR")
    if spec_env is not None:
        raw = os.environ.get(spec_env)
        if raw is None:
            raise SpecError(f"{spec_env}: the environment variable is not set")
        try:
            return load_dataflow(json.loads(raw)), Path.cwd()
        except json.JSONDecodeError as exc:
            raise SpecError(f"{spec_env}: not valid JSON ({exc.msg} at char {exc.pos})") from None
    assert file is not None
    if file == "-":
        text, origin, base = sys.stdin.read(), "stdin", Path.cwd()
    else:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"{file}: cannot read the file ({exc.strerror})") from None
        origin, base = file, Path(file).resolve().parent
    docs = _yaml_documents(text, origin)
    flows = [d for d in docs if isinstance(d, dict) and d.get("kind") == "DataFlow"]
    if len(docs) == 1:
        flows = docs
    if len(flows) != 1:
        raise SpecError(f"{origin}: expected one DataFlow document, found {len(flows)}")
    return load_dataflow(flows[0]), base


def _guess_flow(file: str | None) -> str | None:
    """The flow's namespace/name for a summary even when the manifest is invalid."""
    try:
        docs = _yaml_documents(Path(file).read_text(encoding="utf-8"), file) if file else []
    except (OSError, SpecError):
        return None
    meta = docs[0].get("metadata") if docs and isinstance(docs[0], dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        return f"{meta.get('namespace') or 'default'}/{meta['name']}"
    return None


def _print_text(summary: Summary) -> None:
    from rich.console import Console

    out = Console(soft_wrap=True)
    status = "[green]succeeded[/]" if summary.exit_code == 0 else "[red]failed[/]"
    out.print(f"flow {summary.flow or '?'} {status} in {summary.duration_seconds:.2f}s")
    out.print(
        f"  rows: read {summary.rows_read:,}, written {summary.rows_written:,}, "
        f"skipped {summary.rows_skipped:,}, failed {summary.rows_failed:,}"
    )
    out.print(f"  cursor: {summary.cursor_start!s} → {summary.cursor_end!s}", markup=False)
    if summary.error:
        out.print(f"  error: {summary.error}", markup=False, style="red")


def _finish(summary: Summary, output: Output) -> None:
    if summary.error:
        _stderr().print(f"adf: error: {summary.error}", markup=False, highlight=False)
    if output is Output.json:
        typer.echo(summary.to_json(max_bytes=1 << 20))
    else:
        _print_text(summary)
    try:
        write_termination_log(summary)
    except OSError as exc:
        _stderr().print(f"adf: cannot write the termination log: {exc.strerror}", markup=False)
    raise typer.Exit(summary.exit_code)


@app.command()
def run(
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="DataFlow manifest (YAML); - reads stdin.")
    ] = None,
    spec_env: Annotated[
        str | None,
        typer.Option(
            "--spec-env", help="Read the manifest as JSON from this environment variable."
        ),
    ] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="Summary format.")] = Output.text,
    window_from: Annotated[
        str | None,
        typer.Option("--window-from", help="Backfill: cursor lower bound (inclusive)."),
    ] = None,
    window_to: Annotated[
        str | None, typer.Option("--window-to", help="Backfill: cursor upper bound (exclusive).")
    ] = None,
    state_key: Annotated[
        str | None,
        typer.Option("--state-key", help="Key of the watermark in adf_state (default ns/name)."),
    ] = None,
) -> None:
    """Run a DataFlow once: read, transform, write, checkpoint; print the summary."""
    with gc_paused(freeze=_runs_a_flow()):  # frozen only in adf's own process
        from adf_core.connectors.base import Window
        from adf_core.runner import execute

    _skip_final_collection()
    try:
        flow, base_dir = load_manifest(file, spec_env)
    except AdfError as exc:
        _finish(Summary(flow=_guess_flow(file), error=str(exc), exit_code=exc.exit_code), output)
        return
    start = window_from if window_from is not None else os.environ.get(WINDOW_FROM_ENV) or None
    end = window_to if window_to is not None else os.environ.get(WINDOW_TO_ENV) or None
    window = Window(start, end) if start is not None or end is not None else None
    if sys.stderr.isatty():
        summary = _with_progress(flow, window, state_key, base_dir)
    else:
        summary = execute(flow, window=window, state_key=state_key, base_dir=base_dir)
    _finish(summary, output)


def _skip_final_collection() -> None:
    """Let the process exit without collecting the heap of a run it is about to drop anyway.

    At exit the interpreter collects cycles over everything the imports left (SQLAlchemy,
    pydantic, psycopg): ~0.2 s of every ``adf run``, measured; freezing the heap at exit skips
    that, and the OS frees the memory. Atexit hooks only run when the process ends, so an
    in-process caller (the tests) is not affected; registered once however often ``run`` runs.
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def _with_progress(flow: DataFlow, window: Any, state_key: str | None, base_dir: Path) -> Summary:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from adf_core.runner import execute

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows read"),
        TimeElapsedColumn(),
    )
    # Refreshed by each batch, not by a thread of its own: the engine may fork worker processes,
    # which must not inherit a thread that could hold the terminal's lock at that moment.
    with Progress(*columns, console=_stderr(), transient=True, auto_refresh=False) as bar:
        task = bar.add_task(flow.flow_id, total=flow.spec.max_rows_per_run or None)

        def progress(rows: int) -> None:
            bar.update(task, completed=rows, refresh=True)

        return execute(
            flow, window=window, state_key=state_key, base_dir=base_dir, progress=progress
        )


@app.command()
def validate(
    file: Annotated[str, typer.Option("--file", "-f", help="DataFlow manifest; - reads stdin.")],
) -> None:
    """Check a manifest against the DataFlow schema without touching any database."""
    try:
        load_manifest(file, None)
    except AdfError as exc:
        _stderr().print(f"adf: invalid: {exc}", markup=False, highlight=False)
        raise typer.Exit(int(exc.exit_code)) from None
    typer.echo("valid")


def _register_plugins() -> None:
    """Add the subcommands of every ``adf.commands`` entry point.

    A plugin that fails to load or to build its commands is left out with a warning on stderr:
    ``adf run`` in a run pod must never depend on the operator's or heartbeat's code.
    """
    from importlib import metadata  # only here: `adf run` loads no plugins (see below)

    for entry in metadata.entry_points(group="adf.commands"):
        commands, groups = list(app.registered_commands), list(app.registered_groups)
        try:
            entry.load()(app)
            typer.main.get_command(app)  # typer builds commands lazily: fail here, not later
        except ImportError:  # its extras are not installed (an engine-only image): say nothing
            app.registered_commands[:], app.registered_groups[:] = commands, groups
        except Exception as exc:  # any other error in a plugin: keep the engine's own commands
            app.registered_commands[:], app.registered_groups[:] = commands, groups
            _stderr().print(f"adf: subcommands {entry.name!r} unavailable: {exc}", markup=False)


def _runs_a_flow() -> bool:
    """Whether this process is ``adf run …``, the command of every run pod.

    It needs none of the plugins' commands, and loading them (the entry points' metadata, the
    operator's modules, rich) costs ~50 ms of every run's start-up, measured.
    """
    return Path(sys.argv[0]).name == "adf" and sys.argv[1:2] == ["run"]


if not _runs_a_flow():
    _register_plugins()

__all__ = ["ExitCode", "app", "load_manifest"]
