"""Values the log cannot hold as given: the application's write never fails for a long
value of its own row (the log keeps a cut copy of the label), and a context value that
is too long, not storable or inconsistent with the statement is refused with a message
that names it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from audit_log import actions, count_actions, items, only_action
from psycopg import errors, pq, sql
from psycopg.conninfo import make_conninfo

from audit_capture import InvalidContextValue, batch, importing, record_action, set_context
from audit_capture.context import LIMITS
from audit_capture.errors import ContextValueTooLong
from audit_capture.events import LIMITS as EVENT_LIMITS

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")

HUGE = 1_000_000  # characters: more than a text-search document (1 MB) can hold


def assert_cut(label: str, limit: int) -> None:
    assert len(label) == limit and label.endswith("…"), (len(label), label[-5:])


# ---- row values: cut in the log, never a failed write --------------------------------


def test_a_huge_label_is_cut_in_the_log_and_the_insert_succeeds(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, repeat('x', %s))", (HUGE,))
    assert conn.execute("select length(name) from clients where id = 1").fetchone()[0] == HUGE
    action = only_action(conn, action="Client created")
    assert_cut(action["resource_label"], 500)
    assert action["resource_label"].startswith("x" * 499)
    assert len(action["changes"]["name"]) == HUGE  # the full value where it belongs


def test_a_huge_label_set_by_an_update_is_cut(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'a'), (2, 'b')")
    with conn.transaction():
        conn.execute("update clients set name = repeat('y', %s) where id = 1", (HUGE,))
    action = only_action(conn, action="Client updated")
    assert_cut(action["resource_label"], 500)
    assert len(action["changes"]["name"]["new"]) == HUGE
    with conn.transaction():  # many rows: no label, the items keep the values
        conn.execute("update clients set name = repeat('z', %s)", (HUGE,))
    bulk = only_action(conn, action="Bulk client name update")
    assert bulk["resource_label"] is None
    assert [len(i["new"]["name"]) for i in items(conn, bulk["id"])] == [HUGE, HUGE]


def test_a_batch_of_one_huge_labelled_row_is_cut(conn):
    with conn.transaction(), batch(conn, "Import one"):
        conn.execute("insert into clients (id, name) values (1, repeat('x', %s))", (HUGE,))
    action = only_action(conn, action="Import one")
    assert_cut(action["resource_label"], 500)


def test_a_label_rule_filled_from_a_huge_value_is_cut(conn):
    with conn.transaction():
        conn.execute("""select audit.track('clients', 'client', 'name',
                          labels => '[{"on": "create", "label": "Client {name} signed up"}]')""")
        conn.execute("insert into clients (id, name) values (1, repeat('x', %s))", (HUGE,))
    action = only_action(conn, resource_type="client")
    assert_cut(action["action"], 200)
    assert action["action"].startswith("Client xxx")


def test_a_label_at_its_limit_is_kept_whole(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, repeat('x', 500))")
    assert only_action(conn, action="Client created")["resource_label"] == "x" * 500


def test_a_long_text_primary_key_is_kept_whole_in_resource_id(conn):
    # the table's own primary-key index bounds its keys; the log indexes no resource_id
    key = "k" * 100_000
    with conn.transaction():
        conn.execute("create table codes (code text primary key, name text)")
        conn.execute("select audit.track('codes', 'code', 'name')")
        conn.execute("insert into codes values (%s, 'a')", (key,))
        conn.execute("update codes set code = code || 'z'")
        conn.execute("delete from codes")
    created, updated, deleted = actions(conn, resource_type="code")
    assert created["resource_id"] == key and deleted["resource_id"] == key + "z"
    assert updated["changes"]["code"] == {"old": key, "new": key + "z"}


# ---- context values: limits, named -------------------------------------------------

TOO_LONG = [
    ("audit.actor_id", "x" * 3000, "audit.actor_id is 3,000 characters; at most 200 are allowed"),
    (
        "audit.actor_name",
        "x" * 3000,
        "audit.actor_name is 3,000 characters; at most 200 are allowed",
    ),
    ("audit.request_id", "r" * 201, "audit.request_id is 201 characters; at most 200 are allowed"),
    ("audit.batch", "b" * 5000, "audit.batch is 5,000 characters; at most 200 are allowed"),
    (
        "audit.context",
        '{"note": "' + "n" * 10_000 + '"}',
        "audit.context is 10,012 characters; at most 10,000 are allowed",
    ),
]


@pytest.mark.parametrize("rows", [1, 2])
@pytest.mark.parametrize(("variable", "value", "message"), TOO_LONG)
def test_a_long_context_value_set_in_sql_is_refused_naming_it(conn, variable, value, message, rows):
    with pytest.raises(errors.StringDataRightTruncation) as caught, conn.transaction():
        conn.execute("select set_config(%s, %s, true)", (variable, value))
        conn.execute(
            "insert into clients (name) select 'n' || i from generate_series(1, %s) i", (rows,)
        )
    assert caught.value.diag.message_primary == message
    assert ("short metadata" if variable == "audit.context" else "keep them short") in (
        caught.value.diag.message_hint
    )
    assert conn.execute("select count(*) from clients").fetchone()[0] == 0
    assert count_actions(conn) == 0


@pytest.mark.parametrize(("variable", "value", "message"), TOO_LONG)
def test_a_long_context_value_is_refused_by_log_action(conn, variable, value, message):
    with pytest.raises(errors.StringDataRightTruncation, match=message), conn.transaction():
        conn.execute("select set_config(%s, %s, true)", (variable, value))
        conn.execute("select audit.log_action('login', 'LawRuler login')")


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("actor_id", "x" * 3000, "audit.actor_id is 3,000 characters; at most 200 are allowed"),
        ("actor_name", "x" * 201, "audit.actor_name is 201 characters; at most 200 are allowed"),
        ("request_id", "x" * 300, "audit.request_id is 300 characters; at most 200 are allowed"),
    ],
)
def test_sql_set_context_refuses_a_long_value(conn, argument, value, message):
    with pytest.raises(errors.StringDataRightTruncation, match=message):
        conn.execute(
            sql.SQL("select audit.set_context({} => %s)").format(sql.Identifier(argument)), (value,)
        )
    conn.rollback()


def test_values_at_their_limits_are_logged_whole(conn):
    with conn.transaction():
        set_context(
            conn,
            actor_id="i" * 200,
            actor_name="n" * 200,
            actor_type="admin",
            request_id="r" * 200,
            context={"note": "c" * 9_980},
        )
        conn.execute("insert into clients (name) values ('a')")
        conn.execute("insert into clients (name) values ('b'), ('c')")
    one, many = actions(conn, resource_type="client")
    for action in (one, many):
        assert (action["actor_id"], action["actor_name"], action["request_id"]) == (
            "i" * 200,
            "n" * 200,
            "r" * 200,
        )
    # the viewer's actor-name index holds actors without an id: a 200-character name too
    with conn.transaction():
        set_context(conn, actor_name="é" * 200)  # 400 bytes
        conn.execute("insert into clients (name) values ('d')")
    assert actions(conn, resource_type="client")[-1]["actor_name"] == "é" * 200


def test_python_refuses_a_long_value_before_sending_anything(conn):
    with pytest.raises(ContextValueTooLong) as caught:
        set_context(conn, actor_name="x" * 3000)
    assert str(caught.value) == "audit.actor_name is 3,000 characters; at most 200 are allowed"
    assert (caught.value.variable, caught.value.limit) == ("audit.actor_name", 200)
    assert isinstance(caught.value, InvalidContextValue)
    with pytest.raises(ContextValueTooLong, match="audit.context is 10,01"):
        set_context(conn, context={"note": "n" * 10_000})
    with (
        pytest.raises(ContextValueTooLong, match="audit.batch is 201 characters"),
        batch(conn, "b" * 201),
    ):
        pass
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE  # no round trip made


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"context": {"note": "a\x00b"}}, "audit.context"),
        ({"context": {"a\x00": 1}}, "audit.context"),
        ({"actor_name": "Al\x00ice"}, "audit.actor_name"),
        ({"request_id": "\x00"}, "audit.request_id"),
    ],
)
def test_python_refuses_a_nul_character_naming_the_variable(conn, values, variable):
    with pytest.raises(InvalidContextValue, match=f"^{variable} holds a NUL character"):
        set_context(conn, **values)
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE


def test_an_escaped_backslash_before_u0000_is_no_nul(conn):
    with conn.transaction():
        set_context(conn, context={"path": "C:\\u0000"})  # a backslash, then "u0000"
        conn.execute("insert into clients (name) values ('a')")
    assert only_action(conn, action="Client created")["context"] == {"path": "C:\\u0000"}


@pytest.mark.parametrize("rows", [1, 2])
def test_a_nul_escape_in_audit_context_set_in_sql_names_audit_context(conn, rows):
    with pytest.raises(errors.InvalidParameterValue) as caught, conn.transaction():
        conn.execute("""set local audit.context = '{"note": "a\\u0000b"}'""")
        conn.execute(
            "insert into clients (name) select 'n' || i from generate_series(1, %s) i", (rows,)
        )
    assert caught.value.diag.message_primary.startswith(
        "audit.context is not valid JSON for the log"
    )
    assert count_actions(conn) == 0


def test_the_python_limits_are_the_sql_limits(conn):
    sql_limits = conn.execute("select audit.value_limits()").fetchone()[0]
    assert {k: v for k, v in sql_limits.items() if k.startswith("audit.")} == LIMITS
    assert {k: sql_limits[k] for k in EVENT_LIMITS} == EVENT_LIMITS


def test_a_long_bad_vocabulary_value_is_quoted_short(conn):
    with pytest.raises(errors.InvalidParameterValue) as caught, conn.transaction():
        conn.execute("select set_config('audit.source', repeat('w', 100000), true)")
        conn.execute("insert into clients (name) values ('a')")
    message = caught.value.diag.message_primary
    assert message.startswith("audit.source is 'www") and len(message) < 200


# ---- events -------------------------------------------------------------------------


def test_log_action_refuses_a_long_label_or_resource_type_and_cuts_a_long_resource_label(conn):
    with pytest.raises(
        errors.StringDataRightTruncation, match="action is 201 characters; at most 200 are allowed"
    ):
        conn.execute("select audit.log_action('send', repeat('a', 201))")
    conn.rollback()
    with pytest.raises(
        errors.StringDataRightTruncation,
        match="resource_type is 3,000 characters; at most 100 are allowed",
    ):
        conn.execute("select audit.log_action('send', 'Batch send SMS', repeat('t', 3000))")
    conn.rollback()
    with conn.transaction():
        action_id = record_action(
            conn, "export", "Call export to file", resource_type="call", resource_label="x" * HUGE
        )
    assert_cut(only_action(conn, id=action_id)["resource_label"], 500)


def test_record_action_refuses_a_long_label_or_resource_type_before_sending(conn):
    with pytest.raises(ValueError, match="^action is 201 characters; at most 200 are allowed"):
        record_action(conn, "send", "a" * 201)
    with pytest.raises(ValueError, match="^resource_type is 101 characters; at most 100"):
        record_action(conn, "send", "Batch send SMS", resource_type="t" * 101)
    with pytest.raises(ValueError, match="^resource_label holds a NUL character"):
        record_action(conn, "send", "Batch send SMS", resource_label="a\x00")
    with pytest.raises(ValueError, match="^changes holds a NUL character"):
        record_action(conn, "send", "Batch send SMS", changes={"to": "\x00"})
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE


# ---- audit.batch_action_id: internal, and not forgeable ------------------------------


def test_a_batch_action_id_that_is_not_a_number_is_named(conn):
    with pytest.raises(errors.InvalidParameterValue) as caught, conn.transaction():
        conn.execute("set local audit.batch = 'Cleanup'")
        conn.execute("set local audit.batch_action_id = 'abc'")
        conn.execute("insert into clients (name) values ('a')")
    assert caught.value.diag.message_primary.startswith("audit.batch_action_id is 'abc'")
    assert count_actions(conn) == 0


def test_a_batch_action_id_forged_to_the_sessions_own_event_starts_a_batch_of_its_own(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'a'), (2, 'b')")
    with conn.transaction():
        event = record_action(conn, "login", "Cleanup", resource_type="integration")
        conn.execute("select set_config('audit.batch_action_id', %s, true)", (str(event),))
        conn.execute("set local audit.batch = 'Cleanup'")
        conn.execute("delete from clients where id = 1")
        conn.execute("delete from clients where id = 2")
    the_event = only_action(conn, id=event)
    assert (the_event["action_type"], the_event["row_count"], the_event["changes"]) == (
        "login",
        0,
        {},
    )
    cleanup = only_action(conn, action="Cleanup", action_type="delete")
    assert cleanup["row_count"] == 2 and cleanup["id"] != event


def test_a_batch_action_id_forged_to_an_earlier_action_of_the_transaction_is_ignored(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'a'), (2, 'b'), (3, 'c')")
    with conn.transaction():
        conn.execute("delete from clients where id = 1")  # one-row action "Client deleted"
        earlier = conn.execute("select max(id) from audit.action_log").fetchone()[0]
        conn.execute("select set_config('audit.batch_action_id', %s, true)", (str(earlier),))
        conn.execute("set local audit.batch = 'Client deleted'")
        conn.execute("delete from clients where id = 2")
        conn.execute("delete from clients where id = 3")
    first, batched = actions(conn, action="Client deleted")
    assert (first["id"], first["row_count"], first["resource_id"]) == (earlier, 1, "1")
    assert batched["row_count"] == 2


def test_the_batch_bookkeeping_of_ended_transactions_is_removed(conn):
    def one_batch() -> int:
        with conn.transaction():
            with batch(conn, "Batch"):
                conn.execute("insert into clients (name) values ('a'), ('b')")
            return conn.execute("select txid_current()").fetchone()[0]

    first = one_batch()
    second = one_batch()
    left = [r[0] for r in conn.execute("select transaction_id from audit.batch_action")]
    assert first not in left and left == [second]
    conn.rollback()


def test_the_batch_bookkeeping_is_out_of_reach_of_the_application(conn, db_url):
    role = f"app_values_{conn.info.dbname}"
    with conn.transaction():
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL(
                "grant select, insert, update, delete on clients to {}; "
                "grant usage on all sequences in schema public to {}"
            ).format(sql.Identifier(role), sql.Identifier(role))
        )
    try:
        with psycopg.connect(make_conninfo(db_url, user=role)) as app:
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute("insert into audit.batch_action values (1, txid_current())")
            app.rollback()
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute("select audit.note_batch_action(1)")
            app.rollback()
            with app.transaction():  # what the README offers everyone
                app.execute("select audit.value_limits(), audit.current_context()")
                app.execute("set local audit.actor_name = 'Alice'")
                assert (
                    app.execute("select (audit.current_context()).actor_name").fetchone()[0]
                    == "Alice"
                )
            # ... and a batch still works for it
            with app.transaction(), batch(app, "Batch client creation by app"):
                app.execute("insert into clients (name) values ('a')")
                app.execute("insert into clients (name) values ('b')")
        assert only_action(conn, action="Batch client creation by app")["row_count"] == 2
    finally:
        conn.rollback()
        with conn.transaction():
            conn.execute(sql.SQL("drop owned by {0}; drop role {0}").format(sql.Identifier(role)))


# ---- audit.action_type: consistent with the statement --------------------------------

REFUSED = [
    ("insert into clients (name) values ('a')", "delete", "INSERT", "create, import"),
    ("insert into clients (name) values ('a')", "login", "INSERT", "create, import"),
    ("insert into clients (name) values ('a'), ('b')", "send", "INSERT", "create, import"),
    (
        "update clients set name = 'z' where id = 1",
        "create",
        "UPDATE",
        "update, status_change, import",
    ),
    ("update clients set name = 'z'", "delete", "UPDATE", "update, status_change, import"),
    ("delete from clients where id = 1", "update", "DELETE", "delete, import"),
    ("delete from clients", "export", "DELETE", "delete, import"),
    ("truncate clients cascade", "login", "TRUNCATE", "delete, import"),
]


@pytest.mark.parametrize(("statement", "override", "operation", "allowed"), REFUSED)
def test_an_action_type_that_does_not_fit_the_statement_is_refused(
    conn, statement, override, operation, allowed
):
    with conn.transaction():
        conn.execute("insert into clients (name) values ('a'), ('b')")  # ids 1 and 2
    before = count_actions(conn)
    with pytest.raises(errors.InvalidParameterValue) as caught, conn.transaction():
        conn.execute(sql.SQL("set local audit.action_type = {}").format(sql.Literal(override)))
        conn.execute(statement)
    assert caught.value.diag.message_primary == (
        f"audit.action_type is '{override}' for an {operation} on public.clients;"
        f" expected one of {allowed}"
    )
    assert "audit.log_action()" in caught.value.diag.message_hint
    assert count_actions(conn) == before
    assert conn.execute("select count(*) from clients").fetchone()[0] == 2


def test_an_action_type_that_fits_the_statement_is_used(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'a'), (2, 'b'), (3, 'c')")
    with conn.transaction():
        conn.execute("set local audit.action_type = 'import'")
        conn.execute("insert into clients (id, name) values (4, 'd')")
        conn.execute("update clients set name = 'A' where id = 1")  # an import's update
        conn.execute("delete from clients where id = 2")
    with conn.transaction():
        conn.execute("set local audit.action_type = 'status_change'")
        conn.execute("update clients set notes = 'called' where id = 3")
    with conn.transaction():
        conn.execute("set local audit.action_type = 'update'")
        conn.execute("update clients set status = 'closed' where id = 3")
    with conn.transaction():
        conn.execute("set local audit.action_type = 'create'")
        conn.execute("insert into clients (id, name) values (5, 'e'), (6, 'f')")
    logged = [(a["action"], a["action_type"]) for a in actions(conn)][1:]
    assert logged == [
        ("Clients imported (1)", "import"),
        ("Client updated", "update"),
        ("Client deleted", "delete"),
        ("Client status change", "status_change"),
        ("Client updated", "update"),
        ("Batch client creation", "create"),
    ]


def test_an_import_that_upserts_keeps_its_updates_as_updates(conn):
    with conn.transaction():
        conn.execute("insert into clients (id, name) values (1, 'a')")
    with conn.transaction(), importing(conn):
        conn.execute(
            "insert into clients (id, name) values (1, 'A'), (2, 'b') "
            "on conflict (id) do update set name = excluded.name"
        )
    kinds = sorted((a["action_type"], a["row_count"]) for a in actions(conn)[1:])
    assert kinds == [("import", 1), ("update", 1)]


def test_log_action_takes_its_own_action_type_not_the_override(conn):
    with conn.transaction():
        conn.execute("set local audit.action_type = 'import'")
        action_id = record_action(conn, "login", "LawRuler login", resource_type="integration")
    assert only_action(conn, id=action_id)["action_type"] == "login"


# ---- session-level SET: documented, not refused -------------------------------------


def test_a_session_level_set_outlives_its_transaction_and_the_helpers_do_not(conn):
    # README, "Session-level SET": what a plain SET does, and why the helpers use
    # set_config(..., true). The trigger cannot tell them apart, so it is not refused.
    with conn.transaction():
        conn.execute("set audit.actor_name = 'Sticky'")  # not LOCAL
        conn.execute("insert into clients (name) values ('a')")
    with conn.transaction():
        conn.execute("insert into clients (name) values ('b')")
    with conn.transaction():
        set_context(conn, actor_name="Alice", actor_type="admin")
        conn.execute("insert into clients (name) values ('c')")
    with conn.transaction():
        conn.execute("insert into clients (name) values ('d')")
    assert [a["actor_name"] for a in actions(conn)] == ["Sticky", "Sticky", "Alice", "Sticky"]
    conn.execute("reset audit.actor_name")
    conn.commit()
    with conn.transaction():
        conn.execute("insert into clients (name) values ('e')")
    assert actions(conn)[-1]["actor_name"] == "postgres"


def test_a_database_default_is_every_sessions_actor_and_the_reference_query_finds_it(conn, db_url):
    conn.autocommit = True
    conn.execute(
        sql.SQL("alter database {} set audit.actor_name = 'Default Dan'").format(
            sql.Identifier(conn.info.dbname)
        )
    )
    conn.autocommit = False
    with psycopg.connect(db_url) as later, later.transaction():
        later.execute("insert into clients (name) values ('a')")
    assert only_action(conn, action="Client created")["actor_name"] == "Default Dan"
    reference = (Path(__file__).parents[1] / "docs" / "reference.md").read_text()
    query = reference.split("-- audit variables set as role or database defaults", 1)[1].split(
        "```", 1
    )[0]
    found = conn.execute("-- " + query).fetchall()
    assert (None, conn.info.dbname, "audit.actor_name=Default Dan") in found
    conn.rollback()


# ---- tracking settings every action of a table carries -------------------------------


@pytest.mark.parametrize(
    "argument, message",
    [
        ("resource_type => repeat('x', 3000)", "resource_type is 3,000 characters; at most 100"),
        ("label => repeat('X', 3000)", "label and label_plural are words"),
        ("label_plural => repeat('X', 3000)", "label and label_plural are words"),
    ],
)
def test_track_refuses_words_too_long_for_every_action_of_the_table(conn, argument, message):
    """A 3 KB resource type would be in every action of the table: refused when tracking,
    where a DBA sees it, rather than failing the table's writes later."""
    conn.execute("create table notes (id int primary key, body text)")
    call = f"select audit.track('notes', 'note', {argument})".replace(
        "'note', resource_type =>", ""
    )
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(call)
