"""The security model: applications write business tables and record events but cannot
touch the log, the triggers or the registry; the log is append-only for everyone; the
functions run as a role nobody logs in as, with a pinned search_path."""

from __future__ import annotations

import re

import psycopg
import pytest
from audit_log import actions, only_action
from psycopg import errors, sql

from audit_capture import record_action, set_context

# make_role and owning_app are in conftest.py


APP_GRANTS = (
    "grant usage on schema public to {role}",
    "grant select, insert, update, delete on all tables in schema public to {role}",
    "grant usage on all sequences in schema public to {role}",
)


@pytest.fixture
def app(make_role):
    """A connection as an application role: DML on the CRM tables, nothing else."""
    with psycopg.connect(make_role(*APP_GRANTS)) as connection:
        yield connection


def test_application_role_writes_business_tables_and_records_events(app, conn):
    with app.transaction():
        set_context(app, actor_id="3", actor_name="Alice", actor_type="admin", source="web")
        app.execute("insert into clients (name) values ('From the app')")
        record_action(app, "login", "LawRuler login", resource_type="integration")
    created = only_action(conn, action="Client created")
    assert created["db_user"] == app.info.user
    assert created["actor_name"] == "Alice"
    assert only_action(conn, action="LawRuler login")["db_user"] == app.info.user


@pytest.mark.parametrize(
    "statement",
    [
        "insert into audit.action_log (action, action_type, actor_type, db_user, transaction_id) "
        "values ('Forged', 'create', 'admin', 'x', 1)",
        "update audit.action_log set actor_name = 'Someone else'",
        "delete from audit.action_log",
        "truncate audit.action_log",
        "insert into audit.action_item_chunk (action_id, first_item, item_count, resource_type, "
        "operation, items) values (1, 1, 1, 'client', 'INSERT', '[]')",
        "delete from audit.action_item_chunk",
        "insert into audit.tracked_table (relation, resource_type, label, label_plural) "
        "values ('clients', 'x', 'x', 'x')",
        "update audit.tracked_table set redacted_columns = '{}'",
        "delete from audit.tracked_table",
        "select audit.untrack('clients')",
        "select audit.track('clients', 'client')",
        "alter table clients disable trigger audit_capture_update",
        "alter table clients disable trigger all",
        "drop trigger audit_capture_delete on clients",
        "set session_replication_role = replica",
        "select * from audit.action_log",
        "select * from audit.action_item_chunk",
        "alter function audit.capture() owner to current_user",
        "create or replace function audit.current_context() returns audit.context"
        " language sql as 'select null::audit.context'",
    ],
)
def test_application_role_cannot_touch_the_log_triggers_or_registry(app, statement):
    with pytest.raises(errors.InsufficientPrivilege):
        app.execute(statement)
    app.rollback()


def test_application_role_changes_are_still_logged_after_failed_attempts(app, conn):
    for statement in ["alter table clients disable trigger all", "delete from audit.action_log"]:
        with pytest.raises(errors.InsufficientPrivilege):
            app.execute(statement)
        app.rollback()
    with app.transaction():
        app.execute("delete from clients")  # nothing to delete: no action
        app.execute("insert into clients (name) values ('Still logged')")
    assert only_action(conn, action="Client created")["resource_label"] == "Still logged"


def test_the_log_is_append_only_even_for_a_superuser(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (name) values ('x'), ('y')"
        )  # an action with a chunk of items
    for statement in [
        "update audit.action_log set actor_name = 'x'",
        "delete from audit.action_log",
        "truncate audit.action_log",
        "update audit.action_item_chunk set items = '[]'",
        "delete from audit.action_item_chunk",
        "truncate audit.action_item_chunk",
    ]:
        with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        conn.rollback()


def test_schema_and_log_belong_to_a_role_that_cannot_log_in(conn):
    owners = conn.execute(
        "select n.nspowner::regrole::text, "
        "       (select array_agg(distinct c.relowner::regrole::text) from pg_class c "
        "        where c.relnamespace = n.oid), "
        "       (select array_agg(distinct p.proowner::regrole::text) from pg_proc p "
        "        where p.pronamespace = n.oid) "
        "from pg_namespace n where n.nspname = 'audit'"
    ).fetchone()
    assert owners[0] == "audit_owner"
    # the Alembic version table is the only thing the migrating role owns
    assert set(owners[1]) <= {"audit_owner", "postgres"}
    assert owners[2] == ["audit_owner"]
    assert (
        conn.execute("select rolcanlogin from pg_roles where rolname = 'audit_owner'").fetchone()[0]
        is False
    )
    assert conn.execute(
        "select array_agg(c.relname order by c.relname) from pg_class c "
        "where c.relnamespace = 'audit'::regnamespace and c.relowner <> 'audit_owner'::regrole"
    ).fetchone()[0] in (None, ["alembic_version", "alembic_version_pkc"])


