"""How long revision 0003's upgrade of an existing log takes (the unpartitioned log of
revision 0002 becomes the legacy partition), and how long audited writes wait for it
(migrations/README.md, "Revision 0003").

    python3 -m uv run --frozen python bench/upgrade_partitions.py               # 1,000,000
    python3 -m uv run --frozen python bench/upgrade_partitions.py --rows 10000000 --data DIR

It starts its own PostgreSQL, installs revision 0002, tracks a table, fills the log
(bench/fill_log.py: two years of actions and their item chunks; the viewer's indexes
dropped during the fill and built again, as bench/viewer_speed.py does) into a template
database, then, on a copy of it each time, while a writer inserts into the tracked table
in a loop (one autocommit INSERT every 5 ms, each an audited write into the log;
bench/migrate_concurrently.py's writer):

1. ``migrate.upgrade(url, "head")``: upgrade_concurrently/0003.sql (the new keys' indexes
   built CONCURRENTLY, the bound's CHECK added NOT VALID and validated) outside the
   transaction, then the transactional part (keys swapped, renames, ATTACH without a
   scan, the state files) under an ACCESS EXCLUSIVE lock on the log;
2. ``migrate.downgrade(url, "0002")``: back to one table (it copies the rows of the
   month partitions: here the writer's);
3. the upgrade on a caller's connection inside a transaction (the fallback: everything
   under the lock, the builds and the validation too).

For each: its duration, the part outside the transaction, the writer's inserts meanwhile
and the slowest of them (a write that waited for the migration's lock waits about as long
as the lock was held). The counts of actions and chunks are checked equal after each step.
Timings are indicative (a shared machine); the writes' wait is the point.

``--data DIR`` keeps the server (and the filled template) in DIR and reuses it next time:
the fill of 10 million actions takes a while. Point it at a folder of its own (the server
adds databases to it). ``--template DATABASE`` copies a database of that server already
at revision 0002 instead of filling one (a copy of bench/viewer_speed.py's folder:
``cp -a /tmp/h1-viewer-10m /tmp/copy`` then ``--data /tmp/copy --template viewer_bench``).

Measured (2 shared cores, 2026-12-02; the table is in migrations/README.md): at 1,000,000
actions the upgrade 1.3-1.8 s, the slowest audited insert meanwhile 199-342 ms; at
10,000,000 (a copy of bench/viewer_speed.py's 10M folder, two runs) 14.9-19.0 s,
14.5-18.2 s of it outside the transaction, the slowest insert 153-531 ms; the fallback
6.9-8.0 s with an insert waiting 6,624-7,777 ms; the downgrade 6.7-6.8 s, an insert
waiting 6,527-6,731 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fill_log  # noqa: E402
from migrate_concurrently import SERVER_ARGS, Writer, in_a_caller_transaction  # noqa: E402

from audit_capture import migrate, sqlfiles  # noqa: E402
from audit_capture.embedded import EmbeddedPostgresql  # noqa: E402

TEMPLATE = "upgrade_bench_0002"
DATABASE = "upgrade_bench"
FACTS_FILE = "upgrade_bench_facts.json"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fill_template(server: EmbeddedPostgresql, rows: int) -> dict:
    """The template database: revision 0002, a tracked table, ``rows`` actions."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(TEMPLATE)))
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(TEMPLATE)))
    url = server.url(TEMPLATE)
    migrate.upgrade(url, "0002")
    facts: dict = {"rows": rows}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table public.clients (id bigserial primary key, name text)")
        conn.execute("select audit.track('public.clients', 'client', label_column => 'name')")
        facts["fill_s"], _built = fill_log.fill_unindexed(conn, rows, log=log)
        conn.execute("vacuum analyze audit.action_log")
        conn.execute("vacuum analyze audit.action_item_chunk")
        conn.execute("checkpoint")
        facts["log_bytes"] = conn.execute(
            "select pg_total_relation_size('audit.action_log')"
        ).fetchone()[0]
        facts["chunk_bytes"] = conn.execute(
            "select pg_total_relation_size('audit.action_item_chunk')"
        ).fetchone()[0]
    return facts


def sizes(url: str) -> dict:
    with psycopg.connect(url) as conn:
        return {
            "rows": conn.execute("select count(*) from audit.action_log").fetchone()[0],
            "log_bytes": conn.execute(
                "select pg_total_relation_size('audit.action_log')"
            ).fetchone()[0],
            "chunk_bytes": conn.execute(
                "select pg_total_relation_size('audit.action_item_chunk')"
            ).fetchone()[0],
        }


