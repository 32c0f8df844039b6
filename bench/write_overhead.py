"""The write tax of the audit triggers: tracked against untracked, measured in one run.

    python3 -m uv run --frozen python bench/write_overhead.py            # the full run we report
    python3 -m uv run --frozen python bench/write_overhead.py --quick    # a smoke check, < 1 minute
    ... --rows N --json results.json --keep

It starts its own PostgreSQL (fsync and full_page_writes on: durability is real),
installs the audit schema, loads two identical tables (``clients_plain`` untracked,
``clients_tracked`` tracked) and compares them on single-row pgbench workloads,
bulk statements, WAL volume, audit storage and the read side. Plain and tracked
measurements alternate so that machine noise hits both alike; medians are reported.
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from audit_capture import migrate, sqlfiles
from audit_capture.embedded import EmbeddedPostgresql, server_bin_dir

HERE = Path(__file__).resolve().parent
SQL_DIR = HERE / "sql"
PGBENCH_DIR = HERE / "pgbench_scripts"

DATABASE = "bench"
PLAIN, TRACKED = "clients_plain", "clients_tracked"
SEED = "bench_seed"
TRACK_SQL = (
    "select audit.track(%s, 'client', label_column => 'name', "
    "status_columns => '{status}', ignored_columns => '{updated_at}')"
)

# Durability on (no -F, full_page_writes default on): synchronous_commit=on must cost
# what it costs in production. Checkpoints are kept out of the measured blocks.
SERVER_ARGS = (
    "-h 127.0.0.1 -c logging_collector=off -c max_connections=50 "
    "-c shared_buffers=512MB -c max_wal_size=4GB -c checkpoint_timeout=30min"
)


# -- settings and results ------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    rows: int
    pgbench_blocks: int  # blocks per table and workload
    block_seconds: int
    warmup_seconds: int  # one discarded block per table and workload; 0 for none
    bulk_runs: int
    clients: int = 2


FULL = Settings(rows=100_000, pgbench_blocks=5, block_seconds=5, warmup_seconds=2, bulk_runs=3)
QUICK = Settings(rows=10_000, pgbench_blocks=2, block_seconds=2, warmup_seconds=0, bulk_runs=1)


@dataclass(frozen=True)
class Target:
    """``subject`` is "ratio" (tracked / untracked) or "tracked" (the tracked value)."""

    subject: str
    op: str  # ">=", "<=", "<"
    bound: float
    unit: str = "x"

    def met(self, value: float) -> bool:
        return {">=": value >= self.bound, "<=": value <= self.bound, "<": value < self.bound}[
            self.op
        ]

    def __str__(self) -> str:
        what = "ratio" if self.subject == "ratio" else "tracked"
        unit = "" if self.unit == "x" and self.subject == "ratio" else f" {self.unit}"
        return f"{what} {self.op} {self.bound:g}{unit}"


@dataclass
class Row:
    """One line of the report: the samples of both sides, their medians and the verdict."""

    workload: str
    unit: str
    plain: list[float] = field(default_factory=list)
    tracked: list[float] = field(default_factory=list)
    target: Target | None = None
    error: str | None = None

    @property
    def plain_median(self) -> float | None:
        return statistics.median(self.plain) if self.plain else None

    @property
    def tracked_median(self) -> float | None:
        return statistics.median(self.tracked) if self.tracked else None

    @property
    def ratio(self) -> float | None:
        p, t = self.plain_median, self.tracked_median
        return t / p if p and t is not None else None

    @property
    def met(self) -> bool | None:
        if self.error or self.target is None:
            return None
        value = self.ratio if self.target.subject == "ratio" else self.tracked_median
        return None if value is None else self.target.met(value)

    def as_json(self) -> dict:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data.update(
            plain_median=self.plain_median,
            tracked_median=self.tracked_median,
            ratio=self.ratio,
            met=self.met,
        )
        return data


class BenchError(Exception):
    """A workload could not be measured (a trigger error, a failed sanity check)."""


# -- progress -------------------------------------------------------------------------

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- SQL files ------------------------------------------------------------------------


def render(path: Path, **values) -> sql.Composed:
    """A ``.sql`` file as a psycopg template: str values become identifiers, ints literals."""
    params = {
        name: sql.Identifier(value) if isinstance(value, str) else sql.Literal(value)
        for name, value in values.items()
    }
    return sql.SQL(path.read_text()).format(**params)


def run_file(conn: psycopg.Connection, name: str, **values):
    return conn.execute(render(SQL_DIR / name, **values))


# -- the server and the data ----------------------------------------------------------


def start_server() -> EmbeddedPostgresql:
    log("starting PostgreSQL (fsync on, full_page_writes on)")
    server = EmbeddedPostgresql(postgres_args=SERVER_ARGS, boot_timeout=60)
    log(f"server {server.server_version()} at {server.url()}")
    return server


def connect(url: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=autocommit, application_name="write_overhead")


def install_audit_schema(url: str, working_triggers: bool) -> None:
    """The head revision through the migration chain, or the working tree's triggers/."""
    if not working_triggers:
        log("installing the audit schema (migrate.upgrade to head)")
        migrate.upgrade(url)
        return
    log("installing the audit schema from the working tree's triggers/*.sql")
    with connect(url, autocommit=False) as conn:
        sqlfiles.install(conn)
        conn.commit()


