"""One action: every column of it, what it changed, and the rows it affected (its items).

Functions take an open psycopg connection and run inside ``conn.transaction()``, so
they work in autocommit mode and in a caller's transaction alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from audit_capture.viewer.errors import BadRequest, translate_errors
from audit_capture.viewer.filters import MAX_SIZE
from audit_capture.viewer.rows import ACTION_COLUMNS, LOG, REDACTED, Action, column_list

MAX_ID = 2**63 - 1


def parse_action_id(value: object) -> int:
    """An action id from a URL: a positive bigint, or BadRequest."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 0 < int(text) <= MAX_ID:
        raise BadRequest(f"the action id is {text[:30]!r}; expected a positive whole number")
    return int(text)


def get_action(conn: psycopg.Connection, action_id: int | str) -> Action | None:
    """Every column of one action, or None when there is no such action."""
    action_id = parse_action_id(action_id)
    query = sql.SQL("select {} from {} where id = %s").format(column_list(ACTION_COLUMNS), LOG)
    with translate_errors(), conn.transaction():
        cur = conn.cursor(row_factory=class_row(Action))
        return cur.execute(query, (action_id,)).fetchone()


def _is_diff(changes: Any) -> bool:
    return (
        isinstance(changes, dict)
        and bool(changes)
        and all(isinstance(v, dict) and set(v) == {"old", "new"} for v in changes.values())
    )


def change_rows(action: Action) -> list[tuple[str, object, object]]:
    """What changed, as (column, old, new) rows for the detail table.

    A single-row update: its changed columns, old and new. A create: the new row
    (old None). A delete: the old row (new None). Events, bulk summaries and batches:
    their ``changes`` keys, with old None. Redacted values stay "[redacted]".
    """
    changes = action.changes
    if not isinstance(changes, dict):
        return [] if changes is None else [("value", None, changes)]
    single = action.row_count == 1 and action.operation is not None
    if single and action.operation == "UPDATE" and _is_diff(changes):
        return [(col, v["old"], v["new"]) for col, v in changes.items()]
    if single and action.operation == "DELETE":
        return [(col, value, None) for col, value in changes.items()]
    return [(col, None, value) for col, value in changes.items()]


# -- an action's items -------------------------------------------------------------------------


@dataclass
class Item:
    """One row an action affected (audit.action_items)."""

    item_no: int
    resource_type: str | None
    resource_id: str | None
    old: Any
    new: Any
    label: str | None = None  # the row's label column, when the item holds it (items_page)

    def change_rows(self) -> list[tuple[str, object, object]]:
        """(column, old, new) over the columns in old or new."""
        old, new = self.old or {}, self.new or {}
        columns = list(dict.fromkeys([*old, *new]))
        return [
            (
                c,
                old.get(c) if self.old is not None else None,
                new.get(c) if self.new is not None else None,
            )
            for c in columns
        ]


@dataclass
class ItemsPage:
    """A window of an action's items; ``next_after``/``prev_after`` are the ``after``
    values of the neighbouring windows (None where there is none)."""

    items: list[Item]
    next_after: int | None
    prev_after: int | None


def _label_columns(conn: psycopg.Connection) -> dict[str, str]:
    """The label column of each tracked resource type (audit.tracked_table.label_column)."""
    return dict(
        conn.execute(
            "select resource_type, min(label_column) from audit.tracked_table"
            " where label_column is not null group by resource_type"
        ).fetchall()
    )


def item_label(item: Item, column: str | None) -> str | None:
    """What names the item's row, as the list names a single-row action: the value of
    its table's label column in the row the item holds (a created or deleted row; an
    update's item holds it only when it changed). None when absent, redacted or not a
    plain value."""
    row = item.new if item.new is not None else item.old
    if column is None or not isinstance(row, dict):
        return None
    value = row.get(column)
    if value is None or isinstance(value, (dict, list, bool)) or value == REDACTED:
        return None
    return str(value)


def items_page(
    conn: psycopg.Connection, action_id: int | str, after: int = 0, size: int = 50
) -> ItemsPage:
    """Items ``after + 1`` .. ``after + size`` of an action, through
    audit.action_items(action_id, first_item, max_items), which reads only the chunks
    that overlap the window."""
    action_id = parse_action_id(action_id)
    if not isinstance(after, int) or not 0 <= after < 2**31 - MAX_SIZE - 1:
        raise BadRequest(f"the item position is {after!r}; expected a whole number from 0")
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise BadRequest(f"the item page size is {size!r}; expected 1 to {MAX_SIZE}")
    with translate_errors(), conn.transaction():
        cur = conn.cursor(row_factory=class_row(Item))
        items = cur.execute(
            "select item_no, resource_type, resource_id, old, new"
            " from audit.action_items(%s, %s, %s)",
            (action_id, after + 1, size + 1),
        ).fetchall()
        if items:
            columns = _label_columns(conn)
            for item in items:
                column = columns.get(item.resource_type) if item.resource_type is not None else None
                item.label = item_label(item, column)
    more = len(items) > size
    return ItemsPage(
        items[:size], after + size if more else None, max(after - size, 0) if after > 0 else None
    )
