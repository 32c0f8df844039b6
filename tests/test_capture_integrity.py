"""Capture cannot be switched off or walked around: partitions and inheritance children,
primary-key changes that leave nothing behind, audit triggers that cannot be renamed or
replaced, and `status` that reads every gap as a problem."""

from __future__ import annotations

import psycopg
import pytest
from audit_log import actions, items
from psycopg import errors

from audit_capture.status import GAP, read_status

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")


def _pending(conn) -> int:
    return conn.execute("select count(*) from audit.pending_key_change").fetchone()[0]


def _keys_moved(conn) -> str:
    return conn.execute(
        "select coalesce(current_setting('audit.keys_moved', true), '')"
    ).fetchone()[0]


# -- item 4: key-change bookkeeping -----------------------------------------------------


def test_a_key_changed_back_and_forth_leaves_no_note_for_the_next_statement(conn):
    """Single-row key changes took the one-row path, which never read (nor removed) the
    row trigger's notes: the next bulk UPDATE paired its rows with them (3 rows, every
    column changed) and the notes outlived the commit."""
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name, email)"
            " values (7001, 'Ann', 'a@x'), (7002, 'Bob', 'b@x')"
        )
    first = conn.execute("select max(id) from audit.action_log").fetchone()[0]
    with conn.transaction():
        conn.execute("update clients set id = 9001 where id = 7001")
        conn.execute("update clients set id = 7001 where id = 9001")
        conn.execute("update clients set email = 'x' where id in (7001, 7002)")
        assert _pending(conn) == 0 and _keys_moved(conn) == ""
    logged = [a for a in actions(conn, resource_type="client") if a["id"] > first]
    assert [(a["action"], a["row_count"]) for a in logged] == [
        ("Client updated", 1),
        ("Client updated", 1),
        ("Bulk client email update", 2),
    ]
    assert logged[0]["changes"] == {"id": {"old": 7001, "new": 9001}}
    assert logged[1]["changes"] == {"id": {"old": 9001, "new": 7001}}
    assert logged[2]["changes"] == {"rows": 2, "changed_columns": ["email"]}
    assert sorted((i["resource_id"], i["old"], i["new"]) for i in items(conn, logged[2]["id"])) == [
        ("7001", {"email": "a@x"}, {"email": "x"}),
        ("7002", {"email": "b@x"}, {"email": "x"}),
    ]
    assert _pending(conn) == 0


def test_bulk_key_changes_leave_nothing_pending_and_the_flag_off(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name) select i, 'c' || i from generate_series(1, 5) i"
        )
        conn.execute("update clients set id = id + 100")
        assert _pending(conn) == 0 and _keys_moved(conn) == ""
        conn.execute("update clients set name = 'renamed' where id in (101, 102)")
    renamed = actions(conn, resource_type="client")[-1]
    assert (renamed["action"], renamed["row_count"]) == ("Bulk client name update", 2)
    assert _pending(conn) == 0


def test_a_rolled_back_key_change_and_an_error_mid_statement_leave_nothing(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name) select i, 'c' || i from generate_series(1, 4) i"
        )
    conn.execute("update clients set id = id + 10")
    conn.rollback()
    assert _pending(conn) == 0
    with conn.transaction():
        # the table's own row trigger fails after the audit noted some moved keys
        conn.execute(
            "create function refuse_14() returns trigger language plpgsql as $$"
            " begin if new.id = 14 then raise exception 'no 14'; end if; return null; end $$"
        )
        conn.execute(
            "create trigger zz_refuse_14 after update on clients for each row"
            " execute function refuse_14()"
        )
    with conn.transaction():
        with pytest.raises(errors.RaiseException, match="no 14"), conn.transaction():
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
        conn.execute(
            "create table files (folder_id int references folders on update cascade,"
            " n int, primary key (folder_id, n))"
        )
        conn.execute("select audit.track('folders', 'folder')")
        conn.execute("select audit.track('files', 'file')")
        conn.execute("insert into folders values (1, 'a'), (2, 'b')")
        conn.execute("insert into files values (1, 1), (1, 2), (2, 1)")
    with conn.transaction():
        conn.execute("update folders set id = id * 10")
        assert _pending(conn) == 0
    (moved_folders,) = [
        a for a in actions(conn, resource_type="folder") if a["action"] == "Bulk folder id update"
    ]
    assert sorted((i["old"]["id"], i["new"]["id"]) for i in items(conn, moved_folders["id"])) == [
        (1, 10),
        (2, 20),
    ]
    moved_files = [
        a
        for a in actions(conn, resource_type="file")
        if a["action"].startswith("Bulk file") or a["action"] == "File updated"
    ]
    pairs = sorted(
        (i["old"]["folder_id"], i["new"]["folder_id"])
        for a in moved_files
        for i in items(conn, a["id"])
    )
    assert pairs == [(1, 10), (1, 10), (2, 20)]


