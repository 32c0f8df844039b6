"""Nothing escapes: every way of writing a tracked table is logged the same way (upsert,
COPY, MERGE, savepoints, partitioned tables, names that need quoting)."""

from __future__ import annotations

import pytest
from audit_log import actions, count_actions, items, only_action
from psycopg import errors

from audit_capture import batch, importing, set_context

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")


def test_upsert_logs_the_inserts_and_the_updates_separately(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'Jane')")
        conn.execute(
            "insert into clients (id, name) values (1, 'Jane Roe'), (2, 'John') "
            "on conflict (id) do update set name = excluded.name"
        )
    created_many = [
        a for a in actions(conn, resource_type="client") if a["action"] == "Client created"
    ]
    assert [a["resource_id"] for a in created_many] == ["1", "2"]
    update = only_action(conn, action="Client updated")
    assert update["changes"] == {"name": {"old": "Jane", "new": "Jane Roe"}}


def test_copy_is_logged_like_an_insert(conn):
    with conn.transaction():
        set_context(conn, actor_type="system", actor_name="CSV loader", source="api")
        with (
            importing(conn),
            conn.cursor().copy("copy clients (id, name, email) from stdin") as copy,
        ):
            for i in range(1, 31):
                copy.write_row((i, f"Lead {i}", f"lead{i}@example.com"))
    action = only_action(conn, action="Clients imported (30)")
    assert (action["action_type"], action["actor_name"], action["row_count"]) == (
        "import",
        "CSV loader",
        30,
    )
    assert len(items(conn, action["id"])) == 30


def test_merge_is_logged_per_kind_of_change(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name, status) values (1, 'Jane', 'new'), (2, 'John', 'new')"
        )
        conn.execute("""
            merge into clients c
            using (values (1, 'contacted'), (3, 'new')) as s(id, status) on c.id = s.id
            when matched then update set status = s.status
            when not matched then insert (id, name, status) values (s.id, 'Merged', s.status)""")
    assert only_action(conn, action="Client status change")["resource_id"] == "1"
    assert [a["resource_id"] for a in actions(conn, action="Client created")][-1] == "3"


def test_rolled_back_savepoint_takes_its_part_of_a_batch_with_it(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name) select i, 'c' || i from generate_series(1, 3) i"
        )
    with conn.transaction(), batch(conn, "Batch client deletion"):
        conn.execute("delete from clients where id = 1")
        with pytest.raises(RuntimeError), conn.transaction():  # a savepoint
            conn.execute("delete from clients where id = 2")
            raise RuntimeError("undo this part")
        conn.execute("delete from clients where id = 3")
    action = only_action(conn, action="Batch client deletion")
    assert action["row_count"] == 2
    assert [i["resource_id"] for i in items(conn, action["id"])] == ["1", "3"]


def test_a_forged_batch_action_id_cannot_redirect_items(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'a'), (2, 'b')")
        earlier = conn.execute("select max(id) from audit.action_log").fetchone()[0]
    with conn.transaction():
        conn.execute("select set_config('audit.batch_action_id', %s, true)", (str(earlier),))
        conn.execute("set local audit.batch = 'Cleanup'")
        conn.execute("delete from clients where id = 1")
    assert only_action(conn, id=earlier)["row_count"] == 2  # untouched
    assert only_action(conn, action="Cleanup")["action_type"] == "delete"


def test_partitioned_table(conn):
    with conn.transaction():
        conn.execute(
            "create table calls (id int, region text, notes text, primary key (id, region)) "
            "partition by list (region)"
        )
        conn.execute("create table calls_east partition of calls for values in ('east')")
        conn.execute("create table calls_west partition of calls for values in ('west')")
        conn.execute("select audit.track('calls', 'call')")
        conn.execute("insert into calls values (1, 'east', null), (2, 'west', null)")
        conn.execute("update calls set notes = 'x'")
        conn.execute("update calls set region = 'west' where id = 1")  # moves partition
    created, updated, moved = actions(conn, resource_type="call")
    assert (created["action"], created["row_count"]) == ("Batch call creation", 2)
    assert (updated["action"], updated["row_count"]) == ("Bulk call notes update", 2)
    assert moved["action"] == "Call updated" and moved["resource_id"] == "(1,west)"
    assert moved["changes"] == {"region": {"old": "east", "new": "west"}}


def test_names_that_need_quoting(conn):
    with conn.transaction():
        conn.execute('create schema "Sales Dept"')
        conn.execute(
            'create table "Sales Dept"."Lead List"'
            ' ("Lead ID" int primary key, "Full Name" text, "Status" text)'
        )
        conn.execute("""select audit.track('"Sales Dept"."Lead List"', 'lead',
                        label_column => 'Full Name', status_columns => '{Status}')""")
        conn.execute("insert into \"Sales Dept\".\"Lead List\" values (1, 'Ann', 'new')")
        conn.execute('update "Sales Dept"."Lead List" set "Status" = \'won\', "Lead ID" = 2')
    created, changed = actions(conn, resource_type="lead")
    assert (created["resource_id"], created["resource_label"]) == ("1", "Ann")
    assert created["table_name"] == '"Sales Dept"."Lead List"'
    assert changed["action"] == "Lead status change"
    assert changed["changes"] == {
        "Lead ID": {"old": 1, "new": 2},
        "Status": {"old": "new", "new": "won"},
    }


