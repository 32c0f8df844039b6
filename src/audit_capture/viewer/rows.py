"""The rows the viewer reads from ``audit.action_log``, and the SQL every page read shares.

``LogRow`` is a line of the Single Actions list, ``Action`` every column of one action.
Every page read orders rows newest first by (occurred_at DESC, id DESC), the order of the
log's time index and of each composite index (column, occurred_at DESC, id DESC), and
starts after a keyset position (``keyset_condition``), never at an OFFSET.

Statements are not prepared (``prepare=False``): a generic plan, chosen once for all
values, is exactly what fails on a skewed log (a rare actor planned like a common one).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from audit_capture.viewer import cursor as cursors
from audit_capture.viewer.filters import Filters

LOG = sql.Identifier("audit", "action_log")
#: What the log holds in place of a value of a redacted column (triggers write it).
REDACTED = "[redacted]"


@dataclass
class LogRow:
    """One line of the Single Actions table."""

    id: int
    occurred_at: datetime
    action: str
    action_type: str
    resource_type: str | None
    resource_id: str | None
    resource_label: str | None
    row_count: int
    actor_id: str | None
    actor_name: str | None
    actor_type: str
    source: str | None

    @property
    def cursor(self) -> str:
        return cursors.encode(self.occurred_at, self.id)


@dataclass
class Action(LogRow):
    """Every column of one action (audit.action_log)."""

    changes: Any
    db_user: str
    transaction_id: int
    request_id: str | None
    context: Any
    table_name: str | None
    operation: str | None
    application_name: str | None
    client_addr: Any


LIST_COLUMNS = tuple(f.name for f in fields(LogRow))
ACTION_COLUMNS = tuple(f.name for f in fields(Action))


def one_row(cur: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The one row of a statement that always returns one (an aggregate, a select of
    values, EXPLAIN)."""
    row = cur.fetchone()
    if row is None:  # cannot happen: named rather than a TypeError on None
        raise psycopg.InterfaceError("the statement returned no row")
    return tuple(row)


def column_list(names: tuple[str, ...]) -> sql.Composable:
    """The columns ``names``, quoted, comma-separated."""
    return sql.SQL(", ").join(map(sql.Identifier, names))


def order_by(direction: str) -> sql.Composable:
    """The page order: newest first for ``next``, oldest first for ``prev``."""
    return sql.SQL("occurred_at desc, id desc" if direction == "next" else "occurred_at, id")


def keyset_condition(
    position: tuple[datetime, int] | None, direction: str
) -> tuple[sql.Composable, dict]:
    """The rows past ``position`` in ``direction``, as a bound condition; ``true`` for
    the first page."""
    if position is None:
        return sql.SQL("true"), {}
    op = "<" if direction == "next" else ">"
    condition = sql.SQL("(occurred_at, id) {} ({}, {})").format(
        sql.SQL(op), sql.Placeholder("k_at"), sql.Placeholder("k_id")
    )
    return condition, {"k_at": position[0], "k_id": position[1]}


def planned_rows(
    cur: psycopg.Cursor[LogRow],
    filters: Filters,
    keyset: sql.Composable,
    keyset_params: dict,
    direction: str,
    limit: int,
) -> list[LogRow]:
    """A page's rows on the planner's own plan: every filter in one WHERE, in page order."""
    where, params = filters.where()
    query = sql.SQL(
        "select {cols} from {log} where {where} and {keyset} order by {order} limit {limit}"
    ).format(
        cols=column_list(LIST_COLUMNS),
        log=LOG,
        where=where,
        keyset=keyset,
        order=order_by(direction),
        limit=sql.Literal(limit),
    )
    return cur.execute(query, {**params, **keyset_params}, prepare=False).fetchall()