def test_a_new_session_cannot_pick_up_notes_left_by_an_old_one(db_url, conn):
    """Notes are kept per transaction, not per backend pid (which a later session reuses)."""
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'a'), (2, 'b')")
    with psycopg.connect(db_url) as other:
        pid = other.execute("select pg_backend_pid()").fetchone()[0]
        # what an old session with this pid might have left (written as the superuser)
        with conn.transaction():
            conn.execute(
                "insert into audit.pending_key_change (backend_pid, relation, old_key, new_key)"
                " values (%s, 'clients'::regclass, '1', '2')",
                (pid,),
            )
        with other.transaction():
            other.execute("update clients set id = id + 10")
    shift = actions(conn, resource_type="client")[-1]
    assert sorted((i["old"]["id"], i["new"]["id"]) for i in items(conn, shift["id"])) == [
        (1, 11),
        (2, 12),
    ]


# -- item 3: partitions ------------------------------------------------------------------


def _events(conn, *, track: bool = True) -> None:
    with conn.transaction():
        conn.execute(
            "create table events (id int, region text, note text, secret text,"
            " primary key (id, region)) partition by list (region)"
        )
        conn.execute("create table events_eu partition of events for values in ('eu')")
        if track:
            conn.execute(
                "select audit.track('events', 'event', label_column => 'note',"
                " redacted_columns => '{secret}')"
            )


def _event_actions(conn) -> list[tuple]:
    return [
        (a["action"], a["row_count"], a["table_name"]) for a in actions(conn, resource_type="event")
    ]


def test_writes_that_name_a_partition_are_logged_as_the_tracked_table(conn):
    """The issue's repro: nothing was logged for statements naming events_eu."""
    _events(conn)
    with conn.transaction():
        conn.execute("insert into events_eu values (2, 'eu', 'b', 's1')")
        conn.execute("update events_eu set note = 'c'")
        conn.execute("delete from events_eu")
    assert _event_actions(conn) == [
        ("Event created", 1, "public.events"),
        ("Event updated", 1, "public.events"),
        ("Event deleted", 1, "public.events"),
    ]
    created, updated, deleted = actions(conn, resource_type="event")
    assert (created["resource_id"], created["resource_label"]) == ("(2,eu)", "b")
    assert created["changes"]["secret"] == "[redacted]"
    assert updated["changes"] == {"note": {"old": "b", "new": "c"}}
    assert deleted["changes"]["secret"] == "[redacted]"


def test_each_statement_is_logged_once_whichever_table_it_names(conn):
    _events(conn)
    with conn.transaction():
        conn.execute(
            "insert into events values (1, 'eu', 'a', null), (2, 'eu', 'b', null)"
        )  # the parent
        conn.execute(
            "insert into events_eu values (3, 'eu', 'c', 's'), (4, 'eu', 'd', 's')"
        )  # the partition
        conn.execute("update events set note = note || '!' where id in (1, 3)")
        conn.execute("update events_eu set secret = 'x' where id in (2, 4)")
    logged = actions(conn, resource_type="event")
    assert [(a["action"], a["row_count"]) for a in logged] == [
        ("Batch event creation", 2),
        ("Batch event creation", 2),
        ("Bulk event note update", 2),
        ("Bulk event secret update", 2),
    ]
    assert sorted(i["resource_id"] for i in items(conn, logged[1]["id"])) == ["(3,eu)", "(4,eu)"]
    assert all(i["new"]["secret"] == "[redacted]" for i in items(conn, logged[1]["id"]))
    assert all(i["old"] == {"secret": "[redacted]"} for i in items(conn, logged[3]["id"]))


