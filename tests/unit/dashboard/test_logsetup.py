"""Log lines: text or JSON, flow/run names bound by context, no secrets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from adf_operator.logsetup import configure, log_context

log = logging.getLogger("adf.test")


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_text_lines_carry_the_flow_and_run_and_mask_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("text")
    with log_context(namespace="shop", flow="sync"), log_context(run="sync-1"):
        log.info("connecting to %s", "postgresql://etl:hunter2@db/w")
    log.warning("header was Authorization: Bearer abc.def-123")
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith(
        "INFO adf.test: [shop/sync sync-1] connecting to postgresql://etl:***@db/w"
    )
    assert second.endswith("WARNING adf.test: header was Authorization: Bearer ***")


def test_json_lines_follow_asyncio_tasks_and_threads(capsys: pytest.CaptureFixture[str]) -> None:
    configure("json", "DEBUG")

    async def handle(run: str) -> None:
        with log_context(namespace="shop", flow="sync", run=run):
            await asyncio.sleep(0)
            await asyncio.to_thread(log.debug, "in a worker thread")
            try:
                raise RuntimeError("failed with postgresql://u:secret@h/db")
            except RuntimeError:
                log.exception("run failed")

    async def main() -> None:
        await asyncio.gather(handle("sync-1"), handle("sync-2"))

    asyncio.run(main())
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    lines = [e for e in entries if e["logger"] == "adf.test"]  # asyncio logs at DEBUG too
    assert sorted((e["run"], e["message"]) for e in lines) == [
        ("sync-1", "in a worker thread"),
        ("sync-1", "run failed"),
        ("sync-2", "in a worker thread"),
        ("sync-2", "run failed"),
    ]
    failure = next(e for e in lines if e["message"] == "run failed")
    assert failure["level"] == "ERROR" and failure["flow"] == "sync"
    assert "postgresql://u:***@h/db" in failure["exception"]
    assert "secret" not in json.dumps(lines)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="--log-format: must be one of text, json"):
        configure("yaml")
    with (
        pytest.raises(ValueError, match="log_context takes namespace, flow, run"),
        log_context(job="x"),
    ):
        pass
