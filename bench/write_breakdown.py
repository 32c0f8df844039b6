"""What one single-row statement pays for audit_capture, component by component.

    python3 -m uv run --frozen python bench/write_breakdown.py            # ~6 minutes
    python3 -m uv run --frozen python bench/write_breakdown.py --quick    # ~1 minute
    ... --pgbin DIR     the server's binaries (PostgreSQL 18: see write_overhead.py)

bench/write_overhead.py measures throughput, which on a shared machine moves with
whatever else runs. This measures what the server spends: each variant is one
connection that runs the same single-row statement over and over (prepared,
autocommit, synchronous_commit off, a random row each time), and the figure is its
backend's CPU time per statement (/proc/<pid>/schedstat: nanoseconds on the CPU),
the median over rounds in which the variants take turns. The difference between two
neighbouring variants is the price of one thing:

* the trigger alone (bench/sql/breakdown.sql): a plpgsql statement trigger with
  audit_capture's transition tables that does nothing; SECURITY DEFINER; SET
  search_path; SET jit (audit_capture's function attributes);
* the log row: one constant action into an unpartitioned copy of the log with its
  primary key only, then with each of the log's other indexes alone, then all of them,
  then into audit.action_log itself (partitioned);
* audit_capture's own work, by A/B variants of the table's generated capture function:
  as shipped, without the diff of the changed columns, without reading the context,
  without checking it;
* the classic row-level trigger (bench/sql/classic_audit.sql), for scale;
* per column: the same UPDATE on the 60-column shape, untracked and tracked.

The generated function is read back (pg_get_functiondef), one part of its one-row
query replaced, and installed on a copy of the tracked table; each replacement must
match, or the run stops naming it. track_functions gives a second opinion: the capture
function's own mean time per call, as PostgreSQL counts it.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import write_overhead as bench
from psycopg import sql

UPDATE = (
    "update {} set notes = md5(random()::text) || ' follow-up call', updated_at = now()"
    " where id = %s"
)
UPDATE_WIDE = (
    "update {} set intake_summary = md5(random()::text) || ' follow-up call, new symptoms'"
    " where id = %s"
)
INSERT = (
    "insert into {} (name, email, phone, status, condition, notes, owner_id)"
    " values ('Client ' || %s, md5(random()::text) || '@example.com', '+1-555-0101', 'new',"
    " 'stable', md5(random()::text) || ' called back, wants a follow-up', %s)"
)

# The parts of the generated one-row queries that the A/B variants replace (their text
# as audit.capture_query() writes it, 06_capture_queries.sql)
CONTEXT_READ = re.compile(
    r"cross join \(select nullif\(current_setting\('audit\.actor_id', true\), ''\) as actor_id,"
    r".*?as db_user\) c\n",
    re.S,
)
CONTEXT_CONSTANT = (
    "cross join (select null::text as actor_id, null::text as actor_name,"
    " 'system'::text as actor_type, null::text as source, null::text as request_id,"
    " null::text as kind_override, null::jsonb as context, 'postgres'::text as db_user) c\n"
)
CONTEXT_CHECK = re.compile(
    r"  and coalesce\(current_setting\('audit\.batch', true\), ''\) = ''\n"
    r"  and c\.actor_type = any .*?and coalesce\(length\(c\.request_id\), 0\) <= 200\n",
    re.S,
)
UPDATE_DIFF = re.compile(
    r"cross join lateral \(select case when c\.kind_override is null or c\.kind_override ="
    r" 'import' then case when o\.status is distinct from n\.status.*?\) k\n",
    re.S,
)
UPDATE_DIFF_CONSTANT = "cross join lateral (select 'update' as kind, '{}'::jsonb as changes) k\n"
UPDATE_CHANGED = re.compile(r"and \(k\.changes <> '\{\}'::jsonb\);")


@dataclass(frozen=True)
class Variant:
    name: str  # the table's suffix
    what: str
    statement: str  # UPDATE, UPDATE_WIDE or INSERT
    trigger: str | None = None  # a function of breakdown.sql, for each statement
    capture: str | None = None  # "untracked", "tracked", "classic" (write_overhead's sides)
    patches: tuple[tuple[re.Pattern, str], ...] = ()  # for a tracked copy
    shape: bench.Shape = bench.CLIENTS


def variants() -> list[Variant]:
    log_rows = [
        ("bare", "+ one constant action: a copy of the log with its primary key only"),
        ("time", "  ... + the time index (occurred_at desc, id desc) alone"),
        ("kind", "  ... + the kind index (actor_type, action_type, source, resource_type) alone"),
        ("actor", "  ... + the two actor indexes alone (by id and source; by name)"),
        ("text_words", "  ... + the text index, words only, alone"),
        ("text_day", "  ... + the text index, words and the day (no month), alone"),
        ("text", "  ... + the text index (words and days) alone"),
        ("all", "  ... + every index of the log (unpartitioned)"),
    ]
    return [
        Variant("plain", "untracked", UPDATE, capture=bench.UNTRACKED),
        Variant(
            "bd_plain",
            "statement trigger, transition tables, doing nothing",
            UPDATE,
            trigger="audit.bd_empty_plain",
        ),
        Variant("bd_definer", "+ SECURITY DEFINER", UPDATE, trigger="audit.bd_empty_definer"),
        Variant("bd_path", "+ SET search_path", UPDATE, trigger="audit.bd_empty_search_path"),
        Variant(
            "bd_jit",
            "+ SET jit = off (audit_capture's attributes)",
            UPDATE,
            trigger="audit.bd_empty_jit",
        ),
        *(
            Variant(f"bd_{name}", what, UPDATE, trigger=f"audit.bd_row_{name}")
            for name, what in log_rows
        ),
        Variant(
            "bd_log",
            "+ one constant action into audit.action_log (partitioned)",
            UPDATE,
            trigger="audit.bd_row_action_log",
        ),
        Variant("tracked", "audit_capture as shipped", UPDATE, capture=bench.AUDIT_CAPTURE),
        Variant(
            "ab_nodiff",
            "  ... without the diff of the changed columns",
            UPDATE,
            patches=((UPDATE_DIFF, UPDATE_DIFF_CONSTANT), (UPDATE_CHANGED, "and true;")),
        ),
        Variant(
            "ab_noread",
            "  ... without reading the context",
            UPDATE,
            patches=((CONTEXT_READ, CONTEXT_CONSTANT),),
        ),
        Variant(
            "ab_nocheck",
            "  ... without checking the context",
            UPDATE,
            patches=((CONTEXT_CHECK, ""),),
        ),
        Variant("classic", "the classic row-level trigger (hstore)", UPDATE, capture=bench.CLASSIC),
        Variant(
            "wide_plain",
            "60 columns: untracked",
            UPDATE_WIDE,
            capture=bench.UNTRACKED,
            shape=bench.WIDE,
        ),
        Variant(
            "wide_tracked",
            "60 columns: audit_capture",
            UPDATE_WIDE,
            capture=bench.AUDIT_CAPTURE,
            shape=bench.WIDE,
        ),
        Variant(
            "wide_classic",
            "60 columns: classic",
            UPDATE_WIDE,
            capture=bench.CLASSIC,
            shape=bench.WIDE,
        ),
        Variant("ins_plain", "INSERT: untracked", INSERT, capture=bench.UNTRACKED),
        Variant(
            "ins_jit",
            "INSERT: the empty trigger with audit_capture's attributes",
            INSERT,
            trigger="audit.bd_empty_jit",
        ),
        Variant(
            "ins_log",
            "INSERT: + one constant action into audit.action_log",
            INSERT,
            trigger="audit.bd_row_action_log",
        ),
        Variant(
            "ins_tracked", "INSERT: audit_capture as shipped", INSERT, capture=bench.AUDIT_CAPTURE
        ),
        Variant(
            "ins_noread",
            "INSERT:   ... without reading the context",
            INSERT,
            patches=((CONTEXT_READ, CONTEXT_CONSTANT),),
        ),
        Variant(
            "ins_classic", "INSERT: the classic row-level trigger", INSERT, capture=bench.CLASSIC
        ),
    ]


def breakdown_sql() -> bytes:
    """bench/sql/breakdown.sql, as it is (it holds braces and percent signs)."""
    return (bench.SQL_DIR / "breakdown.sql").read_bytes()


def variants_by_name() -> dict[str, Variant]:
    return {variant.name: variant for variant in variants()}


def table_of(variant: Variant) -> str:
    if variant.capture is not None:
        return variant.shape.table(variant.capture)
    return f"clients_{variant.name}"


def patched(source: str, patches: tuple[tuple[re.Pattern, str], ...]) -> str:
    for pattern, replacement in patches:
        source, count = pattern.subn(lambda _m, r=replacement: r, source)
        if not count:
            raise SystemExit(
                "write_breakdown: the generated capture function no longer holds "
                f"{pattern.pattern[:70]!r}...: update bench/write_breakdown.py"
            )
    return source


def prepare(server, rows: int) -> str:
    url = bench.prepare_database(
        server, rows, working_triggers=False, shapes=(bench.CLIENTS, bench.WIDE)
    )
    with bench.connect(url) as conn:
        conn.execute(breakdown_sql())
        for variant in variants():
            if variant.capture is not None:
                continue
            table = table_of(variant)
            if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
                bench.create_table(conn, bench.CLIENTS, table)
            if variant.trigger is not None:
                conn.execute(
                    sql.SQL(
                        "create trigger bd_update after update on {0} referencing old table as"
                        " audit_old_rows new table as audit_new_rows for each statement"
                        " execute function {1}();"
                        " create trigger bd_insert after insert on {0} referencing new table as"
                        " audit_new_rows for each statement execute function {1}()"
                    ).format(sql.Identifier(table), sql.SQL(variant.trigger))
                )
            else:  # a tracked copy whose generated function is patched
                conn.execute(bench.TRACK_SQL, (table,))
                (source,) = conn.execute(
                    "select pg_get_functiondef(format('audit.capture_%%s', %s::regclass::oid)"
                    "::regproc)",
                    (table,),
                ).fetchone()
                conn.execute(patched(source, variant.patches))
            bench.reset_table(conn, table, rows)
    return url


def backend_cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


class Runner:
    """One connection per variant, its backend's CPU time read around a run."""

    def __init__(self, url: str, variant: Variant, rows: int):
        self.variant, self.rows = variant, rows
        self.conn = psycopg.connect(url, autocommit=True, application_name="write_breakdown")
        self.conn.execute("set synchronous_commit = off")
        self.conn.execute("set track_functions = 'pl'")
        (self.pid,) = self.conn.execute("select pg_backend_pid()").fetchone()
        self.query = (
            sql.SQL(variant.statement.format("{}"))
            .format(sql.Identifier(table_of(variant)))
            .as_string(self.conn)
        )
        self.random = random.Random(variant.name)

    def run(self, count: int) -> float:
        """Microseconds of backend CPU per statement over ``count`` statements."""
        cur = self.conn.cursor()
        before = backend_cpu_ns(self.pid)
        for _ in range(count):
            key = self.random.randint(1, self.rows)
            args = (key, key) if self.variant.statement == INSERT else (key,)
            cur.execute(self.query, args, prepare=True)
        return (backend_cpu_ns(self.pid) - before) / count / 1000

    def capture_function_us(self) -> float | None:
        """track_functions' mean time per call of the table's capture function (µs)."""
        self.conn.execute("select pg_stat_force_next_flush()")
        self.conn.execute("select 1")  # the flush happens at the end of a statement
        found = self.conn.execute(
            "select total_time, calls from pg_stat_user_functions"
            " where schemaname = 'audit' and funcname = format('capture_%%s', %s::regclass::oid)",
            (table_of(self.variant),),
        ).fetchone()
        return found[0] * 1000 / found[1] if found and found[1] else None


