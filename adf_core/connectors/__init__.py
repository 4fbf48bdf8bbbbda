"""Connector registry: a spec's connector field name (``sql``, …) → Source and Sink classes.

Built-in connectors are imported on first use, so ``adf --version`` or ``adf validate`` do not pay
for database drivers. Other packages add connectors with :func:`register`.
"""

from __future__ import annotations

import importlib
from typing import Any

from adf_core.connectors.base import Sink, Source
from adf_core.spec import SinkSpec, SourceSpec

_BUILTIN: dict[str, str] = {"sql": "adf_core.connectors.sql"}
_SOURCES: dict[str, type[Source[Any]]] = {}
_SINKS: dict[str, type[Sink[Any]]] = {}


def register(name: str, source: type[Source[Any]] | None, sink: type[Sink[Any]] | None) -> None:
    """Make ``name`` (the connector's field in the spec) resolve to these classes."""
    if source is not None:
        _SOURCES[name] = source
    if sink is not None:
        _SINKS[name] = sink


def _load(name: str) -> None:
    if name in _BUILTIN and name not in _SOURCES and name not in _SINKS:
        importlib.import_module(_BUILTIN[name])  # the module calls register()


def names() -> list[str]:
    """Every connector name known now or on first use."""
    return sorted({*_BUILTIN, *_SOURCES, *_SINKS})


def _chosen(spec: SourceSpec | SinkSpec) -> tuple[str, Any]:
    for name in names():
        conf = getattr(spec, name, None)
        if conf is not None:
            return name, conf
    raise LookupError("the spec names no known connector")  # the spec models prevent this


def create_source(spec: SourceSpec) -> Source[Any]:
    name, conf = _chosen(spec)
    _load(name)
    return _SOURCES[name](conf)


def create_sink(spec: SinkSpec) -> Sink[Any]:
    name, conf = _chosen(spec)
    _load(name)
    return _SINKS[name](conf)


__all__ = ["Sink", "Source", "create_sink", "create_source", "names", "register"]
