"""What ``audit-capture demo`` does, step by step.

``prepare(url)`` installs the audit schema with the package's migrations, creates the
sample CRM and tracks it, adds the generated history asked for (``history``: older
actions generated in SQL, ``audit_capture.demo.history``), runs a month of activity and
spreads it over the last 30 days.
``serve(...)`` serves the viewer on 127.0.0.1 until Ctrl-C. The CLI adds a throwaway
PostgreSQL around them (``audit_capture.embedded``) unless it is given a database.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa
from psycopg import sql

from audit_capture import migrate
from audit_capture.database import one_value, sqlalchemy_url
from audit_capture.demo.activity import generate, spread_over_days
from audit_capture.demo.crm_app import make_crm_app
from audit_capture.demo.history import add_history, check_superuser, history_end
from audit_capture.sample import install_crm

Step = Callable[[str], None]

#: The login role the viewer reads through: audit_reader and nothing else.
VIEWER_ROLE = "audit_demo_viewer"


@dataclass
class Prepared:
    actions: int
    seconds: float
    viewer_url: str
    history: int = 0
    history_seconds: float = 0.0


def prepare(
    url: str, *, step: Step = lambda _: None, spread_days: int = 30, history: int = 0
) -> Prepared:
    """Make ``url``'s database a demo: schema, CRM, ``history`` generated older actions,
    activity, a read-only viewer role. History needs a superuser's ``url``
    (``history.NotSuperuser`` otherwise, before anything is done)."""
    started = time.monotonic()
    if history:
        check_superuser(url)
    step("installing the audit schema (audit-capture migrate upgrade)")
    migrate.upgrade(url, "head")
    with psycopg.connect(url) as conn:
        step("creating the sample CRM and tracking its tables")
        with conn.transaction():
            already = one_value(conn, "select count(*) from audit.tracked_table")
            if not already:
                install_crm(conn)
        viewer_password = secrets.token_urlsafe(18)
        with conn.transaction():
            _viewer_role(conn, viewer_password)
    added = None
    if history:
        step(f"generating {history:,} history actions in SQL (older than the month of activity)")
        added = add_history(url, history, end_at=history_end(spread_days))
        step(f"  {added.actions:,} actions in {added.seconds:.1f} s (with VACUUM ANALYZE)")
    step("generating a month of activity through the CRM application")
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        generate(make_crm_app(engine), url, step=lambda part: step(f"  {part}"))
    finally:
        engine.dispose()
    step(f"spreading the actions over the last {spread_days} days")
    try:
        actions = spread_over_days(url, spread_days, after=added.last_id if added else 0)
    except psycopg.errors.InsufficientPrivilege:
        # only a superuser may switch the log's append-only triggers off: keep "now"
        step("  (not a superuser: the actions keep today's timestamps)")
        with psycopg.connect(url) as conn:
            actions = one_value(conn, "select count(*) from audit.action_log")
    viewer_url = psycopg.conninfo.make_conninfo(url, user=VIEWER_ROLE, password=viewer_password)
    return Prepared(
        actions=actions,
        seconds=time.monotonic() - started,
        viewer_url=viewer_url,
        history=added.actions if added else 0,
        history_seconds=added.seconds if added else 0.0,
    )


def _viewer_role(conn: psycopg.Connection, password: str) -> None:
    role = sql.Identifier(VIEWER_ROLE)
    exists = conn.execute("select 1 from pg_roles where rolname = %s", (VIEWER_ROLE,)).fetchone()
    verb = sql.SQL("alter") if exists else sql.SQL("create")
    conn.execute(sql.SQL("{} role {} login password {}").format(verb, role, sql.Literal(password)))
    conn.execute(sql.SQL("grant audit_reader to {}").format(role))
    conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(role))


# -- the whole demo: a server, the preparation, the viewer ----------------------------

DEMO_DATABASE = "crm"


@dataclass
class Demo:
    """A prepared demo: the viewer app and how to sign in."""

    app: object
    username: str
    password: str
    prepared: Prepared | None


def viewer_app(prepared_url: str, viewer_url: str, *, timezone: str = "UTC") -> Demo:
    """The standalone viewer over the demo database, with a generated sign-in."""
    from werkzeug.security import generate_password_hash

    from audit_capture.viewer.app import create_app

    password = secrets.token_urlsafe(12)
    app = create_app(
        {
            "DATABASE_URL": viewer_url,
            "SECRET_KEY": secrets.token_hex(32),
            "USERS": {"admin": generate_password_hash(password)},
            "TIMEZONE": timezone,
        }
    )
    return Demo(app=app, username="admin", password=password, prepared=None)


def demo_database(server) -> str:
    """The demo's database on an embedded server, created when missing."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        if not conn.execute(
            "select 1 from pg_database where datname = %s", (DEMO_DATABASE,)
        ).fetchone():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DEMO_DATABASE)))
    return server.url(DEMO_DATABASE)


def is_prepared(url: str) -> bool:
    """True when the database already holds a demo (a kept data folder)."""
    with psycopg.connect(url) as conn:
        return bool(
            one_value(
                conn,
                "select to_regclass('audit.action_log') is not null "
                "and exists (select from pg_roles where rolname = %s)",
                (VIEWER_ROLE,),
            )
            and one_value(conn, "select exists (select from audit.action_log)")
        )


def reset_viewer_password(url: str) -> str:
    """A fresh password for the viewer role of a kept demo database; its URL."""
    password = secrets.token_urlsafe(18)
    with psycopg.connect(url) as conn, conn.transaction():
        _viewer_role(conn, password)
    return psycopg.conninfo.make_conninfo(url, user=VIEWER_ROLE, password=password)
