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
