"""Restore: audit.restore() and ``audit-capture restore`` bring back what an action
deleted, or put back what an update changed, from the log alone (triggers/19_restore.sql).
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from test_cli import assert_one_line_error, run

from audit_capture import restore as restore_module

# every test runs in both capture modes: the restore's writes are captured like any
CAPTURE_MODES = ("generated", "generic")

# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
def admin_url(make_role):
    """audit_admin with the sample CRM's table privileges: who restores."""
    return make_role(
        "grant audit_admin to {role}",
        "grant select, insert, update, delete on all tables in schema public to {role}",
    )


@pytest.fixture
def admin(admin_url):
    with psycopg.connect(admin_url) as connection:
        yield connection


def last_action(conn) -> dict:
    row = conn.execute(
        "select to_jsonb(a) from audit.action_log a order by id desc limit 1"
    ).fetchone()
    conn.commit()
    return row[0]


def restore(conn, action_id, item=None, all_items=False, force=False) -> dict:
    """audit.restore() in one transaction; the action it wrote."""
    with conn.transaction():
        (new_id,) = conn.execute(
            "select audit.restore(%s, %s, %s, %s)", (action_id, item, all_items, force)
        ).fetchone()
        row = conn.execute(
            "select to_jsonb(a) from audit.action_log a where a.id = %s", (new_id,)
        ).fetchone()
    return row[0]


def refused(conn, action_id, *fragments, item=None, all_items=False, force=False) -> str:
    """audit.restore() raises; the message holds each fragment; nothing changed."""
    with pytest.raises(psycopg.DatabaseError) as caught, conn.transaction():
        conn.execute("select audit.restore(%s, %s, %s, %s)", (action_id, item, all_items, force))
    message = caught.value.diag.message_primary or ""
    text = f"{message} {caught.value.diag.message_hint or ''}"
    for fragment in fragments:
        assert fragment in text, text
    return text


def client(conn, client_id):
    row = conn.execute(
        "select to_jsonb(c) - 'updated_at' from clients c where id = %s", (client_id,)
    ).fetchone()
    conn.commit()
    return None if row is None else row[0]


def new_client(conn, name="Ada", **values) -> int:
    columns = {"name": name, **values}
    (client_id,) = conn.execute(
        sql.SQL("insert into clients ({}) values ({}) returning id").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        ),
        list(columns.values()),
    ).fetchone()
    conn.commit()
    return client_id


# -- the happy paths ---------------------------------------------------------------


def test_a_deleted_client_comes_back_as_it_was(conn, admin):
    client_id = new_client(conn, "Ada O'Neil", email="ada@example.com", notes='ünï "q"')
    before = client(conn, client_id)
    conn.execute("delete from clients where id = %s", (client_id,))
    conn.commit()
    deleted = last_action(conn)
    action = restore(admin, deleted["id"])
    assert client(conn, client_id) == before
    assert action["action"] == "Client restored"
    assert action["action_type"] == "create"
    assert action["resource_id"] == str(client_id)
    assert action["context"] == {"restores": deleted["id"]}
    assert action["row_count"] == 1


def test_cli_restores_an_update_as_one_update_action_by_the_named_admin(conn, admin_url):
    client_id = new_client(conn, "Grace", status="new", notes="first")
    conn.execute(
        "update clients set status = 'contacted', notes = null, email = 'g@x.org' where id = %s",
        (client_id,),
    )
    conn.commit()
    updated = last_action(conn)
    assert updated["action_type"] == "status_change"
    result = run(
        admin_url, "restore", str(updated["id"]), "--actor-id", "7", "--actor-name", "Dana"
    )
    assert result.exit_code == 0, result.output
    action = last_action(conn)
    assert f"restored action {updated['id']}: action {action['id']}" in result.output
    assert (action["action"], action["action_type"]) == ("Client restored", "update")
    assert (action["actor_id"], action["actor_name"], action["actor_type"]) == (
        "7",
        "Dana",
        "admin",
    )
    now = client(conn, client_id)
    assert (now["status"], now["notes"], now["email"]) == ("new", "first", None)
    (item,) = conn.execute(
        "select to_jsonb(i) from audit.action_items(%s) i", (action["id"],)
    ).fetchone()
    conn.commit()
    assert item["old"] == {"status": "contacted", "notes": None, "email": "g@x.org"}
    assert item["new"] == {"status": "new", "notes": "first", "email": None}