def measure(url: str, rows: int, statements: int, rounds: int) -> dict[str, list[float]]:
    runners = [Runner(url, variant, rows) for variant in variants()]
    try:
        for runner in runners:
            runner.run(max(statements // 10, 100))  # plans cached, caches warm
        samples: dict[str, list[float]] = {r.variant.name: [] for r in runners}
        for turn in range(rounds):
            bench.log(f"round {turn + 1} of {rounds}")
            order = runners if turn % 2 == 0 else list(reversed(runners))
            for runner in order:
                samples[runner.variant.name].append(runner.run(statements))
        samples.update(
            {
                f"{r.variant.name}:function": [us]
                for r in runners
                if (us := r.capture_function_us()) is not None
            }
        )
        return samples
    finally:
        for runner in runners:
            runner.conn.close()


def report(samples: dict[str, list[float]], version: str, statements: int, rounds: int) -> str:
    lines = [
        f"PostgreSQL {version}: backend CPU per statement (µs, median of {rounds} rounds of"
        f" {statements:,} statements; +prev: over the line above, +base: over untracked)",
        "",
        f"{'variant':<78} {'µs':>7} {'+prev':>7} {'+base':>7}  capture fn (track_functions)",
        "-" * 125,
    ]
    previous = base = None
    for variant in variants():
        median = statistics.median(samples[variant.name])
        if variant.capture == bench.UNTRACKED or variant.name == "ins_plain":
            base = previous = median
        function = samples.get(f"{variant.name}:function")
        lines.append(
            f"{variant.what:<78} {median:7.1f} {median - previous:+7.1f} {median - base:+7.1f}"
            + (f"  {function[0]:.1f}" if function else "")
        )
        previous = median
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows, short rounds")
    parser.add_argument("--pgbin", metavar="DIR", help="the PostgreSQL server's bin folder")
    parser.add_argument("--rounds", type=int, help="rounds of every variant (default 5; 2 quick)")
    args = parser.parse_args(argv)
    rows = 10_000 if args.quick else 100_000
    statements = 500 if args.quick else 3_000
    rounds = args.rounds or (2 if args.quick else 5)
    try:
        bin_dir = bench.server_binaries(args.pgbin)
    except bench.UsageError as error:
        print(f"write_breakdown: {error}", file=sys.stderr)
        return 2

    def body(server: bench.EmbeddedPostgresql) -> int:
        url = prepare(server, rows)
        samples = measure(url, rows, statements, rounds)
        print(report(samples, server.server_version(), statements, rounds), flush=True)
        return 0

    return bench.run_on_server("write_breakdown", bin_dir, body)


if __name__ == "__main__":
    sys.exit(main())
