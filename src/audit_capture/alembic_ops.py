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

Before calling it (online; an offline ``--sql`` run only prints), each operation checks
the two things a newcomer's chain gets wrong, and says what to do instead of leaving a
bare server error:

- audit_capture is not installed (the application's chain ran before the package's):
  ``track_table`` raises ``AuditNotInstalled`` saying to run ``audit-capture migrate
  upgrade`` first. ``untrack_table`` does nothing and logs a warning: the audit schema
  was removed before the application's downgrade, and its removal dropped the
  table's audit triggers already, so there is nothing left to untrack (the order to
  use is the application's downgrade first, then ``audit-capture migrate downgrade
  base``).
- the migrating role may not track tables: ``NotAuditAdmin`` names it and the grant,
  ``grant audit_admin to <role>``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alembic.operations import MigrateOperation, Operations
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text

from audit_capture.errors import AuditCaptureError
from audit_capture.tracking_access import ACCESS_SQL, NOT_INSTALLED, TrackingAccess

log = logging.getLogger(__name__)


class AuditNotInstalled(AuditCaptureError, RuntimeError):
    """``op.track_table`` ran on a database where audit_capture is not installed."""


class NotAuditAdmin(AuditCaptureError, PermissionError):
    """The role running the migration may not track or untrack tables."""


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

    def reverse(self) -> UntrackTableOp:
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
    def untrack_table(
        cls, operations: Operations, table: str, schema: str | None = None, **kwargs: Any
    ):
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


def _may(operations: Operations, verb: str, name: str) -> bool:
    """Whether ``verb`` ("track" or "untrack") can run here, as this role: False when
    audit_capture is not installed; NotAuditAdmin when the role may not."""
    access = TrackingAccess.from_row(operations.get_bind().execute(text(ACCESS_SQL)).one())
    if not access.installed:
        return False
    if not access.may(verb):
        raise NotAuditAdmin(
            access.refusal(verb, f" ({verb}_table({name!r}))")
            + ", or run the migration as a role that has audit_admin"
        )
    return True


def _display(operation: TrackTableOp | UntrackTableOp) -> str:
    return f"{operation.schema}.{operation.table}" if operation.schema else operation.table


@Operations.implementation_for(TrackTableOp)
def _track_table(operations: Operations, operation: TrackTableOp) -> None:
    if not operations.get_context().as_sql and not _may(operations, "track", _display(operation)):
        raise AuditNotInstalled(
            f"track_table({_display(operation)!r}): {NOT_INSTALLED}; run `audit-capture migrate"
            " upgrade` (the package's own chain) before the application's migrations that track"
            " tables"
        )
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
    if not operations.get_context().as_sql and not _may(operations, "untrack", _display(operation)):
        log.warning(
            "untrack_table(%r) did nothing: %s "
            "(removed before this downgrade, which dropped the audit triggers already); "
            "the order to use is the application's downgrade first, then "
            "`audit-capture migrate downgrade base`",
            _display(operation),
            NOT_INSTALLED,
        )
        return
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
