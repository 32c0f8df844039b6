"""The session-variable convention: transaction-local, validated, with the contract's
defaults; and the Python helpers over it."""

from __future__ import annotations

import psycopg
import pytest
from audit_log import actions, count_actions, only_action
from psycopg import errors, pq, sql

from audit_capture import (
    ActionType,
    ActorType,
    InvalidContextValue,
    NoTransaction,
    Source,
    context,
    record_action,
    set_context,
)

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")


def test_a_rolled_back_transaction_leaves_nothing(conn):
    before = count_actions(conn)
    with pytest.raises(RuntimeError), conn.transaction():
        set_context(conn, actor_type="admin", actor_name="Alice", source="web")
        conn.execute("insert into clients (name) values ('Ghost')")
        record_action(conn, "login", "LawRuler login", resource_type="integration")
        raise RuntimeError("roll back")
    assert count_actions(conn) == before
    assert conn.execute("select count(*) from audit.action_item_chunk").fetchone()[0] == 0


def test_set_local_does_not_leak_into_the_next_transaction(conn):
    with conn.transaction():
        conn.execute("set local audit.actor_name = 'Alice'")
        conn.execute("set local audit.actor_type = 'admin'")
        conn.execute("set local audit.source = 'api'")
        conn.execute("insert into clients (name) values ('First')")
    with conn.transaction():
        conn.execute("insert into clients (name) values ('Second')")
    first, second = actions(conn, resource_type="client")
    assert (first["actor_name"], first["actor_type"], first["source"]) == ("Alice", "admin", "api")
    assert (second["actor_name"], second["actor_type"], second["source"]) == (
        "postgres",
        "system",
        None,
    )


def test_python_context_does_not_leak_into_the_next_transaction(conn):
    with conn.transaction():
        set_context(conn, actor_id="7", actor_name="Alice", actor_type="admin", source="web")
    with conn.transaction():
        conn.execute("insert into clients (name) values ('After')")
    action = only_action(conn, action="Client created")
    assert (action["actor_id"], action["actor_type"], action["source"]) == (None, "system", None)


def test_missing_context_gives_system_the_role_and_no_source(conn):
    with conn.transaction():
        conn.execute("insert into clients (name) values ('Direct')")
    action = only_action(conn, action="Client created")
    assert action["actor_type"] == "system"
    assert action["actor_name"] == "postgres" == action["db_user"]
    assert action["source"] is None and action["actor_id"] is None


def test_sql_set_context_is_the_plain_sql_way(conn):
    with conn.transaction():
        conn.execute(
            "select audit.set_context(actor_id => '12', actor_name => 'Bob', "
            "actor_type => 'client', source => 'mobile', request_id => 'req-1', "
            'context => \'{"ip": "10.0.0.1"}\')'
        )
        conn.execute("insert into clients (name) values ('Via SQL')")
    action = only_action(conn, action="Client created")
    assert (action["actor_id"], action["actor_name"], action["actor_type"], action["source"]) == (
        "12",
        "Bob",
        "client",
        "mobile",
    )
    assert action["request_id"] == "req-1" and action["context"] == {"ip": "10.0.0.1"}


@pytest.mark.parametrize(
    "variable, value, allowed",
    [
        ("audit.actor_type", "adm", "admin, client, system"),
        ("audit.source", "webb", "web, api, ai, mobile"),
        (
            "audit.action_type",
            "erase",
            "create, update, delete, status_change, import, login, logout, export, send",
        ),
    ],
)
def test_a_wrong_value_fails_the_statement_and_writes_nothing(conn, variable, value, allowed):
    before = count_actions(conn)
    with pytest.raises(errors.InvalidParameterValue) as caught, conn.transaction():
        conn.execute(f"set local {variable} = '{value}'")
        conn.execute("insert into clients (name) values ('Never')")
    assert (
        str(caught.value.diag.message_primary)
        == f"{variable} is '{value}'; expected one of {allowed}"
    )
    assert conn.execute("select count(*) from clients").fetchone()[0] == 0
    assert count_actions(conn) == before


