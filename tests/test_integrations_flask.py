"""The Flask integration for host applications: each request states the context from
the application's own notion of the current user, the source and a request id; it
composes with the SQLAlchemy integration and with plain psycopg."""

from __future__ import annotations

import html

import flask
import psycopg
import pytest
import sqlalchemy as sa
from audit_log import actions
from flask import Flask, g, request
from sqlalchemy.orm import Session

import audit_capture
from audit_capture.context import ambient_variables
from audit_capture.database import sqlalchemy_url
from audit_capture.integrations.flask import Actor, AuditContext
from audit_capture.integrations.sqlalchemy import instrument

# The host application's own users: the extension assumes no login library.
USERS = {
    "alice": Actor(id=1, name="Alice Admin", type="admin"),
    "carl": {"id": 42, "name": "Carl Client", "type": "client"},
    "long": Actor(id=7, name="Maria " + "de la " * 60 + "Lopez", type="client"),
}


def make_host_app(db_url, engine, **options):
    app = Flask("crm")
    options.setdefault("api_prefixes", ("/api/",))
    AuditContext(
        app, current_actor=lambda: USERS.get(request.headers.get("X-Test-User", "")), **options
    )

    def add_client_with_sqlalchemy():
        with engine.begin() as connection:
            connection.execute(
                sa.text("insert into clients (name) values (:name)"), {"name": request.form["name"]}
            )
        return "created", 201

    app.add_url_rule("/clients", "web_add", add_client_with_sqlalchemy, methods=["POST"])
    app.add_url_rule("/api/clients", "api_add", add_client_with_sqlalchemy, methods=["POST"])

    @app.post("/psycopg/clients")
    def add_client_with_psycopg():
        with psycopg.connect(db_url) as conn, conn.transaction():
            audit_capture.apply_context(conn)
            conn.execute("insert into clients (name) values (%s)", (request.form["name"],))
        return "created", 201

    return app