def prepare_database(server: EmbeddedPostgresql, rows: int, working_triggers: bool) -> str:
    with connect(server.url("postgres")) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    url = server.url(DATABASE)
    install_audit_schema(url, working_triggers)
    with connect(url) as conn:
        log(f"loading {rows:,} rows into {PLAIN} and {TRACKED}")
        run_file(conn, "create_seed.sql", seed=SEED, rows=rows)
        for table in (PLAIN, TRACKED):
            run_file(
                conn,
                "create_table.sql",
                table=table,
                email_index=f"{table}_email_idx",
                owner_index=f"{table}_owner_id_idx",
            )
        conn.execute(TRACK_SQL, (TRACKED,))
        for table in (PLAIN, TRACKED):
            reset_table(conn, table, rows)
    return url


def reset_table(conn: psycopg.Connection, table: str, rows: int) -> None:
    """Back to the seed rows, no trigger fired, vacuumed and analyzed."""
    with conn.transaction():
        run_file(conn, "reset_table.sql", table=table, seed=SEED, next_id=rows + 1)
    conn.execute(sql.SQL("vacuum analyze {}").format(sql.Identifier(table)))


def settle(conn: psycopg.Connection) -> None:
    """Every measured bulk statement starts alike: audit tables vacuumed, a fresh checkpoint.
    The audit tables are found, not named: their storage may change, action_items() stays."""
    tables = conn.execute(
        "select relname from pg_class where relnamespace = 'audit'::regnamespace and relkind = 'r'"
    ).fetchall()
    if tables:
        conn.execute(
            sql.SQL("vacuum analyze {}").format(
                sql.SQL(", ").join(sql.Identifier("audit", name) for (name,) in tables)
            )
        )
    conn.execute("checkpoint")


def wal_lsn(conn: psycopg.Connection) -> str:
    return conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]


def wal_since(conn: psycopg.Connection, start: str) -> int:
    return int(
        conn.execute(
            "select pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (start,)
        ).fetchone()[0]
    )


def audit_size(conn: psycopg.Connection) -> int:
    return run_file(conn, "audit_size.sql").fetchone()[0]


def action_count(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) from audit.action_log").fetchone()[0]


# -- pgbench --------------------------------------------------------------------------


@dataclass(frozen=True)
class PgbenchWorkload:
    name: str
    script: str  # file in pgbench_scripts/
    synchronous_commit: str
    target: Target


PGBENCH_WORKLOADS = (
    PgbenchWorkload(
        "single-row UPDATE, sync_commit=off", "update.sql", "off", Target("ratio", ">=", 0.75)
    ),
    PgbenchWorkload(
        "single-row INSERT, sync_commit=off", "insert.sql", "off", Target("ratio", ">=", 0.80)
    ),
    PgbenchWorkload(
        "single-row UPDATE, sync_commit=on", "update.sql", "on", Target("ratio", ">=", 0.92)
    ),
)


def pgbench_binary() -> str:
    bin_dir = server_bin_dir()
    if bin_dir is not None and (bin_dir / "pgbench").is_file():
        return str(bin_dir / "pgbench")
    found = shutil.which("pgbench")
    if not found:
        raise SystemExit("pgbench not found: install the postgresql package (postgresql-contrib)")
    return found


