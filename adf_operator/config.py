"""Operator settings from environment variables (the chart sets them; flags of
`python -m adf_operator` override them by setting the same variables).

- ADF_NAMESPACES: comma-separated namespaces to watch; empty (default) watches all.
- ADF_DEFAULT_IMAGE: run image when runTemplate.image is unset (default active-data-flow:<version>).
- ADF_LOG_FORMAT: plain, full (default) or json.
- ADF_WATCH_SERVER_TIMEOUT: seconds the API server keeps a watch open (default 300).
- ADF_WORKERS: threads running the handlers' API calls (default 20); a quarter of them at most
  do what follows a trigger (its status record, the run's Job), so triggers go first in a burst.
- ADF_FOLLOW_INTERVAL: seconds between checks of an active run (default 30).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from adf_operator.jobs import default_image

LOG_FORMATS = ("plain", "full", "json")


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...]
    default_image: str
    log_format: str
    watch_server_timeout: int
    workers: int
    follow_interval: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read the settings; a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        log_format = env.get("ADF_LOG_FORMAT", "full")
        if log_format not in LOG_FORMATS:
            raise ValueError(f"ADF_LOG_FORMAT: must be one of {', '.join(LOG_FORMATS)}")
        return cls(
            namespaces=tuple(
                n.strip() for n in env.get("ADF_NAMESPACES", "").split(",") if n.strip()
            ),
            default_image=env.get("ADF_DEFAULT_IMAGE") or default_image(),
            log_format=log_format,
            watch_server_timeout=_positive(env, "ADF_WATCH_SERVER_TIMEOUT", 300),
            workers=_positive(env, "ADF_WORKERS", 20),
            follow_interval=_positive(env, "ADF_FOLLOW_INTERVAL", 30),
        )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, str(default))
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}: must be a positive whole number, got {text!r}")
    return int(text)
