"""bench/write_overhead.py's tables and its classic reference, on the suite's server.

No pgbench and no timing: what is asserted is that the three sides of every shape are
what the benchmark says they are. The classic reference (bench/sql/classic_audit.sql)
logs what the classic row-level audit trigger logs; the lean, clients and wide tables
have their columns and indexes, load from their seeds, and are tracked or audited as
their side says; the pgbench scripts' statements, run once by hand, give one action
naming the changed column; per-statement latencies are read from pgbench's logs; and
a wrong --pgbin is one line and exit status 2, before any server starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pg_binaries import skip_without_extension

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "write_overhead.py"

sys.path.insert(0, str(BENCH.parent))

import write_overhead as bench  # noqa: E402

ROWS = 20


@pytest.fixture
def bench_db(db_url):
    """The benchmark's tables, ROWS rows each, in a copy of the suite's template: every
    shape's untracked, audit_capture and classic table."""
    with bench.connect(db_url) as conn:
        skip_without_extension(
            conn, "hstore", "the classic trigger the benchmark compares with logs into"
        )
        bench.run_file(conn, "classic_audit.sql")
        bench.create_seeds(conn, tuple(bench.SHAPES.values()), ROWS)
        for shape in bench.SHAPES.values():
            for side in bench.SIDES:
                bench.create_table(conn, shape, shape.table(side))
                bench.capture(conn, side, shape.table(side))
                bench.reset_table(conn, shape.table(side), ROWS, shape.seed)
    with bench.connect(db_url) as conn:  # autocommit, application_name write_overhead
        yield conn


def classic_rows(conn, table: str, after: int = 0) -> list[dict]:
    cursor = conn.execute(
        "select event_id, schema_name, table_name, relid::regclass::text as relation,"
        " session_user_name, transaction_id, application_name, client_query, action,"
        " hstore_to_jsonb(row_data) as row_data,"
        " hstore_to_jsonb(changed_fields) as changed_fields, statement_only"
        " from classic_audit.logged_actions where table_name = %s and event_id > %s"
        " order by event_id",
        (table, after),
    )
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def newest_event(conn) -> int:
    return conn.execute(
        "select coalesce(max(event_id), 0) from classic_audit.logged_actions"
    ).fetchone()[0]


def newest_action(conn) -> int:
    return conn.execute("select coalesce(max(id), 0) from audit.action_log").fetchone()[0]


def script_statement(conn, shape: bench.Shape, kind: str, table: str, **variables: int) -> str:
    """The SQL of one of the shape's pgbench scripts, its \\set lines dropped and its
    :variables given the values named."""
    script = bench.PGBENCH_DIR / shape.script(kind)
    text = bench.render(script, table=table, rows=ROWS).as_string(conn)
    statement = "\n".join(line for line in text.splitlines() if not line.startswith("\\"))
    return re.sub(r"(?<!:):([a-z_]+)\b", lambda m: str(variables[m[1]]), statement)


# -- the classic reference ----------------------------------------------------------


def test_the_classic_reference_logs_each_changed_row_as_the_classic_trigger(bench_db):
    conn, table = bench_db, bench.LEAN.table(bench.CLASSIC)
    start = newest_event(conn)
    old_notes = conn.execute(f"select notes from {table} where id = 3").fetchone()[0]

    # an UPDATE of one column: the old row, and the diff holds that column only
    conn.execute(f"update {table} set notes = 'called again' where id = 3")
    [update] = classic_rows(conn, table, start)
    assert update["action"] == "U"
    assert update["changed_fields"] == {"notes": "called again"}
    assert update["row_data"]["notes"] == old_notes
    assert update["row_data"]["id"] == "3"
    assert len(update["row_data"]) == 10  # the whole row, every column
    assert update["statement_only"] is False
    assert (update["schema_name"], update["table_name"]) == ("public", table)
    assert update["relation"] == table
    assert update["session_user_name"] == "postgres"
    assert update["application_name"] == "write_overhead"
    assert update["client_query"] == f"update {table} set notes = 'called again' where id = 3"
    assert update["transaction_id"] is not None

    # an UPDATE that changes nothing logs nothing (as the original, and as audit_capture)
    mark = newest_event(conn)
    conn.execute(f"update {table} set notes = notes, status = status where id = 3")
    assert classic_rows(conn, table, mark) == []

    # one row per changed row: a three-row UPDATE is three rows, each with its diff
    mark = newest_event(conn)
    conn.execute(f"update {table} set status = 'closed' where id in (4, 5, 6)")
    rows = classic_rows(conn, table, mark)
    assert [row["row_data"]["id"] for row in rows] == ["4", "5", "6"]
    assert all(row["changed_fields"] == {"status": "closed"} for row in rows)

    # an INSERT and a DELETE log the whole row, no diff
    mark = newest_event(conn)
    conn.execute(
        f"insert into {table} (id, name, email, status) values (900, 'Ann', 'a@x.org', 'new')"
    )
    conn.execute(f"delete from {table} where id = 7")
    insert, delete = classic_rows(conn, table, mark)
    assert insert["action"] == "I" and insert["changed_fields"] is None
    assert insert["row_data"]["id"] == "900" and insert["row_data"]["name"] == "Ann"
    assert len(insert["row_data"]) == 10
    assert delete["action"] == "D" and delete["changed_fields"] is None
    assert delete["row_data"]["id"] == "7" and len(delete["row_data"]) == 10

    # TRUNCATE: one statement-level row, no row data
    mark = newest_event(conn)
    conn.execute(f"truncate {table}")
    [truncate] = classic_rows(conn, table, mark)
    assert truncate["action"] == "T" and truncate["statement_only"] is True
    assert truncate["row_data"] is None


