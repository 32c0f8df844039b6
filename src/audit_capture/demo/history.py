"""Generated history for the demo (``audit-capture demo --history N``): N older actions
of the sample CRM, so that the viewer shows the scale it is built for.

The actions are generated in SQL (``history_actions.sql``, ``history_items.sql``: one
INSERT ... SELECT each), in one transaction, before the month of activity, so that the
log's ids keep growing with time. They are written by the superuser that owns the
demo's server, which may insert into the log (the log refuses only UPDATE, DELETE and
TRUNCATE, to everyone); nothing of the log's protection is changed. Each of them says
what it is: its context is ``{"demo": "generated history"}`` (``HISTORY_CONTEXT``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

import psycopg
from psycopg import sql

from audit_capture.database import one_value
from audit_capture.demo.activity import CAMPAIGNS, FIRST_NAMES, LAST_NAMES

#: The context of every generated history action.
HISTORY_CONTEXT = {"demo": "generated history"}
#: The most history actions the demo generates (click's --history bound).
MOST_HISTORY = 50_000_000
#: How far back the history reaches.
HISTORY_DAYS = 3 * 365
#: The campaigns of the history: the activity's, then older ones.
HISTORY_CAMPAIGNS = [name for name, _ in CAMPAIGNS] + [
    "Talc litigation intake",
    "Earplug claims follow-up",
    "Paraquat outreach",
    "Zantac screening",
    "Wildfire victims intake",
    "Hair relaxer claims",
    "Social media harm intake",
    "Rideshare accident leads",
]


class NotSuperuser(Exception):
    """--history needs the database's superuser (the demo's own server has one)."""


@dataclass
class History:
    actions: int
    last_id: int
    seconds: float


def _sql(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def check_superuser(url: str) -> None:
    """Raise NotSuperuser unless ``url`` connects as a superuser."""
    with psycopg.connect(url) as conn:
        if not one_value(conn, "select rolsuper from pg_roles where rolname = current_user"):
            user = one_value(conn, "select current_user")
            raise NotSuperuser(
                f"--history needs a superuser: {user} is not one (the log accepts rows only"
                " from audit_owner's functions, or from a superuser); use the demo's own"
                " server (no --database-url) or a superuser's URL"
            )


def add_history(url: str, count: int, *, end_at: datetime, seed: float = 0.42) -> History:
    """Insert ``count`` generated history actions (and their bulk actions' items) older
    than ``end_at``, then VACUUM ANALYZE the log so that the viewer's plans see them.
    The CRM's own id sequences move past the ids the history's resources took, so that
    the activity's new clients, cases... are not the history's."""

    if not 0 <= count <= MOST_HISTORY:
        raise ValueError(f"history count {count} is not between 0 and {MOST_HISTORY:,}")
    started = time.monotonic()
    # the ids the history's resources take: about one client per 8 actions
    ids = {
        "clients": max(2_000, count // 8),
        "cases": max(500, count // 20),
        "tasks": max(100, count // 40),
        "batch_jobs": max(100, count // 50),
    }
    names = {"first_names": FIRST_NAMES, "last_names": LAST_NAMES}
    with psycopg.connect(url) as conn, conn.transaction():
        after = one_value(conn, "select coalesce(max(id), 0) from audit.action_log")
        # the sort and the CTEs of a million rows in memory: 81 s instead of 124 s
        # (a 2-core machine under load); set for this transaction only
        conn.execute("set local work_mem = '1GB'")
        # the statement is costly enough for JIT, whose compiling costs more than it saves
        conn.execute("set local jit = off")
        conn.execute("select setseed(%s)", (seed,))
        rebuild = _drop_log_indexes(conn)
        # the months the history covers get their partitions (the log is partitioned by
        # month; rows of no prepared month would go into the default partition)
        conn.execute(
            "select audit.prepare_partitions("
            "date_trunc('month', (%(end_at)s::timestamptz - make_interval(days => %(days)s))"
            " at time zone 'UTC')::date,"
            " date_trunc('month', %(end_at)s::timestamptz at time zone 'UTC')::date)",
            {"end_at": end_at, "days": HISTORY_DAYS},
        )
        conn.execute(
            _sql("history_actions.sql"),
            {
                "n": count,
                "end_at": end_at,
                "days": HISTORY_DAYS,
                "campaigns": HISTORY_CAMPAIGNS,
                "seed": seed,
                **ids,
                **names,
            },
        )
        conn.execute(
            _sql("history_items.sql"),
            {"after": after, "clients": ids["clients"], "cases": ids["cases"], **names},
        )
        conn.execute("set local maintenance_work_mem = '1GB'")
        for statement in rebuild:
            conn.execute(statement)
        _move_crm_sequences(conn, ids, len(HISTORY_CAMPAIGNS))
        last = one_value(conn, "select coalesce(max(id), 0) from audit.action_log")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze audit.action_log")
        conn.execute("vacuum analyze audit.action_item_chunk")
    return History(actions=count, last_id=last, seconds=time.monotonic() - started)


def _drop_log_indexes(conn: psycopg.Connection) -> list[sql.SQL | sql.Composed]:
    """Drop the log's secondary indexes (the viewer's, the time index) and return the
    statements that make them again, as they were (pg_get_indexdef) with their comments:
    building an index once over a million new rows is several times faster than growing
    it row by row. The caller runs them in the same transaction, so a failure leaves
    the indexes as they were."""
    found = conn.execute(
        "select n.nspname, c.relname, pg_get_indexdef(i.indexrelid),"
        " obj_description(i.indexrelid, 'pg_class')"
        " from pg_index i join pg_class c on c.oid = i.indexrelid"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where i.indrelid = 'audit.action_log'::regclass"
        " and not exists (select from pg_constraint k where k.conindid = i.indexrelid)"
    ).fetchall()
    rebuild: list[sql.SQL | sql.Composed] = []
    for schema, name, definition, comment in found:
        index = sql.Identifier(schema, name)
        conn.execute(sql.SQL("drop index {}").format(index))
        # (an index of the partitioned log reads "ON ONLY": made so, it would stay
        # invalid, without its partitions' indexes)
        rebuild.append(sql.SQL(definition.replace(" ON ONLY ", " ON ", 1)))
        if comment is not None:
            rebuild.append(sql.SQL("comment on index {} is {}").format(index, sql.Literal(comment)))
    return rebuild


def _move_crm_sequences(conn: psycopg.Connection, ids: dict[str, int], campaigns: int) -> None:
    """The CRM's identity sequences past the history's ids, where the history comes
    first (a fresh CRM)."""
    tops = {
        "clients": ids["clients"],
        "cases": ids["cases"],
        "case_tasks": ids["tasks"],
        "batch_jobs": ids["batch_jobs"],
        "campaigns": campaigns,
    }
    for table, top in tops.items():
        conn.execute(
            "select setval(s, %s) from (select pg_get_serial_sequence(%s, 'id') as s) found"
            " where s is not null",
            (top, table),
        )


def history_end(spread_days: int) -> datetime:
    """The bound of the history: a day before the month of activity begins."""
    return datetime.now(UTC) - timedelta(days=spread_days + 1)