def fresh_copy(server: EmbeddedPostgresql, template: str) -> str:
    """A copy of ``template`` (never changed itself), with the writer's tracked table."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
        )
        started = time.perf_counter()
        admin.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(DATABASE), sql.Identifier(template)
            )
        )
        log(f"copied the template {template} in {time.perf_counter() - started:.1f} s")
    url = server.url(DATABASE)
    if migrate.current(url) != "0002":
        raise SystemExit(f"the database {template} is at revision {migrate.current(url)}, not 0002")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create table if not exists public.clients (id bigserial primary key, name text)"
        )
        if not conn.execute(
            "select from audit.tracked_table where relation = 'public.clients'::regclass"
        ).fetchone():
            conn.execute("select audit.track('public.clients', 'client', label_column => 'name')")
    return url


def counts(url: str) -> tuple[int, int, int]:
    """(actions, chunks, the writer's rows): every action and chunk must survive each step."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select (select count(*) from audit.action_log),"
            " (select count(*) from audit.action_item_chunk),"
            " (select count(*) from public.clients)"
        ).fetchone()


class ConcurrentTimer:
    """Times sqlfiles.run_concurrently (the part outside the transaction)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.original = sqlfiles.run_concurrently

    def __enter__(self) -> ConcurrentTimer:
        def timed(*args, **kwargs):
            started = time.monotonic()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.monotonic() - started

        sqlfiles.run_concurrently = timed
        return self

    def __exit__(self, *exc) -> None:
        sqlfiles.run_concurrently = self.original


def step(name: str, url: str, writer: Writer, run) -> dict:
    before = counts(url)
    with ConcurrentTimer() as outside:
        started = time.monotonic()
        run()
        ended = time.monotonic()
    time.sleep(0.5)  # the last writes' samples
    writes = writer.between(started, ended)
    after = counts(url)
    worst = max(writes, default=0.0)
    result = {
        "step": name,
        "seconds": round(ended - started, 2),
        "outside_transaction_s": round(outside.seconds, 2),
        "inserts": len(writes),
        "slowest_insert_ms": round(worst * 1000),
        "inserts_over_100ms": sum(1 for took in writes if took > 0.1),
    }
    # the writer's own rows came meanwhile: each is one action, no chunk
    lost = (after[0] - before[0]) - (after[2] - before[2]), after[1] - before[1]
    result["actions_and_chunks_kept"] = lost == (0, 0)
    log(
        f"{name}: {result['seconds']:.1f} s ({result['outside_transaction_s']:.1f} s outside the"
        f" transaction); {len(writes):,} audited inserts meanwhile, the slowest"
        f" {result['slowest_insert_ms']:,} ms, {result['inserts_over_100ms']} over 100 ms;"
        f" every action and chunk kept: {result['actions_and_chunks_kept']}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, metavar="DIR", help="keep and reuse the server here")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--template",
        metavar="DATABASE",
        help="a database of the --data server already at revision 0002 to copy for each run "
        "(no fill; it is not changed), e.g. bench/viewer_speed.py's viewer_bench in a copy of "
        "its --data folder",
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error(f"--rows is {args.rows}; give at least 1")
    logging.basicConfig(level=logging.WARNING, format="  (%(name)s) %(message)s")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    kwargs = {"base_dir": str(args.data.resolve())} if args.data else {}
    if args.data:
        args.data.mkdir(parents=True, exist_ok=True)
    server = EmbeddedPostgresql(postgres_args=SERVER_ARGS, boot_timeout=120, **kwargs)
    results: list[dict] = []
    try:
        template = args.template or TEMPLATE
        facts_file = args.data / FACTS_FILE if args.data else None
        facts = json.loads(facts_file.read_text()) if facts_file and facts_file.exists() else None
        if args.template:
            facts = sizes(server.url(args.template))
        elif facts is not None and facts["rows"] != args.rows:
            raise SystemExit(
                f"--data {args.data} holds {facts['rows']:,} actions, not {args.rows:,}"
            )
        if facts is None:
            facts = fill_template(server, args.rows)
            if facts_file:
                facts_file.write_text(json.dumps(facts))
        log(
            f"the log: {facts['rows']:,} actions, {facts['log_bytes'] / 2**30:.2f} GiB with its"
            f" indexes; chunks {facts['chunk_bytes'] / 2**30:.2f} GiB"
        )
        url = fresh_copy(server, template)
        writer = Writer(url)
        writer.start()
        time.sleep(1)
        results.append(
            step("upgrade 0002 -> 0003", url, writer, lambda: migrate.upgrade(url, "head"))
        )
        results.append(
            step("downgrade 0003 -> 0002", url, writer, lambda: migrate.downgrade(url, "0002"))
        )
        writer.stop()
        url = fresh_copy(server, template)
        writer = Writer(url)
        writer.start()
        time.sleep(1)
        results.append(
            step(
                "upgrade 0002 -> 0003 in a caller's transaction (the fallback)",
                url,
                writer,
                lambda: in_a_caller_transaction(url),
            )
        )
        writer.stop()
        if args.json:
            args.json.write_text(json.dumps({"facts": facts, "results": results}, indent=2))
    finally:
        server.stop()
    return 0 if all(r["actions_and_chunks_kept"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
