"""Logging for the operator, the heartbeat and the dashboard: human-readable lines by default, JSON
lines with ``--log-format json``; the flow and run being handled on every line; no secrets.

- :func:`log_context` binds ``namespace``, ``flow`` and ``run`` for the code inside it (a context
  variable, so it follows asyncio tasks and ``asyncio.to_thread``); every record logged there
  carries them, as ``[ns/flow run]`` in text and as fields in JSON.
- A filter masks URL passwords and bearer tokens in every message and exception text: a last line
  of defence, since no code means to log one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from adf_operator.runs import mask_secrets

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
_FIELDS = ("namespace", "flow", "run")
_CONTEXT: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("adf_log_context", default=())
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")


@contextmanager
def log_context(**names: str | None) -> Iterator[None]:
    """Add namespace/flow/run to every record logged inside the block."""
    unknown = set(names) - set(_FIELDS)
    if unknown:
        raise ValueError(f"log_context takes {', '.join(_FIELDS)}; not {', '.join(unknown)}")
    bound = {**dict(_CONTEXT.get()), **{k: v for k, v in names.items() if v}}
    token = _CONTEXT.set(tuple(bound.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def mask(text: str) -> str:
    return _BEARER.sub(r"\1***", mask_secrets(text))


class ContextAndMask(logging.Filter):
    """Puts the bound names on the record and masks secrets in its final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get():
            if not hasattr(record, key):
                setattr(record, key, value)
        record.msg, record.args = mask(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        return True


def _where(record: logging.LogRecord) -> str:
    namespace, flow, run = (getattr(record, key, None) for key in _FIELDS)
    place = "/".join(p for p in (namespace, flow) if p)
    return " ".join(p for p in (place, run) if p)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        where = _where(record)
        return line.replace(": ", f": [{where}] ", 1) if where else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, namespace/flow/run, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in _FIELDS if getattr(record, k, None)})
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(log_format: str = "text", level: str = "INFO") -> None:
    """Replace the root logger's handlers with one on stderr in the given format."""
    if log_format not in FORMATS:
        raise ValueError(f"--log-format: must be one of {', '.join(FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextAndMask())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