def render_scripts(
    conn: psycopg.Connection, workdir: Path, rows: int
) -> dict[tuple[str, str], Path]:
    """pgbench scripts with the table name filled in: {(script, table): path}."""
    paths = {}
    for script in {w.script for w in PGBENCH_WORKLOADS}:
        for table in (PLAIN, TRACKED):
            text = render(PGBENCH_DIR / script, table=table, rows=rows).as_string(conn)
            path = workdir / f"{table}_{script}"
            path.write_text(text)
            paths[script, table] = path
    return paths


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    transactions: int


def run_pgbench(
    server: EmbeddedPostgresql, script: Path, seconds: int, clients: int, synchronous_commit: str
) -> PgbenchResult:
    command = [
        pgbench_binary(),
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(clients),
        "-T",
        str(seconds),
        "-f",
        str(script),
        "-h",
        "127.0.0.1",
        "-p",
        str(server.settings["port"]),
        "-U",
        "postgres",
        DATABASE,
    ]
    env = dict(os.environ, PGOPTIONS=f"-c synchronous_commit={synchronous_commit}")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    output = done.stdout + done.stderr
    tps = re.search(r"^tps = ([\d.]+)", output, re.M)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if done.returncode != 0 or not tps or not processed or (failed and int(failed[1])):
        errors = [line for line in output.splitlines() if "ERROR" in line or "error" in line]
        raise BenchError(
            f"pgbench failed (exit {done.returncode}) on {script.name}: "
            + ("; ".join(errors[:3]) or output.strip()[-500:])
        )
    return PgbenchResult(float(tps[1]), int(processed[1]))


def measure_pgbench(
    server, conn, scripts, settings: Settings, workload: PgbenchWorkload, tps: Row, wal: Row
) -> None:
    """Interleaved blocks, plain then tracked: tps and WAL bytes per transaction."""
    for table in (PLAIN, TRACKED):
        if settings.warmup_seconds:
            run_pgbench(
                server,
                scripts[workload.script, table],
                settings.warmup_seconds,
                settings.clients,
                workload.synchronous_commit,
            )
    for block in range(1, settings.pgbench_blocks + 1):
        for table, tps_side, wal_side in (
            (PLAIN, tps.plain, wal.plain),
            (TRACKED, tps.tracked, wal.tracked),
        ):
            start = wal_lsn(conn)
            result = run_pgbench(
                server,
                scripts[workload.script, table],
                settings.block_seconds,
                settings.clients,
                workload.synchronous_commit,
            )
            tps_side.append(result.tps)
            wal_side.append(wal_since(conn, start) / max(result.transactions, 1))
            log(f"  {workload.name}, block {block}, {table}: {result.tps:,.0f} tps")


# -- bulk statements ------------------------------------------------------------------


@dataclass
class BulkRun:
    seconds: float
    wal_bytes: int
    audit_growth: int


def run_bulk(conn: psycopg.Connection, table: str, statement: str, rows: int) -> BulkRun:
    """One timed statement (autocommit: its commit is in the time) on freshly reset data."""
    actions = action_count(conn)
    reset_table(conn, table, rows)
    if action_count(conn) != actions:
        raise BenchError(f"resetting {table} fired the audit triggers")
    settle(conn)
    size, lsn = audit_size(conn), wal_lsn(conn)
    query = sql.SQL(statement).format(table=sql.Identifier(table))
    started = time.perf_counter()
    cursor = conn.execute(query)
    seconds = time.perf_counter() - started
    if cursor.rowcount != rows:
        raise BenchError(f"{statement} on {table} changed {cursor.rowcount} rows, not {rows}")
    return BulkRun(seconds, wal_since(conn, lsn), audit_size(conn) - size)


def check_bulk_action(conn: psycopg.Connection, rows: int) -> int:
    """The id of the action the tracked bulk statement wrote, after a sanity check."""
    action_id, row_count = conn.execute(
        "select id, row_count from audit.action_log"
        " where id = (select max(id) from audit.action_log)"
    ).fetchone() or (None, None)
    if row_count != rows:
        raise BenchError(f"the last action ({action_id}) has row_count {row_count}, not {rows}")
    items, status_changes = run_file(conn, "check_items.sql", action_id=action_id).fetchone()
    if items != rows:
        raise BenchError(f"audit.action_items({action_id}) returns {items} rows, not {rows}")
    if status_changes != rows:
        raise BenchError(
            f"audit.action_items({action_id}): only {status_changes} of {rows} "
            "items show the status change to 'closed'"
        )
    return action_id


