"""Pydantic models of the DataFlow and DataFlowRun specs.

These models are the single source of truth: the engine validates manifests with them, and the
operator generates the CRD OpenAPI schema from them (descriptions become `kubectl explain` text).
Field names are snake_case in Python and camelCase on the wire, as Kubernetes APIs are.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from adf_core.errors import SpecError

API_GROUP = "activedataflow.io"
API_VERSION = "v1alpha1"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$"
CALLABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as ``10m``, ``1h30m`` or ``90s``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 90s, 10m or 1h30m")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def secret_env_name(name: str, key: str) -> str:
    """The environment variable that carries a Secret key, in a run pod and locally alike.

    ``{secretKeyRef: {name: shop-db, key: url}}`` reads ``ADF_SECRET_SHOP_DB_URL``.
    """
    return "ADF_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", f"{name}_{key}").upper()


class SpecModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


# --- values that may come from a Secret --------------------------------------------------------


class SecretKeyRef(SpecModel):
    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the Secret.")


class ValueSource(SpecModel):
    """A literal value or a reference to a Secret key (never logged, never in status)."""

    value: str | None = Field(
        default=None, description="The value itself. Use secretKeyRef for anything sensitive."
    )
    secret_key_ref: SecretKeyRef | None = Field(
        default=None,
        description="Read the value from a key of a Secret in the DataFlow's namespace. "
        "Locally (adf run) it is read from the environment variable "
        "ADF_SECRET_<NAME>_<KEY> (upper case, non-alphanumerics as _).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueSource:
        if (self.value is None) == (self.secret_key_ref is None):
            raise ValueError("set exactly one of value or secretKeyRef")
        return self

    def env_name(self) -> str | None:
        """The environment variable a run pod reads this value from, if it is a secret."""
        ref = self.secret_key_ref
        return secret_env_name(ref.name, ref.key) if ref else None

    def resolve(self, environ: dict[str, str] | None = None) -> str:
        """Return the value, reading secrets from the environment."""
        if self.value is not None:
            return self.value
        env = os.environ if environ is None else environ
        name = self.env_name()
        assert name is not None and self.secret_key_ref is not None
        if name not in env:
            ref = self.secret_key_ref
            raise SpecError(
                f"secretKeyRef {ref.name}/{ref.key} is not available: "
                f"set the environment variable {name}"
            )
        return env[name]


# --- source -------------------------------------------------------------------------------------


class CursorSpec(SpecModel):
    column: str = Field(
        pattern=IDENTIFIER_PATTERN,
        description="Column whose increasing value marks progress (e.g. updated_at or id).",
    )
    tie_breaker: str | None = Field(
        default=None,
        pattern=IDENTIFIER_PATTERN,
        description="Unique column that orders rows sharing a cursor value (e.g. the primary "
        "key), so no row is skipped at a batch edge. Strongly recommended.",
    )
    lag: float = Field(
        default=0,
        ge=0,
        description="Re-read this much before the watermark to catch late rows: seconds for "
        "date/time cursors, units for numeric ones. Use with an upsert sink.",
    )


class ColumnSchema(SpecModel):
    name: str = Field(min_length=1, description="Column name.")
    type: Literal["string", "integer", "number", "boolean", "datetime", "date", "json"] = Field(
        description="Expected type of the value."
    )
    nullable: bool = Field(default=True, description="Whether null is allowed.")


class RecordSchema(SpecModel):
    """Makes the source's messages Typed: every row is validated before the transform."""

    columns: list[ColumnSchema] = Field(
        min_length=1, description="The expected columns with their types."
    )
    allow_extra: bool = Field(
        default=True, description="Whether columns not listed here are passed through."
    )


class SqlSourceSpec(SpecModel):
    url: ValueSource = Field(
        description="SQLAlchemy database URL, e.g. postgresql+psycopg://user:pw@host/db."
    )
    table: str | None = Field(
        default=None,
        pattern=IDENTIFIER_PATTERN,
        description="Table to read (schema.table allowed).",
    )
    query: str | None = Field(
        default=None, min_length=1, description="A SELECT to read instead of a table."
    )
    where: str | None = Field(
        default=None, min_length=1, description="SQL condition that filters the table's rows."
    )
    columns: list[str] | None = Field(
        default=None, min_length=1, description="Columns to read; all when absent."
    )
    cursor: CursorSpec | None = Field(
        default=None, description="Incremental reads from a watermark; absent = full read each run."
    )
    batch_size: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description=(
            "Rows per batch; each batch is one sink transaction with its watermark. Larger "
            "batches spend less per row on commits and round trips; smaller ones lose less work "
            "to a crash."
        ),
    )

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of table or query")
        if self.query is not None and (self.where is not None or self.columns is not None):
            raise ValueError("where and columns apply to table only; put them in the query")
        return self