def test_functions_pin_their_search_path_and_define_security(conn):
    rows = conn.execute(
        "select p.proname, p.prosecdef, p.proconfig from pg_proc p "
        "where p.pronamespace = 'audit'::regnamespace"
    ).fetchall()
    assert rows
    # the vocabulary lists reference no object at all, and a SET clause would stop
    # PostgreSQL from inlining them into the log's CHECK domains
    constants = {"action_types", "actor_types", "sources"}
    # ... nor into the capture queries (capped_label: 05_naming.sql says why)
    # ... nor into the text-search index's expression (time_buckets: 13_viewer_indexes.sql)
    # ... nor into the seal's and verify's queries (17_seal.sql: SQL-standard bodies)
    # ... nor into the chunks' resource-id index's expression (item_ids: 20_history.sql)
    inlined = {
        "capped_label",
        "time_buckets",
        "item_ids",
        "block_content",
        "block_hash",
    }
    # the seal chain's functions render timestamps in UTC whatever the session's zone
    in_utc = {"seal", "verify_chain", "seal_retention"}
    for name, definer, config in rows:
        if name in constants | inlined:
            assert config is None and not definer
        elif name in in_utc:
            assert config == ["search_path=pg_catalog, pg_temp", "TimeZone=UTC"], name
        elif name == "history" and config != ["search_path=pg_catalog, pg_temp"]:
            # its statements are planned once per session (20_history.sql says why)
            assert config == [
                "search_path=pg_catalog, pg_temp",
                "plan_cache_mode=force_generic_plan",
            ], name
        elif name == "capture" or re.fullmatch(r"capture_\d+", name):
            # capture functions also turn JIT off (07_capture.sql says why)
            assert config == ["search_path=pg_catalog, pg_temp", "jit=off"], name
        else:
            assert config == ["search_path=pg_catalog, pg_temp"], name
    assert any(re.fullmatch(r"capture_\d+", name) for name, _, _ in rows)
    definers = {name for name, definer, _ in rows if definer}
    assert {
        "capture",
        "capture_key_change",
        "capture_truncate",
        "log_action",
        "set_context",
        "action_items",
        "refuse_change",
    } <= definers
    # tracking runs with the caller's rights: creating triggers is the table owner's call
    assert {"track", "untrack", "drop_triggers"}.isdisjoint(definers)
    # a record's history reads with the reader's rights (20_history.sql)
    assert {"history", "item_ids"}.isdisjoint(definers)


def test_db_user_is_the_set_role_not_the_function_owner(make_role, conn):
    url = make_role(*APP_GRANTS)
    role = psycopg.conninfo.conninfo_to_dict(url)["user"]
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        conn.execute("insert into clients (name) values ('Via set role')")
    assert only_action(conn, action="Client created")["db_user"] == role


def test_reader_role_reads_the_log_and_nothing_more(make_role, conn):
    with conn.transaction():
        conn.execute("insert into clients (name) values ('Readable')")
    url = make_role("grant audit_reader to {role}")
    with psycopg.connect(url) as reader:
        action = reader.execute("select id, action from audit.action_log").fetchone()
        assert action[1] == "Client created"
        (item,) = reader.execute("select * from audit.action_items(%s)", (action[0],)).fetchall()
        assert item[2] == "1"
        with pytest.raises(errors.InsufficientPrivilege):
            reader.execute(
                "insert into audit.action_log (action, action_type, actor_type, db_user, "
                "transaction_id) values ('x', 'create', 'admin', 'x', 1)"
            )
        reader.rollback()
        with pytest.raises(errors.InsufficientPrivilege):
            reader.execute("select audit.track('clients', 'client')")


def test_application_role_cannot_read_items_through_the_function(app, conn):
    with pytest.raises(errors.InsufficientPrivilege):
        app.execute("select * from audit.action_items(1)")


