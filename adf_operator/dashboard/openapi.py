"""The OpenAPI 3.1 document of the JSON API, generated from the view models (the same models the
handlers dump), so a response can only break the document if the models do."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from adf_operator.dashboard import views

PREFIX = "/api/v1"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_MODELS: list[type[views.View]] = [
    views.FlowList,
    views.FlowDetail,
    views.RunList,
    views.FlowSummary,
    views.RunNowAccepted,
    views.Purged,
    views.ErrorBody,
]
_ERRORS = {
    "400": "A path or query parameter is malformed (the message names it).",
    "401": "The bearer token is missing or wrong.",
    "404": "No such DataFlow in the watched namespaces.",
    "429": "Too many wrong tokens from this address; see Retry-After.",
    "502": "The Kubernetes API server refused or failed the request.",
}


def _ref(model: type[views.View]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(
    name: str, where: str, pattern: str, max_length: int, description: str
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": {"type": "string", "pattern": pattern, "minLength": 1, "maxLength": max_length},
    }


_FLOW_PARAMS = [
    _param("namespace", "path", NAMESPACE_PATTERN, 63, "The DataFlow's namespace."),
    _param("name", "path", NAME_PATTERN, 253, "The DataFlow's name."),
]


def _operation(
    summary: str,
    ok: tuple[str, type[views.View], str],
    *,
    params: list[dict[str, Any]],
    secured: bool,
    errors: tuple[str, ...],
) -> dict[str, Any]:
    status, model, description = ok
    responses = {status: _json(_ref(model), description)}
    responses.update({code: _json(_ref(views.ErrorBody), _ERRORS[code]) for code in errors})
    operation: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    operation["security"] = [{"bearer": []}] if secured else [{}]
    return operation


def document(read_only_open: bool) -> dict[str, Any]:
    """The document; GET operations need no token when the read-only pages are open."""
    _, defs = models_json_schema(
        [(m, "serialization") for m in _MODELS],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    read_errors = ("400", "404", "502") if read_only_open else ("400", "401", "404", "429", "502")
    write_errors = ("400", "401", "404", "429", "502")
    read = not read_only_open

    def action(summary: str, ok: tuple[str, type[views.View], str]) -> dict[str, Any]:
        return {
            "post": _operation(summary, ok, params=_FLOW_PARAMS, secured=True, errors=write_errors)
        }

    flow = f"{PREFIX}/dataflows/{{namespace}}/{{name}}"
    list_params = [
        _param("namespace", "query", NAMESPACE_PATTERN, 63, "Only this namespace."),
        {
            "name": "phase",
            "in": "query",
            "required": False,
            "description": "Only flows whose last run is in this phase (None: never ran).",
            "schema": {"type": "string", "enum": [*views.PHASES, "None"]},
        },
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ActiveDataFlow dashboard API",
            "version": "v1",
            "description": "DataFlows and their runs across the watched namespaces, and the "
            'actions of the dashboard. Every error is {"error": {"code", "message"}}.',
        },
        "paths": {
            f"{PREFIX}/dataflows": {
                "get": _operation(
                    "List the DataFlows",
                    ("200", views.FlowList, "The flows, sorted by namespace and name."),
                    params=list_params,
                    secured=read,
                    errors=read_errors,
                )
            },
            flow: {
                "get": _operation(
                    "One DataFlow with its masked spec, conditions and status",
                    ("200", views.FlowDetail, "The flow."),
                    params=_FLOW_PARAMS,
                    secured=read,
                    errors=read_errors,
                )
            },
            f"{flow}/runs": {
                "get": _operation(
                    "The DataFlow's runs, newest first",
                    ("200", views.RunList, "The runs."),
                    params=_FLOW_PARAMS,
                    secured=read,
                    errors=read_errors,
                )
            },
            f"{flow}/run": action(
                "Run now (sets the activedataflow.io/run-now annotation)",
                ("202", views.RunNowAccepted, "The request; the operator creates the run."),
            ),
            f"{flow}/suspend": action(
                "Suspend (spec.suspend: true)", ("200", views.FlowSummary, "The flow.")
            ),
            f"{flow}/resume": action(
                "Resume (spec.suspend: false)", ("200", views.FlowSummary, "The flow.")
            ),
            f"{flow}/purge": action(
                "Delete the finished runs (Succeeded, Failed, Cancelled)",
                ("200", views.Purged, "The runs deleted."),
            ),
        },
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The heartbeat's token.",
                }
            },
        },
    }