# -- round trips on every column type the capture tests use -------------------------

TYPES_SQL = """
create type r_mood as enum ('calm', 'it''s fine', 'ünïcödé', 'big "bad"');
create domain r_email as text check (value like '%@%');
create domain r_phase as r_mood;
create table r_accounts (
  id bigint primary key, name text, balance numeric, tags text[], scores int[],
  profile jsonb, raw json, seen_at timestamptz, avatar bytea, mood r_mood, email r_email,
  phase r_phase, secret text, touched int);
create table r_ledger (
  region text, seq int, amount numeric, note text, blob bytea,
  primary key (region, seq));
create table r_documents (id uuid primary key, title text, body json, at timestamptz,
  kind r_phase);
select audit.track('r_accounts', 'account', label_column => 'name',
  status_columns => '{mood}', ignored_columns => '{touched}', redacted_columns => '{secret}');
select audit.track('r_ledger', 'ledger_entry', label_column => 'note');
select audit.track('r_documents', 'document', label_column => 'title');
"""

ACCOUNTS = [
    # every special value: quotes, unicode, NaN, infinities, arrays with NULLs, NULLs
    "(1, 'O''Brien, \"Pat\"', 'NaN', '{a,NULL,\"b,c\"}', '{1,NULL,3}',"
    " '{\"k\": [1, null, \"ü\"], \"n\": 1.50}', '[1, 1.50, -0, 1e3]', 'infinity',"
    " '\\x00ff10', 'it''s fine', 'a@b.c', 'big \"bad\"', 's3cret', 4)",
    "(2, 'ünïcödé 日本 🚀', '-123456789.000001', '{}', null, 'null', '\"caf\\u00e9\"',"
    " '-infinity', '', 'calm', null, 'ünïcödé', null, null)",
    "(3, null, null, null, null, null, null, null, null, null, null, null, null, null)",
]


@pytest.fixture
def typed_tables(conn):
    conn.execute(TYPES_SQL)
    conn.execute(f"insert into r_accounts values {', '.join(ACCOUNTS)}")
    conn.execute(
        "insert into r_ledger values ('north, \"x\"', 1, 'NaN', 'one', '\\xdead'),"
        " ('north, \"x\"', 2, '1e-5', null, null), ('south', 1, 0, 'zero', '')"
    )
    conn.execute(
        "insert into r_documents values ('00000000-0000-0000-0000-000000000001', 'd1',"
        " '{\"a\": {\"b\": [true, null]}}', '2026-01-02 03:04:05.678901+00', 'calm'),"
        " ('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'it''s', null, 'infinity', null)"
    )
    conn.execute(
        "grant select, insert, update, delete on r_accounts, r_ledger, r_documents to audit_admin"
    )
    conn.commit()


def secretless(conn, table):
    return [
        r[0]
        for r in conn.execute(
            sql.SQL("select to_jsonb(t) - 'secret' from {} t order by 1").format(
                sql.Identifier(table)
            )
        ).fetchall()
    ]


@pytest.mark.parametrize("table", ["r_accounts", "r_ledger", "r_documents"])
def test_a_bulk_delete_of_every_type_comes_back_with_all_items_as_one_action(
    conn, admin, typed_tables, table
):
    before = secretless(conn, table)
    conn.commit()
    conn.execute(sql.SQL("delete from {}").format(sql.Identifier(table)))
    conn.commit()
    deleted = last_action(conn)
    assert deleted["row_count"] == len(before)
    action = restore(admin, deleted["id"], all_items=True)
    after = secretless(conn, table)
    conn.commit()
    assert after == before
    assert action["row_count"] == len(before)
    assert action["action_type"] == "create"
    assert action["action"].endswith(" restored")
    assert action["context"] == {"restores": deleted["id"]}
    # the redacted column was never logged: it comes back as its default (null)
    if table == "r_accounts":
        assert conn.execute("select count(secret) from r_accounts").fetchone() == (0,)
        conn.commit()


