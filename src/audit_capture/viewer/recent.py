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
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from psycopg import sql

Row = TypeVar("Row")

ANY_TIME: tuple[sql.Composable, dict] = (sql.SQL("true"), {})


def recent_months_start(now: datetime | None = None) -> datetime:
    """The first moment of last month (UTC): with the current month, the newest two
    partitions of a log partitioned by month."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    last_month = now.replace(day=1) - timedelta(days=1)
    return datetime(last_month.year, last_month.month, 1, tzinfo=UTC)


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


def before(moment: datetime) -> tuple[sql.Composable, dict]:
    """The rest of the log: actions before ``moment``."""
    return sql.SQL("occurred_at < {}").format(sql.Placeholder("r_since")), {"r_since": moment}


def newest_first(
    read: Callable[[sql.Composable, dict, int], list[Row]],
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` rows of ``read`` in page order: the recent months first, the
    older ones only when those hold fewer than ``limit`` (``recent_floor``).
    ``read(span, span_params, limit)`` reads up to ``limit`` rows of the page within a
    span of time (a condition on occurred_at and its parameters), in page order."""
    floor = recent_floor(position, direction)
    if floor is None:
        return read(*ANY_TIME, limit)
    found = read(*since(floor), limit)
    if len(found) >= limit:
        return found
    return found + read(*before(floor), limit - len(found))