def test_sql_set_context_rejects_a_wrong_source(conn):
    with pytest.raises(
        errors.InvalidParameterValue,
        match="audit.source is 'webb'; expected one of web, api, ai, mobile",
    ):
        conn.execute("select audit.set_context(source => 'webb')")
    conn.rollback()


def test_invalid_context_json_is_a_clear_error(conn):
    with (
        pytest.raises(errors.InvalidParameterValue, match="audit.context is not valid JSON"),
        conn.transaction(),
    ):
        conn.execute("set local audit.context = '{not json'")
        conn.execute("insert into clients (name) values ('Never')")
    assert conn.execute("select count(*) from clients").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("value", "kind"), [("[1]", "array"), ("42", "number"), ('"ticket 4312"', "string")]
)
def test_a_context_that_is_not_an_object_is_a_clear_error(conn, value, kind):
    message = f"audit.context is a JSON {kind}, not an object"
    with pytest.raises(errors.InvalidParameterValue, match=message), conn.transaction():
        conn.execute(sql.SQL("set local audit.context = {}").format(sql.Literal(value)))
        conn.execute("insert into clients (name) values ('Never')")
    assert conn.execute("select count(*) from clients").fetchone()[0] == 0
    with pytest.raises(errors.InvalidParameterValue, match=message):
        conn.execute(
            "select audit.set_context(actor_type => 'system', context => %s::jsonb)", (value,)
        )
    conn.rollback()
    assert conn.execute("select count(*) from audit.action_log").fetchone()[0] == 0


def test_python_rejects_wrong_values_before_sending_anything(conn):
    with pytest.raises(InvalidContextValue) as caught:
        set_context(conn, actor_type="admin", source="webb")
    assert str(caught.value) == "audit.source is 'webb'; expected one of web, api, ai, mobile"
    assert caught.value.allowed == ["web", "api", "ai", "mobile"]
    with pytest.raises(
        InvalidContextValue,
        match="audit.actor_type is 'root'; expected one of admin, client, system",
    ):
        set_context(conn, actor_type="root")
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE  # no round trip made


def test_ids_names_and_labels_that_are_not_strings_are_sent_as_text(conn):
    import uuid

    request_id = uuid.UUID(int=42)
    with conn.transaction():
        set_context(
            conn,
            actor_id=7,
            actor_name=1234,
            actor_type="client",
            source="mobile",
            request_id=request_id,
        )
        conn.execute("insert into clients (name) values ('By number')")
        event_id = record_action(
            conn,
            "export",
            "Call export to file",
            resource_type="call",
            resource_id=9,
            resource_label=2024,
        )
    created = only_action(conn, action="Client created")
    assert (created["actor_name"], created["request_id"]) == ("1234", str(request_id))
    assert only_action(conn, id=event_id)["resource_label"] == "2024"


def test_enums_match_the_sql_vocabularies(conn):
    for enum, function in [
        (ActionType, "action_types"),
        (ActorType, "actor_types"),
        (Source, "sources"),
    ]:
        assert [m.value for m in enum] == conn.execute(f"select audit.{function}()").fetchone()[0]


@pytest.mark.parametrize(
    "column, enum", [("action_type", ActionType), ("actor_type", ActorType), ("source", Source)]
)
def test_enums_match_the_log_check_constraints(conn, column, enum):
    """Every enum value passes the log's CHECK; a value outside the enum fails it."""

    def insert(value):
        row = {
            "action": "x",
            "action_type": "create",
            "actor_type": "system",
            "db_user": "me",
            "transaction_id": 1,
            column: value,
        }
        conn.execute(
            f"insert into audit.action_log ({', '.join(row)}) "
            f"values ({', '.join(['%s'] * len(row))})",
            list(row.values()),
        )

    for member in enum:
        with conn.transaction(force_rollback=True):
            insert(member.value)
    with pytest.raises(errors.CheckViolation), conn.transaction():
        insert("not-a-member")


