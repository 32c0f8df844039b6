"""The floor of the single-row write tax: what the cheapest conceivable trigger costs.

    python3 -m uv run --frozen python bench/write_floor.py            # ~2 minutes
    python3 -m uv run --frozen python bench/write_floor.py --quick    # < 1 minute

bench/write_overhead.py says what audit_capture costs; this says how low any design
that writes the action into the log at commit could go on the same server. Beside the
untracked table and the tracked one it runs the same single-row UPDATE (pgbench, 2
clients, prepared, synchronous_commit=off) on copies of the table that carry reference
triggers (bench/sql/floor_triggers.sql): one that does nothing, one that inserts a
constant action into a copy of audit.action_log with only its primary key, and one that
inserts it into audit.action_log itself, with the viewer's indexes. Blocks alternate
between the tables so that machine noise hits them alike; medians are reported, as the
throughput ratio to the untracked table and as the time each trigger adds to a
transaction.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from psycopg import sql

import write_overhead as bench

TRIGGERS = (  # (table, reference trigger function or None, what it shows)
    ("clients_plain", None, "untracked"),
    ("clients_empty", "audit.bench_floor_empty", "empty statement trigger (transition tables)"),
    ("clients_log_bare", "audit.bench_floor_log_bare", "+ insert a constant action, log with its primary key only"),
    ("clients_log_full", "audit.bench_floor_log_full", "+ insert a constant action into audit.action_log (viewer's indexes)"),
    ("clients_tracked", None, "audit_capture (audit.track)"),
)


def prepare(server, rows: int) -> str:
    url = bench.prepare_database(server, rows, working_triggers=False)
    with bench.connect(url) as conn:
        bench.run_file(conn, "floor_triggers.sql")
        for table, function, _ in TRIGGERS:
            if function is None:  # untracked, or tracked by prepare_database()
                continue
            bench.run_file(conn, "create_table.sql", table=table,
                           email_index=f"{table}_email_idx", owner_index=f"{table}_owner_id_idx")
            conn.execute(sql.SQL(
                "create trigger floor after update on {} referencing old table as audit_old_rows"
                " new table as audit_new_rows for each statement execute function {}()"
            ).format(sql.Identifier(table), sql.SQL(function)))
            bench.reset_table(conn, table, rows)
    return url


def measure(server, url: str, settings: bench.Settings) -> dict[str, list[float]]:
    tps: dict[str, list[float]] = {table: [] for table, _, _ in TRIGGERS}
    with bench.connect(url) as conn, tempfile.TemporaryDirectory(prefix="pgbench-") as workdir:
        scripts = {}
        for table, _, _ in TRIGGERS:
            path = Path(workdir) / f"{table}.sql"
            path.write_text(bench.render(bench.PGBENCH_DIR / "update.sql", table=table,
                                         rows=settings.rows).as_string(conn))
            scripts[table] = path
        conn.execute("checkpoint")
        for table in scripts:
            if settings.warmup_seconds:
                bench.run_pgbench(server, scripts[table], settings.warmup_seconds,
                                  settings.clients, "off")
        for block in range(1, settings.pgbench_blocks + 1):
            for table in scripts:
                result = bench.run_pgbench(server, scripts[table], settings.block_seconds,
                                           settings.clients, "off")
                tps[table].append(result.tps)
                bench.log(f"  block {block}, {table}: {result.tps:,.0f} tps")
    return tps


def report(tps: dict[str, list[float]], clients: int) -> str:
    plain = statistics.median(tps[bench.PLAIN])
    lines = [f"{'single-row UPDATE, synchronous_commit=off':<72}  {'tps':>7}  ratio  added/tx",
             "-" * 100]
    for table, _, what in TRIGGERS:
        median = statistics.median(tps[table])
        added = (clients / median - clients / plain) * 1e6
        lines.append(f"{what:<72}  {median:>7,.0f}  {median / plain:5.2f}  "
                     + ("" if table == bench.PLAIN else f"{added:+6.0f} us"))
    lines.append("")
    lines.append("added/tx: time each transaction gains per client ("
                 f"{clients} clients / tps, tracked minus untracked).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows, short blocks")
    args = parser.parse_args(argv)
    settings = bench.QUICK if args.quick else bench.Settings(
        rows=100_000, pgbench_blocks=5, block_seconds=4, warmup_seconds=2, bulk_runs=0)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = bench.start_server()
    try:
        url = prepare(server, settings.rows)
        print(report(measure(server, url, settings), settings.clients), flush=True)
        return 0
    except KeyboardInterrupt:
        bench.log("interrupted")
        return 130
    finally:
        bench.log("stopping PostgreSQL")
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
