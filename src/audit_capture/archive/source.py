"""What the database holds for a month: its counts, the months that hold actions, and
which database it is. Read-only queries, run as any role granted audit_reader.

A month's items are the chunks of its actions (audit.action_item_chunk): on the
partitioned log a chunk carries its action's ``occurred_at``, so the month's chunks are
found by that range; a chunk of the legacy partition (an install upgraded from revision
0002) carries ``'-infinity'`` instead and is found through its action's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from audit_capture.archive.month import Month
from audit_capture.database import one_row, one_value


@dataclass(frozen=True)
class MonthCounts:
    """A month's actions and their item chunks: how many, and their ranges."""

    actions: int
    chunks: int
    items: int
    first_id: int | None
    last_id: int | None
    first_occurred_at: datetime | None
    last_occurred_at: datetime | None

    def differences(self, other: MonthCounts) -> list[str]:
        """``'actions 1,200 against 1,204'`` for each count or range that differs."""
        found = []
        for name in ("actions", "chunks", "items", "first_id", "last_id"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                found.append(f"{name} {_number(mine)} against {_number(theirs)}")
        return found


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


ACTIONS_OF_MONTH = """
select count(*), min(id), max(id), min(occurred_at), max(occurred_at)
from audit.action_log
where occurred_at >= %(start)s and occurred_at < %(end)s
"""

# the month's chunks by their own occurred_at (partition pruning), plus the legacy
# chunks ('-infinity') of the month's actions
CHUNKS_OF_MONTH = """
select (select count(*) from audit.action_item_chunk c
        where c.occurred_at >= %(start)s and c.occurred_at < %(end)s)
       + (select count(*) from audit.action_log l
          join audit.action_item_chunk c on c.action_id = l.id and c.occurred_at = '-infinity'
          where l.occurred_at >= %(start)s and l.occurred_at < %(end)s),
       (select coalesce(sum(c.item_count), 0) from audit.action_item_chunk c
        where c.occurred_at >= %(start)s and c.occurred_at < %(end)s)
       + (select coalesce(sum(c.item_count), 0) from audit.action_log l
          join audit.action_item_chunk c on c.action_id = l.id and c.occurred_at = '-infinity'
          where l.occurred_at >= %(start)s and l.occurred_at < %(end)s)
"""


def bounds(month: Month) -> dict[str, datetime]:
    return {"start": month.start, "end": month.end}


def live_counts(conn: psycopg.Connection, month: Month) -> MonthCounts:
    """The month's counts in the database now (in ``conn``'s transaction, as it is)."""
    actions, first_id, last_id, first_at, last_at = one_row(conn, ACTIONS_OF_MONTH, bounds(month))
    chunks, items = one_row(conn, CHUNKS_OF_MONTH, bounds(month))
    return MonthCounts(
        actions=actions,
        chunks=int(chunks),
        items=int(items),
        first_id=first_id,
        last_id=last_id,
        first_occurred_at=first_at,
        last_occurred_at=last_at,
    )


def current_month(conn: psycopg.Connection) -> Month:
    """The month (UTC) of the database server's clock: the first month still open."""
    return Month.of(one_value(conn, "select now()"))


def months_with_actions(conn: psycopg.Connection, before: Month) -> list[Month]:
    """The months before ``before`` that hold at least one action, oldest first: one
    index probe per month found (min(occurred_at) from the next month on), whatever the
    partitions (a month's own, the default or the legacy one)."""
    found: list[Month] = []
    after = None
    while True:
        oldest = one_value(
            conn,
            "select min(occurred_at) from audit.action_log"
            " where occurred_at < %(before)s"
            " and (%(after)s::timestamptz is null or occurred_at >= %(after)s)",
            {"before": before.start, "after": after},
        )
        if oldest is None:
            return found
        month = Month.of(oldest)
        found.append(month)
        after = month.end


def source_identity(conn: psycopg.Connection) -> dict[str, Any]:
    """Which database the log comes from: the cluster's system identifier (None where
    pg_control_system() is not granted to the role), the database's name and oid, the
    server's version and the audit schema's revision."""
    from audit_capture.migrate import current_on

    try:
        with conn.transaction():
            system_identifier = one_value(
                conn, "select system_identifier::text from pg_catalog.pg_control_system()"
            )
    except psycopg.errors.InsufficientPrivilege:
        system_identifier = None
    name, oid, version = one_row(
        conn,
        "select current_database(), (select oid from pg_catalog.pg_database"
        " where datname = current_database()), current_setting('server_version')",
    )
    return {
        "system_identifier": system_identifier,
        "database": name,
        "database_oid": int(oid),
        "server_version": version,
        "schema_revision": current_on(conn),
    }


def columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    """(name, type) of a table's columns, in order (``table`` schema-qualified)."""
    return [
        (name, type_name)
        for name, type_name in conn.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_catalog.pg_attribute"
            " where attrelid = %s::regclass and attnum > 0 and not attisdropped"
            " order by attnum",
            (table,),
        )
    ]


def chain_head(conn: psycopg.Connection) -> str | None:
    """The seal chain's head now (``audit.chain_head()``), for the manifest: a head kept
    with the archive, outside the database, that ``audit-capture verify --expect
    MANIFEST`` checks is still in the chain. None before the first seal, or on a
    schema without the chain (revision 0003 and older)."""
    if one_value(conn, "select to_regprocedure('audit.chain_head()') is null"):
        return None
    return one_value(conn, "select audit.chain_head()")
