"""`python -m adf_operator`: run the operator (kopf) with settings from flags and environment.

Every flag sets the environment variable of the same setting (see `adf_operator.config`), so
`kopf run -m adf_operator.handlers` with those variables behaves the same.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from adf_operator.config import LOG_FORMATS, OperatorConfig

cli = typer.Typer(add_completion=False)


@cli.command()
def main(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to watch (repeat); default: all."),
    ] = None,
    default_image: Annotated[
        str | None, typer.Option(help="Run image when a flow's runTemplate.image is unset.")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help=f"One of {', '.join(LOG_FORMATS)}.")
    ] = None,
    liveness: Annotated[
        str | None,
        typer.Option(help="Serve a liveness probe, e.g. http://0.0.0.0:8080/healthz."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Reconcile DataFlows and DataFlowRuns: create runs for due slots, run each as a Job."""
    for variable, value in (
        ("ADF_NAMESPACES", ",".join(namespace) if namespace else None),
        ("ADF_DEFAULT_IMAGE", default_image),
        ("ADF_LOG_FORMAT", log_format),
    ):
        if value is not None:
            os.environ[variable] = value
    try:
        config = OperatorConfig.from_env()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    import kopf

    import adf_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat[config.log_format.upper()])
    if not verbose:
        # kopf logs "Handler ... succeeded." for every handler on every watch event: thousands
        # of lines a minute at scale, a tenth of the operator's CPU in a 1,000-flow ping. What
        # the operator does is logged by its own loggers; kopf's warnings and errors still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        standalone=True,
        liveness_endpoint=liveness,
    )


if __name__ == "__main__":
    cli()
