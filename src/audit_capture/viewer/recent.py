"""The newest two months first: a page that starts at the top of the log reads them
before the rest.

The log is partitioned by month (triggers/14_partitions.sql), and a statement over
all of it is planned and opened on every month: at 10M actions over 41 partitions,
an actor's page (five ordered reads, one per source, in each month) spent 9 ms in the
planner and more opening 205 index scans before its first row. The newest rows are
in the newest months, so a page read newest first asks the last two months
(``occurred_at >= recent_months_start()``, pruned to them when the statement is
planned) and reads the older months only for the rows those did not hold.

Exact, not a guess: the page order is (occurred_at desc, id desc), so every row of
the recent months comes before every older one, and the recent read, short of a page,
held all of them.

The months ahead are made before they start (``audit.ensure_partitions``: three of
them, and the default partition), and a statement is planned on them as on any other:
an open span "since last month" is six partitions to plan and open, not two (a text
search of three admins walked fifteen branches in each: 10 ms of its 17). So the
recent read ends where this month does (``recent_span``), when a probe of the months
ahead (one index probe each) finds nothing there; a row dated later than this month
(a server clock set back) makes it open again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg
from psycopg import sql

Row = TypeVar("Row")

ANY_TIME: tuple[sql.Composable, dict] = (sql.SQL("true"), {})


def recent_months_start(now: datetime | None = None) -> datetime:
    """The first moment of last month (UTC): with the current month, the newest two
    partitions of a log partitioned by month."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    last_month = now.replace(day=1) - timedelta(days=1)
    return datetime(last_month.year, last_month.month, 1, tzinfo=UTC)


def recent_months_end(now: datetime | None = None) -> datetime:
    """The first moment of next month (UTC): where this month's partition ends."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    next_month = now.replace(day=28) + timedelta(days=4)
    return datetime(next_month.year, next_month.month, 1, tzinfo=UTC)


def recent_floor(position: tuple[datetime, int] | None, direction: str) -> datetime | None:
    """Where a page's recent read starts, or None when the page has no recent part to
    read first: a ``prev`` page (oldest first) or a page that starts before it."""
    if direction != "next":
        return None
    since = recent_months_start()
    if position is not None and position[0] < since:
        return None
    return since


def since(moment: datetime) -> tuple[sql.Composable, dict]:
    """The span of the recent read: actions at or after ``moment``."""
    return sql.SQL("occurred_at >= {}").format(sql.Placeholder("r_since")), {"r_since": moment}


#: whether the log holds a row dated at or after %(r_until)s (the months ahead)
LATER_ROWS = sql.SQL(
    "select exists (select 1 from audit.action_log where occurred_at >= %(r_until)s)"
)


def recent_span(conn: psycopg.Connection, moment: datetime) -> tuple[sql.Composable, dict]:
    """The span of the recent read from ``moment``: up to the end of this month
    (``recent_months_end``) when the log holds no later row, so that the months ahead
    are not planned; ``since(moment)`` when it does."""
    until = max(recent_months_end(), moment)
    later = conn.execute(LATER_ROWS, {"r_until": until}, prepare=False).fetchone()
    if later is None or later[0]:
        return since(moment)
    condition = sql.SQL("occurred_at >= {} and occurred_at < {}").format(
        sql.Placeholder("r_since"), sql.Placeholder("r_until")
    )
    return condition, {"r_since": moment, "r_until": until}


def before(moment: datetime) -> tuple[sql.Composable, dict]:
    """The rest of the log: actions before ``moment``."""
    return sql.SQL("occurred_at < {}").format(sql.Placeholder("r_since")), {"r_since": moment}


def newest_first(
    conn: psycopg.Connection,
    read: Callable[[sql.Composable, dict, int], list[Row]],
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` rows of ``read`` in page order: the recent months first
    (``recent_span``), the older ones only when those hold fewer than ``limit``
    (``recent_floor``). ``read(span, span_params, limit)`` reads up to ``limit`` rows
    of the page within a span of time (a condition on occurred_at and its parameters),
    in page order."""
    floor = recent_floor(position, direction)
    if floor is None:
        return read(*ANY_TIME, limit)
    found = read(*recent_span(conn, floor), limit)
    if len(found) >= limit:
        return found
    return found + read(*before(floor), limit - len(found))
