"""The Flask integration for host applications: each request states the context from
the application's own notion of the current user, the source and a request id; it
composes with the SQLAlchemy integration and with plain psycopg."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask, request

import audit_capture
from audit_capture.context import ambient_variables
from audit_capture.database import sqlalchemy_url
from audit_capture.integrations.flask import Actor, AuditContext
from audit_capture.integrations.sqlalchemy import instrument
from audit_log import actions

# The host application's own users: the extension assumes no login library.
USERS = {
    "alice": Actor(id=1, name="Alice Admin", type="admin"),
    "carl": {"id": 42, "name": "Carl Client", "type": "client"},
}


@pytest.fixture
def host_app(db_url):
    engine = sa.create_engine(sqlalchemy_url(db_url))
    instrument(engine)
    app = Flask("crm")
    AuditContext(app, current_actor=lambda: USERS.get(request.headers.get("X-Test-User", "")),
                 api_prefixes=("/api/",))

    def add_client_with_sqlalchemy():
        with engine.begin() as connection:
            connection.execute(sa.text("insert into clients (name) values (:name)"),
                               {"name": request.form["name"]})
        return "created", 201

    app.add_url_rule("/clients", "web_add", add_client_with_sqlalchemy, methods=["POST"])
    app.add_url_rule("/api/clients", "api_add", add_client_with_sqlalchemy, methods=["POST"])

    @app.post("/psycopg/clients")
    def add_client_with_psycopg():
        with psycopg.connect(db_url) as conn, conn.transaction():
            audit_capture.apply_context(conn)
            conn.execute("insert into clients (name) values (%s)", (request.form["name"],))
        return "created", 201

    yield app
    engine.dispose()


def logged(conn):
    return {a["resource_label"]: a for a in actions(conn, resource_type="client")}


def test_users_and_sources_per_request(host_app, conn):
    client = host_app.test_client()
    assert client.post("/clients", data={"name": "web by alice"}, headers={"X-Test-User": "alice"}).status_code == 201
    client.post("/api/clients", data={"name": "api by carl"}, headers={"X-Test-User": "carl"})
    client.post("/clients", data={"name": "mobile by carl"},
                headers={"X-Test-User": "carl", "X-Audit-Source": "mobile"})
    client.post("/api/clients", data={"name": "ai agent"}, headers={"X-Audit-Source": "ai"})
    client.post("/clients", data={"name": "nobody"})
    log = logged(conn)
    got = {label: (a["actor_id"], a["actor_name"], a["actor_type"], a["source"]) for label, a in log.items()}
    assert got == {
        "web by alice": ("1", "Alice Admin", "admin", "web"),
        "api by carl": ("42", "Carl Client", "client", "api"),
        "mobile by carl": ("42", "Carl Client", "client", "mobile"),
        "ai agent": (None, "postgres", "system", "ai"),
        "nobody": (None, "postgres", "system", "web"),
    }


def test_request_id_is_taken_or_made_and_echoed(host_app, conn):
    client = host_app.test_client()
    given = client.post("/clients", data={"name": "given"}, headers={"X-Request-ID": "req-abc-1"})
    made = client.post("/clients", data={"name": "made"})
    forged = client.post("/clients", data={"name": "forged"}, headers={"X-Request-ID": "x" * 500})
    log = logged(conn)
    assert log["given"]["request_id"] == given.headers["X-Request-ID"] == "req-abc-1"
    assert len(log["made"]["request_id"]) == 32 and log["made"]["request_id"] == made.headers["X-Request-ID"]
    assert log["forged"]["request_id"] != "x" * 500 and len(log["forged"]["request_id"]) == 32


def test_plain_psycopg_in_a_request(host_app, conn):
    host_app.test_client().post("/psycopg/clients", data={"name": "raw"}, headers={"X-Test-User": "alice"})
    assert logged(conn)["raw"]["actor_name"] == "Alice Admin"


def test_the_context_ends_with_the_request(host_app, conn):
    seen = {}

    @host_app.get("/peek")
    def peek():
        seen["inside"] = ambient_variables()
        return "ok"

    host_app.test_client().get("/peek", headers={"X-Test-User": "alice"})
    assert seen["inside"]["audit.actor_name"] == "Alice Admin"
    assert ambient_variables() is None


def test_a_custom_source_rule(db_url, conn):
    app = Flask("crm")
    AuditContext(app, source=lambda req: "mobile" if req.user_agent.string.startswith("CRM-iOS") else "web")

    @app.post("/x")
    def x():
        with psycopg.connect(db_url) as c, c.transaction():
            audit_capture.apply_context(c)
            c.execute("insert into clients (name) values ('ios')")
        return "ok"

    app.test_client().post("/x", headers={"User-Agent": "CRM-iOS/3.2"})
    assert logged(conn)["ios"]["source"] == "mobile"
