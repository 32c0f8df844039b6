"""Faults: a server that dies in the middle of a bulk statement's capture leaves no
half-written action.

Each test runs its own server (``EmbeddedPostgresql``, 127.0.0.1 only, as ``nobody``
when root), started on a copy of a data directory made once for the module (the
audited sample CRM with ``CLIENTS`` clients), and stopped at its end whatever happens.
A bulk UPDATE of every client runs in one connection; once its backend is inside the
capture trigger (the statement active, the trigger holding its lock on
audit.action_item_chunk: it is writing the items), the server dies:

- ``kill -9`` of that backend (SIGKILL from this process, not pg_terminate_backend):
  the postmaster ends every other backend and restarts with crash recovery;
- ``pg_ctl stop -m immediate``: every process quits at once; the server is started
  again on the same data directory (crash recovery).

After recovery: the clients are as they were (the statement rolled back); the log
holds exactly the actions it held before; every action has all its items
(``audit.action_items(id)`` returns ``row_count`` of them) and every item chunk its
action; and a bulk DELETE committed just before the crash is there whole, every item
with its row. The server's log shows the crash happened while the UPDATE ran.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from audited_crm import install_audited_crm
from pg_binaries import bin_dir
from psycopg import sql

from audit_capture import importing
from audit_capture.embedded import SERVER_SETTINGS, EmbeddedPostgresql

CLIENTS = 100_000
COMMITTED = 20_000  # the rows of the bulk DELETE committed before the crash
# the bulk UPDATE's rows are the 80,000 left: its capture takes about a second
DATABASE = "crm"
# The test servers' settings, but commits wait for their WAL to be written: with
# synchronous_commit off, a crash may lose the last commits (whole: never half an
# action), and the committed DELETE must survive. (fsync stays off: these crashes are
# the server's, the operating system's caches survive them.)
FAULT_SETTINGS = f"{SERVER_SETTINGS} -c synchronous_commit=on"
BULK_UPDATE = "update clients set status = 'contacted', notes = 'called ' || id"
RECOVERY_GUARD = 60.0  # seconds: only keeps a server that never comes back from hanging


@pytest.fixture(scope="module")
def crm_data_dir():
    """A data directory holding the audited CRM and its CLIENTS clients (imported: one
    committed action of CLIENTS items), made once; each test's server starts on a copy."""
    base_dir = tempfile.mkdtemp(prefix="audit-faults-")  # kept by stop(): base_dir is ours
    try:
        server = EmbeddedPostgresql(
            bin_dir=bin_dir(), base_dir=base_dir, postgres_args=FAULT_SETTINGS
        )
        try:
            url = server.url(DATABASE)
            with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
                admin.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
            install_audited_crm(url)
            with psycopg.connect(url) as conn, importing(conn):
                conn.execute(
                    "insert into clients (id, name, email) select n, 'Client ' || n,"
                    " 'c' || n || '@example.com' from generate_series(1, %s) n",
                    (CLIENTS,),
                )
        finally:
            server.stop()  # a clean shutdown: the copies start without recovery
        yield server.get_data_directory()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def server(crm_data_dir):
    """This test's own server, on a copy of crm_data_dir; stopped (and its files removed)
    after the test, whether it passed, failed or left the server down."""
    server = EmbeddedPostgresql(
        bin_dir=bin_dir(), copy_data_from=crm_data_dir, postgres_args=FAULT_SETTINGS
    )
    try:
        yield server
    finally:
        server.stop()


# -- what must hold after recovery -----------------------------------------------------


def clients_state(conn: psycopg.Connection) -> tuple:
    """The clients table's rows, as one checksum (and their count)."""
    return conn.execute(
        "select count(*), md5(coalesce(string_agg(c::text, ',' order by c.id), '')) from clients c"
    ).fetchone()


