"""The archive's throughput and memory: archive a closed month of about a million
actions, verify it, load it back (issue 13, benchmarks: rows/s, MB/s, peak RSS).

    python3 -m uv run --frozen --all-extras python bench/archive.py [--actions 1000000]
        [--database-url URL_OF_AN_EMPTY_DATABASE] [--folder DIR] [--json FILE]

Without --database-url it starts a throwaway server (audit_capture.embedded). The log is
filled by bench/sql/fill_log.sql (realistic actions, as bench/fill_log.py) spread over
the days from the last day of the month before last to now, so that about --actions
fall in the previous month (denser towards now: the month before last gets almost
none); the items of its many-row actions are written in the storage format with their
action's occurred_at (bench/sql/fill_items.sql's shape). Each command then runs in a
child process of its own (the CLI's ``main()``), so that its peak RSS
(os.wait4's rusage of that child) is its own. Timings on a shared
machine are indicative.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fill_log import _render, items_sql  # noqa: E402 - bench/ is not a package

from audit_capture import migrate  # noqa: E402
from audit_capture.archive import Month  # noqa: E402
from audit_capture.archive import manifest as manifests  # noqa: E402


def month_before(month: Month) -> Month:
    return Month(month.year - (month.month == 1), (month.month - 2) % 12 + 1)


def fill(url: str, actions: int, log) -> Month:
    """About ``actions`` actions in the previous month (and a few around it); that month."""
    with psycopg.connect(url, autocommit=True) as conn:
        now = conn.execute("select now()").fetchone()[0].astimezone(UTC)
        current = Month.of(now)
        previous = month_before(current)
        days = math.ceil((now - previous.start).total_seconds() / 86400) + 1
        span = days * 86400.0
        first = now.timestamp() - span

        def position(moment: datetime) -> float:  # share of rows before moment
            return max(0.0, (moment.timestamp() - first) / span) ** 2

        share = position(current.start) - position(previous.start)
        rows = int(actions / share)
        if conn.execute("select to_regproc('audit.prepare_partitions') is not null").fetchone()[0]:
            before = month_before(previous)
            conn.execute(
                "select audit.prepare_partitions(%s, %s)",
                (before.start.date(), current.start.date()),
            )
        log(f"filling {rows:,} actions over {days} days ({share:.0%} in {previous})")
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("select setseed(0.42)")
            conn.execute("set local work_mem = '256MB'")
            conn.execute(_render("fill_log.sql", rows=rows, days=days))
            chunks = conn.execute(items_sql(conn, 0)).rowcount
        log(f"  {rows:,} actions, {chunks:,} chunks in {time.perf_counter() - started:.0f} s")
        conn.execute("vacuum analyze audit.action_log")
        conn.execute("vacuum analyze audit.action_item_chunk")
    return previous


def run_child(*args: str) -> tuple[float, int, str]:
    """Runs the CLI in a child process: (seconds, its peak RSS in MB, its output)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        child = subprocess.Popen(
            [sys.executable, "-c", "from audit_capture.cli import main; main()", *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _pid, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read()
    if child.returncode != 0:
        raise SystemExit(f"audit-capture {' '.join(args)} failed:\n{text}")
    return seconds, usage.ru_maxrss // 1024, text


def uncompressed_bytes(path: Path) -> int:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total = 0
    with open(path, "rb") as raw:
        while block := raw.read(1 << 20):
            total += len(inflate.decompress(block))
    return total


def bench(url: str, actions: int, folder: Path, log) -> dict:
    migrate.upgrade(url, "head")
    month = fill(url, actions, log)
    results: dict = {}
    seconds, rss, out = run_child(
        "--database-url", url, "archive", "--before", str(month.next()), "--to", str(folder)
    )
    log(out.strip())
    manifest = json.loads((folder / manifests.manifest_name(month)).read_text())
    archived = sum(
        json.loads(path.read_text())["actions"] for path in folder.glob("*.manifest.json")
    )
    text_bytes = sum(uncompressed_bytes(path) for path in folder.glob(f"*{manifests.DATA_SUFFIX}"))
    gz_bytes = sum(path.stat().st_size for path in folder.glob(f"*{manifests.DATA_SUFFIX}"))
    results["archive"] = {
        "actions": archived,
        "month": str(month),
        "month_actions": manifest["actions"],
        "month_items": manifest["items"],
        "seconds": round(seconds, 1),
        "rows_per_s": round(archived / seconds),
        "ndjson_mb": round(text_bytes / 1e6, 1),
        "gzip_mb": round(gz_bytes / 1e6, 1),
        "ndjson_mb_per_s": round(text_bytes / 1e6 / seconds, 1),
        "gzip_mb_per_s": round(gz_bytes / 1e6 / seconds, 1),
        "peak_rss_mb": rss,
    }
    seconds, rss, _ = run_child("archive", "verify", str(folder))
    results["verify"] = {
        "seconds": round(seconds, 1),
        "rows_per_s": round(archived / seconds),
        "peak_rss_mb": rss,
    }
    data = folder / manifests.data_name(month)
    seconds, rss, out = run_child("--database-url", url, "archive", "load", str(data))
    log(out.strip())
    results["load"] = {
        "seconds": round(seconds, 1),
        "rows_per_s": round(manifest["actions"] / seconds),
        "peak_rss_mb": rss,
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="an empty database (default: a throwaway server)")
    parser.add_argument("--folder", type=Path, help="archive folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the results there too")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="audit-archive-bench-") as temporary:
        folder = args.folder or Path(temporary)
        if args.database_url:
            results = bench(args.database_url, args.actions, folder, log)
        else:
            from audit_capture.embedded import EmbeddedPostgresql

            server = EmbeddedPostgresql()
            try:
                with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
                    admin.execute("create database archive_bench")
                results = bench(server.url("archive_bench"), args.actions, folder, log)
            finally:
                server.stop()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