def test_partitions_created_or_attached_later_and_subpartitions_are_captured(conn, capture_mode):
    """A partition attached from a table made separately has its own column order and
    attribute numbers (a dropped column, columns in another order); a sub-partition
    and its partitioned parent are members too. Without the event triggers (generic
    mode) a later partition is a gap `status` names, until audit.track() runs again."""
    _events(conn)
    with conn.transaction():
        conn.execute(
            "create table events_us"
            " (dropped int, secret text, note text, region text not null, id int not null)"
        )
        conn.execute("alter table events_us drop column dropped")
        conn.execute("alter table events attach partition events_us for values in ('us')")
        conn.execute(
            "create table events_asia partition of events for values in ('jp', 'kr')"
            " partition by list (region)"
        )
        conn.execute("create table events_jp partition of events_asia for values in ('jp')")
    if capture_mode == "generic":
        gaps = {
            (r, t)
            for r, t in conn.execute(
                "select relation::text, trigger_name from audit.capture_gaps()"
            )
        }
        assert ("events_us", "audit_capture_insert") in gaps and (
            "events_jp",
            "audit_capture_update",
        ) in gaps
        with conn.transaction():
            conn.execute(
                "select audit.track('events', 'event', label_column => 'note',"
                " redacted_columns => '{secret}')"
            )
    assert conn.execute("select count(*) from audit.capture_gaps()").fetchone()[0] == 0
    with conn.transaction():
        conn.execute(
            "insert into events_us (id, region, note, secret) values (5, 'us', 'e', 'hidden')"
        )
        conn.execute("update events_us set note = 'f', id = 6")
        conn.execute("insert into events_jp values (7, 'jp', 'g', 'hidden')")
        conn.execute("insert into events_asia values (8, 'jp', 'h', 'hidden')")
        conn.execute("update events set note = 'all'")
    logged = actions(conn, resource_type="event")
    assert [(a["action"], a["row_count"], a["table_name"]) for a in logged] == [
        ("Event created", 1, "public.events"),
        ("Event updated", 1, "public.events"),
        ("Event created", 1, "public.events"),
        ("Event created", 1, "public.events"),
        ("Bulk event note update", 3, "public.events"),
    ]
    us = logged[0]["changes"]
    assert us == {"id": 5, "region": "us", "note": "e", "secret": "[redacted]"}
    assert logged[1]["changes"] == {"id": {"old": 5, "new": 6}, "note": {"old": "e", "new": "f"}}
    assert logged[1]["resource_id"] == "(6,us)"
    assert logged[2]["changes"]["secret"] == "[redacted]"


def test_a_truncate_is_logged_once_per_statement(conn):
    _events(conn)
    with conn.transaction():
        conn.execute("create table events_us partition of events for values in ('us')")
        if conn.execute("select count(*) from audit.capture_gaps()").fetchone()[0]:
            conn.execute("select audit.track('events', 'event')")  # generic mode: no event trigger
        conn.execute("insert into events values (1, 'eu', 'a', null), (2, 'us', 'b', null)")
    with conn.transaction():
        conn.execute("truncate events")
        conn.execute("truncate events_eu")
        conn.execute("truncate events_eu, events_us")
        conn.execute("truncate events_us, clients cascade")
    truncated = [a["changes"] for a in actions(conn, action="Events table truncated")]
    assert truncated == [
        {"truncated": "public.events"},
        {"truncated": "public.events_eu"},
        {"truncated": "public.events_eu"},
        {"truncated": "public.events_us"},
    ]
    assert len(actions(conn, action="Clients table truncated")) == 1


def test_key_changes_inside_a_partition_pair_up_and_leave_nothing(conn):
    _events(conn)
    with conn.transaction():
        conn.execute("insert into events_eu values (1, 'eu', 'a', null), (2, 'eu', 'b', null)")
        conn.execute("update events_eu set id = id + 10")
        assert _pending(conn) == 0 and _keys_moved(conn) == ""
    moved = actions(conn, resource_type="event")[-1]
    assert sorted((i["resource_id"], i["old"], i["new"]) for i in items(conn, moved["id"])) == [
        ("(11,eu)", {"id": 1}, {"id": 11}),
        ("(12,eu)", {"id": 2}, {"id": 12}),
    ]


