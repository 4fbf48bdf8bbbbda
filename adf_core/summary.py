"""The run summary: printed as one JSON line and written to the termination-message file.

The operator copies it into the DataFlowRun status, so its keys are a contract: rowsRead,
rowsWritten, rowsSkipped, rowsFailed, cursorStart, cursorEnd, durationSeconds, error, exitCode,
flow. Kubernetes keeps at most 4096 bytes of a termination message; the error is cut to fit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from adf_core.messages import jsonable

TERMINATION_LOG_ENV = "ADF_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
MAX_BYTES = 4096


@dataclass
class Summary:
    flow: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    rows_failed: int = 0
    cursor_start: Any = None
    cursor_end: Any = None
    duration_seconds: float = 0.0
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rowsRead": self.rows_read,
            "rowsWritten": self.rows_written,
            "rowsSkipped": self.rows_skipped,
            "rowsFailed": self.rows_failed,
            "cursorStart": jsonable(self.cursor_start),
            "cursorEnd": jsonable(self.cursor_end),
            "durationSeconds": round(self.duration_seconds, 3),
            "error": self.error,
            "exitCode": self.exit_code,
            "flow": self.flow,
        }

    def to_json(self, max_bytes: int = MAX_BYTES) -> str:
        """One JSON line of at most ``max_bytes`` bytes (the error message is truncated)."""
        data = self.to_dict()
        text = json.dumps(data, ensure_ascii=False)
        error = self.error or ""
        while len(text.encode()) > max_bytes and error:
            excess = len(text.encode()) - max_bytes
            error = error[: max(0, len(error) - excess - 16)]
            data["error"] = error + " …(truncated)"
            text = json.dumps(data, ensure_ascii=False)
        return text


def termination_log_path(environ: dict[str, str] | None = None) -> str | None:
    """ADF_TERMINATION_LOG, else /dev/termination-log when it is writable (in a pod)."""
    env = os.environ if environ is None else environ
    if env.get(TERMINATION_LOG_ENV):
        return env[TERMINATION_LOG_ENV]
    if os.access(DEFAULT_TERMINATION_LOG, os.W_OK):
        return DEFAULT_TERMINATION_LOG
    return None


def write_termination_log(summary: Summary) -> None:
    path = termination_log_path()
    if path is not None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(summary.to_json())
