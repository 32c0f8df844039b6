"""How statements become actions: one per statement, items for every row, batches,
status changes, ignored columns, no-op updates and redaction."""

from __future__ import annotations

import json

import psycopg
import pytest
from audit_log import actions, count_actions, items, only_action

from audit_capture import batch, set_context

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")


def add_clients(conn, n, start=1):
    conn.execute(
        "insert into clients (id, name, email, ssn) "
        "select i, 'Client ' || i, 'c' || i || '@example.com', 'ssn-' || i "
        "from generate_series(%s::int, %s::int) i",
        (start, start + n - 1),
    )


def test_bulk_update_of_500_rows_is_one_action_with_500_items(conn):
    with conn.transaction():
        add_clients(conn, 500)
    before = count_actions(conn)
    with conn.transaction():
        set_context(conn, actor_type="admin", actor_name="Alice", source="web")
        conn.execute("update clients set notes = 'called' where id <= 500")
    assert count_actions(conn) == before + 1
    action = only_action(conn, action="Bulk client notes update")
    assert action["row_count"] == 500 and action["resource_id"] is None
    got = items(conn, action["id"])
    assert len(got) == 500
    assert sorted(int(i["resource_id"]) for i in got) == list(range(1, 501))
    # an update's items hold the changed columns
    for item in got:
        assert (item["old"], item["new"]) == ({"notes": None}, {"notes": "called"})


def test_fifty_single_row_deletes_in_a_batch_are_one_action(conn):
    with conn.transaction():
        add_clients(conn, 50)
    before = count_actions(conn)
    with conn.transaction(), batch(conn, "Batch client deletion"):
        for client_id in range(1, 51):
            conn.execute("delete from clients where id = %s", (client_id,))
    assert count_actions(conn) == before + 1
    action = only_action(conn, action="Batch client deletion")
    assert (action["row_count"], action["action_type"], action["resource_id"]) == (
        50,
        "delete",
        None,
    )
    got = items(conn, action["id"])
    assert [i["item_no"] for i in got] == list(range(1, 51))
    assert sorted(int(i["resource_id"]) for i in got) == list(range(1, 51))
    assert all(i["new"] is None and i["old"]["name"].startswith("Client ") for i in got)


def test_two_batches_of_one_transaction_are_two_actions(conn):
    with conn.transaction():
        add_clients(conn, 4)
        with batch(conn, "Batch client deletion"):
            conn.execute("delete from clients where id in (1, 2)")
        with batch(conn, "Batch client deletion"):
            conn.execute("delete from clients where id in (3, 4)")
    assert [a["row_count"] for a in actions(conn, action="Batch client deletion")] == [2, 2]


def test_statements_after_a_batch_are_their_own_actions(conn):
    with conn.transaction():
        add_clients(conn, 3)
        with batch(conn, "Cleanup"):
            conn.execute("delete from clients where id = 1")
        conn.execute("delete from clients where id = 2")
    assert only_action(conn, action="Cleanup")["row_count"] == 1
    assert only_action(conn, action="Client deleted")["resource_id"] == "2"


def test_a_truncate_inside_a_batch_ends_the_batch_action(conn):
    """Rows written after a TRUNCATE go into an action after it (replayed in id order,
    the log keeps them); found by tests/test_replay_property.py."""
    with conn.transaction(), batch(conn, "Nightly reload"):
        add_clients(conn, 1)
        conn.execute("truncate clients cascade")
        add_clients(conn, 1, start=2)
    logged = [
        (a["action"], [i["resource_id"] for i in items(conn, a["id"])])
        for a in actions(conn, resource_type="client")
    ]
    assert logged == [
        ("Nightly reload", ["1"]),
        ("Clients table truncated", []),
        ("Nightly reload", ["2"]),
    ]


@pytest.mark.parametrize(
    "statement, resource_id, label",
    [
        ("insert into clients (id, name) values (7, 'Client 7')", "7", "Client 7"),
        ("update clients set name = 'Renamed' where id = 1", "1", "Renamed"),
        ("delete from clients where id = 1", "1", "Client 1"),
    ],
)
def test_a_batch_that_holds_one_row_names_it(conn, statement, resource_id, label):
    with conn.transaction():
        add_clients(conn, 2)
        with batch(conn, "Cleanup"):
            conn.execute(statement)
    cleanup = only_action(conn, action="Cleanup")
    assert (cleanup["row_count"], cleanup["resource_id"], cleanup["resource_label"]) == (
        1,
        resource_id,
        label,
    )


def test_a_batch_mixing_updates_and_status_changes_is_a_status_change(conn):
    with conn.transaction():
        add_clients(conn, 2)
        with batch(conn, "Bulk client review"):
            conn.execute("update clients set notes = 'x' where id = 1")
            conn.execute("update clients set status = 'contacted' where id = 2")
    action = only_action(conn, action="Bulk client review")
    assert (action["action_type"], action["row_count"]) == ("status_change", 2)


