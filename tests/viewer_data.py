"""A realistic log for the viewer tests, made through the sample CRM.

``seed(conn)`` plays a morning at the legal-intake CRM: an admin on the web creates a
campaign and a client (whose SSN is redacted) and edits it, a partner system changes a
phone number through the API, the AI intake agent opens a case, a client adds a task
from the mobile app, a DBA fixes a note in psql (no context: source "Database"), sixty
clients are imported and then moved to "contacted" in one bulk statement, and there are
application events (a login, an export). One actor's name is an XSS attempt.

``old_action(conn, when, ...)`` writes an action dated in the past (as the superuser,
straight into the log: the only way to have dates other than today).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from werkzeug.security import generate_password_hash

from audit_capture import importing, record_action, set_context

XSS_NAME = "<script>alert(1)</script>"
XSS_LABEL = '<img src=x onerror="alert(2)">'
BULK_CLIENTS = 60
PASSWORD = "correct horse battery staple"
USERS = {"alice": generate_password_hash(PASSWORD)}
SECRET_KEY = "h1Vq-8zJtQm3R_xW6cN0bL5yKd9sE2fGaUoP4iT7vZrB"  # the tests' own: strong enough

_role_numbers = itertools.count(1)


@dataclass
class Seeded:
    """Ids of the actions the tests look at, by what they are."""

    ids: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, key: str) -> int:
        return self.ids[key]


def _last_id(conn: psycopg.Connection, action: str) -> int:
    return conn.execute(
        "select max(id) from audit.action_log where action = %s", (action,)
    ).fetchone()[0]


def seed(conn: psycopg.Connection, *, xss: bool = True) -> Seeded:
    """Writes the morning's actions, each in its own committed transaction (and the
    XSS attempt unless ``xss`` is false)."""
    conn.rollback()
    conn.autocommit = True  # conn.transaction() blocks are then real transactions
    try:
        return _seed(conn, xss)
    finally:
        conn.autocommit = False


def _seed(conn: psycopg.Connection, xss: bool) -> Seeded:
    seeded = Seeded()
    alice = dict(actor_id="7", actor_name="Alice Admin", actor_type="admin", source="web")

    with conn.transaction():
        set_context(
            conn,
            **alice,
            request_id="req-1001",
            context={"ip": "203.0.113.9", "page": "/campaigns/new"},
        )
        conn.execute("insert into campaigns (name, channel) values ('Spring intake', 'voice')")
    seeded.ids["campaign_created"] = _last_id(conn, "Campaign created")

    with conn.transaction():
        set_context(conn, **alice, request_id="req-1002")
        client_id = conn.execute(
            "insert into clients (name, email, ssn, status) values"
            " ('Jane Roe', 'jane@example.com', '123-45-6789', 'new') returning id"
        ).fetchone()[0]
    seeded.ids["client_created"] = _last_id(conn, "Client created")
    seeded.ids["client_id"] = client_id

    with conn.transaction():
        set_context(conn, **alice, request_id="req-1003")
        conn.execute(
            "update clients set email = 'jane.roe@example.com', ssn = '987-65-4321' where id = %s",
            (client_id,),
        )
    seeded.ids["client_updated"] = _last_id(conn, "Client updated")

    with conn.transaction():
        set_context(
            conn,
            actor_id="svc-12",
            actor_name="LawRuler sync",
            actor_type="system",
            source="api",
            request_id="req-api-77",
        )
        conn.execute("update clients set phone = '+1 555 0100' where id = %s", (client_id,))

    with conn.transaction():
        set_context(
            conn,
            actor_id="agent-1",
            actor_name="Intake agent",
            actor_type="system",
            source="ai",
            context={"model": "intake-v2", "call_id": "c-881"},
        )
        conn.execute(
            "insert into cases (client_id, title) values (%s, 'Roe v. Acme')", (client_id,)
        )
    seeded.ids["case_created"] = _last_id(conn, "Case created")

    with conn.transaction():
        set_context(
            conn, actor_id="c-3", actor_name="Jane Roe", actor_type="client", source="mobile"
        )
        conn.execute("insert into case_tasks (case_id, title) select id, 'Upload ID' from cases")

    with conn.transaction():  # a DBA in psql: no context at all
        conn.execute("update clients set notes = 'merged duplicate' where id = %s", (client_id,))
    seeded.ids["direct_change"] = conn.execute(
        "select max(id) from audit.action_log where source is null"
    ).fetchone()[0]

    with conn.transaction():
        set_context(conn, **alice, request_id="req-1004")
        with importing(conn):
            conn.execute(
                "insert into clients (name, email)"
                " select 'Lead ' || n, 'lead' || n || '@example.com'"
                " from generate_series(1, %s) n",
                (BULK_CLIENTS,),
            )
    seeded.ids["import"] = conn.execute(
        "select max(id) from audit.action_log where action_type = 'import'"
    ).fetchone()[0]

    with conn.transaction():
        set_context(conn, **alice, request_id="req-1005")
        conn.execute("update clients set status = 'contacted' where name like 'Lead %'")
    seeded.ids["bulk"] = conn.execute(
        "select max(id) from audit.action_log"
        " where row_count = %s and action_type = 'status_change'",
        (BULK_CLIENTS,),
    ).fetchone()[0]

    with conn.transaction():
        set_context(conn, **alice, request_id="req-1006")
        seeded.ids["login"] = record_action(
            conn,
            "login",
            "LawRuler login",
            resource_type="integration",
            resource_id=1,
            resource_label="LawRuler",
        )
        seeded.ids["export"] = record_action(
            conn,
            "export",
            "Call export to file",
            resource_type="call",
            row_count=0,
            changes={"calls": 42, "format": "csv"},
        )

    if not xss:
        return seeded
    with conn.transaction():
        set_context(conn, actor_id="x-1", actor_name=XSS_NAME, actor_type="client", source="web")
        conn.execute("update campaigns set name = %s where name = 'Spring intake'", (XSS_LABEL,))
    seeded.ids["xss"] = _last_id(conn, "Campaign updated")
    return seeded


def csrf_token(client, path="/sign-in") -> str:
    """The CSRF token of the form at ``path`` (Flask test client)."""
    page = client.get(path)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_in(client, username="alice", password=PASSWORD, next_url="/"):
    """Sign the Flask test client in through the form."""
    token = csrf_token(client)
    return client.post(
        "/sign-in",
        data={"csrf_token": token, "username": username, "password": password, "next": next_url},
    )


def old_action(
    conn: psycopg.Connection, when: datetime, action: str = "Client updated", **values
) -> int:
    """An action dated ``when``, written straight into the log (superuser only)."""
    row = {
        "occurred_at": when,
        "action": action,
        "action_type": "update",
        "resource_type": "client",
        "actor_type": "admin",
        "actor_id": "old-1",
        "actor_name": "Olga Former",
        "source": "web",
        "db_user": "crm_app",
        "transaction_id": 1,
        "row_count": 1,
        **values,
    }
    query = sql.SQL("insert into audit.action_log ({}) values ({}) returning id").format(
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join([sql.Placeholder()] * len(row)),
    )
    action_id = conn.execute(query, list(row.values())).fetchone()[0]
    conn.commit()
    return action_id


def make_reader(conn: psycopg.Connection, db_url: str) -> tuple[str, str]:
    """A LOGIN role granted audit_reader (the viewer's role); (its name, its URL)."""
    name = f"viewer_{next(_role_numbers)}_{conn.info.dbname}"
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    conn.execute(sql.SQL("grant audit_reader to {}").format(sql.Identifier(name)))
    conn.commit()
    return name, make_conninfo(db_url, user=name)


def drop_role(conn: psycopg.Connection, name: str) -> None:
    conn.rollback()
    conn.execute(sql.SQL("drop owned by {0}; drop role {0}").format(sql.Identifier(name)))
    conn.commit()


def app_config(reader_url: str, **overrides) -> dict:
    return {
        "DATABASE_URL": reader_url,
        "SECRET_KEY": SECRET_KEY,
        "USERS": USERS,
        "TIMEZONE": "UTC",
        "TESTING": True,
        **overrides,
    }


def role_sessions(conn: psycopg.Connection, role: str) -> list[tuple[int, str]]:
    """The role's sessions in the server: (pid, state), by pid. Each look is its own
    transaction (one transaction's snapshot of pg_stat_activity never changes)."""
    conn.rollback()
    found = [
        tuple(r)
        for r in conn.execute(
            "select pid, state from pg_stat_activity where usename = %s order by pid", (role,)
        )
    ]
    conn.commit()
    return found