@pytest.mark.parametrize("table", ["r_accounts", "r_ledger", "r_documents"])
def test_an_update_of_every_type_is_put_back_row_by_row(conn, admin, typed_tables, table):
    before = secretless(conn, table)
    # every column changes (a key of r_ledger too)
    changes = {
        "r_accounts": "update r_accounts set name = name || '!', balance = 1, tags = '{z}',"
        " scores = '{9}', profile = '{}', raw = '[]', seen_at = now(), avatar = '\\x01',"
        " mood = 'calm', email = 'z@z.z', phase = 'calm', secret = 'new'",
        "r_ledger": "update r_ledger set seq = seq + 10, amount = 7, note = 'n', blob = null",
        "r_documents": "update r_documents set title = 't', body = '{\"x\": 1}', at = null,"
        " kind = 'big \"bad\"'",
    }[table]
    conn.execute(changes)
    conn.commit()
    updated = last_action(conn)
    action = restore(admin, updated["id"], all_items=True)
    assert secretless(conn, table) == before
    assert action["action_type"] == "update"
    assert action["row_count"] == len(before)
    if table == "r_accounts":
        # the redacted column cannot be put back: left as the update made it, and said
        assert conn.execute("select distinct secret from r_accounts").fetchall() == [("new",)]
        assert set(action["context"]["not_restored"]) == {"1", "2", "3"}
        conn.commit()


# -- refusals: each one names the reason, and nothing is restored -------------------


def count_actions(conn) -> int:
    (n,) = conn.execute("select count(*) from audit.action_log").fetchone()
    conn.commit()
    return n


def deleted_client(conn, name="Ada", **values) -> tuple[int, int]:
    """A client created then deleted: (its id, the delete's action id)."""
    client_id = new_client(conn, name, **values)
    conn.execute("delete from clients where id = %s", (client_id,))
    conn.commit()
    return client_id, last_action(conn)["id"]


def test_unknown_action_and_item_and_ambiguous_many_rows_are_refused(conn, admin, admin_url):
    refused(admin, 987654, "no action 987654")
    conn.execute("insert into clients (name) select 'c' || g from generate_series(1, 3) g")
    conn.commit()
    conn.execute("delete from clients where name like 'c_'")
    conn.commit()
    bulk = last_action(conn)["id"]
    refused(admin, bulk, f"action {bulk} has no item 4: its items are 1 to 3", item=4)
    refused(admin, bulk, "covers 3 rows", "--item N", "--all-items")
    refused(admin, bulk, "not both", item=1, all_items=True)
    assert_one_line_error(run(admin_url, "restore", "987654"), "no action 987654")
    assert_one_line_error(run(admin_url, "restore", str(bulk), "--item", "9"), "has no item 9")
    bad = run(admin_url, "restore", "x")
    assert bad.exit_code == 2 and "Invalid value for 'ACTION_ID'" in bad.output
    assert_one_line_error(
        run(admin_url, "restore", str(bulk), "--item", "1", "--all-items"), "not both"
    )
    # one item of the bulk delete: its own restore, naming the item in the context
    action = restore(admin, bulk, item=2)
    assert action["context"] == {"restores": bulk, "restores_item": 2}
    assert action["action"] == "Client restored"


def test_events_creates_and_truncates_have_nothing_to_restore(conn, admin):
    conn.execute("select audit.log_action('login', 'LawRuler login', 'integration', '1')")
    conn.commit()
    refused(admin, last_action(conn)["id"], "application event")
    new_client(conn)
    refused(admin, last_action(conn)["id"], "deleted or changed nothing")
    conn.execute("truncate case_tasks")
    conn.commit()
    refused(admin, last_action(conn)["id"], "TRUNCATE", "were not logged")


def test_a_row_that_exists_again_is_refused(conn, admin, admin_url):
    client_id, deleted = deleted_client(conn, "Ada")
    conn.execute(
        "insert into clients (id, name) overriding system value values (%s, 'Other')", (client_id,)
    )
    conn.commit()
    refused(admin, deleted, f"client {client_id} exists again")
    assert_one_line_error(
        run(admin_url, "restore", str(deleted)), f"client {client_id} exists again"
    )
    assert client(conn, client_id)["name"] == "Other"


