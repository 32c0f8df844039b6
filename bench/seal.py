"""Sealing and verifying the log: actions per second, and what audited writes feel
while a seal runs beside them.

    python3 -m uv run --frozen python bench/seal.py                  # 1M actions, ~3 minutes
    python3 -m uv run --frozen python bench/seal.py --rows 100000    # quick

It starts its own PostgreSQL (fsync on), installs head, fills the log with ``--rows``
realistic actions over 36 months (bench/fill_log.py: one in ~20 a many-row action with
its item chunks), then, as an audit_admin role:

* ``seal``: ``audit_capture.seal.seal()``, what ``audit-capture seal`` runs (calls of
  100,000 actions, one transaction each) over the whole backlog: actions per second;
* ``verify``: ``audit_capture.seal.verify()`` over the sealed log: actions per second;
* the write path: a writer records application events (``audit.log_action``,
  autocommit, one at a time) alone, and beside a second session that seals what it
  writes once a second (as cron would, more often): ``--rounds`` rounds of
  ``--write-seconds`` each, the two taking turns (which goes first alternates), so
  that whatever else the machine does falls on both. The ratio is the median events
  per second beside over the median alone. The capture
  functions do not change (a seal only reads the log): what the ratio shows is the two
  sessions sharing the machine's CPUs and disk.

Progress on stderr, the figures on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import fill_log
import psycopg
from retention import SERVER_ARGS  # bench/retention.py's server: fsync on, 512 MB

from audit_capture import migrate
from audit_capture import seal as sealing

ADMIN = "bench_seal_admin"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def admin_url(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"drop role if exists {ADMIN}")
        conn.execute(f"create role {ADMIN} login; grant audit_admin to {ADMIN}")
    return psycopg.conninfo.make_conninfo(url, user=ADMIN)


def write_events(url: str, stop: threading.Event, times: list[float]) -> None:
    """Record one application event after another until ``stop``; each one's end time."""
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            conn.execute("select audit.log_action('login', 'LawRuler login', 'integration')")
            times.append(time.perf_counter())


def events_per_second(url: str, seconds: float, beside=None) -> float:
    """Events per second over ``seconds`` (after a 1 s warm-up), with ``beside(stop)``
    running in a thread of its own meanwhile when given."""
    stop, times = threading.Event(), []
    writer = threading.Thread(target=write_events, args=(url, stop, times))
    other = beside and threading.Thread(target=beside, args=(stop,))
    writer.start()
    if other:
        other.start()
    time.sleep(1)
    start_count, started = len(times), time.perf_counter()
    time.sleep(seconds)
    count, ended = len(times), time.perf_counter()
    stop.set()
    writer.join()
    if other:
        other.join()
    return (count - start_count) / (ended - started)


def seal_every_second(url: str):
    def run(stop: threading.Event) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.wait(1.0):
                sealing.seal(conn, wait_seconds=0)

    return run


def bench(url: str, rows: int, write_seconds: float, rounds: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        log(f"filling the log with {rows:,} actions")
        fill_log.fill_unindexed(conn, rows, log=log)
        conn.execute("vacuum analyze audit.action_log, audit.action_item_chunk")
        (chunks,) = conn.execute("select count(*) from audit.action_item_chunk").fetchone()
    admin = admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        log("sealing the whole log")
        started = time.perf_counter()
        sealed = sealing.seal(conn, wait_seconds=10)
        seal_seconds = time.perf_counter() - started
        log(f"  {sealed.actions:,} actions in {sealed.blocks:,} blocks, {seal_seconds:.1f} s")
        log("verifying it")
        started = time.perf_counter()
        verified = sealing.verify(conn, [sealed.head] if sealed.head else [])
        verify_seconds = time.perf_counter() - started
        if not verified.intact:
            raise SystemExit(f"bench/seal.py: the fresh seal does not verify: {verified}")
        log(f"  {verify_seconds:.1f} s")
    alone_rates, beside_rates = [], []
    for turn in range(rounds):
        log(f"audited writes, round {turn + 1} of {rounds}: alone and beside a seal a second")
        for side in ("alone", "beside") if turn % 2 == 0 else ("beside", "alone"):
            if side == "alone":
                alone_rates.append(events_per_second(url, write_seconds))
            else:
                beside_rates.append(events_per_second(url, write_seconds, seal_every_second(admin)))
    alone, beside = statistics.median(alone_rates), statistics.median(beside_rates)
    return {
        "actions": sealed.actions,
        "chunks": chunks,
        "blocks": sealed.blocks,
        "seal_seconds": seal_seconds,
        "verify_seconds": verify_seconds,
        "writes_alone": alone,
        "writes_beside": beside,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    from audit_capture.embedded import EmbeddedPostgresql

    log("starting PostgreSQL (fsync on)")
    server = EmbeddedPostgresql(postgres_args=SERVER_ARGS, boot_timeout=60)
    try:
        url = server.url("postgres")
        migrate.upgrade(url, "head")
        f = bench(url, args.rows, args.write_seconds, args.rounds)
        version = psycopg.connect(url).execute("show server_version").fetchone()[0]
    finally:
        server.stop()
    rounds = args.rounds
    print(f"seal and verify, {f['actions']:,} actions ({f['chunks']:,} item chunks), PG {version}")
    print(
        f"  seal:   {f['seal_seconds']:.1f} s, {f['actions'] / f['seal_seconds']:,.0f} actions/s"
        f" ({f['blocks']:,} blocks)"
    )
    print(
        f"  verify: {f['verify_seconds']:.1f} s,"
        f" {f['actions'] / f['verify_seconds']:,.0f} actions/s"
    )
    print(
        f"  audited events/s (median of {rounds} rounds): alone {f['writes_alone']:,.0f},"
        f" beside a seal every second"
        f" {f['writes_beside']:,.0f} (ratio {f['writes_beside'] / f['writes_alone']:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