def test_inheritance_children_are_captured_as_their_parent(conn, capture_mode):
    """A child's own extra columns are left out: it is logged as its parent's resource."""
    with conn.transaction():
        conn.execute("create table notes (id int primary key, body text)")
        conn.execute("select audit.track('notes', 'note', label_column => 'body')")
        conn.execute("create table urgent_notes (level int) inherits (notes)")
        if capture_mode == "generic":
            assert conn.execute("select count(*) from audit.capture_gaps()").fetchone()[0] > 0
            conn.execute("select audit.track('notes', 'note', label_column => 'body')")
        conn.execute("insert into urgent_notes values (1, 'first', 5), (2, 'second', 6)")
        conn.execute("update urgent_notes set body = 'changed', level = 7 where id = 1")
        conn.execute("update notes set id = id + 10")  # the parent's statement reaches the child
        conn.execute("delete from urgent_notes where id = 12")
    logged = actions(conn, resource_type="note")
    assert [(a["action"], a["row_count"], a["table_name"]) for a in logged] == [
        ("Batch note creation", 2, "public.notes"),
        ("Note updated", 1, "public.notes"),
        ("Bulk note id update", 2, "public.notes"),
        ("Note deleted", 1, "public.notes"),
    ]
    assert logged[1]["changes"] == {"body": {"old": "first", "new": "changed"}}
    assert sorted((i["old"]["id"], i["new"]["id"]) for i in items(conn, logged[2]["id"])) == [
        (1, 11),
        (2, 12),
    ]
    assert logged[3]["changes"] == {"id": 12, "body": "second"}
    assert _pending(conn) == 0


def test_a_partition_or_child_of_a_tracked_table_is_not_tracked_on_its_own(conn):
    _events(conn)
    with pytest.raises(
        errors.InvalidParameterValue, match="partition or inheritance child of public.events"
    ):
        conn.execute("select audit.track('events_eu', 'event_eu')")
    conn.rollback()
    with conn.transaction():
        conn.execute("select audit.untrack('events')")
        conn.execute("select audit.track('events_eu', 'event_eu')")
    with pytest.raises(
        errors.InvalidParameterValue,
        match="its partition or inheritance child public.events_eu is tracked",
    ):
        conn.execute("select audit.track('events', 'event')")
    conn.rollback()


# -- item 2: capture cannot be switched off unseen ---------------------------------------

NOOP = "create function noop() returns trigger language plpgsql as $$ begin return null; end $$"


def _table(conn, relation):
    (table,) = [t for t in read_status(conn).tables if t.relation == relation]
    return table


@pytest.mark.parametrize(
    "statement",
    [
        "alter trigger audit_capture_update on owned_notes rename to x",
        "create or replace trigger audit_capture_insert after insert on owned_notes"
        " referencing new table as audit_new_rows for each statement execute function noop()",
        "create or replace trigger audit_capture_key_change after update on owned_notes"
        " for each row execute function noop()",
        "create or replace trigger audit_capture_delete after delete on owned_notes"
        " referencing old table as audit_old_rows for each statement when (false)"
        " execute function audit.capture()",
        "create trigger sneaky after insert on owned_notes referencing new table as audit_new_rows"
        " for each statement execute function audit.capture()",
    ],
)
def test_a_table_owner_cannot_rename_or_replace_its_audit_triggers(
    owning_app, conn, capture_mode, statement
):
    owning_app.execute(NOOP)
    if capture_mode == "generic":
        # installed without a superuser, no event trigger refuses it: status says so
        owning_app.execute(statement)
        table = _table(conn, "owned_notes")
        assert not table.ok and not read_status(conn).ok, table
    else:
        with pytest.raises(errors.InsufficientPrivilege, match="audit"):
            owning_app.execute(statement)
        assert _table(conn, "owned_notes").ok
    owning_app.execute("insert into owned_notes values (1, 'logged once')")
    if capture_mode == "generated" or "insert" in statement and "noop" not in statement:
        # a copy of audit.capture() under another name logs nothing: no second action
        assert [a["resource_id"] for a in actions(conn, resource_type="note")] == ["1"]