def test_a_batch_mixing_creates_and_deletes_is_an_update(conn):
    with conn.transaction(), batch(conn, "Client shuffle"):
        add_clients(conn, 1)
        conn.execute("delete from clients where id = 1")
        add_clients(conn, 1, start=2)
    action = only_action(conn, action="Client shuffle")
    assert (action["action_type"], action["row_count"]) == ("update", 3)


def test_status_change_versus_plain_update(conn):
    with conn.transaction():
        add_clients(conn, 1)
        conn.execute(
            "update clients set status = 'contacted', notes = 'left a message' where id = 1"
        )
        conn.execute("update clients set notes = 'called back' where id = 1")
    status, plain = actions(conn, resource_type="client")[1:]
    assert (status["action"], status["action_type"]) == ("Client status change", "status_change")
    assert set(status["changes"]) == {"status", "notes"}
    assert (plain["action"], plain["action_type"]) == ("Client updated", "update")
    assert plain["changes"] == {"notes": {"old": "left a message", "new": "called back"}}


def test_update_of_ignored_columns_only_is_not_logged(conn):
    with conn.transaction():
        add_clients(conn, 3)
    before = count_actions(conn)
    with conn.transaction():
        conn.execute("update clients set updated_at = now() + interval '1 day'")
        # one row: the one-row path's own test of what changed
        conn.execute("update clients set updated_at = now() + interval '2 days' where id = 2")
    assert count_actions(conn) == before


def test_ignored_columns_stay_out_of_the_diff(conn):
    with conn.transaction():
        add_clients(conn, 1)
        conn.execute(
            "update clients set notes = 'n', updated_at = now() + interval '1 day' where id = 1"
        )
    assert only_action(conn, action="Client updated")["changes"] == {
        "notes": {"old": None, "new": "n"}
    }


def test_noop_update_is_not_logged(conn):
    with conn.transaction():
        add_clients(conn, 3)
    before = count_actions(conn)
    with conn.transaction():
        conn.execute("update clients set name = name, email = email")
        conn.execute("update clients set name = name, email = email where id = 1")
        conn.execute("update clients set notes = 'x' where false")
        conn.execute("delete from clients where false")
    assert count_actions(conn) == before


def test_only_rows_that_really_changed_are_items(conn):
    with conn.transaction():
        add_clients(conn, 3)
        conn.execute("update clients set notes = 'vip' where id = 2")
        conn.execute("update clients set notes = 'vip'")  # rows 1 and 3 change, 2 does not
    action = actions(conn, resource_type="client")[-1]
    assert action["row_count"] == 2
    assert sorted(i["resource_id"] for i in items(conn, action["id"])) == ["1", "3"]


def test_redacted_columns_never_appear_in_clear(conn):
    with conn.transaction():
        add_clients(conn, 3)  # create, many rows
        conn.execute("insert into clients (id, name, ssn) values (9, 'Solo', 'ssn-solo')")
        conn.execute("update clients set ssn = 'ssn-new-9' where id = 9")
        conn.execute("update clients set ssn = 'ssn-new-' || id where id <= 3")
        conn.execute("delete from clients where id = 9")
        conn.execute("delete from clients where id <= 3")  # delete, many rows
        conn.execute(
            "insert into integrations (provider, api_key) values ('LawRuler', 'lr-key-123')"
        )
    log = conn.execute(
        "select coalesce(string_agg(changes::text, ' '), '') from audit.action_log"
    ).fetchone()[0]
    stored = conn.execute(
        "select coalesce(string_agg(items::text, ' '), '') from audit.action_item_chunk"
    ).fetchone()[0]
    for secret in ["ssn-1", "ssn-solo", "ssn-new", "lr-key-123"]:
        assert secret not in log
        assert secret not in stored
    update = only_action(conn, action="Client updated")
    assert update["changes"] == {"ssn": {"old": "[redacted]", "new": "[redacted]"}}
    assert '"ssn": "[redacted]"' in json.dumps(items(conn, update["id"])[0]["new"])
    bulk_delete = only_action(conn, action="Batch client deletion")
    assert [i["old"]["ssn"] for i in items(conn, bulk_delete["id"])] == ["[redacted]"] * 3


def test_a_redacted_column_is_refused_as_the_label_or_in_the_key(conn):
    """The label column is stored in clear as resource_label, the key as resource_id:
    neither may be redacted (audit.track() refuses, naming the column)."""
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match="label_column ssn is also a redacted column"
    ) as refused:
        conn.execute(
            "select audit.track('clients', 'client', label_column => 'ssn',"
            " redacted_columns => '{ssn}')"
        )
    assert "resource_label" in refused.value.diag.message_hint
    conn.rollback()
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match="redacted column id is part of the primary key"
    ) as refused:
        conn.execute("select audit.track('clients', 'client', redacted_columns => '{ssn,id}')")
    assert "resource_id" in refused.value.diag.message_hint
    conn.rollback()


