"""How statements become actions: one per statement, items for every row, batches,
status changes, ignored columns, no-op updates and redaction."""

from __future__ import annotations

import json

import pytest

from audit_capture import batch, set_context
from audit_log import actions, count_actions, items, only_action

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")


def add_clients(conn, n, start=1):
    conn.execute(
        "insert into clients (id, name, email, ssn) "
        "select i, 'Client ' || i, 'c' || i || '@example.com', 'ssn-' || i "
        "from generate_series(%s::int, %s::int) i", (start, start + n - 1))


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
    with conn.transaction():
        with batch(conn, "Batch client deletion"):
            for client_id in range(1, 51):
                conn.execute("delete from clients where id = %s", (client_id,))
    assert count_actions(conn) == before + 1
    action = only_action(conn, action="Batch client deletion")
    assert (action["row_count"], action["action_type"], action["resource_id"]) == (50, "delete", None)
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


@pytest.mark.parametrize("statement, resource_id, label", [
    ("insert into clients (id, name) values (7, 'Client 7')", "7", "Client 7"),
    ("update clients set name = 'Renamed' where id = 1", "1", "Renamed"),
    ("delete from clients where id = 1", "1", "Client 1"),
])
def test_a_batch_that_holds_one_row_names_it(conn, statement, resource_id, label):
    with conn.transaction():
        add_clients(conn, 2)
        with batch(conn, "Cleanup"):
            conn.execute(statement)
    cleanup = only_action(conn, action="Cleanup")
    assert (cleanup["row_count"], cleanup["resource_id"], cleanup["resource_label"]) == (
        1, resource_id, label)


def test_a_batch_mixing_updates_and_status_changes_is_a_status_change(conn):
    with conn.transaction():
        add_clients(conn, 2)
        with batch(conn, "Bulk client review"):
            conn.execute("update clients set notes = 'x' where id = 1")
            conn.execute("update clients set status = 'contacted' where id = 2")
    action = only_action(conn, action="Bulk client review")
    assert (action["action_type"], action["row_count"]) == ("status_change", 2)


def test_status_change_versus_plain_update(conn):
    with conn.transaction():
        add_clients(conn, 1)
        conn.execute("update clients set status = 'contacted', notes = 'left a message' where id = 1")
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
    assert count_actions(conn) == before


def test_ignored_columns_stay_out_of_the_diff(conn):
    with conn.transaction():
        add_clients(conn, 1)
        conn.execute("update clients set notes = 'n', updated_at = now() + interval '1 day' where id = 1")
    assert only_action(conn, action="Client updated")["changes"] == {"notes": {"old": None, "new": "n"}}


def test_noop_update_is_not_logged(conn):
    with conn.transaction():
        add_clients(conn, 3)
    before = count_actions(conn)
    with conn.transaction():
        conn.execute("update clients set name = name, email = email")
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
        add_clients(conn, 3)                                          # create, many rows
        conn.execute("insert into clients (id, name, ssn) values (9, 'Solo', 'ssn-solo')")
        conn.execute("update clients set ssn = 'ssn-new-9' where id = 9")
        conn.execute("update clients set ssn = 'ssn-new-' || id where id <= 3")
        conn.execute("delete from clients where id = 9")
        conn.execute("delete from clients where id <= 3")             # delete, many rows
        conn.execute("insert into integrations (provider, api_key) values ('LawRuler', 'lr-key-123')")
    log = conn.execute(
        "select coalesce(string_agg(changes::text, ' '), '') from audit.action_log").fetchone()[0]
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