class SourceSpec(SpecModel):
    sql: SqlSourceSpec | None = Field(default=None, description="Read from a SQL database.")
    schema_: RecordSchema | None = Field(
        default=None,
        alias="schema",
        description="Validate every row against this schema (Typed messages).",
    )

    @model_validator(mode="after")
    def _one_connector(self) -> SourceSpec:
        if self.sql is None:
            raise ValueError("set exactly one source connector (sql)")
        return self


# --- transform ----------------------------------------------------------------------------------


class NowValue(SpecModel):
    now: Literal[True] = Field(description="Set the column to the run's start time (UTC).")


SetValue = NowValue | str | int | float | bool | None


class PythonStep(SpecModel):
    callable: str = Field(
        pattern=CALLABLE_PATTERN,
        description="module:function; receives a row dict and returns a dict, a list of dicts, "
        "or None to drop the row.",
    )
    config_map: str | None = Field(
        default=None,
        description="ConfigMap whose files are mounted and put on the import path.",
    )
    path: str | None = Field(
        default=None,
        description="Directory added to the import path (locally: relative to the manifest).",
    )


class TransformStep(SpecModel):
    """One step; exactly one field is set."""

    rename: dict[str, str] | None = Field(default=None, description="Rename columns: old: new.")
    select: list[str] | None = Field(default=None, description="Keep only these columns.")
    drop: list[str] | None = Field(default=None, description="Remove these columns.")
    set: dict[str, SetValue] | None = Field(
        default=None,
        description="Set columns to constants; {now: true} sets the run's start time.",
    )
    python: PythonStep | None = Field(default=None, description="Call a Python function per row.")

    @model_validator(mode="after")
    def _exactly_one(self) -> TransformStep:
        chosen = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of rename, select, drop, set, python")
        return self

    @property
    def is_declarative(self) -> bool:
        return self.python is None


# --- sink ---------------------------------------------------------------------------------------


class SqlSinkSpec(SpecModel):
    url: ValueSource = Field(description="SQLAlchemy database URL of the sink.")
    table: str = Field(pattern=IDENTIFIER_PATTERN, description="Table to write.")
    mode: Literal["append", "upsert", "replace"] = Field(
        default="append",
        description="append inserts; upsert inserts or updates by keys; replace swaps the whole "
        "table atomically at the end of the run.",
    )
    keys: list[str] | None = Field(
        default=None, min_length=1, description="Key columns; required by upsert."
    )
    skip_unchanged: bool = Field(
        default=False,
        description="Upsert only: rows identical to the stored ones are not rewritten and count "
        "as skipped.",
    )
    create_table: bool = Field(
        default=True,
        description="Create the table from the first batch's columns when it does not exist.",
    )

    @model_validator(mode="after")
    def _keys(self) -> SqlSinkSpec:
        if self.mode == "upsert" and not self.keys:
            raise ValueError("keys: required when mode is upsert")
        if self.skip_unchanged and self.mode != "upsert":
            raise ValueError("skipUnchanged: only valid when mode is upsert")
        return self


class SinkSpec(SpecModel):
    sql: SqlSinkSpec | None = Field(default=None, description="Write to a SQL database.")

    @model_validator(mode="after")
    def _one_connector(self) -> SinkSpec:
        if self.sql is None:
            raise ValueError("set exactly one sink connector (sql)")
        return self


class DeadLetterSpec(SpecModel):
    table: str = Field(
        default="adf_dead_letters",
        pattern=IDENTIFIER_PATTERN,
        description="Table in the sink database that receives failed rows with their error.",
    )


# --- scheduling and the run pod -----------------------------------------------------------------


class ScheduleSpec(SpecModel):
    every: str | None = Field(
        default=None, pattern=DURATION_PATTERN, description="Fixed interval, e.g. 10m or 1h."
    )
    cron: str | None = Field(
        default=None,
        min_length=9,
        max_length=128,
        description="Five-field cron expression, e.g. */5 * * * *.",
    )
    time_zone: str = Field(
        default="UTC", description="IANA time zone of the cron expression, e.g. Europe/Berlin."
    )

    @model_validator(mode="after")
    def _every_or_cron(self) -> ScheduleSpec:
        if (self.every is None) == (self.cron is None):
            raise ValueError("set exactly one of every or cron")
        if self.every is not None and parse_duration(self.every) < timedelta(minutes=1):
            raise ValueError("every: must be at least 1m (the heartbeat ticks once a minute)")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError("cron: must have five fields (minute hour day month weekday)")
        return self

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class RunTemplate(SpecModel):
    image: str | None = Field(
        default=None, description="Run image; the operator's default image when absent."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Image pull policy of the run container."
    )
    backoff_limit: int = Field(default=2, ge=0, le=20, description="Job retries before Failed.")
    active_deadline_seconds: int = Field(
        default=3600, ge=1, description="The run is ended after this many seconds."
    )
    resources: dict[str, dict[str, str]] | None = Field(
        default=None, description="Container resources (requests, limits) as in a Pod."
    )
    env: list[dict[str, Any]] | None = Field(
        default=None, description="Extra environment variables as in a Pod container."
    )
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount of the run pod (no token is mounted)."
    )
    node_selector: dict[str, str] | None = Field(
        default=None, description="Node selector of the run pod."
    )


