"""The floor of the single-row write tax: what the cheapest conceivable trigger costs.

    python3 -m uv run --frozen python bench/write_floor.py            # ~6 minutes
    python3 -m uv run --frozen python bench/write_floor.py --quick    # ~1 minute

bench/write_overhead.py says what audit_capture costs; this says how low any design
that writes the action into the log at commit could go on the same server. Beside the
untracked table and the tracked one it runs write_overhead's three single-row workloads
(pgbench, 2 clients, prepared: UPDATE and INSERT with synchronous_commit=off, UPDATE
with it on) on copies of the table that carry reference triggers
(bench/sql/floor_triggers.sql): one that does nothing, one that inserts a constant
action into a copy of audit.action_log with only its primary key, and one that inserts
it into audit.action_log itself, with the viewer's indexes. Blocks alternate between
the tables so that machine noise hits them alike; medians are reported, as the
throughput ratio to the untracked table and as the time each trigger adds to a
transaction.

Then the same for the 100,000-row DELETE (median of 3, each on freshly reset data): the
empty trigger (the transition table alone), one that copies the deleted rows as they are
into an unindexed table of the same row type (the cheapest way to keep them), and one
that turns them into JSON in chunks of 1,000 as audit_capture does but stores nothing
(the price of the format audit.action_items speaks).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import write_overhead as bench
from psycopg import sql

TRIGGERS = (  # (table, reference trigger function or None, what it shows)
    ("clients_plain", None, "untracked"),
    ("clients_empty", "audit.bench_floor_empty", "empty statement trigger (transition tables)"),
    (
        "clients_log_bare",
        "audit.bench_floor_log_bare",
        "+ insert a constant action, log with its primary key only",
    ),
    (
        "clients_log_full",
        "audit.bench_floor_log_full",
        "+ insert a constant action into audit.action_log (viewer's indexes)",
    ),
    ("clients_tracked", None, "audit_capture (audit.track)"),
)
BULK_TRIGGERS = (  # the same for one DELETE of every row (DELETE triggers only)
    ("clients_plain", None, "untracked"),
    ("clients_empty", "audit.bench_floor_empty", "empty statement trigger (transition table)"),
    (
        "clients_rows_copy",
        "audit.bench_floor_rows_copy",
        "copy the rows as they are into an unindexed table",
    ),
    (
        "clients_rows_json",
        "audit.bench_floor_rows_json",
        "turn the rows into JSON in chunks of 1,000, store nothing",
    ),
    ("clients_tracked", None, "audit_capture (audit.track)"),
)
DELETE_TARGET = 6.0  # the bound for the 100,000-row DELETE, as a time ratio


def prepare(server, rows: int) -> str:
    url = bench.prepare_database(server, rows, working_triggers=False)
    with bench.connect(url) as conn:
        bench.run_file(conn, "floor_triggers.sql")
        for table, function, _ in TRIGGERS:
            if function is None:  # untracked, or tracked by prepare_database()
                continue
            bench.create_table(conn, bench.CLIENTS, table)
            # the same transition tables as audit_capture's own triggers ask for
            conn.execute(
                sql.SQL(
                    "create trigger floor_update after update on {0} referencing old table as"
                    " audit_old_rows new table as audit_new_rows for each statement"
                    " execute function {1}();"
                    " create trigger floor_insert after insert on {0} referencing new table as"
                    " audit_new_rows for each statement execute function {1}()"
                ).format(sql.Identifier(table), sql.SQL(function))
            )
            bench.reset_table(conn, table, rows)
        for table, function, _ in BULK_TRIGGERS:
            if function is None:
                continue
            if table not in (t for t, _, _ in TRIGGERS):
                bench.create_table(conn, bench.CLIENTS, table)
                bench.reset_table(conn, table, rows)
            conn.execute(
                sql.SQL(
                    "create trigger floor_delete after delete on {} referencing old table as"
                    " audit_old_rows for each statement execute function {}()"
                ).format(sql.Identifier(table), sql.SQL(function))
            )
    return url


Tps = dict[str, dict[str, list[float]]]  # workload name -> table -> tps of each block


def measure(server, url: str, settings: bench.Settings) -> Tps:
    tps: Tps = {w.name: {table: [] for table, _, _ in TRIGGERS} for w in bench.PGBENCH_WORKLOADS}
    with bench.connect(url) as conn, tempfile.TemporaryDirectory(prefix="pgbench-") as workdir:
        scripts = {}
        for workload in bench.PGBENCH_WORKLOADS:
            for table, _, _ in TRIGGERS:
                script = bench.CLIENTS.script(workload.kind)
                path = Path(workdir) / f"{table}_{workload.kind}.sql"
                path.write_text(
                    bench.render(
                        bench.PGBENCH_DIR / script, table=table, rows=settings.rows
                    ).as_string(conn)
                )
                scripts[workload.name, table] = path
        conn.execute("checkpoint")
        for workload in bench.PGBENCH_WORKLOADS:
            bench.log(workload.name)
            for table, _, _ in TRIGGERS:
                if settings.warmup_seconds:
                    bench.run_pgbench(
                        server,
                        scripts[workload.name, table],
                        settings.warmup_seconds,
                        settings.clients,
                        workload.synchronous_commit,
                    )
            for block in range(1, settings.pgbench_blocks + 1):
                for table, _, _ in TRIGGERS:
                    result = bench.run_pgbench(
                        server,
                        scripts[workload.name, table],
                        settings.block_seconds,
                        settings.clients,
                        workload.synchronous_commit,
                    )
                    tps[workload.name][table].append(result.tps)
                    bench.log(f"  block {block}, {table}: {result.tps:,.0f} tps")
    return tps


def measure_delete(url: str, settings: bench.Settings) -> dict[str, list[float]]:
    """One DELETE of every row per table and run, on freshly reset data, tables interleaved."""
    seconds: dict[str, list[float]] = {table: [] for table, _, _ in BULK_TRIGGERS}
    with bench.connect(url) as conn:
        for run in range(1, settings.bulk_runs + 1):
            for table, _, _ in BULK_TRIGGERS:
                result = bench.run_bulk(conn, table, "delete from {table}", settings.rows)
                seconds[table].append(result.seconds)
                bench.log(f"  DELETE run {run}, {table}: {result.seconds:.3f} s")
            for table, _, _ in BULK_TRIGGERS:
                bench.reset_table(conn, table, settings.rows)
    return seconds


def report_delete(seconds: dict[str, list[float]], rows: int) -> str:
    plain = statistics.median(seconds[bench.PLAIN])
    lines = [f"{f'DELETE of {rows:,} rows':<72}  {'s':>7}  ratio", "-" * 100]
    for table, _, what in BULK_TRIGGERS:
        median = statistics.median(seconds[table])
        lines.append(f"{what:<72}  {median:>7.3f}  {median / plain:5.2f}")
    lines.append(f"{'':<72}  {'target':>7}  {DELETE_TARGET:5.2f}")
    return "\n".join(lines)


def report(tps: Tps, clients: int) -> str:
    lines = []
    for workload in bench.PGBENCH_WORKLOADS:
        by_table = tps[workload.name]
        plain = statistics.median(by_table[bench.PLAIN])
        lines += [f"{workload.name:<72}  {'tps':>7}  ratio  added/tx", "-" * 100]
        for table, _, what in TRIGGERS:
            median = statistics.median(by_table[table])
            added = (clients / median - clients / plain) * 1e6
            lines.append(
                f"{what:<72}  {median:>7,.0f}  {median / plain:5.2f}  "
                + ("" if table == bench.PLAIN else f"{added:+6.0f} us")
            )
        lines.append(f"{'':<72}  {'target':>7}  {workload.target.bound:5.2f}")
        lines.append("")
    lines.append(
        "added/tx: time each transaction gains per client ("
        f"{clients} clients / tps, with the trigger minus untracked)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows, short blocks")
    args = parser.parse_args(argv)
    settings = (
        bench.QUICK
        if args.quick
        else bench.Settings(
            rows=100_000, pgbench_blocks=5, block_seconds=4, warmup_seconds=2, bulk_runs=3
        )
    )

    def body(server: bench.EmbeddedPostgresql) -> int:
        url = prepare(server, settings.rows)
        tps = measure(server, url, settings)
        bench.log("bulk DELETE")
        seconds = measure_delete(url, settings)
        print(report(tps, settings.clients), flush=True)
        print(report_delete(seconds, settings.rows), flush=True)
        return 0

    return bench.run_on_server("write_floor", None, body)


if __name__ == "__main__":
    sys.exit(main())
