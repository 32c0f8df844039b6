"""A record's history: every action that touched one row of a tracked table, single-row
and bulk alike, newest first, each with what it changed on that row (issue 16).

The rows come from ``audit.history(resource_type, resource_id, before_occurred_at,
before_id, page_size)`` (triggers/), which finds a row's actions among the single-row
actions and the items of the bulk ones, and answers keyset pages strictly before a
position (occurred_at, id), newest first: a page is the ``size`` actions after the
cursor plus one more, to know whether an older page follows (the list's convention).

A resource is named by its type and its id, exactly: the id is text, compared as it
is (``35`` is not ``35 ``, nor ``035``), and may hold any character but NUL (a slash,
spaces, a composite key's row literal such as ``(1,"a b")``).

Functions take an open psycopg connection and run inside ``conn.transaction()``, so
they work in autocommit mode and in a caller's transaction alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg

from audit_capture.viewer import cursor as cursors
from audit_capture.viewer.actions import Item, item_label
from audit_capture.viewer.errors import BadRequest, NotFound, translate_errors
from audit_capture.viewer.filters import DEFAULT_SIZE, MAX_SIZE, MIN_SIZE, RESOURCE_TYPE
from audit_capture.viewer.rows import one_row

#: the longest resource id a URL may name (a composite key's row literal fits easily)
MAX_RESOURCE_ID = 2000

#: the resource type's singular word ("Client") and label column ("name") from the
#: registry (none for an event's type), and the row's name: the newest label its
#: single-row actions gave it, along action_log_resource_idx (resource_type,
#: resource_id, occurred_at desc, id desc), newest first. That index compares byte by
#: byte (collate "C"): asked in another collation, the planner could not use it (and
#: would walk the log's time index).
RESOURCE = """
select t.label, t.label_column,
       (select l.resource_label from audit.action_log l
        where l.resource_type = %(type)s collate "C" and l.resource_id = %(id)s collate "C"
          and l.resource_id is not null and l.resource_label is not null
        order by l.occurred_at desc, l.id desc limit 1)
from (select min(label) as label, min(label_column) as label_column
      from audit.tracked_table where resource_type = %(type)s) t
"""

#: the newest actions whose items may name a row no single-row action named
NAMING_ENTRIES = 10

HISTORY = """
select action_id, occurred_at, action, action_type, actor_id, actor_name, actor_type,
       source, row_count, operation, items
