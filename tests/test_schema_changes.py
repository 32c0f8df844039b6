"""Capture keeps working through ALTER TABLE; TRUNCATE is logged; primary-key updates
are paired by key, never by position."""

from __future__ import annotations

from audit_log import actions, items, only_action

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")


def test_add_drop_and_rename_column_need_no_reinstall(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'Jane')")
        conn.execute("alter table clients add column language text")
        conn.execute("update clients set language = 'es' where id = 1")
        conn.execute("alter table clients rename column phone to mobile_phone")
        conn.execute("update clients set mobile_phone = '555-0100' where id = 1")
        conn.execute("alter table clients drop column email")
        conn.execute("delete from clients where id = 1")
    created, language, phone, deleted = actions(conn, resource_type="client")
    assert language["changes"] == {"language": {"old": None, "new": "es"}}
    assert phone["changes"] == {"mobile_phone": {"old": None, "new": "555-0100"}}
    assert deleted["action"] == "Client deleted"
    assert "email" not in deleted["changes"] and deleted["changes"]["language"] == "es"


def test_renaming_a_tracked_table_keeps_it_tracked(conn):
    with conn.transaction():
        conn.execute("alter table campaigns rename to marketing_campaigns")
        conn.execute("insert into marketing_campaigns (name) values ('Renamed')")
    action = only_action(conn, action="Campaign created")
    assert action["table_name"] == "public.marketing_campaigns"


def test_truncate_is_logged_as_a_delete(conn):
    with conn.transaction():
        conn.execute("insert into campaigns (name) values ('a'), ('b')")
        conn.execute("select audit.set_context(actor_name => 'DBA Dan', actor_type => 'admin')")
        conn.execute("truncate campaigns cascade")
    action = only_action(conn, action="Campaigns table truncated")
    assert (action["action_type"], action["resource_type"], action["actor_name"]) == (
        "delete",
        "campaign",
        "DBA Dan",
    )
    assert action["changes"] == {"truncated": "public.campaigns"}


def test_single_row_primary_key_update_is_one_update(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'Jane'), (2, 'John')")
        conn.execute("update clients set id = 100, notes = 'moved' where id = 1")
    action = only_action(conn, action="Client updated")
    assert action["resource_id"] == "100" and action["row_count"] == 1
    assert action["changes"] == {
        "id": {"old": 1, "new": 100},
        "notes": {"old": None, "new": "moved"},
    }
    (item,) = items(conn, action["id"])
    assert (item["old"]["id"], item["new"]["id"]) == (1, 100)


def test_multi_row_primary_key_update_pairs_every_row(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name) select i, 'Client ' || i from generate_series(1, 200) i"
        )
        conn.execute("update clients set id = id * 1000, name = name || ' moved' where id % 2 = 0")
    shift = actions(conn, resource_type="client")[-1]
    assert shift["row_count"] == 100
    shifted = items(conn, shift["id"])
    assert sorted(i["old"]["id"] for i in shifted) == list(range(2, 201, 2))
    for item in shifted:
        # each item is one row: its old key, old name, new key and new name agree
        assert item["new"]["id"] == item["old"]["id"] * 1000
        assert item["old"]["name"] == f"Client {item['old']['id']}"
        assert item["new"]["name"] == f"Client {item['old']['id']} moved"
        assert item["resource_id"] == str(item["new"]["id"])


def test_swapping_keys_between_rows_pairs_by_key_not_position(conn):
    """Each row's new key is another row's old key: pairing by key alone would mix the
    rows up; the pairing follows each row."""
    with conn.transaction():
        conn.execute(
            "create table slots (id int primary key deferrable initially deferred, name text)"
        )
        conn.execute("select audit.track('slots', 'slot', label_column => 'name')")
        conn.execute("insert into slots select i, 'Slot ' || i from generate_series(1, 200) i")
        conn.execute(
            "update slots set id = case when id <= 100 then id + 100 else id - 100 end, "
            "name = name || ' moved'"
        )
    swap = actions(conn, resource_type="slot")[-1]
    assert swap["row_count"] == 200
    swapped = items(conn, swap["id"])
    assert len(swapped) == 200
    assert sorted(i["old"]["id"] for i in swapped) == list(range(1, 201))
    for item in swapped:
        assert item["old"]["name"] == f"Slot {item['old']['id']}"
        assert item["new"]["name"] == f"Slot {item['old']['id']} moved"
        assert item["new"]["id"] == (
            item["old"]["id"] + 100 if item["old"]["id"] <= 100 else item["old"]["id"] - 100
        )
    # the key-change bookkeeping is left empty
    assert conn.execute("select count(*) from audit.pending_key_change").fetchone()[0] == 0


def test_a_column_named_like_the_pairing_key_does_not_fail_a_key_change(conn):
    """The many-row key-change query once named its join key "audit.key" beside the
    table's columns: a table with such a column could not change keys (found by
    tests/test_replay_property.py)."""
    with conn.transaction():
        conn.execute('create table slots (id int primary key, "audit.key" text)')
        conn.execute("select audit.track('slots', 'slot')")
        conn.execute("insert into slots values (1, 'a'), (2, 'b')")
        conn.execute('update slots set id = id + 10, "audit.key" = "audit.key" || \'!\'')
    moved = items(conn, actions(conn, resource_type="slot")[-1]["id"])
    assert sorted((i["old"]["id"], i["new"]["id"], i["new"]["audit.key"]) for i in moved) == [
        (1, 11, "a!"),
        (2, 12, "b!"),
    ]