def time_read_in_server(conn: psycopg.Connection, action_id: int) -> float:
    started = time.perf_counter()
    run_file(conn, "read_items.sql", action_id=action_id).fetchone()
    return time.perf_counter() - started


def time_fetch_to_client(url: str, action_id: int, rows: int, parse_json: bool = True) -> float:
    """All items through a server-side cursor, 10,000 at a time. Without parse_json the
    jsonb columns arrive as str: the time without psycopg's json.loads of every row."""
    with connect(url, autocommit=False) as conn:
        if not parse_json:
            conn.adapters.register_loader("jsonb", TextLoader)
        started = time.perf_counter()
        with conn.cursor(name="items") as cursor:
            cursor.itersize = 10_000
            cursor.execute("select * from audit.action_items(%s)", (action_id,))
            fetched = sum(1 for _ in cursor)
        conn.commit()
        seconds = time.perf_counter() - started
    if fetched != rows:
        raise BenchError(f"fetched {fetched} items of action {action_id}, not {rows}")
    return seconds


def measure_read_side(url: str, conn: psycopg.Connection, rows: int) -> tuple[float, float, float]:
    """After the tracked bulk UPDATE: its items read in the server, then fetched (jsonb
    parsed into Python objects, then as text)."""
    action_id = check_bulk_action(conn, rows)
    return (
        time_read_in_server(conn, action_id),
        time_fetch_to_client(url, action_id, rows),
        time_fetch_to_client(url, action_id, rows, parse_json=False),
    )


def measure_bulk(url: str, conn: psycopg.Connection, settings: Settings) -> list[Row]:
    n = settings.rows
    update = Row(f"UPDATE {n:,} rows, status change (s)", "s", target=Target("ratio", "<=", 2.5))
    update_wal = Row(f"  WAL, UPDATE {n:,} rows (MB)", "MB", target=Target("ratio", "<=", 1.5))
    storage = Row(
        "  audit storage per changed row (B)", "B", target=Target("tracked", "<=", 150, "B")
    )
    read_server = Row(
        f"read {n:,} items in the server (s)", "s", target=Target("tracked", "<", 1, "s")
    )
    read_client = Row(
        f"fetch {n:,} items to the client (s)", "s", target=Target("tracked", "<", 1, "s")
    )
    read_text = Row(f"  fetch {n:,} items, jsonb as text (s)", "s")
    delete = Row(f"DELETE {n:,} rows (s)", "s", target=Target("ratio", "<=", 6))
    delete_wal = Row(f"  WAL, DELETE {n:,} rows (MB)", "MB")

    for run in range(1, settings.bulk_runs + 1):
        for table in (PLAIN, TRACKED):
            side = 1 if table == TRACKED else 0
            result = guarded(
                update, partial(run_bulk, conn, table, "update {table} set status = 'closed'", n)
            )
            if result is None:
                continue
            (update.plain, update.tracked)[side].append(result.seconds)
            (update_wal.plain, update_wal.tracked)[side].append(result.wal_bytes / 1e6)
            (storage.plain, storage.tracked)[side].append(result.audit_growth / n)
            log(
                f"  UPDATE run {run}, {table}: {result.seconds:.3f} s, "
                f"WAL {result.wal_bytes / 1e6:.1f} MB, audit +{result.audit_growth / 1e6:.1f} MB"
            )
            if side:
                times = guarded(read_server, lambda: measure_read_side(url, conn, n))
                if times:
                    read_server.tracked.append(times[0])
                    read_client.tracked.append(times[1])
                    read_text.tracked.append(times[2])
                    log(
                        f"  read side: {times[0]:.3f} s in the server, {times[1]:.3f} s to "
                        f"the client ({times[2]:.3f} s with jsonb as text)"
                    )
        for table in (PLAIN, TRACKED):
            side = 1 if table == TRACKED else 0
            result = guarded(delete, partial(run_bulk, conn, table, "delete from {table}", n))
            if result is None:
                continue
            (delete.plain, delete.tracked)[side].append(result.seconds)
            (delete_wal.plain, delete_wal.tracked)[side].append(result.wal_bytes / 1e6)
            log(
                f"  DELETE run {run}, {table}: {result.seconds:.3f} s, "
                f"WAL {result.wal_bytes / 1e6:.1f} MB"
            )
    for table in (PLAIN, TRACKED):
        reset_table(conn, table, n)
    return [update, update_wal, storage, delete, delete_wal, read_server, read_client, read_text]


