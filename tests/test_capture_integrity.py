"""Capture cannot be switched off or walked around: partitions and inheritance children,
primary-key changes that leave nothing behind, audit triggers that cannot be renamed or
replaced, and `status` that reads every gap as a problem."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from audit_log import actions, items

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")


def _pending(conn) -> int:
    return conn.execute("select count(*) from audit.pending_key_change").fetchone()[0]


def _keys_moved(conn) -> str:
    return conn.execute("select coalesce(current_setting('audit.keys_moved', true), '')").fetchone()[0]


# -- item 4: key-change bookkeeping -----------------------------------------------------


def test_a_key_changed_back_and_forth_leaves_no_note_for_the_next_statement(conn):
    """Single-row key changes took the one-row path, which never read (nor removed) the
    row trigger's notes: the next bulk UPDATE paired its rows with them (3 rows, every
    column changed) and the notes outlived the commit."""
    with conn.transaction():
        conn.execute("insert into clients (id, name, email) values (7001, 'Ann', 'a@x'), (7002, 'Bob', 'b@x')")
    first = conn.execute("select max(id) from audit.action_log").fetchone()[0]
    with conn.transaction():
        conn.execute("update clients set id = 9001 where id = 7001")
        conn.execute("update clients set id = 7001 where id = 9001")
        conn.execute("update clients set email = 'x' where id in (7001, 7002)")
        assert _pending(conn) == 0 and _keys_moved(conn) == ""
    logged = [a for a in actions(conn, resource_type="client") if a["id"] > first]
    assert [(a["action"], a["row_count"]) for a in logged] == [
        ("Client updated", 1), ("Client updated", 1), ("Bulk client email update", 2)]
    assert logged[0]["changes"] == {"id": {"old": 7001, "new": 9001}}
    assert logged[1]["changes"] == {"id": {"old": 9001, "new": 7001}}
    assert logged[2]["changes"] == {"rows": 2, "changed_columns": ["email"]}
    assert sorted((i["resource_id"], i["old"], i["new"]) for i in items(conn, logged[2]["id"])) == [
        ("7001", {"email": "a@x"}, {"email": "x"}), ("7002", {"email": "b@x"}, {"email": "x"})]
    assert _pending(conn) == 0


def test_bulk_key_changes_leave_nothing_pending_and_the_flag_off(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) select i, 'c' || i from generate_series(1, 5) i")
        conn.execute("update clients set id = id + 100")
        assert _pending(conn) == 0 and _keys_moved(conn) == ""
        conn.execute("update clients set name = 'renamed' where id in (101, 102)")
    renamed = actions(conn, resource_type="client")[-1]
    assert (renamed["action"], renamed["row_count"]) == ("Bulk client name update", 2)
    assert _pending(conn) == 0


def test_a_rolled_back_key_change_and_an_error_mid_statement_leave_nothing(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) select i, 'c' || i from generate_series(1, 4) i")
    conn.execute("update clients set id = id + 10")
    conn.rollback()
    assert _pending(conn) == 0
    with conn.transaction():
        # the table's own row trigger fails after the audit noted some moved keys
        conn.execute("create function refuse_14() returns trigger language plpgsql as $$"
                     " begin if new.id = 14 then raise exception 'no 14'; end if; return null; end $$")
        conn.execute("create trigger zz_refuse_14 after update on clients for each row"
                     " execute function refuse_14()")
    with conn.transaction():
        with pytest.raises(errors.RaiseException, match="no 14"):
            with conn.transaction():
                conn.execute("update clients set id = id + 10")
        assert _pending(conn) == 0 and _keys_moved(conn) == ""
        conn.execute("update clients set name = 'after' where id in (1, 2)")
    after = actions(conn, resource_type="client")[-1]
    assert (after["action"], after["row_count"]) == ("Bulk client name update", 2)


def test_a_key_change_inside_a_cascade_pairs_each_statement_with_its_own_notes(conn):
    """A statement nested inside another's triggers (an ON UPDATE CASCADE of a tracked
    table whose key moves too) keeps its notes apart from the outer statement's."""
    with conn.transaction():
        conn.execute("create table folders (id int primary key, name text)")
        conn.execute("create table files (folder_id int references folders on update cascade,"
                     " n int, primary key (folder_id, n))")
        conn.execute("select audit.track('folders', 'folder')")
        conn.execute("select audit.track('files', 'file')")
        conn.execute("insert into folders values (1, 'a'), (2, 'b')")
        conn.execute("insert into files values (1, 1), (1, 2), (2, 1)")
    with conn.transaction():
        conn.execute("update folders set id = id * 10")
        assert _pending(conn) == 0
    (moved_folders,) = [a for a in actions(conn, resource_type="folder") if a["action"] == "Bulk folder id update"]
    assert sorted((i["old"]["id"], i["new"]["id"]) for i in items(conn, moved_folders["id"])) == [(1, 10), (2, 20)]
    moved_files = [a for a in actions(conn, resource_type="file") if a["action"].startswith("Bulk file")
                   or a["action"] == "File updated"]
    pairs = sorted((i["old"]["folder_id"], i["new"]["folder_id"])
                   for a in moved_files for i in items(conn, a["id"]))
    assert pairs == [(1, 10), (1, 10), (2, 20)]


def test_a_new_session_cannot_pick_up_notes_left_by_an_old_one(db_url, conn):
    """Notes are kept per transaction, not per backend pid (which a later session reuses)."""
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'a'), (2, 'b')")
    with psycopg.connect(db_url) as other:
        pid = other.execute("select pg_backend_pid()").fetchone()[0]
        # what an old session with this pid might have left (written as the superuser)
        with conn.transaction():
            conn.execute("insert into audit.pending_key_change (backend_pid, relation, old_key, new_key)"
                         " values (%s, 'clients'::regclass, '1', '2')", (pid,))
        with other.transaction():
            other.execute("update clients set id = id + 10")
    shift = actions(conn, resource_type="client")[-1]
    assert sorted((i["old"]["id"], i["new"]["id"]) for i in items(conn, shift["id"])) == [(1, 11), (2, 12)]