def test_a_later_change_is_named_and_force_only_where_nothing_is_lost(conn, admin):
    client_id, deleted = deleted_client(conn, "Ada")
    first = restore(admin, deleted)
    # restoring it twice: the row is there again
    refused(admin, deleted, "exists again")
    conn.execute("delete from clients where id = %s", (client_id,))
    conn.commit()
    again = last_action(conn)["id"]
    # the row is absent, but a later restore and delete touched it since: named
    text = refused(
        admin,
        deleted,
        "was touched since",
        f"action {first['id']} (Client restored)",
        "which restored it already",
        f"action {again} (Client deleted)",
        "--force",
    )
    assert "Client deleted" in text
    restore(admin, deleted, force=True)
    assert client(conn, client_id)["name"] == "Ada"

    # an update whose columns a later action left alone: --force puts them back
    conn.execute("update clients set phone = '1' where id = %s", (client_id,))
    conn.commit()
    phoned = last_action(conn)["id"]
    conn.execute("update clients set email = 'a@b.c' where id = %s", (client_id,))
    conn.commit()
    emailed = last_action(conn)["id"]
    refused(
        admin,
        phoned,
        "was changed since",
        f"action {emailed} (Client updated)",
        "--force (force => true) puts them back",
    )
    restore(admin, phoned, force=True)
    assert (client(conn, client_id)["phone"], client(conn, client_id)["email"]) == (None, "a@b.c")

    # a later change of the same column: no force can help
    conn.execute("update clients set email = 'b@b.c' where id = %s", (client_id,))
    conn.commit()
    refused(
        admin, emailed, "was changed since", "--force cannot help", 'email (now "b@b.c"', force=True
    )
    assert client(conn, client_id)["email"] == "b@b.c"


def test_a_deleted_row_that_no_longer_exists_for_an_update_is_refused(conn, admin):
    client_id = new_client(conn, "Ada")
    conn.execute("update clients set phone = '1' where id = %s", (client_id,))
    conn.commit()
    phoned = last_action(conn)["id"]
    conn.execute("delete from clients where id = %s", (client_id,))
    conn.commit()
    refused(admin, phoned, f"client {client_id} no longer exists", "Client deleted", force=True)


def test_unlogged_not_null_columns_dropped_columns_and_changed_types_are_named(conn, admin):
    client_id, deleted = deleted_client(conn, "Ada", ssn="123", phone="call me")
    # the redacted ssn was never logged: fine while it may be null ...
    conn.execute("alter table clients alter column ssn set not null")
    conn.commit()
    refused(
        admin, deleted, "ssn (redacted: its value was never logged)", "NOT NULL without a default"
    )
    conn.execute("alter table clients alter column ssn drop not null")
    # ... a column whose type no longer holds the logged value
    conn.execute("alter table clients alter column phone type integer using null")
    conn.commit()
    refused(admin, deleted, "phone", "no longer fits column phone (integer)")
    # ... and a logged column the table no longer has
    conn.execute("alter table clients drop column phone")
    conn.commit()
    refused(admin, deleted, "column phone", "no longer has")
    assert client(conn, client_id) is None


def test_a_refusal_in_the_middle_of_a_batch_restores_nothing(conn, admin, admin_url):
    conn.execute("insert into clients (name) select 'c' || g from generate_series(1, 3) g")
    conn.commit()
    ids = [r[0] for r in conn.execute("select id from clients where name like 'c_' order by id")]
    conn.execute("delete from clients where id = any (%s)", (ids,))
    conn.commit()
    bulk = last_action(conn)["id"]
    conn.execute(
        "insert into clients (id, name) overriding system value values (%s, 'back')", (ids[1],)
    )
    conn.commit()
    actions = count_actions(conn)
    refused(admin, bulk, f"client {ids[1]} (item", "exists again", all_items=True)
    assert_one_line_error(
        run(admin_url, "restore", str(bulk), "--all-items"), f"client {ids[1]} (item"
    )
    assert client(conn, ids[0]) is None and client(conn, ids[2]) is None
    assert count_actions(conn) == actions