def test_the_classic_log_has_its_key_and_three_btree_indexes(bench_db):
    indexes = bench_db.execute(
        "select indexname, indexdef from pg_indexes"
        " where schemaname = 'classic_audit' and tablename = 'logged_actions' order by 1"
    ).fetchall()
    assert [(name, "USING btree" in definition) for name, definition in indexes] == [
        ("logged_actions_action_idx", True),
        ("logged_actions_action_tstamp_tx_idx", True),
        ("logged_actions_pkey", True),
        ("logged_actions_relid_idx", True),
    ]
    columns = dict(
        bench_db.execute(
            "select column_name, udt_name from information_schema.columns"
            " where table_schema = 'classic_audit' and table_name = 'logged_actions'"
        ).fetchall()
    )
    assert columns["event_id"] == "int8"
    assert columns["row_data"] == columns["changed_fields"] == "hstore"
    assert columns["action"] == "bpchar"
    for name in (
        "schema_name",
        "table_name",
        "relid",
        "session_user_name",
        "action_tstamp_tx",
        "action_tstamp_stm",
        "action_tstamp_clk",
        "transaction_id",
        "application_name",
        "client_addr",
        "client_port",
        "client_query",
        "statement_only",
    ):
        assert name in columns, name


# -- the table shapes ------------------------------------------------------------------


def table_columns(conn, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "select attname, format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = %s::regclass and attnum > 0 and not attisdropped order by attnum",
        (table,),
    ).fetchall()


def table_indexes(conn, table: str) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = %s::regclass"
            " order by 1",
            (table,),
        )
    ]


def test_each_shape_is_three_like_tables_loaded_from_its_seed(bench_db):
    conn = bench_db
    expected = {  # shape: (columns, indexes besides the primary key)
        "lean": (10, []),
        "clients": (10, ["{t}_email_idx", "{t}_owner_id_idx"]),
        "wide": (60, []),
    }
    for shape in bench.SHAPES.values():
        columns, indexes = expected[shape.name]
        for side in bench.SIDES:
            table = shape.table(side)
            found = table_columns(conn, table)
            assert len(found) == columns, (table, found)
            # reset_table.sql copies the seed with select *: the same columns in order
            assert [name for name, _ in table_columns(conn, shape.seed)] == [
                name for name, _ in found
            ]
            assert table_indexes(conn, table) == sorted(
                [f"{table}_pkey", *(name.format(t=table) for name in indexes)]
            )
            assert conn.execute(f"select count(*) from {table}").fetchone()[0] == ROWS
    wide_types = {kind for _, kind in table_columns(conn, bench.WIDE.table(bench.UNTRACKED))}
    assert {"text", "timestamp with time zone", "boolean", "bigint"} <= wide_types
    assert any(kind.startswith("numeric") for kind in wide_types)


def test_each_side_captures_as_it_says(bench_db):
    conn = bench_db
    tracked = {
        relation: (status, ignored)
        for relation, status, ignored in conn.execute(
            "select relation::text, status_columns, ignored_columns from audit.tracked_table"
        )
    }
    classic = {
        table
        for (table,) in conn.execute(
            "select tgrelid::regclass::text from pg_trigger where tgname = 'classic_audit_row'"
        )
    }
    for shape in bench.SHAPES.values():
        assert shape.table(bench.UNTRACKED) not in tracked
        assert shape.table(bench.UNTRACKED) not in classic
        assert tracked[shape.table(bench.AUDIT_CAPTURE)] == (["status"], ["updated_at"])
        assert shape.table(bench.AUDIT_CAPTURE) not in classic
        assert shape.table(bench.CLASSIC) in classic
        assert shape.table(bench.CLASSIC) not in tracked
    # resetting a table fires no capture: the logs stay as they were
    marks = bench.log_marks(conn)
    for shape in bench.SHAPES.values():
        for side in bench.SIDES:
            bench.reset_table(conn, shape.table(side), ROWS, shape.seed)
    assert bench.log_marks(conn) == marks


# -- the pgbench scripts' statements ---------------------------------------------------