def test_settings_that_would_show_a_redacted_value_in_clear_show_none(conn, capture_mode):
    """Should the registry say so anyway (an admin's UPDATE of audit.tracked_table), the
    label of a redacted column is left out and a redacted key reads "[redacted]"."""
    with conn.transaction():
        conn.execute(
            "update audit.tracked_table set label_column = 'ssn',"
            " redacted_columns = '{ssn,id}' where relation = 'clients'::regclass"
        )
        if capture_mode == "generated":
            conn.execute("select audit.generate_capture('clients')")
    with conn.transaction():
        conn.execute("insert into clients (id, name, ssn) values (41, 'Ann', 'ssn-ann')")
        conn.execute("update clients set ssn = 'ssn-ann-2' where id = 41")
    with conn.transaction():
        add_clients(conn, 2, start=42)
        conn.execute("update clients set ssn = ssn || '!' where id >= 42")
        conn.execute("delete from clients where id >= 41")
    logged = actions(conn, resource_type="client")[-5:]
    assert [(a["resource_id"], a["resource_label"]) for a in logged] == [
        ("[redacted]", None),
        ("[redacted]", None),
        (None, None),
        (None, None),
        (None, None),
    ]
    assert {i["resource_id"] for a in logged for i in items(conn, a["id"])} == {"[redacted]"}
    everything = json.dumps([(a["resource_id"], a["resource_label"], a["changes"]) for a in logged])
    everything += conn.execute(
        "select string_agg(concat_ws(' ', resource_ids, items), ' ') from audit.action_item_chunk"
        " where action_id = any (%s)",
        ([a["id"] for a in logged],),
    ).fetchone()[0]
    for secret in ["ssn-ann", "ssn-42", "ssn-43", '"id": 4', "[4", '"4']:
        assert secret not in everything


def test_a_json_value_that_jsonb_cannot_hold_never_fails_the_write(conn):
    """A json column accepts "\\u0000" and numbers beyond numeric's range; jsonb does
    not. Capture turned whole rows and changes into jsonb, so a single-row INSERT
    failed, with the (redacted) value in the error's CONTEXT line. Now the write goes
    through and the value is logged as a JSON string of its text."""
    with conn.transaction():
        conn.execute(
            "create table docs"
            " (id int primary key, body json, secret json, plain json, lists json[])"
        )
        conn.execute("select audit.track('docs', 'doc', redacted_columns => '{secret}')")
    with conn.transaction():
        conn.execute(
            """insert into docs values (1, '"\\u0000 zero"', '{"pin": "\\u0000 top-secret"}',"""
            """ '{"a": [1, 2.5]}', array['{"c": 1}', '[2]']::json[])"""
        )
        conn.execute(
            "update docs set body = '[1e-16384]', secret = '[1e999999, \"top-secret\"]'"
            " where id = 1"
        )
    with conn.transaction():
        conn.execute(
            """insert into docs select i, '"\\u0000"', '"\\u0000 top-secret"', '{"b": null}',"""
            """ array['"\\u0000"']::json[]"""
            " from generate_series(2, 3) i"
        )
        conn.execute(
            """update docs set body = '["\\\\u0000 is not a zero", "\\u0000"]' where id >= 2"""
        )
        conn.execute("delete from docs where id = 1")
        conn.execute("delete from docs")
    logged = actions(conn, resource_type="doc")
    assert [a["action"] for a in logged] == [
        "Doc created",
        "Doc updated",
        "Batch doc creation",
        "Bulk doc body update",
        "Doc deleted",
        "Batch doc deletion",
    ]
    created, updated = logged[0]["changes"], logged[1]["changes"]
    assert created == {
        "id": 1,
        "body": '"\\u0000 zero"',
        "secret": "[redacted]",
        "plain": {"a": [1, 2.5]},
        "lists": [{"c": 1}, [2]],
    }
    assert updated == {
        "body": {"old": '"\\u0000 zero"', "new": "[1e-16384]"},
        "secret": {"old": "[redacted]", "new": "[redacted]"},
    }
    bulk = items(conn, logged[2]["id"])
    assert [
        (i["new"]["body"], i["new"]["secret"], i["new"]["plain"], i["new"]["lists"]) for i in bulk
    ] == [('"\\u0000"', "[redacted]", {"b": None}, '{"\\"\\\\u0000\\""}')] * 2
    assert [i["new"]["body"] for i in items(conn, logged[3]["id"])] == [
        '["\\\\u0000 is not a zero", "\\u0000"]'
    ] * 2
    assert [i["old"]["id"] for i in items(conn, logged[5]["id"])] == [2, 3]
    everything = conn.execute(
        "select string_agg(changes::text, ' ') from audit.action_log"
    ).fetchone()[0]
    everything += conn.execute(
        "select string_agg(items, ' ') from audit.action_item_chunk"
    ).fetchone()[0]
    assert "top-secret" not in everything
