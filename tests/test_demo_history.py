"""`audit-capture demo --history N`: N older actions generated in SQL before the month of
activity, each marked as generated history, readable by the viewer, and written without
weakening the log's protection (a superuser's insert; the log stays append-only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from viewer_data import sign_in

from audit_capture.cli import cli
from audit_capture.demo import runner

AUDIT_CAPTURE = str(Path(sys.executable).with_name("audit-capture"))
HISTORY = 5000
MARKED = 'context @> \'{"demo": "generated history"}\''
ACTIVITY = f"(context is null or not {MARKED})"


def test_prepare_with_history_adds_marked_older_actions_the_viewer_shows(empty_db_url):
    prepared = runner.prepare(empty_db_url, history=HISTORY)
    assert prepared.history == HISTORY
    with psycopg.connect(empty_db_url) as conn:
        generated, activity = conn.execute(
            f"select count(*) filter (where {MARKED}), count(*) filter (where {ACTIVITY})"
            " from audit.action_log"
        ).fetchone()
        assert generated == HISTORY and activity > 100
        assert prepared.actions == generated + activity
        # all older than the month of activity, and ids grow with time (the viewer relies
        # on it): every generated id is below every activity id
        newest, oldest_activity = conn.execute(
            f"select max(occurred_at) filter (where {MARKED}),"
            f" min(occurred_at) filter (where {ACTIVITY})"
            " from audit.action_log"
        ).fetchone()
        assert newest < oldest_activity
        assert conn.execute(
            f"select max(id) filter (where {MARKED}) < min(id) filter (where {ACTIVITY})"
            " from audit.action_log"
        ).fetchone()[0]
        assert conn.execute(
            "select bool_and(a.occurred_at <= b.occurred_at) from audit.action_log a"
            " join audit.action_log b on b.id = a.id + 1"
        ).fetchone()[0]
        # spread over years, actor types, sources (Database included), action types
        span, actors, actor_types, sources, types, labels = conn.execute(
            "select max(occurred_at) - min(occurred_at),"
            " count(distinct coalesce(actor_id, actor_name)),"
            " count(distinct actor_type), count(distinct coalesce(source, 'database')),"
            " count(distinct action_type), count(distinct action)"
            f" from audit.action_log where {MARKED}"
        ).fetchone()
        assert span.days > 2 * 365
        assert actors > 500 and actor_types == 3 and sources == 5 and types == 9
        assert labels > 20
        # the activity's labels and resources: no label the CRM's activity could not make
        known = {
            r[0] for r in conn.execute(f"select action from audit.action_log where {ACTIVITY}")
        }
        made = {
            r[0]
            for r in conn.execute(
                f"select distinct action from audit.action_log where {MARKED}"
                " and action not like 'Clients imported (%%)'"
            )
        }
        assert made <= known | {"Client status change", "Case created"}, made - known
        # skewed: the busiest actor does many times the median's work
        busiest, median = conn.execute(
            "select max(n), percentile_disc(0.5) within group (order by n) from"
            f" (select count(*) n from audit.action_log where {MARKED} group by actor_name) c"
        ).fetchone()
        assert busiest > 20 * median
        # bulk actions carry their items, as the capture writes them
        bulk = conn.execute(
            f"select id, row_count, operation from audit.action_log where {MARKED}"
            " and row_count > 1 order by id"
        ).fetchall()
        assert {op for _, _, op in bulk} == {"INSERT", "UPDATE", "DELETE"}
        for action_id, row_count, _ in bulk[:20]:
            items = conn.execute(
                "select count(*), count(distinct resource_id), bool_and(old is not null"
                " or new is not null) from audit.action_items(%s)",
                (action_id,),
            ).fetchone()
            assert items == (row_count, row_count, True)
        single = conn.execute(
            f"select id from audit.action_log where {MARKED} and action = 'Client updated' limit 1"
        ).fetchone()[0]
        assert (
            conn.execute("select count(*) from audit.action_items(%s)", (single,)).fetchone()[0]
            == 1
        )
        # VACUUM ANALYZE ran; the viewer's indexes are valid
        # (on its partitions: a partitioned table's own row shows neither)
        assert conn.execute(
            "select bool_and(last_vacuum is not null and last_analyze is not null)"
            " from pg_stat_user_tables where relid in (select inhrelid from pg_inherits"
            " where inhparent = 'audit.action_log'::regclass)"
        ).fetchone()[0]
        assert conn.execute(
            "select count(*), bool_and(indisvalid and indisready) from pg_index"
            " where indrelid = 'audit.action_log'::regclass"
        ).fetchone() == (8, True)  # the key, time, viewer's 4, history's 2
        # nothing redacted shows in clear
        assert not conn.execute(
            f"select exists (select from audit.action_log where {MARKED}"
            " and changes ? 'ssn' and changes ->> 'ssn' <> '[redacted]')"
        ).fetchone()[0]
        generated_id = bulk[0][0]

    demo = runner.viewer_app(empty_db_url, prepared.viewer_url)
    client = demo.app.test_client()
    sign_in(client, demo.username, demo.password)
    first = client.get("/")
    assert first.status_code == 200 and "Batch client deletion" in first.text
    database = client.get("/?source=database")
    assert database.status_code == 200 and "Client updated" in database.text
    page = client.get(f"/actions/{generated_id}")
    assert page.status_code == 200
    assert "generated history" in page.text


def test_the_history_weakens_no_protection_of_the_log(db_url, make_role):
    from audit_capture.demo.history import add_history, history_end

    app = make_role("grant usage on schema audit to {role}")
    indexes = (
        "select c.relname, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid),"
        " i.indisvalid and i.indisready from pg_index i join pg_class c on c.oid = i.indexrelid"
        " where i.indrelid = 'audit.action_log'::regclass order by 1"
    )
    with psycopg.connect(db_url) as conn:
        before = conn.execute(indexes).fetchall()
    added = add_history(db_url, 300, end_at=history_end(30))
    assert added.actions == 300
    with psycopg.connect(db_url) as conn:
        # the indexes it rebuilt are the migration's, with their comments, and valid
        assert conn.execute(indexes).fetchall() == before
        # the key, time, viewer's 4, history's 2 (by resource, the TRUNCATEs)
        assert len(before) == 8 and all(valid for *_, valid in before)
        # the append-only triggers are enabled, and refuse even the superuser
        assert conn.execute(
            "select bool_and(tgenabled = 'O'), count(*) from pg_trigger"
            " where tgrelid in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass)"
            " and not tgisinternal"
        ).fetchone() == (True, 4)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"delete from audit.action_log where {MARKED}")
        conn.rollback()
    # an application role still cannot write the log, generated history or not
    with psycopg.connect(app) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "insert into audit.action_log (action, action_type, actor_type, db_user,"
            " transaction_id, context) values ('Client updated', 'update', 'admin',"
            " 'x', 1, '{\"demo\": \"generated history\"}')"
        )


def test_history_needs_a_superuser_and_says_so(db_url, make_role):
    url = make_role("grant audit_admin to {role}")
    result = subprocess.run(
        [AUDIT_CAPTURE, "--database-url", url, "demo", "--prepare-only", "--history", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Error: --history needs a superuser" in result.stderr
    with psycopg.connect(db_url) as conn:  # nothing was prepared
        assert conn.execute("select count(*) from audit.action_log").fetchone()[0] == 0


def test_the_demo_command_says_how_many_generated_actions_it_added(empty_db_url):
    result = subprocess.run(
        [AUDIT_CAPTURE, "--database-url", empty_db_url, "demo", "--prepare-only"]
        + ["--history", "2000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "2,000 generated history actions (older than the month of activity)" in result.stderr
    with psycopg.connect(empty_db_url) as conn:
        assert (
            conn.execute(f"select count(*) from audit.action_log where {MARKED}").fetchone()[0]
            == 2000
        )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", "-5 is not in the range 0<=x<=50000000"),
        ("abc", "'abc' is not a valid integer"),
        ("50000001", "50000001 is not in the range 0<=x<=50000000"),
        ("1e9", "'1e9' is not a valid integer"),
    ],
)
def test_a_bad_history_count_is_clicks_clear_error(value, message):
    result = CliRunner().invoke(cli, ["demo", "--prepare-only", "--history", value])
    assert result.exit_code == 2
    assert "Invalid value for '--history'" in result.output and message in result.output


def test_keep_prepares_the_history_once_and_says_a_reuse_ignores_it():
    keep = Path(tempfile.mkdtemp(prefix="audit-demo-", dir=tempfile.gettempdir()))
    os.chmod(keep, 0o755)  # reachable by the server's user ('nobody' under root)
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_CAPTURE_DATABASE_URL"}
    try:
        command = [AUDIT_CAPTURE, "demo", "--keep", str(keep / "d"), "--prepare-only"]
        first = subprocess.run(
            command + ["--history", "1000"], capture_output=True, text=True, env=env, timeout=120
        )
        assert first.returncode == 0, first.stderr
        assert "1,000 generated history actions" in first.stderr
        second = subprocess.run(
            command + ["--history", "500"], capture_output=True, text=True, env=env, timeout=120
        )
        assert second.returncode == 0, second.stderr
        assert "reusing the kept demo database" in second.stderr
        assert "--history 500 is not applied: the kept log stays as it was prepared" in (
            second.stderr
        )
        assert "generated history actions" not in second.stderr
    finally:
        shutil.rmtree(keep, ignore_errors=True)


def test_the_same_seed_gives_the_same_history_with_ids_growing_with_time(db_url):
    """Each random draw is made once per action: two histories of one seed hold the same
    actions (all but their ids and transaction), each written in time order."""
    from audit_capture.demo.history import add_history, history_end

    end = history_end(30)
    first = add_history(db_url, 2000, end_at=end, seed=0.42)
    second = add_history(db_url, 2000, end_at=end, seed=0.42)
    columns = (
        "occurred_at, action, action_type, resource_type, resource_id, resource_label,"
        " row_count, actor_id, actor_name, actor_type, source, changes::text, request_id,"
        " table_name, operation"
    )
    with psycopg.connect(db_url) as conn:

        def batch(low, high):
            return conn.execute(
                f"select {columns} from audit.action_log where id > %s and id <= %s"
                f" and {MARKED} order by id",
                (low, high),
            ).fetchall()

        one, two = batch(0, first.last_id), batch(first.last_id, second.last_id)
        assert len(one) == len(two) == 2000 and one == two
        assert [row[0] for row in one] == sorted(row[0] for row in one)
