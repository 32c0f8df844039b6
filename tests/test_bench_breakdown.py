"""bench/write_breakdown.py's variants, on the suite's server.

No timing: what is asserted is that each variant is what the breakdown says it is.
The reference triggers of bench/sql/breakdown.sql install and write (or not) what they
say; every A/B replacement still matches the capture function audit.track() generates
today (a change of the capture SQL that leaves one stale stops the run, and this test
first), and the patched functions still capture what they keep.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pg_binaries import skip_without_extension
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import write_breakdown as breakdown  # noqa: E402
import write_overhead as bench  # noqa: E402

ROWS = 20


@pytest.fixture
def bench_conn(db_url):
    with bench.connect(db_url) as conn:
        skip_without_extension(
            conn, "hstore", "the classic trigger the benchmark compares with logs into"
        )
        bench.run_file(conn, "classic_audit.sql")
        bench.create_seeds(conn, (bench.CLIENTS,), ROWS)
        conn.execute(breakdown.breakdown_sql())
        yield conn


def tracked_copy(conn, name: str, patches=()) -> str:
    table = f"clients_{name}"
    bench.create_table(conn, bench.CLIENTS, table)
    conn.execute(bench.TRACK_SQL, (table,))
    (source,) = conn.execute(
        "select pg_get_functiondef(format('audit.capture_%%s', %s::regclass::oid)::regproc)",
        (table,),
    ).fetchone()
    conn.execute(breakdown.patched(source, patches))
    bench.reset_table(conn, table, ROWS)
    return table


def last_action(conn) -> tuple:
    return conn.execute(
        "select action, action_type, actor_name, changes from audit.action_log"
        " order by id desc limit 1"
    ).fetchone()


def actions(conn) -> int:
    return conn.execute("select count(*) from audit.action_log").fetchone()[0]


def update(conn, table: str) -> None:
    conn.execute(sql.SQL(breakdown.UPDATE.format("{}")).format(sql.Identifier(table)), (3,))


def test_every_variant_replacement_matches_the_generated_capture_function(bench_conn):
    for variant in breakdown.variants():
        if variant.patches:
            tracked_copy(bench_conn, variant.name, variant.patches)


def test_a_stale_replacement_stops_the_run_naming_it(bench_conn):
    import re

    stale = ((re.compile(r"no such text in the function"), ""),)
    with pytest.raises(SystemExit, match="no longer holds 'no such text"):
        tracked_copy(bench_conn, "stale", stale)


def test_the_ab_variants_still_capture_what_they_keep(bench_conn):
    bench_conn.execute("select set_config('audit.actor_name', 'Maria Lopez', false)")
    table = tracked_copy(bench_conn, "shipped")
    update(bench_conn, table)
    action, kind, actor, changes = last_action(bench_conn)
    assert (action, kind, actor) == ("Client updated", "update", "Maria Lopez")
    assert set(changes) == {"notes"}  # updated_at is ignored

    # without the diff: the action, with constant changes
    table = tracked_copy(bench_conn, "nodiff", breakdown.variants_by_name()["ab_nodiff"].patches)
    update(bench_conn, table)
    assert last_action(bench_conn)[:3] == ("Client updated", "update", "Maria Lopez")
    assert last_action(bench_conn)[3] == {}

    # without reading the context: the action, as by a system actor
    table = tracked_copy(bench_conn, "noread", breakdown.variants_by_name()["ab_noread"].patches)
    update(bench_conn, table)
    assert last_action(bench_conn)[1:3] == ("update", "postgres")

    # without checking it: the same action
    table = tracked_copy(bench_conn, "nocheck", breakdown.variants_by_name()["ab_nocheck"].patches)
    before = actions(bench_conn)
    update(bench_conn, table)
    assert actions(bench_conn) == before + 1


@pytest.mark.parametrize(
    ("function", "writes"),
    [
        ("audit.bd_empty_plain", None),
        ("audit.bd_empty_definer", None),
        ("audit.bd_empty_search_path", None),
        ("audit.bd_empty_jit", None),
        ("audit.bd_row_bare", "bd_log_bare"),
        ("audit.bd_row_text", "bd_log_text"),
        ("audit.bd_row_all", "bd_log_all"),
        ("audit.bd_row_action_log", "action_log"),
    ],
)
def test_each_reference_trigger_writes_what_it_says(bench_conn, function, writes):
    table = "clients_reference"
    bench.create_table(bench_conn, bench.CLIENTS, table)
    bench.reset_table(bench_conn, table, ROWS)
    bench_conn.execute(
        sql.SQL(
            "create trigger bd after update on {} referencing old table as audit_old_rows"
            " new table as audit_new_rows for each statement execute function {}()"
        ).format(sql.Identifier(table), sql.SQL(function))
    )
    logs = ["action_log", "bd_log_bare", "bd_log_text", "bd_log_all"]

    def counts():
        return {
            log: bench_conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier("audit", log))
            ).fetchone()[0]
            for log in logs
        }

    before = counts()
    update(bench_conn, table)
    after = counts()
    assert {log for log in logs if after[log] != before[log]} == ({writes} if writes else set())
    if writes:
        assert after[writes] == before[writes] + 1
    # run as audit_owner, as audit_capture's own functions
    owner = bench_conn.execute(
        "select proowner::regrole::text from pg_proc where oid = %s::regproc", (function,)
    ).fetchone()[0]
    assert owner == "audit_owner"