def guarded(row: Row, measure: Callable):
    """Run one measurement; on a database or sanity error, note it on the row and go on."""
    try:
        return measure()
    except (psycopg.Error, BenchError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log(f"ERROR in {row.workload.strip()}: {message}")
        row.error = row.error or message
        return None


# -- the report -----------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f}"
    if unit == "MB":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def render_table(rows: list[Row], settings: Settings) -> str:
    header = ("workload", "untracked", "tracked", "ratio", "target", "met")
    lines = [
        (
            row.workload,
            fmt(row.plain_median, row.unit),
            fmt(row.tracked_median, row.unit),
            f"{row.ratio:.2f}" if row.ratio is not None else "-",
            str(row.target) if row.target else "(info)",
            "ERROR" if row.error else {True: "yes", False: "NO", None: "-"}[row.met],
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    align = ["<", ">", ">", ">", "<", "<"]
    out = [
        "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(line, align, widths, strict=True)).rstrip()
        for line in [header, tuple("-" * w for w in widths), *lines]
    ]
    errors = [f"ERROR {row.workload.strip()}: {row.error}" for row in rows if row.error]
    notes = [
        f"{settings.rows:,} rows per table; pgbench -c {settings.clients}: median of "
        f"{settings.pgbench_blocks} interleaved blocks of {settings.block_seconds} s; "
        f"bulk statements: median of {settings.bulk_runs} run(s), each after a reset, "
        "VACUUM and CHECKPOINT.",
    ]
    return "\n".join(out + [""] + notes + errors)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke check: 10,000 rows, short blocks, one run of each bulk op",
    )
    parser.add_argument("--rows", type=int, help="rows per table (default 100,000; 10,000 quick)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--working-triggers",
        action="store_true",
        help="install triggers/*.sql as they are now instead of the head "
        "revision's frozen SQL (to iterate before scripts/freeze-sql)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the server running at the end, until Ctrl-C (for profiling)",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else FULL
    if args.rows:
        return Settings(**{**asdict(base), "rows": args.rows})
    return base


def run(server: EmbeddedPostgresql, settings: Settings, working_triggers: bool) -> list[Row]:
    url = prepare_database(server, settings.rows, working_triggers)
    rows: list[Row] = []
    with connect(url) as conn, tempfile.TemporaryDirectory(prefix="pgbench-") as workdir:
        scripts = render_scripts(conn, Path(workdir), settings.rows)
        for workload in PGBENCH_WORKLOADS:
            log(f"pgbench: {workload.name}")
            conn.execute("checkpoint")
            tps = Row(f"{workload.name} (tps)", "tps", target=workload.target)
            wal = Row(f"  WAL per tx, {workload.name} (B)", "B")
            guarded(
                tps, partial(measure_pgbench, server, conn, scripts, settings, workload, tps, wal)
            )
            rows.extend([tps, wal])
        log(f"bulk statements ({settings.bulk_runs} run(s) each)")
        rows.extend(measure_bulk(url, conn, settings))
    return rows


def wait_for_interrupt(server: EmbeddedPostgresql) -> None:
    print(f"server kept running: {server.url(DATABASE)}  (Ctrl-C to stop it)", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    # Ctrl-C and SIGTERM end the run through the finally below, so the server is always
    # stopped (SIGINT too: a shell starting us in the background would have ignored it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = start_server()
    try:
        rows = run(server, settings, args.working_triggers)
        print(render_table(rows, settings), flush=True)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "settings": asdict(settings),
                        "server_args": SERVER_ARGS,
                        "audit_sql": "triggers/"
                        if args.working_triggers
                        else "migrate.upgrade(head)",
                        "server_version": server.server_version(),
                        "results": [row.as_json() for row in rows],
                    },
                    indent=2,
                )
                + "\n"
            )
            log(f"results written to {args.json}")
        if args.keep:
            wait_for_interrupt(server)
        return 1 if any(row.error for row in rows) else 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        log("stopping PostgreSQL")
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