@pytest.fixture
def engine(db_url):
    engine = sa.create_engine(sqlalchemy_url(db_url))
    instrument(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def host_app(db_url, engine):
    """The host application behind a gateway that sets X-Audit-Source: trusted."""
    return make_host_app(db_url, engine, trust_source_header=True)


def logged(conn):
    return {a["resource_label"]: a for a in actions(conn, resource_type="client")}


def test_users_and_sources_per_request(host_app, conn):
    client = host_app.test_client()
    assert (
        client.post(
            "/clients", data={"name": "web by alice"}, headers={"X-Test-User": "alice"}
        ).status_code
        == 201
    )
    client.post("/api/clients", data={"name": "api by carl"}, headers={"X-Test-User": "carl"})
    client.post(
        "/clients",
        data={"name": "mobile by carl"},
        headers={"X-Test-User": "carl", "X-Audit-Source": "mobile"},
    )
    client.post("/api/clients", data={"name": "ai agent"}, headers={"X-Audit-Source": "ai"})
    client.post("/clients", data={"name": "nobody"})
    log = logged(conn)
    got = {
        label: (a["actor_id"], a["actor_name"], a["actor_type"], a["source"])
        for label, a in log.items()
    }
    assert got == {
        "web by alice": ("1", "Alice Admin", "admin", "web"),
        "api by carl": ("42", "Carl Client", "client", "api"),
        "mobile by carl": ("42", "Carl Client", "client", "mobile"),
        "ai agent": (None, "postgres", "system", "ai"),
        "nobody": (None, "postgres", "system", "web"),
    }


def test_a_user_whose_name_is_longer_than_the_log_holds_still_acts(host_app, conn):
    """The name is the user's data: cut in the log (200 characters, ending with "…"),
    never a failed request."""
    response = host_app.test_client().post(
        "/clients", data={"name": "by a long name"}, headers={"X-Test-User": "long"}
    )
    assert response.status_code == 201
    name = logged(conn)["by a long name"]["actor_name"]
    assert len(name) == 200 and name.startswith("Maria de la de la") and name.endswith("…")


def test_request_id_is_taken_or_made_and_echoed(host_app, conn):
    client = host_app.test_client()
    given = client.post("/clients", data={"name": "given"}, headers={"X-Request-ID": "req-abc-1"})
    made = client.post("/clients", data={"name": "made"})
    forged = client.post("/clients", data={"name": "forged"}, headers={"X-Request-ID": "x" * 500})
    log = logged(conn)
    assert log["given"]["request_id"] == given.headers["X-Request-ID"] == "req-abc-1"
    assert (
        len(log["made"]["request_id"]) == 32
        and log["made"]["request_id"] == made.headers["X-Request-ID"]
    )
    assert log["forged"]["request_id"] != "x" * 500 and len(log["forged"]["request_id"]) == 32
    assert forged.headers["X-Request-ID"] == log["forged"]["request_id"]


def test_plain_psycopg_in_a_request(host_app, conn):
    host_app.test_client().post(
        "/psycopg/clients", data={"name": "raw"}, headers={"X-Test-User": "alice"}
    )
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
    AuditContext(
        app, source=lambda req: "mobile" if req.user_agent.string.startswith("CRM-iOS") else "web"
    )

    @app.post("/x")
    def x():
        with psycopg.connect(db_url) as c, c.transaction():
            audit_capture.apply_context(c)
            c.execute("insert into clients (name) values ('ios')")
        return "ok"

    app.test_client().post("/x", headers={"User-Agent": "CRM-iOS/3.2"})
    assert logged(conn)["ios"]["source"] == "mobile"


# -- X-Audit-Source: believed only where the application says so ------------------------


def test_the_source_header_is_ignored_by_default(db_url, engine, conn, caplog):
    client = make_host_app(db_url, engine).test_client()
    with caplog.at_level("WARNING", logger="audit_capture.integrations.flask"):
        client.post(
            "/clients",
            data={"name": "browser says ai"},
            headers={"X-Test-User": "carl", "X-Audit-Source": "ai"},
        )
        client.post(
            "/api/clients", data={"name": "api says mobile"}, headers={"X-Audit-Source": "mobile"}
        )
        client.post(
            "/clients", data={"name": "browser says webb"}, headers={"X-Audit-Source": "webb"}
        )
    log = logged(conn)
    assert {label: a["source"] for label, a in log.items()} == {
        "browser says ai": "web",
        "api says mobile": "api",
        "browser says webb": "web",
    }
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "X-Audit-Source ignored" in warnings[0]
    assert "trust_source_header" in warnings[0]


GATEWAY = "10.0.0.5"


def test_a_trusted_gateway_states_the_source(db_url, engine, conn):
    app = make_host_app(db_url, engine, trust_source_header=lambda req: req.remote_addr == GATEWAY)
    client = app.test_client()
    client.post(
        "/clients",
        data={"name": "via gateway"},
        headers={"X-Audit-Source": "Mobile"},
        environ_base={"REMOTE_ADDR": GATEWAY},
    )
    client.post(
        "/clients",
        data={"name": "direct"},
        headers={"X-Audit-Source": "mobile"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    log = logged(conn)
    assert log["via gateway"]["source"] == "mobile"
    assert log["direct"]["source"] == "web"


@pytest.mark.parametrize("value", ["webb", "web,ai", "x" * 300, "<script>"])
def test_a_trusted_header_naming_no_source_is_a_400(host_app, conn, value):
    response = host_app.test_client().post(
        "/clients", data={"name": "never written"}, headers={"X-Audit-Source": value}
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "X-Audit-Source is" in page and "expected one of web, api, ai, mobile" in page
    assert "<script>" not in page and "x" * 100 not in page
    assert logged(conn) == {}


def test_an_empty_source_header_is_no_header(host_app, conn):
    host_app.test_client().post(
        "/api/clients", data={"name": "blank"}, headers={"X-Audit-Source": " "}
    )
    assert logged(conn)["blank"]["source"] == "api"


def test_trust_source_header_takes_a_bool_or_a_callable():
    with pytest.raises(TypeError, match="trust_source_header must be True, False or a callable"):
        AuditContext(Flask("crm"), trust_source_header="10.0.0.5")


def test_the_400_says_what_the_readme_says(host_app):
    response = host_app.test_client().post(
        "/clients", data={"name": "x"}, headers={"X-Audit-Source": "webb"}
    )
    assert response.status_code == 400
    assert "X-Audit-Source is 'webb'; expected one of web, api, ai, mobile" in html.unescape(
        response.get_data(as_text=True)
    )


# -- the actor is whoever the application loaded, whatever the order of its hooks -------


@pytest.fixture
def app_users(conn):
    with conn.transaction():
        conn.execute(
            "create table app_users (login text primary key, id int, name text, kind text)"
        )
        conn.execute(
            "insert into app_users values ('alice', 1, 'Alice Admin', 'admin'), "
            "('carl', 42, 'Carl Client', 'client')"
        )


def load_user(engine):
    """The application's own loader: reads the signed-in user from the database."""
    login = request.headers.get("X-Test-User")
    if login is None:
        return None
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("select id, name, kind from app_users where login = :login"), {"login": login}
        ).one_or_none()
    return None if row is None else Actor(row.id, row.name, row.kind)


def app_with_user_hook(db_url, engine, hook_order, where="app"):
    """A host app that loads its user into g in a before_request hook registered before
    or after AuditContext (or in a blueprint's hook), and writes in three ways."""
    app = Flask("crm")
    routes = flask.Blueprint("routes", __name__)

    def load():
        g.user = load_user(engine)
        g.session = Session(engine)  # an ORM session begun before the view, as extensions do
        g.session.execute(sa.text("select count(*) from app_users"))

    @app.teardown_request
    def close(exc):
        session = g.pop("session", None)
        if session is not None:
            session.close()

    if where == "blueprint":
        routes.before_request(load)
    elif hook_order == "before":
        app.before_request(load)
    AuditContext(app, current_actor=lambda: g.get("user"))
    if where == "app" and hook_order == "after":
        app.before_request(load)

    @routes.post("/core")
    def core():
        with engine.begin() as connection:
            connection.execute(
                sa.text("insert into clients (name) values (:name)"), {"name": request.form["name"]}
            )
        return "created", 201

    @routes.post("/session")
    def orm_session():
        g.session.execute(
            sa.text("insert into clients (name) values (:name)"), {"name": request.form["name"]}
        )
        g.session.commit()
        return "created", 201

    @routes.post("/psycopg")
    def raw():
        with psycopg.connect(db_url) as c, c.transaction():
            audit_capture.apply_context(c)
            c.execute("insert into clients (name) values (%s)", (request.form["name"],))
        return "created", 201

    app.register_blueprint(routes)
    return app


@pytest.mark.parametrize("hook_order", ["before", "after", "blueprint"])
def test_the_user_is_the_actor_whatever_the_hook_order(db_url, engine, conn, app_users, hook_order):
    app = app_with_user_hook(
        db_url, engine, hook_order, where="blueprint" if hook_order == "blueprint" else "app"
    )
    client = app.test_client()
    for form in ("core", "session", "psycopg"):
        assert (
            client.post(
                f"/{form}", data={"name": f"{form} by alice"}, headers={"X-Test-User": "alice"}
            ).status_code
            == 201
        )
        client.post(f"/{form}", data={"name": f"{form} by nobody"})
    got = {
        label: (a["actor_id"], a["actor_name"], a["actor_type"])
        for label, a in logged(conn).items()
    }
    for form in ("core", "session", "psycopg"):
        assert got[f"{form} by alice"] == ("1", "Alice Admin", "admin"), form
        assert got[f"{form} by nobody"] == (None, "postgres", "system"), form


def test_a_current_actor_that_queries_the_database_itself(db_url, engine, conn, app_users):
    """current_actor loads the user lazily (as Flask-Login's current_user does): its own
    query runs with the system as the actor instead of asking for the actor again."""
    calls, loader_ran_as = [], []

    def current_actor():
        calls.append(1)
        if "user" not in g:
            with engine.connect() as connection:
                loader_ran_as.append(
                    connection.execute(
                        sa.text("select current_setting('audit.actor_type', true)")
                    ).scalar()
                )
            g.user = load_user(engine)
        return g.user

    app = Flask("crm")
    AuditContext(app, current_actor=current_actor)

    @app.post("/clients")
    def add():
        with engine.begin() as connection:
            connection.execute(
                sa.text("insert into clients (name) values (:name)"), {"name": request.form["name"]}
            )
            connection.execute(
                sa.text("update clients set email = 'c@example.com' where name = :name"),
                {"name": request.form["name"]},
            )
        return "created", 201

    app.test_client().post("/clients", data={"name": "carl's"}, headers={"X-Test-User": "carl"})
    log = actions(conn, resource_type="client")
    assert [(a["action"], a["actor_name"], a["actor_type"]) for a in log] == [
        ("Client created", "Carl Client", "client"),
        ("Client updated", "Carl Client", "client"),
    ]
    assert len(calls) == 1  # asked once, kept for the rest of the request
    assert loader_ran_as == ["system"]


def test_a_user_signing_in_mid_request_is_the_actor_from_then_on(db_url, engine, conn, app_users):
    app = Flask("crm")
    AuditContext(app, current_actor=lambda: g.get("user"))

    @app.post("/sign-in")
    def sign_in():
        with engine.begin() as connection:
            connection.execute(sa.text("insert into clients (name) values ('before sign-in')"))
        g.user = USERS["alice"]
        with engine.begin() as connection:
            connection.execute(sa.text("insert into clients (name) values ('after sign-in')"))
        return "ok"

    app.test_client().post("/sign-in")
    log = logged(conn)
    assert log["before sign-in"]["actor_type"] == "system"
    assert log["after sign-in"]["actor_name"] == "Alice Admin"


def test_work_handed_to_a_thread_with_the_context_keeps_the_actor(db_url, engine, conn, app_users):
    """README: executor.submit(contextvars.copy_context().run, work) carries the context."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    app = app_with_user_hook(db_url, engine, "after")

    @app.post("/threaded")
    def threaded():
        def work():
            with engine.begin() as connection:
                connection.execute(sa.text("insert into clients (name) values ('from a thread')"))

        with ThreadPoolExecutor(1) as executor:
            executor.submit(contextvars.copy_context().run, work).result()
        return "ok"

    app.test_client().post("/threaded", headers={"X-Test-User": "carl"})
    assert logged(conn)["from a thread"]["actor_name"] == "Carl Client"