def test_the_wide_update_is_one_action_naming_its_one_column(bench_db):
    conn, shape = bench_db, bench.WIDE
    start_action, start_event = newest_action(conn), newest_event(conn)
    for side in bench.SIDES:
        conn.execute(script_statement(conn, shape, "update", shape.table(side), id=5))
    actions = conn.execute(
        "select action_type, resource_id, row_count, changes from audit.action_log where id > %s",
        (start_action,),
    ).fetchall()
    assert len(actions) == 1, actions
    action_type, resource_id, row_count, changes = actions[0]
    assert (action_type, resource_id, row_count) == ("update", "5", 1)
    assert list(changes) == ["intake_summary"]
    assert set(changes["intake_summary"]) == {"old", "new"}
    [logged] = classic_rows(conn, shape.table(bench.CLASSIC), start_event)
    assert list(logged["changed_fields"]) == ["intake_summary"]
    assert len(logged["row_data"]) == 60


def test_the_lean_update_and_every_insert_log_one_action_each(bench_db):
    conn = bench_db
    start = newest_action(conn)
    lean = bench.LEAN.table(bench.AUDIT_CAPTURE)
    conn.execute(script_statement(conn, bench.LEAN, "update", lean, id=2))
    for shape in bench.SHAPES.values():
        table = shape.table(bench.AUDIT_CAPTURE)
        conn.execute(script_statement(conn, shape, "insert", table, owner=7))
    actions = conn.execute(
        "select table_name, action_type, changes from audit.action_log where id > %s order by id",
        (start,),
    ).fetchall()
    assert [(table, kind) for table, kind, _ in actions] == [
        (f"public.{lean}", "update"),
        ("public.lean_tracked", "create"),
        ("public.clients_tracked", "create"),
        ("public.wide_tracked", "create"),
    ]
    # two columns changed, updated_at ignored: the action names notes alone
    assert list(actions[0][2]) == ["notes"]
    assert len(actions[3][2]) == 60  # a create holds the whole new row


# -- latency, the verdict, --pgbin ----------------------------------------------------


def test_latencies_are_read_from_every_thread_log_and_summarised(tmp_path):
    prefix = tmp_path / "latency_lean_plain_update"
    # pgbench -l: "client transaction latency(us) script epoch epoch_us", a file per thread
    (tmp_path / f"{prefix.name}.4242").write_text(
        "".join(f"0 {i} {i} 0 1764720000 {i}\n" for i in range(1, 501))
    )
    (tmp_path / f"{prefix.name}.4242.1").write_text(
        "".join(f"1 {i} {i} 0 1764720000 {i}\n" for i in range(501, 1001))
        + "1 1001 failed 0 1764720001 5\n"
    )
    (tmp_path / "latency_other.4242").write_text("0 0 99999 0 1764720000 1\n")
    latencies = bench.read_latency_logs(prefix)
    assert sorted(latencies) == list(range(1, 1001))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["latency_other.4242"]
    assert bench.latency_summary(latencies) == {
        "p50": 500,
        "p99": 990,
        "p99.9": 999,
        "max": 1000,
        "statements": 1000,
    }


def test_at_least_classic_compares_ratios_the_right_way_round():
    def row(unit: str, better: str, untracked, ours, theirs) -> bench.Row:
        made = bench.Row("lean", "w", unit, better)
        for side, values in zip(bench.SIDES, (untracked, ours, theirs), strict=True):
            made.samples[side].extend(values)
        return made

    assert row("tps", "higher", [100], [30], [40]).at_least_classic is False
    assert row("tps", "higher", [100], [40, 41, 45], [40]).at_least_classic is True
    assert row("s", "lower", [1.0], [2.6], [7.4]).at_least_classic is True
    assert row("s", "lower", [1.0], [8.0], [7.4]).at_least_classic is False
    assert row("B", "lower", [], [7], [627]).at_least_classic is True  # storage: the values
    assert row("s", None, [], [0.2], []).at_least_classic is None
    failed = row("tps", "higher", [100], [50], [40])
    failed.error = "pgbench failed"
    assert failed.at_least_classic is None


def run_bench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def test_a_wrong_pgbin_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "initdb").write_text("")  # a folder with some programs is still not one
    done = run_bench("--quick", "--pgbin", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"write_overhead.py: --pgbin {tmp_path}: no postgres or pgbench there; it names the "
        "bin folder of a PostgreSQL server (the one holding initdb, postgres and pgbench)"
    ]
    # the test suite's variable is the default, checked the same way
    env = {**os.environ, bench.PGBIN_ENVVAR: str(tmp_path / "missing")}
    done = run_bench("--quick", env=env)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"write_overhead.py: {bench.PGBIN_ENVVAR}={tmp_path / 'missing'}: ")
    assert "no initdb, postgres or pgbench there" in line


def test_a_server_that_does_not_start_is_one_line_and_exit_status_1(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in bench.SERVER_PROGRAMS:  # programs that are there, but fail
        program = folder / name
        program.write_text("#!/bin/sh\necho broken >&2\nexit 1\n")
        program.chmod(0o755)
    done = run_bench("--quick", "--pgbin", str(folder))
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"write_overhead.py: PostgreSQL from {folder} did not start: "), last
