"""Fill audit.action_log with N realistic actions, set-based, for the viewer's benchmark.

    python3 -m uv run --frozen python bench/fill_log.py --database-url URL --rows 1000000

The audit schema must be installed. Two statements do the work (bench/sql/):

* ``fill_log.sql``: one ``INSERT ... SELECT ... FROM generate_series(1, N)``: about
  2,000 skewed actors (admins, clients named like "Maria Garcia", system actors,
  database roles, and five departed admins whose rows are all old), all four sources
  and none, every resource type and action type (clients' "Portal login", admins'
  "LawRuler login"), recent rows denser than old ones (see the file's header for the
  shape); deterministic for a given seed (``setseed``);
* ``fill_items.sql``: the items of the many-row actions, written straight into
  audit.action_item_chunk in its storage format (chunks of up to 1,000 items).

Rows go in with plain INSERTs: the log's append-only triggers refuse only UPDATE,
DELETE and TRUNCATE, so nothing is disabled. What keeps 10 million rows to minutes is
inserting before the viewer's indexes exist: bench/viewer_speed.py installs head, drops
the log's indexes but its primary key, fills, then builds them again from their saved
definitions. ``fill()`` works with the indexes in place too, only slower (the GIN index
above all).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

SQL_DIR = Path(__file__).resolve().parent / "sql"
DEFAULT_DAYS = 1096  # 36 months


def _render(name: str, **values: int) -> str:
    """A file of bench/sql/ with its ``{name}`` markers replaced by whole numbers. (Not
    psycopg.sql formatting: the files hold JSON braces. Only ints go in.)"""
    text = (SQL_DIR / name).read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(int(value)))
    return text


def _partitioned(conn: psycopg.Connection) -> bool:
    """Whether the log is partitioned by month (revision 0003 on): the benchmarks of
    migrations fill the log of an older revision."""
    return conn.execute(
        "select to_regprocedure('audit.prepare_partitions(date, date)') is not null"
    ).fetchone()[0]


def _update_chunks_name_their_ids(conn: psycopg.Connection) -> bool:
    """Whether UPDATE chunks carry resource_ids (revision 0004 on, with audit.history()):
    an older revision's audit.action_items() reads an UPDATE chunk with resource_ids as
    rows, not [resource_id, old, new] triples."""
    return conn.execute("select to_regprocedure('audit.item_ids(text)') is not null").fetchone()[0]


def items_sql(conn: psycopg.Connection, after_id: int) -> str:
    """fill_items.sql for the log's revision: the chunks carry their action's occurred_at
    on a partitioned log, which is the only one with that column; UPDATE chunks their
    ids from revision 0004 on."""
    column, value = ("occurred_at, ", "l.occurred_at, ") if _partitioned(conn) else ("", "")
    text = _render("fill_items.sql", after_id=after_id)
    update_ids = "k.ids" if _update_chunks_name_their_ids(conn) else "null"
    return (
        text.replace("{time_column}", column)
        .replace("{time_value}", value)
        .replace("{update_ids}", update_ids)
    )


def fill(
    conn: psycopg.Connection,
    rows: int,
    *,
    days: int = DEFAULT_DAYS,
    seed: float = 0.42,
    log=lambda message: None,
) -> dict[str, float]:
    """Append ``rows`` actions (and their items) in one transaction; seconds per step."""
    timings = {}
    with conn.transaction():
        after_id = conn.execute("select coalesce(max(id), 0) from audit.action_log").fetchone()[0]
        if _partitioned(conn):
            # the months the fill spans, each a partition of the log (beyond them, rows
            # would land in the default partition)
            conn.execute(
                "select audit.prepare_partitions(date_trunc('month', now()"
                " - make_interval(days => %s))::date, date_trunc('month', now())::date)",
                (days,),
            )
        conn.execute("select setseed(%s)", (seed,))
        # the statement builds large sorts and hashes only for the items; give it room
        conn.execute("set local work_mem = '256MB'")
        started = time.perf_counter()
        conn.execute(_render("fill_log.sql", rows=rows, days=days))
        timings["actions"] = time.perf_counter() - started
        log(f"  {rows:,} actions in {timings['actions']:.1f} s")
        started = time.perf_counter()
        chunks = conn.execute(items_sql(conn, after_id)).rowcount
        timings["items"] = time.perf_counter() - started
        log(f"  {chunks:,} item chunks in {timings['items']:.1f} s")
    return timings


def secondary_indexes(conn: psycopg.Connection) -> list[tuple[str, str, str | None]]:
    """(name, definition, comment) of the indexes of audit.action_log and
    audit.action_item_chunk that back no constraint: the viewer's, the time index and
    the history's (the primary keys stay)."""
    return conn.execute(
        "select c.relname, pg_get_indexdef(c.oid), obj_description(c.oid, 'pg_class')"
        " from pg_index i join pg_class c on c.oid = i.indexrelid"
        " where i.indrelid in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass)"
        " and not exists (select from pg_constraint k where k.conindid = c.oid)"
        " order by 1"
    ).fetchall()


def fill_unindexed(
    conn: psycopg.Connection, rows: int, *, days: int = DEFAULT_DAYS, log=lambda message: None
) -> tuple[dict[str, float], float]:
    """``fill()`` with the log's secondary indexes dropped first and built again over the
    filled log after (inserting under the GIN indexes and the actor indexes is several
    times slower than building them once); (fill()'s seconds, the build's seconds)."""
    indexes = secondary_indexes(conn)
    log(f"dropping {len(indexes)} indexes for the fill: {', '.join(i[0] for i in indexes)}")
    for name, _definition, _comment in indexes:
        conn.execute(sql.SQL("drop index audit.{}").format(sql.Identifier(name)))
    log(f"filling the log with {rows:,} actions")
    timings = fill(conn, rows, days=days, log=log)
    log("building the indexes again over the filled log")
    started = time.perf_counter()
    for name, definition, comment in indexes:
        # a partitioned index's definition reads ON ONLY (the parent alone, its
        # partitions' indexes attached one by one): build it on every partition
        conn.execute(definition.replace(" ON ONLY ", " ON ", 1))
        if comment is not None:
            conn.execute(
                sql.SQL("comment on index audit.{} is {}").format(
                    sql.Identifier(name), sql.Literal(comment)
                )
            )
    built = time.perf_counter() - started
    log(f"  {len(indexes)} indexes built in {built:.1f} s")
    return timings, built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    args = parser.parse_args(argv)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        fill(conn, args.rows, days=args.days, log=lambda m: print(m, file=sys.stderr))
        conn.execute("vacuum analyze audit.action_log")
        conn.execute("vacuum analyze audit.action_item_chunk")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
