"""Worker processes for the per-row Python work of a run (parse → validate → steps → format).

Python threads share one GIL, so a run with Python steps uses one core however many it has.
Between two PostgreSQL databases the rows can travel as COPY text, which is cheap to move between
processes; forked workers then do the per-row work on the other cores while the run's own
process only moves bytes and commits each batch with its watermark, in source order (the
checkpoint contract does not change: one sink transaction per batch).

The workers are forked after the run's plan is built and before any of its threads start; they
inherit what they need (the steps, the schema, psycopg's loaders and dumpers) and never touch a
database connection: they end with ``os._exit``, so nothing of the parent's is finalized twice.
A worker whose parent dies reads end-of-file and exits.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from adf_core.errors import AdfError, SpecError
from adf_core.messages import Batch, RowFailure

WORKERS_ENV = "ADF_STEP_WORKERS"
Work = Callable[[Batch], tuple[Batch, list[RowFailure]]]


def worker_count() -> int:
    """``$ADF_STEP_WORKERS`` if set (0 or 1: no workers), else one per CPU this process may use.

    The CPUs it may use: its affinity, and in a container its CPU limit (a pod's
    ``resources.limits.cpu`` is a cgroup quota, which the affinity does not show).
    """
    configured = whole_number_env(WORKERS_ENV, "processes")
    if configured is not None:
        return configured
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cgroup_cpu_limit()
    return min(cpus or 1, quota) if quota is not None else cpus or 1


def whole_number_env(name: str, what: str) -> int | None:
    """The whole number in environment variable ``name``, None when unset or empty."""
    configured = os.environ.get(name, "").strip()
    if not configured:
        return None
    if not configured.isdigit():
        raise SpecError(f"{name}: must be a whole number of {what}, got {configured!r}")
    return int(configured)


CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cgroup_cpu_limit() -> int | None:
    """Whole CPUs of the cgroup's quota (rounded up), None without a limit (or a cgroup)."""
    try:
        quota, _, period = CGROUP_V2_CPU_MAX.read_text().partition(" ")
    except OSError:
        try:
            quota, period = CGROUP_V1_QUOTA.read_text(), CGROUP_V1_PERIOD.read_text()
        except OSError:
            return None
    return cpus_of_quota(quota, period)


def cpus_of_quota(quota: str, period: str) -> int | None:
    """``max 100000`` → None; ``150000 100000`` → 2; a malformed value → None."""
    try:
        microseconds, per = int(quota.strip()), int(period.strip())
    except ValueError:
        return None  # "max": no limit
    if microseconds <= 0 or per <= 0:
        return None  # v1's -1: no limit
    return max(1, -(-microseconds // per))


class WorkerFailure(Exception):
    """A worker ended or failed outside the per-row error handling (a bug, or it was killed)."""


class Workers:
    """``count`` forked processes applying ``work`` to batches.

    One thread hands batches out (:meth:`submit`, round robin) and another takes the results
    back (:meth:`result`) in the same order: a worker blocked on sending a result then never
    waits for the thread that blocks on sending it the next batch.
    """

    def __init__(self, count: int, work: Work) -> None:
        self._pipes: list[Connection] = []
        self._pids: list[int] = []
        self._next = 0
        for _ in range(count):
            mine, theirs = Pipe(duplex=True)
            pid = os.fork()
            if pid == 0:  # the child: serve until end-of-file, then leave without cleanup
                mine.close()
                code = 0
                try:
                    _serve(theirs, work)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            theirs.close()
            self._pipes.append(mine)
            self._pids.append(pid)

    def submit(self, batch: Batch) -> int:
        """Hand a batch to the next worker; returns that worker's number for :meth:`result`."""
        index = self._next
        self._next = (index + 1) % len(self._pipes)
        try:
            self._pipes[index].send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
        except OSError as exc:
            raise WorkerFailure(f"a worker process ended unexpectedly ({exc})") from None
        return index

    def result(self, index: int) -> tuple[Batch, list[RowFailure]]:
        """Worker ``index``'s oldest result not taken yet; its exception is raised here."""
        try:
            status, value = pickle.loads(self._pipes[index].recv_bytes())
        except (EOFError, OSError):
            raise WorkerFailure("a worker process ended unexpectedly") from None
        if status == "ok":
            return value  # type: ignore[no-any-return]
        if isinstance(value, BaseException):
            raise value
        raise WorkerFailure(str(value))

    def close(self, *, kill: bool = False) -> None:
        """End the workers and reap them: end-of-file on their pipes, or SIGKILL after a failure.

        Killing frees a thread that may be blocked handing a batch to a busy worker, and a worker
        stuck in user code; a worker holds nothing that a kill could lose.
        """
        if kill:
            for pid in self._pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pipe in self._pipes:
            pipe.close()
        for pid in self._pids:
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._pipes, self._pids = [], []


def _serve(pipe: Connection, work: Work) -> None:
    while True:
        try:
            message = pipe.recv_bytes()
        except EOFError:
            return
        reply: tuple[str, Any]
        try:
            reply = ("ok", work(pickle.loads(message)))
        except AdfError as exc:
            reply = ("error", exc)
        except Exception as exc:  # a bug: reported as the run's internal error, by name
            reply = ("error", f"internal error in a worker: {type(exc).__name__}: {exc}")
        try:
            data = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable value in a failure or an exception
            data = pickle.dumps(("error", f"internal error in a worker: {exc}"))
        pipe.send_bytes(data)
