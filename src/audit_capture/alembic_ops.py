"""Alembic operations for the host application's own migrations.

Importing this module registers ``op.track_table`` and ``op.untrack_table``:

    # in a revision of the host application's chain
    import audit_capture.alembic_ops  # noqa: F401  (registers the operations)

    def upgrade():
        op.create_table("widgets", ...)
        op.track_table("widgets", "widget", label_column="name", redacted_columns=["secret"])

    def downgrade():
        op.untrack_table("widgets")
        op.drop_table("widgets")

Both call the SQL API (``audit.track(...)``, ``audit.untrack(...)``) with bound
parameters; the table name is quoted by the server (``quote_ident``) and checked by
its ``regclass`` cast. ``reverse()`` pairs them for autogenerate-style tooling.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alembic.operations import MigrateOperation, Operations
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text


@dataclass(frozen=True)
class TrackingSettings:
    """How one table is tracked: the arguments of ``audit.track``."""

    resource_type: str
    label_column: str | None = None
    status_columns: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    redacted_columns: tuple[str, ...] = ()
    labels: Any = field(default_factory=list)
    label: str | None = None
    label_plural: str | None = None


def _target_expression(schema: str | None) -> str:
    if schema is None:
        return "cast(quote_ident(:table_name) as regclass)"
    return "cast(quote_ident(:schema_name) || '.' || quote_ident(:table_name) as regclass)"


def _target_params(table: str, schema: str | None) -> dict[str, str]:
    params = {"table_name": table}
    if schema is not None:
        params["schema_name"] = schema
    return params


@Operations.register_operation("track_table")
class TrackTableOp(MigrateOperation):
    """Start (or reconfigure) audit capture of ``table``: ``audit.track(...)``."""

    def __init__(
        self,
        table: str,
        resource_type: str,
        label_column: str | None = None,
        status_columns: Iterable[str] = (),
        ignored_columns: Iterable[str] = (),
        redacted_columns: Iterable[str] = (),
        labels: Any = None,
        label: str | None = None,
        label_plural: str | None = None,
        schema: str | None = None,
    ) -> None:
        if not resource_type:
            raise ValueError(f"track_table({table!r}): resource_type is required")
        self.table = table
        self.schema = schema
        self.settings = TrackingSettings(
            resource_type=resource_type,
            label_column=label_column,
            status_columns=_names(status_columns, "status_columns"),
            ignored_columns=_names(ignored_columns, "ignored_columns"),
            redacted_columns=_names(redacted_columns, "redacted_columns"),
            labels=[] if labels is None else labels,
            label=label,
            label_plural=label_plural,
        )

    @classmethod
    def track_table(cls, operations: Operations, table: str, resource_type: str, **kwargs: Any):
        """Track ``table`` as ``resource_type``; see ``audit.track`` for the options."""
        return operations.invoke(cls(table, resource_type, **kwargs))

    def reverse(self) -> "UntrackTableOp":
        return UntrackTableOp(self.table, schema=self.schema, settings=self.settings)

    def to_diff_tuple(self):
        return ("track_table", self.schema, self.table)


@Operations.register_operation("untrack_table")
class UntrackTableOp(MigrateOperation):
    """Stop audit capture of ``table`` (its logged actions stay): ``audit.untrack(...)``.

    ``settings`` are how the table was tracked, needed by ``reverse()``. When not given,
    they are read from ``audit.tracked_table`` just before untracking.
    """

    def __init__(
        self,
        table: str,
        schema: str | None = None,
        settings: TrackingSettings | None = None,
    ) -> None:
        self.table = table
        self.schema = schema
        self.settings = settings

    @classmethod
    def untrack_table(cls, operations: Operations, table: str, schema: str | None = None, **kwargs: Any):
        """Stop tracking ``table``. Keyword arguments of ``track_table`` may be given so
        that ``reverse()`` can re-track it the same way."""
        settings = TrackingSettings(**kwargs) if kwargs else None
        return operations.invoke(cls(table, schema=schema, settings=settings))

    def reverse(self) -> TrackTableOp:
        if self.settings is None:
            name = f"{self.schema}.{self.table}" if self.schema else self.table
            raise ValueError(
                f"cannot reverse untrack_table({name!r}): how it was tracked is unknown; "
                "pass resource_type=... (and the other track_table options) to untrack_table"
            )
        s = self.settings
        return TrackTableOp(
            self.table,
            s.resource_type,
            label_column=s.label_column,
            status_columns=s.status_columns,
            ignored_columns=s.ignored_columns,
            redacted_columns=s.redacted_columns,
            labels=s.labels,
            label=s.label,
            label_plural=s.label_plural,
            schema=self.schema,
        )

    def to_diff_tuple(self):
        return ("untrack_table", self.schema, self.table)


@Operations.implementation_for(TrackTableOp)
def _track_table(operations: Operations, operation: TrackTableOp) -> None:
    s = operation.settings
    statement = text(
        "select audit.track("
        f"{_target_expression(operation.schema)}, "
        ":resource_type, :label_column, cast(:status_columns as text[]), "
        "cast(:ignored_columns as text[]), cast(:redacted_columns as text[]), "
        "cast(:labels as jsonb), :label, :label_plural)"
    ).bindparams(
        bindparam("status_columns", type_=ARRAY(Text)),
        bindparam("ignored_columns", type_=ARRAY(Text)),
        bindparam("redacted_columns", type_=ARRAY(Text)),
        bindparam("labels", type_=Text),
        bindparam("resource_type", type_=Text),
        bindparam("label_column", type_=Text),
        bindparam("label", type_=Text),
        bindparam("label_plural", type_=Text),
    )
    params = {
        **_target_params(operation.table, operation.schema),
        "resource_type": s.resource_type,
        "label_column": s.label_column,
        "status_columns": list(s.status_columns),
        "ignored_columns": list(s.ignored_columns),
        "redacted_columns": list(s.redacted_columns),
        "labels": json.dumps(s.labels),
        "label": s.label,
        "label_plural": s.label_plural,
    }
    _execute(operations, statement, params)


@Operations.implementation_for(UntrackTableOp)
def _untrack_table(operations: Operations, operation: UntrackTableOp) -> None:
    if operation.settings is None and not operations.get_context().as_sql:
        operation.settings = read_settings(operations.get_bind(), operation.table, operation.schema)
    statement = text(f"select audit.untrack({_target_expression(operation.schema)})")
    _execute(operations, statement, _target_params(operation.table, operation.schema))


def read_settings(connection, table: str, schema: str | None = None) -> TrackingSettings | None:
    """How ``table`` is tracked now, from ``audit.tracked_table``; None when it is not."""
    statement = text(
        "select resource_type, label_column, status_columns, ignored_columns, "
        "redacted_columns, labels, label, label_plural "
        "from audit.tracked_table "
        f"where relation = {_target_expression(schema)}"
    )
    row = connection.execute(statement, _target_params(table, schema)).mappings().first()
    if row is None:
        return None
    labels = row["labels"]
    if isinstance(labels, str):
        labels = json.loads(labels)
    return TrackingSettings(
        resource_type=row["resource_type"],
        label_column=row["label_column"],
        status_columns=tuple(row["status_columns"] or ()),
        ignored_columns=tuple(row["ignored_columns"] or ()),
        redacted_columns=tuple(row["redacted_columns"] or ()),
        labels=labels if labels is not None else [],
        label=row["label"],
        label_plural=row["label_plural"],
    )


def _execute(operations: Operations, statement, params: dict[str, Any]) -> None:
    if operations.get_context().as_sql:
        operations.execute(statement.bindparams(**params))
    else:
        operations.get_bind().execute(statement, params)


def _names(values: Iterable[str] | str, argument: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{argument} must be a list of column names, not the string {values!r}")
    names: Sequence[str] = tuple(values or ())
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{argument} holds {name!r}; expected column names")
    return tuple(names)
