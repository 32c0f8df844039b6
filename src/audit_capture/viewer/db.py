"""The viewer's database connection: one per request, read-only, with a statement timeout.

``get_conn()`` opens it on first use and keeps it on ``flask.g``; ``close_conn`` (a
teardown hook) closes it when the view has returned. A streamed export outlives that, so
it opens its own with ``connect()`` and closes it when the stream ends (``views.export``).
The session is read-only (``default_transaction_read_only=on``): even a role that could
write cannot write through the viewer. A query longer than the statement timeout is
cancelled (the query layer turns that into ``TooBroad``).
"""

from __future__ import annotations

import psycopg
from flask import g

from audit_capture import database
from audit_capture.database import DatabaseUnavailable
from audit_capture.viewer.config import ViewerSettings

APPLICATION_NAME = "audit-capture viewer"


def session_options(statement_timeout_ms: int) -> str:
    return f"-c default_transaction_read_only=on -c statement_timeout={int(statement_timeout_ms)}"


def connect(settings: ViewerSettings) -> psycopg.Connection:
    """A new read-only connection for ``settings``; DatabaseUnavailable when it fails."""
    if settings.connect is not None:
        conn = settings.connect()  # the host's connection: made read-only all the same
        conn.execute(
            "select set_config('default_transaction_read_only', 'on', false),"
            " set_config('statement_timeout', %s, false)",
            (str(int(settings.statement_timeout_ms)),),
        )
        conn.commit()
        return conn
    if not settings.database_url:
        raise DatabaseUnavailable("the viewer has no database URL configured")
    return database.connect(
        settings.database_url,
        options=session_options(settings.statement_timeout_ms),
        application_name=APPLICATION_NAME,
    )


def log_access_problem(conn: psycopg.Connection) -> str | None:
    """Why the connection's role cannot read the log, in one line; None when it can."""
    try:
        conn.execute("select 1 from audit.action_log limit 1")
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return (
            "the audit schema is not installed in this database (run audit-capture migrate upgrade)"
        )
    except psycopg.errors.InsufficientPrivilege:
        user = conn.info.user
        return f"role {user!r} cannot read audit.action_log: grant audit_reader to {user}"
    finally:
        conn.rollback()
    return None


def current_settings() -> ViewerSettings:
    """The settings of the viewer blueprint handling this request (set by its before_request)."""
    return g.audit_viewer_settings


def get_conn() -> psycopg.Connection:
    """This request's connection (opened on first use)."""
    if "audit_viewer_conn" not in g:
        g.audit_viewer_conn = connect(current_settings())
    return g.audit_viewer_conn


def close_conn(exc: BaseException | None = None) -> None:
    """Teardown hook: close this request's connection, if one was opened. Closing is
    enough: a transaction left open ends with the connection, rolled back by the server."""
    conn = g.pop("audit_viewer_conn", None)
    if conn is not None:
        conn.close()
