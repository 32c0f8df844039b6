"""Replication lag of the audit server while the primary writes (issue 13, item 4).

    python3 -m uv run --frozen python bench/replication_lag.py              # 60 s, 4 clients
    python3 -m uv run --frozen python bench/replication_lag.py --seconds 20 --clients 2
    ... --history 1000000     # first a million generated actions: times the initial copy
    ... --json results.json

It starts two PostgreSQL servers of its own (the primary with wal_level = logical,
durability on as in bench/write_overhead.py), installs the audit schema and the sample
CRM on the primary, runs ``audit-capture replicate``'s code to an empty database of the
second, waits for the initial copy, then runs pgbench on the primary (tracked single-row
inserts and updates of clients, the write benchmark's workload on the sample CRM, plus
one bulk update of 1,000 clients per client every 50 transactions) and samples, four
times a second, on the primary the slot's lag in bytes (pg_current_wal_lsn() -
confirmed_flush_lsn) and pg_stat_replication.replay_lag, and on the subscriber the age
of its newest replicated action (now() - max(occurred_at): both servers share this
machine's clock). After pgbench stops it times how long the subscriber takes to hold
every action. Progress goes to stderr, the table to stdout. Indicative only: both
servers and pgbench share the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from audit_capture import migrate, replication
from audit_capture.embedded import EmbeddedPostgresql, server_bin_dir
from audit_capture.sample import install_crm

DATABASE = "crm"
AUDIT_DATABASE = "crm_audit"
SERVER_ARGS = (
    "-h 127.0.0.1 -c logging_collector=off -c max_connections=50 "
    "-c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min"
)
PRIMARY_ARGS = f"{SERVER_ARGS} -c wal_level=logical -c max_replication_slots=10"
CLIENTS_ROWS = 20_000

SCRIPT = """\\set id random(1, {rows})
\\set kind random(1, 100)
begin;
select set_config('audit.actor_id', 'agent-' || :id % 50, true),
       set_config('audit.actor_type', 'system', true), set_config('audit.source', 'ai', true);
insert into clients (name, email, notes)
values ('Client ' || :id, md5(random()::text) || '@example.com', md5(random()::text));
update clients set notes = md5(random()::text) || ' follow-up call' where id = :id;
commit;
\\if :kind <= 2
update clients set notes = 'bulk ' || md5(random()::text) where id between :id and :id + 999;
\\endif
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pgbench_binary() -> str:
    bin_dir = server_bin_dir()
    if bin_dir is not None and (bin_dir / "pgbench").is_file():
        return str(bin_dir / "pgbench")
    found = shutil.which("pgbench")
    if not found:
        raise SystemExit("pgbench not found: install the postgresql package (postgresql-contrib)")
    return found


def create_database(server: EmbeddedPostgresql, name: str) -> str:
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    return server.url(name)


def prepare_primary(url: str) -> None:
    migrate.upgrade(url, "head")
    with psycopg.connect(url) as conn, conn.transaction():
        install_crm(conn)
        conn.execute(
            "insert into clients (name, email) select 'Seed ' || g, g || '@example.com'"
            " from generate_series(1, %s) g",
            (CLIENTS_ROWS,),
        )


def wait_until(what: str, check, timeout: float = 600) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def one(url: str, query: str):
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return None if row is None else row[0]


@dataclass
class Sample:
    at: float
    lag_bytes: int
    replay_lag_s: float | None
    newest_age_s: float | None
    retained_bytes: int


def sample(
    primary: psycopg.Connection, subscriber: psycopg.Connection, started: float, since
) -> Sample:
    """One look at both sides; the age of the subscriber's newest action counts only
    actions written since pgbench started (``since``, the server's clock), not the
    copy's."""
    lag, replay, retained = primary.execute(
        "select pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn),"
        " extract(epoch from r.replay_lag), pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)"
        " from pg_replication_slots s left join pg_stat_replication r on r.pid = s.active_pid"
        " where s.slot_type = 'logical' and s.slot_name not like 'pg\\_%'"
    ).fetchone()
    age = subscriber.execute(
        "select extract(epoch from clock_timestamp() - max(occurred_at)) from audit.action_log"
        " where occurred_at >= %s",
        (since,),
    ).fetchone()[0]
    return Sample(
        at=time.monotonic() - started,
        lag_bytes=int(lag),
        replay_lag_s=None if replay is None else float(replay),
        newest_age_s=None if age is None else float(age),
        retained_bytes=int(retained),
    )


def quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}

    def at(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"p50": statistics.median(values), "p95": at(0.95), "max": values[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="pgbench duration (default 60)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (default 4)")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="N",
        help="first add N generated actions (audit-capture demo --history's) to the primary,"
        " to time the initial copy of a filled log (default 0)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    log("starting the primary (wal_level = logical) and the audit server")
    primary_server = EmbeddedPostgresql(postgres_args=PRIMARY_ARGS)
    subscriber_server = EmbeddedPostgresql(postgres_args=SERVER_ARGS)
    try:
        primary = create_database(primary_server, DATABASE)
        subscriber = create_database(subscriber_server, AUDIT_DATABASE)
        prepare_primary(primary)
        if args.history:
            from audit_capture.demo.history import add_history, history_end

            log(f"adding {args.history:,} history actions to the primary")
            add_history(primary, args.history, end_at=history_end(1))
        copied = one(primary, "select count(*) from audit.action_log")
        log_bytes = one(
            primary,
            "select sum(pg_total_relation_size(c.oid)) from pg_class c"
            " where c.relnamespace = 'audit'::regnamespace and c.relkind = 'r'",
        )
        started = time.monotonic()
        replication.replicate(primary, subscriber, say=lambda line: log(f"  {line}"))
        copy = wait_until(
            "the initial copy",
            lambda: one(
                subscriber,
                "select bool_and(srsubstate = 'r') and count(*) = 2 from pg_subscription_rel",
            ),
        )
        setup_seconds = time.monotonic() - started
        log(f"replicate + initial copy: {setup_seconds:.1f} s (copy {copy:.1f} s)")

        with tempfile.TemporaryDirectory() as workdir:
            script = Path(workdir) / "writes.sql"
            script.write_text(SCRIPT.format(rows=CLIENTS_ROWS))
            before = one(primary, "select count(*) from audit.action_log")
            wal_start = one(primary, "select pg_current_wal_lsn()::text")
            command = [
                pgbench_binary(), "-n", "-c", str(args.clients), "-j", str(args.clients),
                "-T", str(args.seconds), "-f", str(script), "-h", "127.0.0.1",
                "-p", str(primary_server.settings["port"]), "-U", "postgres", DATABASE,
            ]  # fmt: skip
            log(f"pgbench: {args.clients} clients for {args.seconds} s, sampling the lag")
            samples: list[Sample] = []
            with (
                psycopg.connect(primary, autocommit=True) as pconn,
                psycopg.connect(subscriber, autocommit=True) as sconn,
            ):
                bench_started = time.monotonic()
                since = pconn.execute("select clock_timestamp()").fetchone()[0]
                bench = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    env=dict(os.environ, PGOPTIONS="-c synchronous_commit=on"),
                )  # fmt: skip
                while bench.poll() is None:
                    samples.append(sample(pconn, sconn, bench_started, since))
                    time.sleep(0.25)
                output = bench.communicate()[0]
                written = one(primary, "select count(*) from audit.action_log") - before
                wal_bytes = int(
                    one(primary, f"select pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal_start}')")
                )
                newest = one(primary, "select max(id) from audit.action_log")
                catch_up = wait_until(
                    "the subscriber holds every action",
                    lambda: (
                        one(
                            subscriber, f"select count(*) from audit.action_log where id = {newest}"
                        )
                        == 1
                    ),
                )
        tps = re.search(r"^tps = ([\d.]+)", output, re.M)
        if bench.returncode != 0 or tps is None:
            raise SystemExit(f"pgbench failed: {output.strip()[-500:]}")
        results = {
            "seconds": args.seconds,
            "clients": args.clients,
            "tps": float(tps[1]),
            "actions_written": written,
            "actions_per_second": written / args.seconds,
            "lag_bytes": quantiles([s.lag_bytes for s in samples]),
            "replay_lag_s": quantiles(
                [s.replay_lag_s for s in samples if s.replay_lag_s is not None]
            ),
            "newest_action_age_s": quantiles(
                [s.newest_age_s for s in samples if s.newest_age_s is not None]
            ),
            "retained_wal_bytes_max": max(s.retained_bytes for s in samples),
            "wal_bytes_per_action": wal_bytes / max(written, 1),
            "catch_up_after_stop_s": catch_up,
            "samples": len(samples),
            "initial_copy": {
                "actions": copied,
                "audit_schema_bytes": int(log_bytes or 0),
                "replicate_and_copy_s": setup_seconds,
            },
        }
    finally:
        subscriber_server.stop()  # its apply worker first, then the primary it reads
        primary_server.stop()

    def row(name: str, values: dict[str, float], unit: str, scale: float = 1.0) -> str:
        if not values:
            return f"| {name} | - | - | - |"
        cells = " | ".join(f"{values[k] / scale:,.1f} {unit}" for k in ("p50", "p95", "max"))
        return f"| {name} | {cells} |"

    print(
        f"replicate and the initial copy of {copied:,} actions"
        f" ({(log_bytes or 0) / 1024**2:,.0f} MB of audit tables): {setup_seconds:.1f} s\n"
    )
    print(
        f"pgbench {args.clients} clients x {args.seconds} s: {results['tps']:,.0f} tps,"
        f" {written:,} actions ({results['actions_per_second']:,.0f}/s)\n"
    )
    print("| lag while writing | p50 | p95 | max |\n| --- | --- | --- | --- |")
    print(row("slot lag (primary WAL not yet confirmed)", results["lag_bytes"], "kB", 1024))
    print(row("pg_stat_replication.replay_lag", results["replay_lag_s"], "ms", 0.001))
    print(row("age of the subscriber's newest action", results["newest_action_age_s"], "ms", 0.001))
    print(
        f"\nWAL retained by the slot, at most: {results['retained_wal_bytes_max'] / 1024:,.0f} kB;"
        f" the subscriber held every action {catch_up:.2f} s after pgbench stopped;"
        f" WAL written per action (the CRM's rows, their audit, the rest):"
        f" {results['wal_bytes_per_action'] / 1024:,.1f} kB, what a slot keeps per action"
        " while its subscriber is down"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
