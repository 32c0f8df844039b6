"""What the planner knows, and how a read steers it, without running the read.

* ``estimate``: the planner's count of the rows a filter matches (EXPLAIN, no execution),
  asked once per filter within ``estimates_kept()`` (one page's reads);
* ``log_size``: its count of the log's rows (pg_class.reltuples, no scan);
* ``planner_settings``: planner settings for the statements of a block only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextvars import ContextVar

import psycopg
from psycopg import sql

from audit_capture.viewer.filters import Filters
from audit_capture.viewer.rows import LOG, one_row

# the partitions' counts: a partitioned table has no rows of its own, and autovacuum
# never analyzes it (its reltuples stays -1); on an unpartitioned log, the table's own
LOG_SIZE = """
select greatest(sum(greatest(c.reltuples, 0)), 1)
from pg_catalog.pg_partition_tree('audit.action_log'::regclass) t
join pg_catalog.pg_class c on c.oid = t.relid
where t.isleaf
"""


def log_size(conn: psycopg.Connection) -> float:
    """The planner's count of the log's rows (pg_class.reltuples of its partitions: no
    scan)."""
    return float(one_row(conn.execute(LOG_SIZE))[0])


# the estimates of the block of estimates_kept(): (connection, query, parameters) -> rows
_KEPT: ContextVar[dict[tuple[int, str, str], float] | None] = ContextVar(
    "audit_capture_estimates", default=None
)


@contextlib.contextmanager
def estimates_kept() -> Iterator[None]:
    """Within the block, ``estimate`` asks the planner once per filter: a page's text
    search, count and walk each want the same few estimates, and on a log partitioned by
    month each EXPLAIN plans a read of every partition (1-2 ms)."""
    token = _KEPT.set({})
    try:
        yield
    finally:
        _KEPT.reset(token)


def estimate(conn: psycopg.Connection, filters: Filters) -> float:
    """The planner's estimate of the rows matching ``filters`` (EXPLAIN, nothing runs)."""
    where, params = filters.where()
    query = sql.SQL("explain (format json) select 1 from {} where {}").format(LOG, where)
    kept = _KEPT.get()
    key = (id(conn), query.as_string(conn), repr(sorted(params.items())))
    if kept is not None and key in kept:
        return kept[key]
    plan = one_row(conn.execute(query, params, prepare=False))[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    rows = float(plan[0]["Plan"]["Plan Rows"])
    if kept is not None:
        kept[key] = rows
    return rows


@contextlib.contextmanager
def planner_settings(conn: psycopg.Connection, **settings: str) -> Iterator[None]:
    """Planner settings for the statements of the block only: set local, then put back
    (a SET LOCAL would outlive the block in a caller's transaction)."""
    names = list(settings)
    previous = one_row(
        conn.execute(
            sql.SQL("select {}").format(
                sql.SQL(", ").join(
                    sql.SQL(
                        "pg_catalog.current_setting({}), pg_catalog.set_config({}, {}, true)"
                    ).format(sql.Literal(name), sql.Literal(name), sql.Literal(value))
                    for name, value in settings.items()
                )
            )
        )
    )[0::2]
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            conn.execute(
                sql.SQL("select {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("pg_catalog.set_config({}, {}, true)").format(
                            sql.Literal(name), sql.Literal(old)
                        )
                        for name, old in zip(names, previous, strict=True)
                    )
                )
            )