def test_make_capture_triggers_is_not_everyone_s(owning_app, conn):
    owning_app.execute(NOOP)
    with pytest.raises(errors.InsufficientPrivilege, match="make_capture_triggers"):
        owning_app.execute("select audit.make_capture_triggers('owned_notes', 'noop')")


def test_a_table_owner_s_inheritance_child_is_captured_or_reported(owning_app, conn, capture_mode):
    owning_app.execute("create table owned_notes_child () inherits (owned_notes)")
    if capture_mode == "generic":
        table = _table(conn, "owned_notes")
        assert table.state == GAP
        assert {(g.relation, g.trigger, g.problem) for g in table.gaps} >= {
            ("owned_notes_child", "audit_capture_insert", "missing")
        }
        return
    owning_app.execute("insert into owned_notes_child values (1, 'via the child')")
    assert [(a["action"], a["table_name"]) for a in actions(conn, resource_type="note")] == [
        ("Note created", "public.owned_notes")
    ]
    assert _table(conn, "owned_notes").ok


def test_a_swapped_copy_of_the_capture_trigger_logs_nothing(owning_app, conn, capture_mode):
    """Without the event triggers, the owner of a new partition could make its audit
    trigger itself, with old and new rows swapped: it logs nothing, and status says so.
    With them, the child has its triggers already and replacing one is refused."""
    owning_app.execute("create table owned_notes_more () inherits (owned_notes)")
    swapped = (
        "create or replace trigger audit_capture_update after update on owned_notes_more"
        " referencing old table as audit_new_rows new table as audit_old_rows"
        " for each statement execute function audit.capture()"
    )
    if capture_mode == "generated":
        with pytest.raises(errors.InsufficientPrivilege):
            owning_app.execute(swapped)
        owning_app.execute("insert into owned_notes_more values (1, 'a')")
        owning_app.execute("update owned_notes_more set body = 'b'")
        assert [a["action"] for a in actions(conn, resource_type="note")] == [
            "Note created",
            "Note updated",
        ]
        assert _table(conn, "owned_notes").ok
        return
    owning_app.execute(swapped)
    owning_app.execute("insert into owned_notes_more values (1, 'a')")
    owning_app.execute("update owned_notes_more set body = 'b'")
    assert actions(conn, resource_type="note") == []
    problems = {
        (g.trigger, g.problem)
        for g in _table(conn, "owned_notes").gaps
        if g.relation == "owned_notes_more"
    }
    assert ("audit_capture_update", "changed: not the trigger audit.track() installs") in problems


def test_an_owner_may_name_its_own_triggers_freely_elsewhere(owning_app, conn):
    owning_app.execute(NOOP)
    owning_app.execute("create table scratch (id int primary key)")
    owning_app.execute(
        "create trigger audit_capture_insert after insert on scratch"
        " for each statement execute function noop()"
    )
    owning_app.execute(
        "create trigger scratch_capture after insert on scratch"
        " referencing new table as audit_new_rows for each statement"
        " execute function audit.capture()"
    )
    owning_app.execute("insert into scratch values (1)")
    assert actions(conn, table_name="public.scratch") == []
    owning_app.execute("drop trigger audit_capture_insert on scratch")


def test_a_detached_partition_is_a_table_of_its_own(make_role, conn, capture_mode):
    """DETACH PARTITION (and NO INHERIT) take a table out of the tracked table: its later
    writes are not logged, its leftover audit triggers log nothing and its owner may
    drop them."""
    url = make_role("grant usage, create on schema public to {role}")
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(
            "create table visits (id int, at date, primary key (id, at)) partition by range (at)"
        )
        owner.execute(
            "create table visits_2025 partition of visits"
            " for values from ('2025-01-01') to ('2026-01-01')"
        )
    with conn.transaction():
        conn.execute("select audit.track('visits', 'visit')")
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute("insert into visits_2025 values (1, '2025-05-01')")
        owner.execute("alter table visits detach partition visits_2025")
        owner.execute("insert into visits_2025 values (2, '2025-05-02')")
        for (name,) in owner.execute(
            "select tgname from pg_trigger where tgrelid = 'visits_2025'::regclass"
            " and tgname like 'audit_capture_%'"
        ).fetchall():
            owner.execute(f"drop trigger {name} on visits_2025")
    assert [a["resource_id"] for a in actions(conn, resource_type="visit")] == ["(1,2025-05-01)"]
    assert _table(conn, "visits").ok