def test_restore_refuses_inside_a_batch_and_puts_the_callers_settings_back(conn, admin):
    first, deleted = deleted_client(conn, "Ada")
    second, deleted_too = deleted_client(conn, "Bob")
    with admin.transaction():
        admin.execute("select set_config('audit.batch', 'Cleanup', true)")
        with pytest.raises(psycopg.errors.ActiveSqlTransaction):
            admin.execute("select audit.restore(%s)", (deleted,))
    with admin.transaction():
        admin.execute(
            "select audit.set_context(actor_name => 'Dana', actor_type => 'admin',"
            " context => '{\"ticket\": 9}')"
        )
        admin.execute("select set_config('audit.action_type', 'import', true)")
        (one,) = admin.execute("select audit.restore(%s)", (deleted,)).fetchone()
        (two,) = admin.execute("select audit.restore(%s)", (deleted_too,)).fetchone()
        settings = admin.execute(
            "select current_setting('audit.batch'), current_setting('audit.action_type'),"
            " current_setting('audit.context')"
        ).fetchone()
    assert settings == ("", "import", '{"ticket": 9}')
    # two restores in one transaction: two actions, each by the caller, with its context
    rows = conn.execute(
        "select id, resource_id, actor_name, context from audit.action_log"
        " where id in (%s, %s) order by id",
        (one, two),
    ).fetchall()
    conn.commit()
    assert rows == [
        (one, str(first), "Dana", {"ticket": 9, "restores": deleted}),
        (two, str(second), "Dana", {"ticket": 9, "restores": deleted_too}),
    ]


# -- hostile: who may restore, and as whom it runs -----------------------------------