def test_nested_context_restores_the_outer_one(conn):
    with conn.transaction():
        set_context(
            conn,
            actor_id="1",
            actor_name="Outer",
            actor_type="admin",
            source="web",
            request_id="r-outer",
        )
        with context(conn, actor_name="Agent Smith", actor_type="system", source="ai"):
            conn.execute("insert into clients (name) values ('Inner')")
            with context(conn, actor_name="Innermost", actor_type="client", source="mobile"):
                conn.execute("insert into clients (name) values ('Innermost')")
            conn.execute("insert into clients (name) values ('Inner again')")
        conn.execute("insert into clients (name) values ('Outer again')")
    got = [
        (a["resource_label"], a["actor_name"], a["actor_type"], a["source"], a["request_id"])
        for a in actions(conn, resource_type="client")
    ]
    # the actor and source are replaced; the request id carries over
    assert got == [
        ("Inner", "Agent Smith", "system", "ai", "r-outer"),
        ("Innermost", "Innermost", "client", "mobile", "r-outer"),
        ("Inner again", "Agent Smith", "system", "ai", "r-outer"),
        ("Outer again", "Outer", "admin", "web", "r-outer"),
    ]


def test_context_block_that_commits_does_not_open_a_new_transaction(conn):
    with context(conn, actor_name="Alice", actor_type="admin", source="web"):
        conn.execute("insert into clients (name) values ('Committed inside')")
        conn.commit()
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert only_action(conn, action="Client created")["actor_name"] == "Alice"


def test_autocommit_outside_a_transaction_is_refused(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(NoTransaction, match="autocommit"):
            set_context(conn, actor_type="admin")
        with conn.transaction():
            set_context(conn, actor_type="admin", actor_name="Alice")
            conn.execute("insert into clients (name) values ('In a transaction')")
        assert only_action(conn, action="Client created")["actor_name"] == "Alice"


def test_an_asyncio_connection_is_refused_rather_than_ignored(db_url):
    import asyncio

    from audit_capture import apply_context

    async def use_helpers():
        async with (
            await psycopg.AsyncConnection.connect(db_url) as conn,
            conn.transaction(),
        ):
            for helper in (
                lambda: set_context(conn, actor_type="admin"),
                lambda: record_action(conn, "login", "LawRuler login"),
            ):
                with pytest.raises(TypeError, match="not an AsyncConnection"):
                    helper()
            with (
                context(actor_type="admin"),
                pytest.raises(TypeError, match="audit.set_context"),
            ):
                apply_context(conn)

    asyncio.run(use_helpers())


def test_record_action_uses_the_context_and_merges_its_metadata(conn):
    with conn.transaction():
        set_context(
            conn,
            actor_id="7",
            actor_name="Alice",
            actor_type="admin",
            source="api",
            request_id="req-9",
            context={"tenant": "acme"},
        )
        action_id = record_action(
            conn,
            ActionType.LOGOUT,
            "SmartAdvocate logout",
            resource_type="integration",
            resource_id=2,
            context={"reason": "idle"},
        )
    action = only_action(conn, id=action_id)
    assert (action["action"], action["action_type"], action["resource_id"]) == (
        "SmartAdvocate logout",
        "logout",
        "2",
    )
    assert action["context"] == {"tenant": "acme", "reason": "idle"}
    assert (action["request_id"], action["source"], action["row_count"]) == ("req-9", "api", 0)


def test_record_action_rejects_bad_input(conn):
    with pytest.raises(
        InvalidContextValue, match="action_type is 'signin'; expected one of create, update"
    ):
        record_action(conn, "signin", "LawRuler login")
    with pytest.raises(ValueError, match="label"):
        record_action(conn, "login", "  ")
    with pytest.raises(
        errors.InvalidParameterValue, match="action_type is 'signin'; expected one of"
    ):
        conn.execute("select audit.log_action('signin', 'LawRuler login')")
    conn.rollback()
    with pytest.raises(errors.InvalidParameterValue, match="must not be empty"):
        conn.execute("select audit.log_action('login', '')")
    conn.rollback()
    assert count_actions(conn) == 0