def test_a_former_inheritance_child_is_a_table_of_its_own(owning_app, conn, capture_mode):
    owning_app.execute("create table owned_notes_old () inherits (owned_notes)")
    if capture_mode == "generic":
        with conn.transaction():
            conn.execute("select audit.track('owned_notes', 'note')")
    owning_app.execute("insert into owned_notes_old values (1, 'while a child')")
    owning_app.execute("alter table owned_notes_old no inherit owned_notes")
    owning_app.execute("insert into owned_notes_old values (2, 'on its own')")
    assert [a["resource_id"] for a in actions(conn, resource_type="note")] == ["1"]
    owning_app.execute("drop trigger audit_capture_insert on owned_notes_old")
    assert _table(conn, "owned_notes").ok


def test_status_names_a_trigger_a_superuser_renamed(db_url, conn):
    """What a superuser does is detected rather than prevented: status is NOT OK."""
    from click.testing import CliRunner

    from audit_capture.cli import cli

    with conn.transaction():
        conn.execute("alter trigger audit_capture_update on clients rename to was_audit")
    result = CliRunner().invoke(
        cli, ["--database-url", db_url, "status"], env={"AUDIT_CAPTURE_DATABASE_URL": None}
    )
    assert result.exit_code == 1, result.output
    assert "  clients (client): " in result.output
    assert "    not captured: clients: trigger audit_capture_update: missing" in result.output
    assert "status: NOT OK" in result.output


@pytest.mark.parametrize(
    "statement",
    [
        "alter table owned_notes rename column id to note_id",
        "alter table owned_notes rename column body to text",
        "alter table owned_notes add column extra text",
        "alter table owned_notes rename to owned_notes_renamed",
    ],
)
def test_the_owner_s_own_alter_table_keeps_working_and_capturing(
    owning_app, conn, statement, capture_mode
):
    """A table's owner changes its table as migrations do: capture follows, nothing is
    refused. Without the event triggers (generic mode) a renamed key column leaves the
    key-change trigger as PostgreSQL rewrote it: status says so until audit.track() runs again."""
    owning_app.execute(statement)
    table = "owned_notes_renamed" if "rename to" in statement else "owned_notes"
    owning_app.execute(f"insert into {table} values (1, 'after the change')")
    owning_app.execute(
        f"update {table} set {'text' if 'to text' in statement else 'body'} = 'again'"
    )
    assert [a["action"] for a in actions(conn, resource_type="note")] == [
        "Note created",
        "Note updated",
    ]
    if capture_mode == "generic" and "note_id" in statement:
        assert not _table(conn, table).ok
        with conn.transaction():
            conn.execute("select audit.track('owned_notes', 'note')")
    assert _table(conn, table).ok


def test_a_key_column_s_type_change_needs_the_dba(owning_app, conn):
    """The key-change trigger's WHEN clause names the key columns, so PostgreSQL refuses
    to change their type while it exists; the owner may not drop it (an audit trigger):
    a DBA untracks, the owner alters, the DBA tracks again (README, Fast capture)."""
    with pytest.raises(errors.FeatureNotSupported, match="audit_capture_key_change"):
        owning_app.execute("alter table owned_notes alter column id type bigint")
    with conn.transaction():
        conn.execute("select audit.untrack('owned_notes')")
    owning_app.execute("alter table owned_notes alter column id type bigint")
    with conn.transaction():
        conn.execute("select audit.track('owned_notes', 'note')")
    owning_app.execute("insert into owned_notes values (1, 'bigint now')")
    assert [a["action"] for a in actions(conn, resource_type="note")] == ["Note created"]