def test_an_application_role_and_a_reader_may_not_restore(conn, make_role):
    _, deleted = deleted_client(conn, "Ada")
    app = make_role("grant select, insert, update, delete on all tables in schema public to {role}")
    reader = make_role("grant audit_reader to {role}")
    for url in (app, reader):
        with (
            psycopg.connect(url) as other,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            other.execute("select audit.restore(%s)", (deleted,))
        with psycopg.connect(url) as other, pytest.raises(restore_module.RestoreRefused) as caught:
            restore_module.restore(other, deleted)
        assert "may not restore" in str(caught.value)
        assert_one_line_error(run(url, "restore", str(deleted)), "may not restore", "audit_admin")
    (n,) = conn.execute("select count(*) from clients where name = 'Ada'").fetchone()
    conn.commit()
    assert n == 0


def test_an_admin_without_the_tables_privileges_is_refused_by_postgresql(conn, make_role):
    client_id, deleted = deleted_client(conn, "Ada")
    admin_only = make_role("grant audit_admin to {role}")
    with psycopg.connect(admin_only) as other:
        refused(other, deleted, "may not insert into public.clients", "needs INSERT")
    assert_one_line_error(
        run(admin_only, "restore", str(deleted)), "may not insert into public.clients"
    )
    # INSERT but no UPDATE: an update's columns are not put back either
    updater = make_role("grant audit_admin to {role}", "grant select, insert on clients to {role}")
    with psycopg.connect(updater) as other:
        restore(other, deleted)  # INSERT is enough for a deleted row
    conn.execute("update clients set phone = '3' where id = %s", (client_id,))
    conn.commit()
    with psycopg.connect(updater) as other:
        refused(other, last_action(conn)["id"], "may not update public.clients")
    assert client(conn, client_id)["phone"] == "3"


def test_a_table_owners_code_runs_as_the_restoring_role_never_as_audit_owner(
    conn, admin_url, owning_app
):
    """The owner's trigger and its domain's check (a function it wrote) run during the
    restore: as the admin who restores, never as audit_owner."""
    owner = owning_app
    owner.execute(
        """
        create table seen (who text, what text);
        grant insert on seen to public;
        create function note(what text) returns boolean language sql as
          $$ insert into seen values (current_user, what) returning true $$;
        create domain noted as text check (note(value));
        create table pets (id int primary key, name noted);
        create function pets_trigger() returns trigger language plpgsql as
          $$ begin perform note('trigger'); return new; end $$;
        create trigger pets_seen before insert or update on pets
          for each row execute function pets_trigger();
        grant select, insert, update on pets to public;
        insert into pets values (1, 'Rex');
        """
    )
    conn.execute("select audit.track('pets', 'pet')")
    conn.commit()
    owner.execute("delete from pets")
    owner.execute("delete from seen")
    (deleted,) = conn.execute("select max(id) from audit.action_log").fetchone()
    conn.commit()
    result = run(admin_url, "restore", str(deleted))
    assert result.exit_code == 0, result.output
    who = conn.execute("select distinct who from seen").fetchall()
    (admin,) = conn.execute(
        "select actor_name from audit.action_log order by id desc limit 1"
    ).fetchone()
    conn.commit()
    assert who == [(admin,)]
    assert admin != "audit_owner"


def test_the_python_api_restores_and_refuses_in_one_transaction_each(conn, admin):
    client_id, deleted = deleted_client(conn, "Ada")
    result = restore_module.restore(admin, deleted, actor_name="Dana")
    assert (result.action, result.action_type, result.row_count) == ("Client restored", "create", 1)
    assert result.restores == deleted
    assert restore_module.report_line(result) == (
        f'restored action {deleted}: action {result.action_id} "Client restored" (create, 1 row)'
    )
    assert admin.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # committed
    assert client(conn, client_id)["name"] == "Ada"
    with pytest.raises(restore_module.RestoreRefused, match="exists again"):
        restore_module.restore(admin, deleted)
    assert admin.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_batch_of_updates_and_deletes_is_restored_as_one_update_action(conn, admin):
    ada, bob = new_client(conn, "Ada", phone="1"), new_client(conn, "Bob")
    with conn.transaction():
        conn.execute("select set_config('audit.batch', 'Cleanup', true)")
        conn.execute("update clients set phone = '2' where id = %s", (ada,))
        conn.execute("delete from clients where id = %s", (bob,))
    batch = last_action(conn)
    assert (batch["action"], batch["row_count"]) == ("Cleanup", 2)
    action = restore(admin, batch["id"], all_items=True)
    assert (action["action"], action["action_type"], action["row_count"]) == (
        "Clients restored",
        "update",
        2,
    )
    assert client(conn, ada)["phone"] == "1"
    assert client(conn, bob)["name"] == "Bob"
    # a batch that changed one row twice: which version is meant? one item at a time
    with conn.transaction():
        conn.execute("select set_config('audit.batch', 'Twice', true)")
        conn.execute("update clients set phone = '3' where id = %s", (ada,))
        conn.execute("delete from clients where id = %s", (ada,))
    twice = last_action(conn)["id"]
    refused(admin, twice, "more than once", f"client {ada} is in items 1 and 2", all_items=True)
    restore(admin, twice, item=2)
    assert client(conn, ada)["phone"] == "3"


def test_identity_always_and_generated_columns(conn, admin):
    conn.execute(
        "create table gadgets (id int generated always as identity primary key, name text,"
        " twice int generated always as (length(name) * 2) stored);"
        "select audit.track('gadgets', 'gadget');"
        "grant select, insert, update on gadgets to audit_admin;"
        "insert into gadgets (name) values ('abc'), ('de')"
    )
    conn.commit()
    conn.execute("delete from gadgets where name = 'abc'")
    conn.commit()
    restore(admin, last_action(conn)["id"])
    rows = conn.execute("select id, name, twice from gadgets order by id").fetchall()
    conn.commit()
    assert rows == [(1, "abc", 6), (2, "de", 4)]


def test_another_unique_value_and_a_missing_parent_are_refused_naming_them(conn, admin):
    conn.execute("create unique index clients_email_key on clients (email)")
    conn.commit()
    client_id, deleted = deleted_client(conn, "Ada", email="ada@example.com")
    new_client(conn, "Other", email="ada@example.com")
    refused(
        admin,
        deleted,
        f"client {client_id} cannot be restored",
        "clients_email_key",
        "(email)=(ada@example.com)",
    )
    # a case whose client is gone: restore the client first
    parent = new_client(conn, "Bob")
    conn.execute("insert into cases (client_id, title) values (%s, 'Bob v. Acme')", (parent,))
    conn.commit()
    conn.execute("delete from cases where client_id = %s", (parent,))
    conn.commit()
    case_deleted = last_action(conn)["id"]
    conn.execute("delete from clients where id = %s", (parent,))
    conn.commit()
    refused(admin, case_deleted, "cannot be restored", "foreign key", "restore that one first")
