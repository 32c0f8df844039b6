"""Restore: audit.restore() and ``audit-capture restore`` bring back what an action
deleted, or put back what an update changed, from the log alone (triggers/19_restore.sql).
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from test_cli import assert_one_line_error, run

from audit_capture import restore as restore_module

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
    with pytest.raises(psycopg.DatabaseError) as caught:
        with conn.transaction():
            conn.execute(
                "select audit.restore(%s, %s, %s, %s)", (action_id, item, all_items, force)
            )
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
    client_id = new_client(conn, "Ada O'Neil", email="ada@example.com", notes="ünï \"q\"")
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
    assert (action["actor_id"], action["actor_name"], action["actor_type"]) == ("7", "Dana", "admin")
    now = client(conn, client_id)
    assert (now["status"], now["notes"], now["email"]) == ("new", "first", None)
    (item,) = conn.execute("select to_jsonb(i) from audit.action_items(%s) i", (action["id"],)).fetchone()
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
