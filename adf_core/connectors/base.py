"""Source and Sink base classes: the few override points every connector implements.

A connector is opened and closed as a context manager. A :class:`Source` yields
:class:`~adf_core.messages.Batch` objects from a start position; a :class:`Sink` writes one batch,
its dead letters and the new watermark in ONE transaction, so a run killed at any moment resumes
from the last committed batch and loses or duplicates nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from adf_core.messages import Batch, Row, RowFailure, Watermark

SpecT = TypeVar("SpecT")


@dataclass(frozen=True, slots=True)
class Constant:
    """A constant column value in a pushed-down projection (``set`` steps)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Projection:
    """Output columns a source computes itself, so declarative steps cost no Python per row.

    Each entry maps an output name to a source column name (str) or a :class:`Constant`.
    """

    columns: tuple[tuple[str, str | Constant], ...]


@dataclass(frozen=True, slots=True)
class Window:
    """A backfill range of the cursor: ``start`` inclusive, ``end`` exclusive (raw strings)."""

    start: str | None = None
    end: str | None = None


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Everything that shapes one read: where to start, how far, and what to compute."""

    after: Watermark | None = None
    window: Window | None = None
    projection: Projection | None = None
    limit: int | None = None
    raw_format: str | None = None  # the source may yield raw batches in this format
    # With a raw format: the sink's column types in that format's terms (Sink.raw_types)
    sink_types: Mapping[str, int] | None = None


@dataclass(slots=True)
class WriteResult:
    written: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What the sink commits with a batch: the flow's identity and its new watermark."""

    flow_id: str
    watermark: Watermark | None


@dataclass(slots=True)
class DeadLetters:
    """Failed rows of a batch that go to the sink's dead-letter table in the batch's transaction."""

    table: str
    flow_id: str
    failures: list[RowFailure] = field(default_factory=list)
    time: datetime | None = None


class WriteConflict(Exception):
    """A batch written in parallel with the one before it waited on that batch's locks, or the
    other way round (or the database chose it as a deadlock's victim).

    Its transaction was rolled back; it is written again once the batch before has committed.
    """


InTurn = Callable[[], None]


class RawCodec(Protocol):
    """Turns a source's raw batches into rows, and rows into the sink's raw format.

    Built before a run's threads start and used without any connection (in worker processes).
    """

    def parts(self, data: bytes) -> list[bytes]:
        """``data`` cut at row ends into parts small enough to work on one at a time."""
        ...

    def parse(self, data: bytes) -> list[Row]: ...

    def format(self, records: list[dict[str, Any]], read: Batch, origin: list[int]) -> Batch | None:
        """The records as a batch in the sink's raw form; None when a value has none.

        ``read`` is the parsed batch the records came from, ``origin`` each one's position
        there; the result has ``read``'s metadata.
        """
        ...

    def join(
        self, formatted: Sequence[Batch | None], records: Sequence[list[dict[str, Any]]]
    ) -> Batch | None:
        """One batch of the formatted parts of a batch, in order; None when they have no common
        raw form (one part has none, or they differ). ``records`` are each part's records."""
        ...


class Connector(ABC, Generic[SpecT]):
    """Common life cycle: construct from the spec (no I/O), ``open`` on enter, ``close`` on exit."""

    def __init__(self, spec: SpecT) -> None:
        self.spec = spec

    @property
    def in_process(self) -> bool:
        """Whether the database works inside this process (SQLite): in its CPU, under its GIL."""
        return False

    @abstractmethod
    def open(self) -> None:
        """Connect and check that everything the spec names exists (tables, columns)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; must be safe after a failed ``open``."""

    def __enter__(self) -> Self:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Source(Connector[SpecT]):
    @property
    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """Names of the columns the source yields without a projection (known after open)."""

    @property
    def incremental(self) -> bool:
        """Whether reads resume from a watermark."""
        return False

    @abstractmethod
    def read(self, request: ReadRequest) -> Iterator[Batch]:
        """Yield batches in a deterministic order, streaming (never the whole result in memory).

        With ``request.after`` only rows strictly after that watermark are read; with a window,
        only rows inside it. A projection, when the source supports one, is computed by the source.
        """

    def supports_projection(self) -> bool:
        """Whether :meth:`read` can compute a :class:`Projection` (push-down of steps)."""
        return False

    def raw_format(self) -> str | None:
        """The raw batch format :meth:`read` can produce (known after open), if any."""
        return None

    def raw_codec(self, request: ReadRequest, sink: Sink[Any]) -> RawCodec | None:
        """A codec for rows read raw with ``request`` and written raw to ``sink``, if offered.

        Offered only when :meth:`read` will yield raw batches for this request.
        """
        return None


class Sink(Connector[SpecT]):
    def raw_formats(self) -> frozenset[str]:
        """Raw batch formats :meth:`write` accepts as they are (known after open)."""
        return frozenset()

    def raw_types(self) -> Mapping[str, int] | None:
        """The table's column types by name, in the raw formats' own terms (PostgreSQL: type
        oids), for a source that can send raw rows in a faster form when the types agree."""
        return None

    @abstractmethod
    def read_state(self, flow_id: str) -> Watermark | None:
        """The watermark committed by the last successful batch of this flow, if any."""

    @abstractmethod
    def write(
        self,
        batch: Batch,
        checkpoint: Checkpoint | None,
        dead_letters: DeadLetters | None = None,
        in_turn: InTurn | None = None,
    ) -> WriteResult:
        """Write the batch, its dead letters and the checkpoint atomically (one transaction).

        ``in_turn``, when given, is called inside that transaction after the rows and before the
        checkpoint, and returns once the batch before has committed (see :meth:`spare`); it may
        raise, and the transaction then rolls back.
        """

    def write_isolated(
        self,
        batch: Batch,
        checkpoint: Checkpoint | None,
        dead_letters: DeadLetters | None,
        in_turn: InTurn | None = None,
    ) -> tuple[WriteResult, list[RowFailure]]:
        """Like :meth:`write`, but rows the sink refuses are set aside (onError skip/deadLetter).

        Called after :meth:`write` raised a DataError; the refused rows are returned and, with
        ``dead_letters``, written there in the same transaction.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot isolate failing rows")

    def spare(self, *, steps_bound: bool = False) -> Sink[Any] | None:
        """An unopened sink for the same table on a connection of its own, or None.

        With one, consecutive batches are written at the same time (the database then works on
        two of them on two cores) and still commit one after the other, in order.
        ``steps_bound``: the run's Python steps, not the sink, set its pace (a second connection
        then only pays where the database's work per batch is heavy).
        """
        return None

    def blocks(self, other: Sink[Any]) -> bool:
        """Whether this sink's open transaction holds a lock that ``other``'s statement awaits."""
        return False

    def finish(self, checkpoint: Checkpoint | None) -> None:
        """End of a successful run (e.g. the atomic table swap of replace mode)."""