def test_composite_and_text_primary_keys(conn):
    with conn.transaction():
        conn.execute(
            "create table assignments"
            " (case_id int, lawyer text, role text, primary key (case_id, lawyer))"
        )
        conn.execute("select audit.track('assignments', 'assignment', label_column => 'lawyer')")
        conn.execute(
            "insert into assignments values (1, 'O''Brien, Pat', 'lead'), (1, 'Kim', 'second')"
        )
        conn.execute("update assignments set role = 'co-lead' where lawyer = 'Kim'")
        conn.execute("update assignments set lawyer = 'Kim Lee' where lawyer = 'Kim'")
    created, role, renamed = actions(conn, resource_type="assignment")
    assert created["row_count"] == 2
    assert sorted(i["resource_id"] for i in items(conn, created["id"])) == [
        '(1,"O\'Brien, Pat")',
        "(1,Kim)",
    ]
    assert role["resource_id"] == "(1,Kim)" and role["changes"] == {
        "role": {"old": "second", "new": "co-lead"}
    }
    assert renamed["resource_id"] == '(1,"Kim Lee")'
    assert renamed["changes"] == {"lawyer": {"old": "Kim", "new": "Kim Lee"}}


def test_dropping_a_tracked_table_forgets_it(conn, capture_mode):
    oid = conn.execute("select 'case_tasks'::regclass::oid").fetchone()[0]
    with conn.transaction():
        conn.execute("drop table case_tasks")
    assert conn.execute(
        "select count(*) from audit.tracked_table where relation::oid = %s", (oid,)
    ).fetchone()[0] == (0 if capture_mode == "generated" else 1)
    # its generated capture function went with it
    assert (
        conn.execute("select to_regprocedure(%s)", (f"audit.capture_{oid}()",)).fetchone()[0]
        is None
    )
    assert (
        conn.execute("select count(*) from audit.action_log").fetchone()[0] == 0
    )  # history unaffected


def test_drop_table_prints_no_notice(conn, capture_mode):
    """The event trigger that forgets dropped tables says nothing about tables it has
    nothing to do with (a NOTICE per dropped table, index and sequence before 0004)."""
    notices: list[str] = []
    conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    with conn.transaction():
        conn.execute(
            "create table scratch (id int generated always as identity primary key,"
            " name text unique)"
        )
        conn.execute("drop table scratch")  # never tracked
        conn.execute("drop table case_tasks")  # tracked
    assert notices == []


def test_renamed_columns_keep_their_role_in_the_settings(conn, capture_mode):
    """RENAME COLUMN of a column a setting names: a redacted column stays redacted, a
    status column keeps making status changes, the label column keeps naming rows, label
    rules follow; a dropped one is forgotten. The event trigger does it (fast mode)."""
    with conn.transaction():
        conn.execute(
            "select audit.track('clients', 'client', label_column => 'name',"
            " status_columns => '{status}', ignored_columns => '{updated_at}',"
            " redacted_columns => '{ssn}', labels => %s::jsonb)",
            (
                '[{"on": "update", "changed": ["phone"], "when": {"status": "new"},'
                ' "label": "Phone of {name} changed"}]',
            ),
        )
        conn.execute("insert into clients (name, ssn, phone) values ('Ann', '123-45', '555')")
    with conn.transaction():
        conn.execute("alter table clients rename column ssn to social_security_number")
        conn.execute("alter table clients rename column status to stage")
        conn.execute("alter table clients rename column name to full_name")
        conn.execute("alter table clients rename column phone to telephone")
        conn.execute("alter table clients drop column updated_at")
    followed = (
        "full_name",
        ["stage"],
        [],
        ["social_security_number"],
        [
            {
                "on": "update",
                "changed": ["telephone"],
                "when": {"stage": "new"},
                "label": "Phone of {full_name} changed",
            }
        ],
    )
    settings = (
        "select label_column, status_columns, ignored_columns, redacted_columns, labels"
        " from {} where relation = 'clients'::regclass"
    )
    # capture reads them under the new names in both modes; the fast mode's event
    # trigger also writes them into the registry (the generic mode has no event trigger)
    assert conn.execute(settings.format("audit.current_settings('clients')")).fetchone() == followed
    in_registry = conn.execute(settings.format("audit.tracked_table")).fetchone()
    assert (in_registry == followed) == (capture_mode == "generated")
    with conn.transaction():
        conn.execute("update clients set telephone = '556' where full_name = 'Ann'")
    with conn.transaction():
        conn.execute(
            "update clients set social_security_number = '999-99', stage = 'contacted'"
            " where full_name = 'Ann'"
        )
    phone, status = actions(conn)[-2:]
    assert (phone["action"], phone["resource_label"]) == ("Phone of Ann changed", "Ann")
    assert status["action_type"] == "status_change"
    assert status["changes"]["social_security_number"] == {"old": "[redacted]", "new": "[redacted]"}
    assert "999-99" not in str(status["changes"]) and "123-45" not in str(actions(conn))
