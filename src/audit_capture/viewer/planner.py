"""What the planner knows, and how a read steers it, without running the read.

* ``estimate``: the planner's count of the rows a filter matches (EXPLAIN, no execution),
  asked once per filter within ``estimates_kept()`` (one page's reads);
* ``estimate_within``: the same within a span of time (only its months planned);
* ``log_size``: its count of the log's rows (pg_class.reltuples, no scan);
* ``planner_settings``: planner settings for the statements of a block only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

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
    scan), read once within ``estimates_kept()``."""
    return _remembered(("size", id(conn)), lambda: float(one_row(conn.execute(LOG_SIZE))[0]))


# what the block of estimates_kept() learned: each filter's estimate, by (connection,
# query, parameters), the log's size and the sample partition, by connection
_KEPT: ContextVar[dict[tuple, Any] | None] = ContextVar("audit_capture_estimates", default=None)


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


def _remembered(key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()``, once per ``key`` within the block of estimates_kept()."""
    kept = _KEPT.get()
    if kept is None:
        return compute()
    if key not in kept:
        kept[key] = compute()
    return kept[key]


# The biggest partition of the log (its schema, name and rows): a sample for the estimate
# of a text search (below). None on a log without partitions (an unpartitioned log) or
# without rows counted yet.
SAMPLE_PARTITION = """
select n.nspname, c.relname, c.reltuples
from pg_catalog.pg_inherits i
join pg_catalog.pg_class c on c.oid = i.inhrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where i.inhparent = 'audit.action_log'::regclass and c.reltuples > 0
order by c.reltuples desc limit 1
"""

#: A partition holding less than this share of the log is no sample of it.
SAMPLE_MIN_SHARE = 0.01


def _sampled(filters: Filters) -> bool:
    """Whether a month's matches, scaled, estimate the whole log's: a text search,
    alone or with the filters on kinds of actions (which the months share alike); not
    with a time range or an actor (an actor's rows may all be in other months)."""
    return bool(filters.get("q")) and not any(filters.get(name) for name in ("actor", "from", "to"))


def _explain_rows(conn: psycopg.Connection, query: sql.Composed, params: dict) -> float:
    plan = one_row(conn.execute(query, params, prepare=False))[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def _rows_in(
    conn: psycopg.Connection,
    relation: sql.Composable,
    filters: Filters,
    span: tuple[sql.Composable, dict] = (sql.SQL("true"), {}),
) -> float:
    """The planner's estimate of the rows of ``relation`` matching ``filters`` within
    ``span`` (a condition on occurred_at and its parameters)."""
    where, params = filters.where()
    condition, span_params = span
    query = sql.SQL("explain (format json) select 1 from {} where {} and {}").format(
        relation, where, condition
    )
    return _explain_rows(conn, query, {**params, **span_params})


def _estimate(conn: psycopg.Connection, filters: Filters) -> float:
    if _sampled(filters):
        sample = _remembered(
            ("sample", id(conn)), lambda: conn.execute(SAMPLE_PARTITION).fetchone()
        )
        if sample is not None:
            schema, partition, partition_rows = sample
            total = log_size(conn)
            if partition_rows >= SAMPLE_MIN_SHARE * total:
                found = _rows_in(conn, sql.Identifier(schema, partition), filters)
                return found * total / partition_rows
    return _rows_in(conn, LOG, filters)


def estimate(conn: psycopg.Connection, filters: Filters) -> float:
    """The planner's estimate of the rows matching ``filters`` (EXPLAIN, nothing runs).

    On a log partitioned by month the planner estimates each partition apart, and a text
    search's estimate costs ~0.3 ms a partition (the words are looked up in each one's
    statistics): 12 ms at 41. A text search is estimated in the biggest partition alone
    (a month, or an upgraded install's legacy partition) and scaled by the log's size
    (``_sampled`` says when that holds)."""
    where, params = filters.where()
    key = (id(conn), where.as_string(conn), repr(sorted(params.items())))
    return _remembered(key, lambda: _estimate(conn, filters))


def estimate_within(
    conn: psycopg.Connection, filters: Filters, span: tuple[sql.Composable, dict]
) -> float:
    """The planner's estimate of the rows matching ``filters`` within ``span``: a
    condition on occurred_at (``recent``) that leaves out the months outside it, so
    that only the span's partitions are planned."""
    where, params = filters.where()
    condition, span_params = span
    key = (
        id(conn),
        where.as_string(conn),
        condition.as_string(conn),
        repr(sorted({**params, **span_params}.items())),
    )
    return _remembered(key, lambda: _rows_in(conn, LOG, filters, span))


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
