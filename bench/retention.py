"""Retention of 12 months of a 36-month log: how long it runs, and how long audited
writes wait meanwhile (the lock on the log's parents). Indicative figures.

    python3 -m uv run --frozen python bench/retention.py                 # 1M actions
    python3 -m uv run --frozen python bench/retention.py --rows 10000000
    ... --database-url URL   (an installed, empty log instead of a server of its own)

It starts its own PostgreSQL (fsync on), installs head, prepares the 36 months before
the current one, fills them evenly (``--rows`` actions, one in 20 with a chunk of 1,000
items), then runs ``audit.apply_retention(24, true)`` as an audit_admin role (the 12
oldest months go) while a writer records an application event
(``audit.log_action``) in a loop, autocommit, one at a time. Reported: the run's
seconds; how long it held ACCESS EXCLUSIVE on audit.action_log (sampled in pg_locks
every 2 ms by a third session: the time between the first and the last sample that saw
it granted, so within a few ms); the writer's events during the run and the slowest of
them (what an application's audited write waited). Progress on stderr, the table on
stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import psycopg

from audit_capture import migrate, retention

SERVER_ARGS = (
    "-h 127.0.0.1 -c logging_collector=off -c max_connections=20 "
    "-c shared_buffers=512MB -c max_wal_size=8GB -c checkpoint_timeout=30min"
)
ADMIN = "bench_retention_admin"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(conn: psycopg.Connection, rows: int, months: int) -> None:
    """``rows`` actions over the ``months`` months before the current one."""
    conn.execute(
        "select audit.prepare_partitions("
        " (date_trunc('month', now() at time zone 'UTC') - make_interval(months => %s))::date,"
        " (date_trunc('month', now() at time zone 'UTC') - interval '1 month')::date)",
        (months,),
    )
    per_month = rows // months
    for back in range(months, 0, -1):
        started = time.perf_counter()
        conn.execute(
            """
            with a as (
              insert into audit.action_log (occurred_at, action, action_type, resource_type,
                resource_id, row_count, actor_id, actor_type, actor_name, source, changes,
                db_user, transaction_id)
              select (date_trunc('month', now() at time zone 'UTC')
                      - make_interval(months => %(back)s)) at time zone 'UTC'
                     + make_interval(secs => g * (2419200.0 / %(n)s)),
                     case when g %% 20 = 0 then 'Batch client deletion' else 'Client updated' end,
                     case when g %% 20 = 0 then 'delete' else 'update' end, 'client',
                     case when g %% 20 = 0 then null else g::text end,
                     case when g %% 20 = 0 then 1000 else 1 end,
                     (g %% 500)::text, 'admin', 'Admin ' || g %% 500, 'web',
                     jsonb_build_object('status', jsonb_build_object('old', 'new', 'new', 'open')),
                     'crm_app', g
              from generate_series(1, %(n)s) g
              returning id, occurred_at, row_count)
            insert into audit.action_item_chunk (action_id, occurred_at, first_item, item_count,
                                                 resource_type, operation, items, resource_ids)
            select a.id, a.occurred_at, 1, 1000, 'client', 'DELETE',
                   (select json_agg(json_build_object('id', k, 'name', 'Client ' || k,
                                                      'status', 'closed'))::text
                    from generate_series(1, 1000) k),
                   (select array_agg(k::text) from generate_series(1, 1000) k)
            from a where a.row_count = 1000
            """,
            {"back": back, "n": per_month},
        )
        conn.commit()
        log(f"  month -{back}: {per_month:,} actions in {time.perf_counter() - started:.1f} s")
    conn.execute("analyze audit.action_log")
    conn.commit()


class Writer(threading.Thread):
    """Audited writes one after another: (start, seconds) of each."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                conn.execute("select audit.log_action('export', 'Bench export', 'call')")
                self.samples.append((started, time.perf_counter() - started))


class LockWatch(threading.Thread):
    """Samples pg_locks: when the retention's backend held ACCESS EXCLUSIVE on the log."""

    def __init__(self, url: str, pid: int):
        super().__init__(daemon=True)
        self.url, self.pid = url, pid
        self.held: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                now = time.perf_counter()
                held = conn.execute(
                    "select exists (select from pg_locks where pid = %s and granted"
                    " and mode = 'AccessExclusiveLock'"
                    " and relation = 'audit.action_log'::regclass)",
                    (self.pid,),
                ).fetchone()[0]
                if held:
                    self.held.append(now)
                time.sleep(0.002)


def bench(url: str, rows: int, months: int, keep: int) -> dict[str, float]:
    with psycopg.connect(url) as conn:
        conn.execute(f"drop role if exists {ADMIN}")
        conn.execute(f"create role {ADMIN} login; grant audit_admin to {ADMIN}")
        conn.commit()
        log(f"filling {rows:,} actions over {months} months")
        fill(conn, rows, months)
    admin_url = psycopg.conninfo.make_conninfo(url, user=ADMIN)
    writer = Writer(url)
    writer.start()
    time.sleep(1)
    with psycopg.connect(admin_url) as admin:
        watch = LockWatch(url, admin.info.backend_pid)
        watch.start()
        started = time.perf_counter()
        result = retention.run(admin, keep, apply=True)
        ended = time.perf_counter()
        watch.stop.set()
        watch.join()
    time.sleep(0.5)
    writer.stop.set()
    writer.join()
    during = [s for t, s in writer.samples if started <= t <= ended]
    before = [s for t, s in writer.samples if t < started]
    held = (watch.held[-1] - watch.held[0]) if watch.held else 0.0
    return {
        "months": len(result.months),
        "actions": result.actions,
        "chunks": result.chunks,
        "bytes": result.bytes,
        "seconds": ended - started,
        "lock_held_ms": held * 1000,
        "lock_samples": len(watch.held),
        "writes_during": len(during),
        "write_max_ms": max(during, default=0) * 1000,
        "write_median_ms": statistics.median(before or [0]) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an installed, empty log (else a server of its own)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--keep", type=int, default=24)
    args = parser.parse_args(argv)
    server = None
    url = args.database_url
    if url is None:
        from audit_capture.embedded import EmbeddedPostgresql

        log("starting PostgreSQL (fsync on)")
        server = EmbeddedPostgresql(postgres_args=SERVER_ARGS, boot_timeout=60)
        url = server.url("postgres")
        migrate.upgrade(url, "head")
    try:
        figures = bench(url, args.rows, args.months, args.keep)
    finally:
        if server is not None:
            server.stop()
    print(f"retention --keep {args.keep}months of {args.rows:,} actions over {args.months} months")
    print(
        f"  dropped: {figures['months']} months, {figures['actions']:,} actions,"
        f" {figures['chunks']:,} chunks, {retention.human_bytes(int(figures['bytes']))}"
    )
    print(f"  run: {figures['seconds']:.2f} s (counting each month, then the drop)")
    print(
        f"  ACCESS EXCLUSIVE on audit.action_log held: ~{figures['lock_held_ms']:.0f} ms"
        f" ({figures['lock_samples']} samples at 2 ms)"
    )
    print(
        f"  audited writes during the run: {figures['writes_during']:,}, slowest"
        f" {figures['write_max_ms']:.0f} ms (median before it {figures['write_median_ms']:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