def test_audit_admin_tracks_its_own_tables(make_role, conn):
    url = make_role("grant audit_admin to {role}", "grant create on schema public to {role}")
    with psycopg.connect(url) as admin:
        with admin.transaction():
            admin.execute("create table leads (id int primary key, name text)")
            admin.execute("select audit.track('leads', 'lead', label_column => 'name')")
            admin.execute("insert into leads values (1, 'Lead one')")
        with admin.transaction():
            admin.execute("select audit.untrack('leads')")
            admin.execute("insert into leads values (2, 'Not logged')")
    assert only_action(conn, action="Lead created")["resource_label"] == "Lead one"


@pytest.mark.parametrize(
    "statement",
    [
        "alter table owned_notes disable trigger audit_capture_update",
        "alter table owned_notes disable trigger all",
        "alter table owned_notes disable trigger user",
        "alter table owned_notes enable replica trigger audit_capture_insert",
        "drop trigger audit_capture_delete on owned_notes",
    ],
)
def test_a_table_owner_cannot_silence_its_audit_triggers(owning_app, conn, statement):
    with pytest.raises(
        errors.InsufficientPrivilege, match="only a superuser or a member of audit_admin"
    ):
        owning_app.execute(statement)
    owning_app.execute("insert into owned_notes values (1, 'still logged')")
    assert only_action(conn, action="Note created")["resource_id"] == "1"


def test_a_table_owner_may_still_drop_its_table(owning_app, conn):
    owning_app.execute("drop table owned_notes")
    assert (
        conn.execute(
            "select count(*) from audit.tracked_table where relation::text = 'owned_notes'"
        ).fetchone()[0]
        == 0
    )


def test_an_audit_admin_may_switch_off_the_audit_triggers_of_its_table(make_role, conn):
    url = make_role("grant audit_admin to {role}", "grant usage, create on schema public to {role}")
    with psycopg.connect(url, autocommit=True) as dba:
        dba.execute("create table admin_notes (id int primary key)")
        dba.execute("select audit.track('admin_notes', 'note')")
        dba.execute("alter table admin_notes disable trigger audit_capture_update")
        dba.execute("alter table admin_notes enable trigger audit_capture_update")
        dba.execute("drop trigger audit_capture_truncate on admin_notes")
        assert (
            dba.execute(
                "select count(*) from pg_trigger where tgrelid = 'admin_notes'::regclass"
                " and tgname like 'audit_capture_%' and tgenabled = 'O'"
            ).fetchone()[0]
            == 5
        )


def test_an_owner_s_alter_table_waits_while_a_dba_left_the_audit_triggers_off(owning_app, conn):
    with conn.transaction():
        conn.execute("alter table owned_notes disable trigger audit_capture_insert")
    with pytest.raises(errors.InsufficientPrivilege, match="ENABLE TRIGGER") as refused:
        owning_app.execute("alter table owned_notes add column tag text")
    assert "would be switched off" in str(refused.value)
    with conn.transaction():
        conn.execute("alter table owned_notes enable trigger audit_capture_insert")
    owning_app.execute("alter table owned_notes add column tag text")
    owning_app.execute("insert into owned_notes values (1, 'x', 'y')")
    assert only_action(conn, action="Note created")["changes"]["tag"] == "y"


def test_an_owner_may_add_partitions_to_its_tracked_partitioned_table(make_role, conn):
    """A new partition clones the key-change row trigger as its creator, which takes
    EXECUTE on audit.capture_key_change() (it was audit_admin's alone: permission
    denied for the monthly partition an application creates)."""
    url = make_role("grant usage, create on schema public to {role}")
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(
            "create table visits (id int, at date, primary key (id, at)) partition by range (at)"
        )
    with conn.transaction():
        conn.execute("select audit.track('visits', 'visit')")
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(
            "create table visits_2026 partition of visits"
            " for values from ('2026-01-01') to ('2027-01-01')"
        )
        owner.execute("insert into visits values (1, '2026-05-01'), (2, '2026-05-02')")
        owner.execute("update visits set id = id + 10")
    assert [a["action"] for a in actions(conn, resource_type="visit")] == [
        "Batch visit creation",
        "Bulk visit id update",
    ]
    # the function ignores a table that is not tracked, should someone attach it by hand
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute("create table scratch (id int primary key)")
        owner.execute(
            "create trigger t after update on scratch for each row"
            " execute function audit.capture_key_change()"
        )
        owner.execute("insert into scratch values (1)")
        owner.execute("update scratch set id = 2")
    assert conn.execute("select count(*) from audit.pending_key_change").fetchone()[0] == 0