from audit.history(%(type)s, %(id)s, %(before_at)s, %(before_id)s, %(size)s)
"""


class HistoryUnavailable(Exception):
    """The database has no audit.history(): its audit schema is older than this viewer's
    (revision 0004). ``str(exc)`` says what to do."""

    MESSAGE = (
        "This database's audit schema has no audit.history() yet: a DBA upgrades it with "
        "audit-capture migrate upgrade, and the history pages work at once."
    )


@dataclass
class Resource:
    """One row of a tracked table, as its history names it."""

    resource_type: str
    resource_id: str
    type_label: str | None  # the registry's singular word, "Client" (None: an event's type)
    # the newest label its single-row actions gave it, else its items' (named_by_items)
    label: str | None  # "Maria Lopez"
    label_column: str | None = None  # the registry's label column of the type: "name"


@dataclass
class HistoryEntry:
    """One action that touched the row, and its items for that row (usually one; none
    for a TRUNCATE of the table, which copied no row)."""

    action_id: int
    occurred_at: datetime
    action: str
    action_type: str
    actor_id: str | None
    actor_name: str | None
    actor_type: str
    source: str | None
    row_count: int
    operation: str | None
    items: list[Item]

    @property
    def cursor(self) -> str:
        return cursors.encode(self.occurred_at, self.action_id)


@dataclass
class HistoryPage:
    """A page of a row's history, newest first; ``next_cursor``: the older page's
    position (None on the last page)."""

    entries: list[HistoryEntry]
    next_cursor: str | None


def parse_resource_type(value: str) -> str:
    """A resource type from a URL, written as tracked tables write theirs (lower-case
    letters, digits and ``_``, as the list's ``resource`` filter takes them); NotFound
    otherwise: no row of it can be named in a URL."""
    if not RESOURCE_TYPE.fullmatch(value):
        raise NotFound(unknown_type(value))
    return value


def unknown_type(resource_type: str) -> str:
    return (
        f"There is no resource type {resource_type[:70]!r}: no tracked table has it, "
        "and no action in the log names a row of it."
    )


def parse_resource_id(value: str | None) -> str:
    """A resource id from a URL, exactly as given; BadRequest when missing, empty, too
    long or holding a NUL (which no id in PostgreSQL can)."""
    if value is None or value == "":
        raise BadRequest("id is missing; give the id of the row whose history to show")
    if len(value) > MAX_RESOURCE_ID:
        raise BadRequest(
            f"id is {len(value):,} characters long; a resource id has at most {MAX_RESOURCE_ID:,}"
        )
    if "\x00" in value:
        raise BadRequest("id holds a NUL character, which no resource id can")
    return value


def has_history(resource_type: str | None, resource_id: str | None) -> bool:
    """Whether a history page can be linked for this row: it has an id, and its type and
    id fit in the page's URL (``parse_resource_type``, ``parse_resource_id``)."""
    if resource_type is None or resource_id is None:
        return False
    try:
        parse_resource_type(resource_type)
        parse_resource_id(resource_id)
    except (NotFound, BadRequest):
        return False
    return True


def find_resource(conn: psycopg.Connection, resource_type: str, resource_id: str) -> Resource:
    """The row ``resource_id`` of ``resource_type``, named as far as the log can (its
    history page raises NotFound for a type nothing has: ``history_page``)."""
    resource_type = parse_resource_type(resource_type)
    resource_id = parse_resource_id(resource_id)
    with translate_errors(), conn.transaction():
        # prepared, unlike the viewer's other reads (rows.py): its one plan, a seek in
        # each month's index for the newest labelled entry, fits every row alike, and
        # once PostgreSQL keeps it (after five runs on a connection of the pool) it is no
        # longer planned over every month at each page: 0.4 ms, not 5 to 9, at 1M
        cur = conn.execute(RESOURCE, {"type": resource_type, "id": resource_id}, prepare=True)
        type_label, label_column, label = one_row(cur)
    return Resource(resource_type, resource_id, type_label, label, label_column)


def named_by_items(
    conn: psycopg.Connection, resource: Resource, first_page: HistoryPage | None = None
) -> Resource:
    """``resource``, named by its items when no single-row action named it (a row
    created in bulk and only ever changed in bulk): the label column's value in the
    first item that holds it among its ``NAMING_ENTRIES`` newest actions (a created or
    deleted row holds it; an update's item only when it changed). ``first_page``: the
    history's first page, when the caller has read it (its actions are those, when
    it holds them all or enough); otherwise they are read. Every page of a history is
    named alike."""
    if resource.label is not None or resource.label_column is None:
        return resource
    if first_page is not None and (
        len(first_page.entries) >= NAMING_ENTRIES or first_page.next_cursor is None
    ):
        newest = first_page.entries[:NAMING_ENTRIES]
    else:
        newest = history_page(conn, resource, size=NAMING_ENTRIES).entries
    for entry in newest:
        for item in entry.items:
            if (label := item_label(item, resource.label_column)) is not None:
                return replace(resource, label=label)
    return resource


def _items(value: Any) -> list[Item]:
    """audit.history's ``items``, [{"item_no", "old", "new"}, ...], as ``Item``s."""
    if not isinstance(value, list):
        return []
    return [
        Item(
            item_no=int(i["item_no"]),
            resource_type=None,
            resource_id=None,
            old=i.get("old"),
            new=i.get("new"),
        )
        for i in value
        if isinstance(i, dict) and "item_no" in i
    ]


def _entry(row: tuple[Any, ...]) -> HistoryEntry:
    (action_id, occurred_at, action, action_type, actor_id, actor_name, actor_type) = row[:7]
    source, row_count, operation, items = row[7:]
    return HistoryEntry(
        action_id=action_id,
        occurred_at=occurred_at,
        action=action,
        action_type=action_type,
        actor_id=actor_id,
        actor_name=actor_name,
        actor_type=actor_type,
        source=source,
        row_count=row_count,
        operation=operation,
        items=_items(items),
    )


def history_page(
    conn: psycopg.Connection,
    resource: Resource,
    cursor: str | None = None,
    size: int = DEFAULT_SIZE,
) -> HistoryPage:
    """The ``size`` newest actions of ``resource`` before ``cursor`` (from the newest
    when None). BadRequest for a bad cursor or size; NotFound for a resource type that
    no tracked table has and no action names a row of (audit.history's rule: a table
    untracked since still has its rows' history); TooBroad when the statement_timeout
    cancels the query."""
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise BadRequest(f"_size is {size!r}; expected a number from {MIN_SIZE} to {MAX_SIZE}")
    before_at, before_id = cursors.decode(cursor) if cursor else (None, None)
    params = {
        "type": resource.resource_type,
        "id": resource.resource_id,
        "before_at": before_at,
        "before_id": before_id,
        "size": size + 1,
    }
    try:
        with translate_errors(), conn.transaction():
            rows = conn.execute(HISTORY, params, prepare=False).fetchall()
    except psycopg.errors.InvalidParameterValue as exc:
        # the one such error of a valid page size: a type no table has and no row names
        raise NotFound(unknown_type(resource.resource_type)) from exc
    except psycopg.errors.UndefinedFunction as exc:
        raise HistoryUnavailable(HistoryUnavailable.MESSAGE) from exc
    entries = [_entry(row) for row in rows[:size]]
    more = len(rows) > size
    return HistoryPage(entries, entries[-1].cursor if more and entries else None)