class DataFlowSpec(SpecModel):
    source: SourceSpec = Field(description="Where rows come from.")
    transform: list[TransformStep] = Field(
        default_factory=list,
        max_length=100,
        description="Ordered steps applied to each row; empty = pass-through.",
    )
    sink: SinkSpec = Field(description="Where rows go.")
    schedule: ScheduleSpec | None = Field(
        default=None, description="When the flow runs; absent = only when triggered by hand."
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        description="A slot not started within this many seconds of its time is skipped.",
    )
    suspend: bool = Field(default=False, description="Stop scheduling new runs.")
    concurrency_policy: Literal["Forbid", "Replace", "Allow"] = Field(
        default="Forbid",
        description="What to do when a slot is due while a run is active: Forbid skips it, "
        "Replace cancels the active run, Allow runs both.",
    )
    max_rows_per_run: int = Field(
        default=0, ge=0, description="Stop after this many rows; 0 = until the source is drained."
    )
    on_error: Literal["fail", "skip", "deadLetter"] = Field(
        default="fail",
        description="A failing row fails the run (fail), is counted and dropped (skip), or is "
        "written to the dead-letter table (deadLetter).",
    )
    dead_letter: DeadLetterSpec | None = Field(
        default=None, description="Dead-letter target; used when onError is deadLetter."
    )
    successful_runs_history_limit: int = Field(
        default=3, ge=0, le=1000, description="Succeeded runs to keep."
    )
    failed_runs_history_limit: int = Field(
        default=3, ge=0, le=1000, description="Failed runs to keep."
    )
    run_template: RunTemplate = Field(
        default_factory=RunTemplate, description="Settings of the Job that executes each run."
    )

    @model_validator(mode="after")
    def _dead_letter(self) -> DataFlowSpec:
        if self.dead_letter is not None and self.on_error != "deadLetter":
            raise ValueError("deadLetter: only valid when onError is deadLetter")
        return self

    @property
    def dead_letter_table(self) -> str:
        return (self.dead_letter or DeadLetterSpec()).table


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata the engine needs; everything else is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=253)
    namespace: str = "default"


class DataFlow(BaseModel):
    """A whole DataFlow manifest, as `kubectl apply` and `adf run` read it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["activedataflow.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["DataFlow"]
    metadata: ObjectMeta
    spec: DataFlowSpec
    status: dict[str, Any] | None = None

    @property
    def flow_id(self) -> str:
        """Identity of the flow's state (watermark) in the sink: ``namespace/name``."""
        return f"{self.metadata.namespace}/{self.metadata.name}"


# --- DataFlowRun --------------------------------------------------------------------------------


class DataFlowRef(SpecModel):
    name: str = Field(min_length=1, max_length=253, description="Name of the DataFlow.")


class CursorWindow(SpecModel):
    from_: str | None = Field(
        default=None, alias="from", description="Lower bound of the cursor (inclusive)."
    )
    to: str | None = Field(default=None, description="Upper bound of the cursor (exclusive).")


class DataFlowRunSpec(SpecModel):
    data_flow_ref: DataFlowRef = Field(description="The DataFlow this run executes.")
    trigger: Literal["schedule", "manual", "backfill"] = Field(
        default="manual", description="Why the run exists."
    )
    scheduled_time: datetime | None = Field(
        default=None, description="The schedule slot this run is for."
    )
    window: CursorWindow | None = Field(
        default=None,
        description="Backfill: read this cursor range instead of from the watermark; the "
        "watermark is left unchanged.",
    )


def load_dataflow(document: Any) -> DataFlow:
    """Validate a parsed manifest; errors name the field path (``spec.sink.sql.keys``)."""
    try:
        return DataFlow.model_validate(document)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, each starting with the dotted field path; never echoes values."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        message = err["msg"].removeprefix("Value error, ")
        field = re.match(r"([a-z][A-Za-z]*): (.*)", message)
        if field:  # a cross-field rule that names its field: move the name into the path
            path, message = ".".join(filter(None, [path, field[1]])), field[2]
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)
