"""The log as a stream: how fast ``audit-capture tail`` reads a backlog, as JSON lines and
as OCSF events.

    python3 -m uv run --frozen python bench/stream.py                  # 1M actions
    python3 -m uv run --frozen python bench/stream.py --rows 100000    # quick

It starts its own PostgreSQL (fsync on), installs head, fills the log with ``--rows``
realistic actions over 36 months (bench/fill_log.py), then, as a role granted only
audit_reader, runs ``audit-capture tail`` (without --follow) over the whole log in a
subprocess, its output to /dev/null, once per format: actions per second, and the
process's peak memory (it reads 1,000 actions per statement, so it stays flat).

Progress on stderr, the figures on stdout.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import fill_log
import psycopg
from retention import SERVER_ARGS  # bench/retention.py's server: fsync on, 512 MB

from audit_capture import migrate

READER = "bench_stream_reader"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reader_url(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"drop role if exists {READER}")
        conn.execute(f"create role {READER} login; grant audit_reader to {READER}")
    return psycopg.conninfo.make_conninfo(url, user=READER)


def tail(url: str, output_format: str) -> tuple[float, int]:
    """Seconds to print the whole log in ``output_format``, and the peak RSS in bytes of
    the process that printed it."""
    executable = Path(sys.executable).with_name("audit-capture")
    started = time.perf_counter()
    subprocess.run(
        [str(executable), "--database-url", url, "tail", "--format", output_format],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    seconds = time.perf_counter() - started
    # the largest child waited for so far: each run's figure is at least the one before
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return seconds, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    from audit_capture.embedded import EmbeddedPostgresql

    log("starting PostgreSQL (fsync on)")
    server = EmbeddedPostgresql(postgres_args=SERVER_ARGS, boot_timeout=60)
    figures = {}
    try:
        url = server.url("postgres")
        migrate.upgrade(url, "head")
        with psycopg.connect(url, autocommit=True) as conn:
            log(f"filling the log with {args.rows:,} actions")
            fill_log.fill_unindexed(conn, args.rows, log=log)
            conn.execute("vacuum analyze audit.action_log, audit.action_item_chunk")
            (actions,) = conn.execute("select count(*) from audit.action_log").fetchone()
            version = conn.execute("show server_version").fetchone()[0]
        reader = reader_url(url)
        for output_format in ("ndjson", "ocsf"):
            log(f"tail --format {output_format}")
            figures[output_format] = tail(reader, output_format)
    finally:
        server.stop()
    print(f"audit-capture tail over {actions:,} actions, PG {version}")
    for output_format, (seconds, peak) in figures.items():
        print(
            f"  {output_format:6}: {seconds:.1f} s, {actions / seconds:,.0f} actions/s,"
            f" peak RSS of the run so far {peak / 1024**2:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
