"""``audit-capture tail``: the log as JSON lines in id order, never skipping an action that
commits late (triggers/18_stream.sql, src/audit_capture/stream.py)."""

from __future__ import annotations

import json
import queue
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from pg_binaries import bin_dir
from psycopg import errors
from test_cli import assert_one_line_error, audit_cli_executable, run

from audit_capture import migrate, stream
from audit_capture.embedded import EmbeddedPostgresql

# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
def reader_role_url(make_role):
    """A login granted only audit_reader (what tail needs)."""
    return make_role("grant audit_reader to {role}")


def write_activity(conn) -> None:
    """Single-row changes, a bulk statement, an event: committed."""
    conn.execute(
        "insert into clients (name, email, status)"
        " select 'Client ' || g, 'c' || g || '@example.com', 'new' from generate_series(1, 5) g"
    )
    conn.execute("update clients set status = 'contacted' where name = 'Client 1'")
    conn.execute("select audit.log_action('login', 'LawRuler login', 'integration', 'lawruler')")
    conn.commit()


def action_ids(conn) -> list[int]:
    ids = [i for (i,) in conn.execute("select id from audit.action_log order by id")]
    conn.commit()
    return ids


def printed(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def tail_of(url: str, after: int = 0) -> stream.Tail:
    return stream.Tail(stream.connect(url), after)


def ids_of(tail: stream.Tail) -> list[int]:
    return [action_id for action_id, _text in tail.settled_lines()]


def newest_id(conn) -> int:
    (newest,) = conn.execute("select max(id) from audit.action_log").fetchone()
    conn.commit()
    return newest


# -- what it prints ------------------------------------------------------------------------


def test_tail_prints_every_action_in_id_order_one_json_object_a_line(conn, reader_role_url):
    write_activity(conn)
    lines = printed(run(reader_role_url, "tail"))
    assert [line["id"] for line in lines] == action_ids(conn)
    assert all(list(line) == list(stream.ACTION_COLUMNS) for line in lines)
    login = lines[-1]
    assert (login["action"], login["action_type"], login["resource_id"]) == (
        "LawRuler login",
        "login",
        "lawruler",
    )
    assert login["actor_type"] == "system" and login["row_count"] == 0
    bulk = lines[0]
    assert bulk["row_count"] == 5 and bulk["resource_id"] is None
    (occurred_at,) = conn.execute(
        "select to_json(occurred_at at time zone 'UTC') #>> '{}' from audit.action_log"
        " where id = %s",
        (login["id"],),
    ).fetchone()
    assert login["occurred_at"] == occurred_at + "+00:00"  # UTC, with its offset


def test_tail_after_an_id_resumes_there(conn, reader_role_url):
    write_activity(conn)
    ids = action_ids(conn)
    lines = printed(run(reader_role_url, "tail", "--after", str(ids[0])))
    assert [line["id"] for line in lines] == ids[1:]
    assert printed(run(reader_role_url, "tail", "--after", str(ids[-1]))) == []


def test_an_empty_log_prints_nothing(reader_role_url):
    assert printed(run(reader_role_url, "tail")) == []


# -- never skipping ----------------------------------------------------------------------------


def test_a_lower_id_that_commits_late_holds_the_higher_one_back_until_it_commits(
    conn, db_url, reader_role_url
):
    write_activity(conn)
    tail = tail_of(reader_role_url)
    assert ids_of(tail) == action_ids(conn)
    with psycopg.connect(db_url) as early, psycopg.connect(db_url) as late:
        early.execute("update clients set status = 'closed' where name = 'Client 2'")
        late.execute("update clients set status = 'closed' where name = 'Client 3'")
        late.commit()
        late_id = newest_id(conn)  # committed, visible: the early one holds late_id - 1
        for _poll in range(3):  # however often it looks: not past the open lower id
            assert ids_of(tail) == []
        early.commit()
    assert ids_of(tail) == [late_id - 1, late_id]
    assert ids_of(tail) == []


def test_the_command_waits_for_an_open_transaction_then_says_where_to_resume(
    conn, db_url, reader_role_url
):
    write_activity(conn)
    last_before = newest_id(conn)
    with psycopg.connect(db_url) as early, psycopg.connect(db_url) as late:
        early.execute("select audit.log_action('logout', 'SmartAdvocate logout')")
        late.execute("select audit.log_action('login', 'SmartAdvocate login')")
        late.commit()
        # a fresh reader knows nothing older than its first mark, which names the open
        # transaction: it waits for it (--wait), then says where to resume
        result = run(reader_role_url, "tail", "--wait", "0.3")
        assert printed(result) == []
        assert f"actions up to {last_before + 2} wait" in result.stderr
        assert "run again with --after 0" in result.stderr
        early.commit()
    lines = printed(run(reader_role_url, "tail", "--after", str(last_before)))
    assert [line["action"] for line in lines] == ["SmartAdvocate logout", "SmartAdvocate login"]


def test_a_rolled_back_lower_id_is_a_gap_once_its_transaction_ends(conn, db_url, reader_role_url):
    tail = tail_of(reader_role_url)
    with psycopg.connect(db_url) as early:
        early.execute("select audit.log_action('login', 'Rolled back')")
        conn.execute("select audit.log_action('login', 'Kept')")
        conn.commit()
        assert ids_of(tail) == []
        early.rollback()
    assert ids_of(tail) == [newest_id(conn)]


def test_a_batch_is_printed_once_whole_after_its_commit(conn, db_url, reader_role_url):
    """audit.batch grows its one action statement by statement: the stream waits for
    the commit and prints the action as it ends, never a half."""
    tail = tail_of(reader_role_url)
    with psycopg.connect(db_url) as app:
        app.execute("select set_config('audit.batch', 'Batch client deletion', true)")
        app.execute("insert into clients (name) values ('B1')")
        app.execute("insert into clients (name) values ('B2')")
        assert ids_of(tail) == []
        app.execute("insert into clients (name) values ('B3')")
        app.commit()
    (line,) = [json.loads(text) for _id, text in tail.settled_lines()]
    assert (line["action"], line["row_count"]) == ("Batch client deletion", 3)


def test_a_transaction_that_drew_no_action_id_holds_nothing_back(conn, db_url, reader_role_url):
    """Only a transaction that drew an id from the log's sequence can still commit one
    below the mark: an open transaction that wrote an untracked table does not stop it."""
    tail = tail_of(reader_role_url)
    with psycopg.connect(db_url) as other:
        other.execute("create table scratch_notes (id int)")
        other.execute("insert into scratch_notes values (1)")
        conn.execute("select audit.log_action('login', 'Kept')")
        conn.commit()
        assert ids_of(tail) == [newest_id(conn)]
        other.rollback()


def test_a_mark_is_the_sequence_then_the_open_writers(conn, db_url, reader_role_url):
    with psycopg.connect(reader_role_url, autocommit=True) as reader:
        ((last_id, writers),) = reader.execute("select * from audit.stream_mark()").fetchall()
        assert (last_id, writers) == (0, [])
        with psycopg.connect(db_url) as app:
            app.execute("select audit.log_action('login', 'Open')")
            (vxid,) = app.execute(
                "select virtualtransaction from pg_locks"
                " where pid = pg_backend_pid() and locktype = 'virtualxid'"
            ).fetchone()
            ((last_id, writers),) = reader.execute("select * from audit.stream_mark()").fetchall()
            assert (last_id, writers) == (1, [vxid])
        ((last_id, writers),) = reader.execute("select * from audit.stream_mark()").fetchall()
        assert (last_id, writers) == (1, [])


def test_many_writers_committing_in_any_order_are_all_printed_once_in_id_order(
    conn, db_url, reader_role_url
):
    """Writers that draw ids, wait, then commit or roll back, in every order, while the
    stream polls as fast as it can: it prints each committed action exactly once, in id
    order, and nothing rolled back. A lower id skipped would be missing: it is never
    printed after a higher one."""
    rng = random.Random(16)
    plans = [[(rng.random() / 200, rng.random() < 0.1) for _ in range(40)] for _ in range(4)]

    def write(plan: list[tuple[float, bool]]) -> None:
        with psycopg.connect(db_url) as writer:
            for pause, roll_back in plan:
                writer.execute("select audit.log_action('login', 'Concurrent')")
                time.sleep(pause)
                writer.rollback() if roll_back else writer.commit()

    tail = tail_of(reader_role_url)
    printed_ids: list[int] = []
    writers = [threading.Thread(target=write, args=(plan,)) for plan in plans]
    for thread in writers:
        thread.start()
    while any(thread.is_alive() for thread in writers):
        printed_ids += ids_of(tail)
    printed_ids += ids_of(tail) + ids_of(tail)  # the last marks settle after the last commit
    assert printed_ids == action_ids(conn)
    assert len(printed_ids) == sum(not roll_back for plan in plans for _, roll_back in plan)


def test_marks_kept_while_a_transaction_stays_open_are_bounded():
    """One mark a poll while a writer stays open: the oldest is kept (it settles first),
    the list stays short, and once the writer is gone the newest settles."""
    horizon = stream.Horizon()
    for last_id in range(1, 5 * stream.MAX_MARKS):
        assert horizon.add(stream.Mark(last_id, frozenset({"3/7"}))) == 0
        assert len(horizon.marks) <= stream.MAX_MARKS + 1
    assert horizon.marks[0].last_id == 1
    assert horizon.add(stream.Mark(6000, frozenset({"4/2"}))) == 5 * stream.MAX_MARKS - 1
    assert horizon.add(stream.Mark(6000, frozenset())) == 6000
    assert horizon.marks == []


# -- following ----------------------------------------------------------------------------------


class Follow:
    """``audit-capture tail --follow`` in a process of its own, its lines read by a thread."""

    def __init__(self, url: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [audit_cli_executable(), "--database-url", url, "tail", "--follow"]
            + ["--interval", "0.1", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.rest: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def line(self, timeout: float = 30) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError("no line from tail --follow") from None

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        """Sends ``signum``; the exit code and stderr."""
        self.process.send_signal(signum)
        self.process.wait(timeout=30)
        assert self.process.stderr is not None
        return self.process.returncode, self.process.stderr.read()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_follow_prints_new_actions_as_they_commit_and_stops_cleanly(
    conn, db_url, reader_role_url, signum
):
    write_activity(conn)
    ids = action_ids(conn)
    follow = Follow(reader_role_url, "--after", str(ids[-2]))
    try:
        assert follow.line()["id"] == ids[-1]
        with psycopg.connect(db_url) as early:
            early.execute("select audit.log_action('logout', 'Early')")
            conn.execute("select audit.log_action('login', 'Late')")
            conn.commit()
            early.commit()
        assert [follow.line()["action"], follow.line()["action"]] == ["Early", "Late"]
    finally:
        code, stderr = follow.stop(signum)
    assert code == 0 and stderr == ""
    assert follow.lines.empty()


def test_follow_in_ocsf_prints_events(conn, reader_role_url):
    follow = Follow(reader_role_url, "--format", "ocsf")
    try:
        conn.execute("select audit.log_action('login', 'LawRuler login', 'integration', 'lr')")
        conn.commit()
        event = follow.line()
    finally:
        follow.stop()
    assert (event["class_uid"], event["activity_id"], event["message"]) == (
        3002,
        1,
        "LawRuler login",
    )


def test_a_reader_that_goes_away_ends_tail_quietly(conn, reader_role_url):
    """``tail | head -n 1``: the pipe closes under it; no traceback, exit 0."""
    conn.execute("select audit.log_action('login', 'Login ' || g) from generate_series(1, 3000) g")
    conn.commit()
    script = f"{audit_cli_executable()} --database-url '{reader_role_url}' tail | head -n 1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["action"] == "Login 1"
    assert done.stderr == ""


def test_a_log_whose_ids_are_drawn_elsewhere_is_refused_in_one_line(conn, reader_role_url):
    """An audit server fed by replication holds ids its own sequence never drew: marks
    there would settle nothing, so tail says so rather than wait forever."""
    conn.execute(
        "insert into audit.action_log (id, action, action_type, actor_type, db_user,"
        " transaction_id) overriding system value values (500, 'Replicated', 'login',"
        " 'system', 'x', 1)"
    )
    conn.commit()
    assert_one_line_error(
        run(reader_role_url, "tail"), "holds action 500", "drawn ids only up to 0"
    )


# -- who may ------------------------------------------------------------------------------------


def test_an_application_role_is_refused_in_one_line(conn, make_role):
    write_activity(conn)
    app_url = make_role("grant select, insert, update, delete on clients to {role}")
    assert_one_line_error(run(app_url, "tail"), "may not read the log", "grant audit_reader")
    with psycopg.connect(app_url, autocommit=True) as app:
        for statement in ("select * from audit.stream_mark()", "select * from audit.action_log"):
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute(statement)


def test_a_role_owning_tracked_tables_is_refused_too(conn, owning_app):
    owning_app.execute("insert into owned_notes values (1, 'mine')")
    assert_one_line_error(run(owning_app.info.dsn, "tail"), "may not read the log")
    for statement in ("select * from audit.stream_mark()", "select * from audit.action_log"):
        with pytest.raises(errors.InsufficientPrivilege):
            owning_app.execute(statement)


def test_stream_mark_is_security_definer_with_a_pinned_search_path_and_writes_nothing(conn):
    (definer, config, owner, volatile) = conn.execute(
        "select p.prosecdef, p.proconfig, p.proowner::regrole::text, p.provolatile"
        " from pg_proc p where p.oid = 'audit.stream_mark()'::regprocedure"
    ).fetchone()
    assert definer and owner == "audit_owner" and volatile == "v"
    assert "search_path=pg_catalog, pg_temp" in config
    conn.execute("set transaction read only")
    conn.execute("select * from audit.stream_mark()")  # a read-only transaction may call it
    (xid,) = conn.execute("select pg_current_xact_id_if_assigned()").fetchone()
    assert xid is None  # and it took no transaction id
    conn.rollback()


def test_an_audit_server_is_refused_in_one_line(conn, reader_role_url):
    """A database subscribed to the log (audit-capture replicate) receives actions late
    and in any order, with ids its own sequence never drew."""
    conn.autocommit = True
    conn.execute(
        "create subscription audit_capture connection 'dbname=nowhere'"
        " publication audit_capture"
        " with (connect = false, enabled = false, create_slot = false, slot_name = none)"
    )
    try:
        with (
            psycopg.connect(reader_role_url, autocommit=True) as reader,
            pytest.raises(errors.ObjectNotInPrerequisiteState, match="audit server"),
        ):
            reader.execute("select * from audit.stream_mark()")
        assert_one_line_error(
            run(reader_role_url, "tail"), "this database is an audit server", "from the primary"
        )
    finally:
        conn.execute("drop subscription audit_capture")
        conn.autocommit = False


def test_a_standby_is_refused_in_one_line():
    """A physical standby sees neither the primary's locks nor its sequence as drawn (the
    sequence is logged ahead of what it handed out): a mark there could settle an id
    an open transaction still holds. A server in recovery refuses to make one."""
    base_dir = tempfile.mkdtemp(prefix="audit-standby-")  # kept by stop(): base_dir is ours
    try:
        primary = EmbeddedPostgresql(bin_dir=bin_dir(), base_dir=base_dir)
        try:
            migrate.upgrade(primary.url(), "head")
        finally:
            primary.stop()  # a clean shutdown: the copy is consistent at once
        data_dir = Path(primary.get_data_directory())
        (data_dir / "standby.signal").touch()  # no primary to follow: it stays in recovery
        standby = EmbeddedPostgresql(bin_dir=bin_dir(), copy_data_from=str(data_dir))
        try:
            with psycopg.connect(standby.url(), autocommit=True) as conn:
                assert conn.execute("select pg_is_in_recovery()").fetchone() == (True,)
                with pytest.raises(errors.FeatureNotSupported, match="cannot run on a standby"):
                    conn.execute("select * from audit.stream_mark()")
            assert_one_line_error(run(standby.url(), "tail"), "cannot run on a standby")
        finally:
            standby.stop()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--after", "abc"], "'abc' is not a valid integer"),
        (["--after", "1e9"], "'1e9' is not a valid integer"),
        (["--after", "-1"], "-1 is not in the range"),
        (["--after", str(2**63)], "is not in the range"),
        (["--format", "xml"], "'xml' is not one of 'ndjson', 'ocsf'"),
        (["--interval", "0"], "0.0 is not in the range"),
        (["--wait", "-1"], "-1.0 is not in the range"),
    ],
)
def test_bad_options_are_clicks_clear_error(reader_role_url, args, message):
    result = run(reader_role_url, "tail", *args)
    assert result.exit_code == 2
    assert "Invalid value for" in result.output and message in result.output
    assert "Traceback" not in result.output


def test_no_database_is_one_line(tmp_path):
    assert_one_line_error(run("postgresql://nobody@127.0.0.1:1/x", "tail"), "cannot connect")