def log_state(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("select id, action, row_count from audit.action_log order by id").fetchall()


def half_written(conn: psycopg.Connection) -> dict[str, list]:
    """Actions without all their items, and item chunks without their action."""
    incomplete = conn.execute(
        "select l.id, l.row_count, n.items from audit.action_log l"
        " cross join lateral (select count(*) as items from audit.action_items(l.id)) n"
        " where n.items <> l.row_count"
    ).fetchall()
    orphans = conn.execute(
        "select c.action_id, c.first_item, c.item_count from audit.action_item_chunk c"
        " where not exists (select from audit.action_log l where l.id = c.action_id)"
    ).fetchall()
    return {"actions without all their items": incomplete, "chunks without action": orphans}


def committed_delete_is_whole(conn: psycopg.Connection, action_id: int) -> None:
    action, row_count = conn.execute(
        "select action, row_count from audit.action_log where id = %s", (action_id,)
    ).fetchone()
    assert (action, row_count) == ("Batch client deletion", COMMITTED)
    items = conn.execute(
        "select item_no, resource_id, old ->> 'name', new from audit.action_items(%s)",
        (action_id,),
    ).fetchall()
    assert [i[0] for i in items] == list(range(1, COMMITTED + 1))
    assert sorted(int(i[1]) for i in items) == list(range(1, COMMITTED + 1))
    assert all(name == f"Client {rid}" and new is None for _, rid, name, new in items)


# -- the faults --------------------------------------------------------------------------


def wait_inside_capture(conn: psycopg.Connection, pid: int) -> None:
    """Returns once the backend ``pid`` runs the bulk UPDATE and is inside its capture
    trigger: the statement still active, and a lock on audit.action_item_chunk held (the
    trigger takes it to write the items). Each look is a transaction of its own (a
    transaction's view of pg_stat_activity never changes)."""
    deadline = time.monotonic() + RECOVERY_GUARD
    while time.monotonic() < deadline:
        row = conn.execute(
            "select a.state, a.query, exists (select from pg_locks k"
            "   where k.pid = a.pid and k.relation = 'audit.action_item_chunk'::regclass)"
            " from pg_stat_activity a where a.pid = %s",
            (pid,),
        ).fetchone()
        assert row is not None, f"backend {pid} is gone"
        state, query, writing_items = row
        if query == BULK_UPDATE:  # (before it: the BEGIN psycopg sends first)
            assert state == "active", f"the bulk UPDATE ended before the fault ({state})"
            if writing_items:
                return
        time.sleep(0.005)
    raise AssertionError(f"backend {pid} never reached the capture trigger")


RECOVERY = "automatic recovery in progress"
READY = "database system is ready to accept connections"


def wait_logged(server: EmbeddedPostgresql, *lines: str) -> str:
    """The server's log once it holds ``lines``, in that order (each after the one
    before); what the server says is the event waited for."""
    deadline = time.monotonic() + RECOVERY_GUARD
    while True:
        log = server.read_bootlog()
        at = 0
        for line in lines:
            at = log.find(line, at)
            if at < 0:
                break
        else:
            return log
        assert time.monotonic() < deadline, f"the server never logged {lines}:\n{log[-3000:]}"
        time.sleep(0.05)


def kill_backend(server: EmbeddedPostgresql, pid: int) -> str:
    """kill -9 of the backend (as root, of a process of ``nobody``): the postmaster takes
    it for a crash, ends the other backends and restarts with crash recovery (a new
    connection may get in before it noticed: its log says when it has). What the
    server's log says then."""
    os.kill(pid, signal.SIGKILL)
    return wait_logged(server, f"(PID {pid}) was terminated by signal 9", RECOVERY, READY)


def stop_immediately(server: EmbeddedPostgresql, pid: int) -> str:
    """pg_ctl stop -m immediate, then the server started again on its data directory
    (restart() returns once it accepts connections). What the server's log says, both
    runs of it."""
    server.stop_immediately()
    before = server.read_bootlog()
    server.restart()
    return before + server.read_bootlog()


FAULTS: dict[str, tuple[Callable[[EmbeddedPostgresql, int], str], str]] = {
    # the fault, and what the server's log says of it
    "kill-9": (kill_backend, "was terminated by signal 9"),
    "immediate-shutdown": (stop_immediately, "received immediate shutdown request"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_crash_inside_the_capture_leaves_no_half_written_action(server, fault):
    crash, logged = FAULTS[fault]
    url = server.url(DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("delete from clients where id <= %s", (COMMITTED,))  # committed
        deleted = conn.execute("select max(id) from audit.action_log").fetchone()[0]
        clients, log = clients_state(conn), log_state(conn)
        assert half_written(conn) == {
            "actions without all their items": [],
            "chunks without action": [],
        }

    victim = psycopg.connect(url)  # its transaction is never committed
    failure: list[BaseException] = []

    def bulk_update() -> None:
        try:
            victim.execute(BULK_UPDATE)
        except BaseException as exc:
            failure.append(exc)

    updating = threading.Thread(target=bulk_update)
    try:
        with psycopg.connect(url, autocommit=True) as watcher:
            updating.start()
            wait_inside_capture(watcher, victim.info.backend_pid)
            server_log = crash(server, victim.info.backend_pid)
        updating.join(RECOVERY_GUARD)
        assert not updating.is_alive()
        assert failure and isinstance(failure[0], psycopg.OperationalError), failure
    finally:
        victim.close()
    assert logged in server_log, server_log[-3000:]
    assert RECOVERY in server_log.split(logged, 1)[1], server_log[-3000:]
    if fault == "kill-9":  # the backend was running the UPDATE when it died
        assert f"Failed process was running: {BULK_UPDATE}" in server_log, server_log[-3000:]

    with psycopg.connect(url) as conn:
        assert clients_state(conn) == clients  # the UPDATE rolled back
        assert log_state(conn) == log  # no action of it, none lost
        assert half_written(conn) == {
            "actions without all their items": [],
            "chunks without action": [],
        }
        committed_delete_is_whole(conn, deleted)
        # and capture works on the recovered server
        conn.execute("update clients set status = 'qualified' where id <= %s", (COMMITTED + 10,))
        conn.commit()
        assert log_state(conn)[-1][1:] == ("Bulk client status update", 10)
