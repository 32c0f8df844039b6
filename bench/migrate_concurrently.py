"""How long revision 0002's upgrade takes on a big log, and whether audited writes wait
for it (migrations/README.md, "Outside the transaction").

    python3 -m uv run --frozen python bench/migrate_concurrently.py               # 1,000,000
    python3 -m uv run --frozen python bench/migrate_concurrently.py --rows 10000000

It starts its own PostgreSQL, installs revision 0001, tracks a table, fills the log
(bench/fill_log.py, the viewer's indexes dropped during the fill and built again, as
bench/viewer_speed.py does), then runs, while a writer inserts into the tracked table
in a loop (one autocommit INSERT at a time, each an audited write into the log):

1. ``migrate.upgrade(url, "head")``: 0002's indexes CONCURRENTLY (the package's way);
2. ``migrate.downgrade(url, "0001")``: 0001's indexes again, CONCURRENTLY;
3. the same upgrade on a caller's connection inside a transaction (the fallback: the
   indexes built in the transaction, under a SHARE lock on the log).

For each: its duration, the writer's inserts meanwhile, and the slowest of them (a write
that waited for the migration's lock waits about as long as the index build). Timings
are indicative (a shared machine); the write's wait is the point.

Measured at 1,000,000 actions (2 shared cores, 2026-12-02): the upgrade 10.9 s with
1,802 inserts meanwhile, the slowest 96 ms (the transactional part's short locks: every
revision's state files take them); the downgrade 12.8 s, slowest insert 129 ms; the
fallback in a caller's transaction 10.6 s, 6 inserts, the slowest 10,525 ms (it waited
for the whole build).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import queue
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fill_log  # noqa: E402

from audit_capture import migrate  # noqa: E402
from audit_capture.embedded import EmbeddedPostgresql  # noqa: E402

SERVER_ARGS = (
    "-h 127.0.0.1 -F -c logging_collector=off -c full_page_writes=off "
    "-c synchronous_commit=off -c max_connections=20 -c shared_buffers=1GB "
    "-c max_wal_size=8GB -c checkpoint_timeout=30min -c maintenance_work_mem=512MB "
    "-c max_parallel_maintenance_workers=2"
)
DATABASE = "migrate_bench"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare(url: str, rows: int) -> None:
    migrate.upgrade(url, "0001")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table public.clients (id bigserial primary key, name text)")
        conn.execute("select audit.track('public.clients', 'client', label_column => 'name')")
        fill_log.fill_unindexed(conn, rows, log=log)
        conn.execute("vacuum analyze audit.action_log")
        conn.execute("checkpoint")


def _write(url: str, stopping, samples) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stopping.is_set():
            started = time.monotonic()
            conn.execute("insert into public.clients (name) values ('bench writer')")
            samples.put((started, time.monotonic() - started))
            time.sleep(0.005)


class Writer:
    """A process of its own (not a thread: the migration's Python would hold its GIL)
    that inserts into the tracked table, one autocommit statement at a time, and
    reports (start time, seconds) of each."""

    def __init__(self, url: str) -> None:
        self.stopping = multiprocessing.Event()
        self.queue: multiprocessing.Queue = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=_write, args=(url, self.stopping, self.queue), daemon=True
        )
        self.samples: list[tuple[float, float]] = []

    def start(self) -> None:
        self.process.start()

    def collect(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.samples.append(self.queue.get_nowait())

    def stop(self) -> None:
        self.stopping.set()
        time.sleep(0.5)
        self.collect()
        self.process.join(timeout=30)

    def between(self, start: float, end: float) -> list[float]:
        self.collect()
        return [took for at, took in self.samples if start <= at <= end]


def timed(name: str, writer: Writer, step) -> None:
    started = time.monotonic()
    step()
    ended = time.monotonic()
    time.sleep(0.5)  # the last writes' samples
    writes = writer.between(started, ended)
    worst = max(writes, default=0.0)
    log(
        f"{name}: {ended - started:.1f} s; {len(writes):,} audited inserts meanwhile, "
        f"the slowest {worst * 1000:.0f} ms"
    )


def in_a_caller_transaction(url: str) -> None:
    from sqlalchemy import create_engine

    from audit_capture.database import sqlalchemy_url

    config = migrate.alembic_config(None)
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as connection, connection.begin():
            config.attributes["connection"] = connection
            from alembic import command

            command.upgrade(config, "head")
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="  (%(name)s) %(message)s")
    server = EmbeddedPostgresql(postgres_args=SERVER_ARGS, boot_timeout=60)
    try:
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        url = server.url(DATABASE)
        prepare(url, args.rows)
        writer = Writer(url)
        writer.start()
        time.sleep(1)
        timed("upgrade 0001 -> 0002 (concurrently)", writer, lambda: migrate.upgrade(url, "head"))
        timed(
            "downgrade 0002 -> 0001 (concurrently)",
            writer,
            lambda: migrate.downgrade(url, "0001"),
        )
        timed(
            "upgrade 0001 -> 0002 in a caller's transaction (the fallback)",
            writer,
            lambda: in_a_caller_transaction(url),
        )
        writer.stop()
        log(f"the writer: {len(writer.samples):,} inserts in all")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