@pytest.mark.parametrize(
    "call, message",
    [
        (
            "select audit.track('audit.action_log', 'log')",
            "the audit schema's own tables are not tracked",
        ),
        (
            "select audit.track('clients', 'Client')",
            "resource_type is 'Client'; expected lowercase",
        ),
        (
            "select audit.track('clients', 'client', label_column => 'nme')",
            r"cannot track public.clients: no such column: nme \(label_column\)",
        ),
        (
            "select audit.track('clients', 'client', status_columns => '{state}')",
            r"no such column: state \(status_columns\)",
        ),
        ("select audit.track('clients', 'client', labels => '{}')", "labels must be a JSON array"),
        (
            "select audit.track('clients', 'client', labels => '[{\"on\": \"create\"}]')",
            'needs a "label" string',
        ),
        (
            "select audit.track('clients', 'client', labels => '[{\"label\": \"x\", \"if\": 1}]')",
            "unknown key",
        ),
        (
            "select audit.track('clients', 'client',"
            """ labels => '[{"label": "x", "action_type": "sent"}]')""",
            "label rule action_type is 'sent'; expected one of",
        ),
        ("select audit.track('no_such_table', 'x')", 'relation "no_such_table" does not exist'),
    ],
)
def test_track_rejects_bad_settings_with_a_clear_message(conn, call, message):
    with pytest.raises(errors.Error, match=message):
        conn.execute(call)
    conn.rollback()


def test_track_refuses_views_and_tables_without_a_primary_key(conn):
    conn.execute("create table call_notes (body text)")
    with pytest.raises(
        errors.InvalidTableDefinition,
        match=r"cannot track public.call_notes: it has no primary key",
    ):
        conn.execute("select audit.track('call_notes', 'call_note')")
    conn.rollback()
    conn.execute("create view active_clients as select * from clients")
    with pytest.raises(
        errors.WrongObjectType, match="cannot track public.active_clients: it is not a table"
    ):
        conn.execute("select audit.track('active_clients', 'client')")
    conn.rollback()


def test_track_and_untrack_are_idempotent(conn):
    with conn.transaction():
        conn.execute("select audit.track('clients', 'client', label_column => 'email')")
        conn.execute("select audit.track('clients', 'client', label_column => 'email')")
        triggers = conn.execute(
            "select count(*) from pg_trigger where tgrelid = 'clients'::regclass "
            "and tgname like 'audit_capture_%'"
        ).fetchone()[0]
        assert triggers == 6  # insert, update, delete, truncate (before, after), key change
        conn.execute("insert into clients (name, email) values ('Jane', 'jane@example.com')")
    assert only_action(conn, action="Client created")["resource_label"] == "jane@example.com"
    with conn.transaction():
        conn.execute("select audit.untrack('clients')")
        conn.execute("select audit.untrack('clients')")
        conn.execute("insert into clients (name) values ('Not logged')")
    assert len(actions(conn, resource_type="client")) == 1
    assert (
        conn.execute(
            "select count(*) from pg_trigger where tgrelid = 'clients'::regclass "
            "and tgname like 'audit_capture_%'"
        ).fetchone()[0]
        == 0
    )
    before = count_actions(conn)
    assert before == 1


def test_the_capture_mode_under_test_is_the_one_installed(conn, capture_mode):
    functions = {
        name
        for (name,) in conn.execute(
            "select distinct t.tgfoid::regproc::text from pg_trigger t "
            "where t.tgrelid = 'clients'::regclass and t.tgname in "
            "('audit_capture_insert', 'audit_capture_update', 'audit_capture_delete')"
        )
    }
    clients_oid = conn.execute("select 'clients'::regclass::oid").fetchone()[0]
    expected = {"generated": f"audit.capture_{clients_oid}", "generic": "audit.capture"}[
        capture_mode
    ]
    assert functions == {expected}


def test_partitioned_table_rows_whose_keys_change_pair_up(conn):
    """Two rows of a partition change their primary keys: each is one item with its old
    and new version (the partition's copy of the key-change row trigger notes the change
    under the tracked partitioned table). A row moved to another partition is not
    paired: PostgreSQL runs that as a DELETE and an INSERT, firing no row UPDATE trigger
    (see 06_capture_queries.sql)."""
    with conn.transaction():
        conn.execute(
            "create table tickets (id int, region text, primary key (id, region)) "
            "partition by list (region)"
        )
        conn.execute("create table tickets_east partition of tickets for values in ('east')")
        conn.execute("create table tickets_west partition of tickets for values in ('west')")
        conn.execute("select audit.track('tickets', 'ticket')")
        conn.execute("insert into tickets values (1, 'east'), (2, 'east')")
    with conn.transaction():
        conn.execute("update tickets set id = id + 10")
    moved = actions(conn, resource_type="ticket")[-1]
    assert moved["row_count"] == 2
    assert sorted((i["resource_id"], i["old"], i["new"]) for i in items(conn, moved["id"])) == [
        ("(11,east)", {"id": 1}, {"id": 11}),
        ("(12,east)", {"id": 2}, {"id": 12}),
    ]
    assert conn.execute("select count(*) from audit.pending_key_change").fetchone()[0] == 0
