"""The viewer as a Flask blueprint, to mount in a host application.

    from audit_capture.viewer import make_blueprint

    def may_see_audit_log() -> bool:          # your rule, with your own login
        return current_user.is_authenticated and current_user.is_admin

    app.register_blueprint(
        make_blueprint(may_see_audit_log, database_url="postgresql://viewer@db/crm",
                       timezone="Europe/Paris"),
        url_prefix="/admin/audit",
    )

``authorize`` is called before every viewer request (pages and exports; not the
package's own CSS and script) and decides who may see the log: False answers
``unauthorized()`` (by default a 403 page). Without an ``authorize`` hook nobody is let
in: a host says who may read its log. The viewer connects with ``database_url`` (a role
granted ``audit_reader``), in a read-only session with a statement timeout, through a
pool of ``pool_min_size`` to ``pool_max_size`` connections opened on the first request
(``app.extensions["audit_viewer"][name]`` is its ``db.ViewerDatabase``: ``close()`` it
when the app goes away before the process does; the process's exit closes it anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from flask import Blueprint, Response, abort, current_app, g, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from audit_capture.database import DatabaseUnavailable
from audit_capture.resources import viewer_dir
from audit_capture.viewer import config, db, history, live, present, security, views
from audit_capture.viewer.errors import BadRequest, NotFound, TooBroad

DEFAULT_NAME = "audit_viewer"


def deny() -> Response:
    abort(403, description="You are not allowed to see the audit log.")


def make_blueprint(
    authorize: Callable[[], bool] | None = None,
    *,
    database_url: str | None = None,
    timezone: str = "UTC",
    page_size: int = 50,
    statement_timeout_ms: int = 5000,
    unauthorized: Callable[[], Any] | None = None,
    connect: Callable[[], psycopg.Connection] | None = None,
    name: str = DEFAULT_NAME,
    pool_min_size: int = config.DEFAULTS["POOL_MIN_SIZE"],
    pool_max_size: int = config.DEFAULTS["POOL_MAX_SIZE"],
    options_cache_seconds: int = config.DEFAULTS["OPTIONS_CACHE_SECONDS"],
) -> Blueprint:
    """A viewer blueprint: ``/`` (the list and its exports), ``/actions/<id>``,
    ``/actors?q=`` (the actor search behind the Actor field, JSON), ``/live`` with
    ``/live/poll`` (the Live view and its feed, ``live.py``), and
    ``/history/<resource_type>?id=<resource_id>`` (a record's history, ``history.py``).

    - ``authorize()``: True lets the request in. None: nobody is let in (403).
    - ``unauthorized()``: the response when ``authorize()`` says no (default: 403 page).
    - ``database_url``: libpq URL of a role granted ``audit_reader``; or ``connect``, a
      function returning a new psycopg connection (the pool opens them with it).
    - ``timezone``, ``page_size``, ``statement_timeout_ms``, ``pool_min_size``,
      ``pool_max_size``, ``options_cache_seconds``: as in the settings file.
    """
    min_size, max_size = config.pool_sizes(pool_min_size, pool_max_size)
    settings = config.ViewerSettings(
        database_url=database_url,
        timezone=timezone,
        page_size=config.page_size(page_size),
        statement_timeout_ms=config.statement_timeout(statement_timeout_ms),
        connect=connect,
        pool_min_size=min_size,
        pool_max_size=max_size,
        options_cache_seconds=config.options_cache_seconds(options_cache_seconds),
    )
    config.zone(settings.timezone)  # an unknown zone fails here, at setup
    viewer_db = db.ViewerDatabase(settings)
    deny_response = unauthorized or deny

    bp = Blueprint(
        name,
        __name__,
        template_folder=str(viewer_dir() / "templates"),
        static_folder=str(viewer_dir() / "static"),
        static_url_path="/static",
    )

    @bp.before_request
    def check_access():
        g.audit_viewer_settings = settings
        g.audit_viewer_db = viewer_db
        if request.endpoint == f"{bp.name}.static":
            return None  # the stylesheet and script ship with the package: nothing secret
        if authorize is None or not authorize():
            return deny_response()
        return None

    bp.after_request(security.add_headers)
    bp.teardown_app_request(db.close_conn)
    bp.record_once(
        lambda state: state.app.extensions.setdefault("audit_viewer", {}).__setitem__(
            name, viewer_db
        )
    )

    @bp.context_processor
    def helpers():
        return template_helpers(".", settings)

    bp.add_url_rule("/", "actions", views.actions)
    bp.add_url_rule("/actions/<action_id>", "action", views.action)
    bp.add_url_rule("/actors", "actors", views.actors_json)
    live.register(bp)  # /live and /live/poll
    history.register(bp)  # /history/<resource_type>?id=<resource_id>

    register_error_pages(bp)
    return bp


def template_helpers(endpoint_prefix: str, settings: config.ViewerSettings) -> dict[str, Any]:
    """What the templates use besides the page's own values.

    ``endpoint_prefix`` names the viewer blueprint: "." inside it, "audit_viewer." elsewhere.
    """
    return {
        **present.HELPERS,
        "zone": settings.zone,
        "timezone_name": settings.timezone,
        "viewer_static": lambda filename: url_for(f"{endpoint_prefix}static", filename=filename),
        "viewer_home": lambda: url_for(f"{endpoint_prefix}actions"),
        # a record's history page (history.py)
        "history_url": lambda resource_type, resource_id: url_for(
            f"{endpoint_prefix}history", resource_type=resource_type, id=resource_id
        ),
    }


def error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template(
        "audit_viewer/error.html", status=status, title=title, message=message
    ), status


def register_error_pages(bp: Blueprint) -> None:
    """Every failure of a viewer page is a page saying what was wrong; never a traceback."""

    @bp.errorhandler(BadRequest)
    def bad_request(exc: BadRequest):
        return error_page(400, "This request cannot be shown", str(exc))

    @bp.errorhandler(NotFound)
    def not_found(exc: NotFound):
        return error_page(404, "Not found", str(exc))

    @bp.errorhandler(TooBroad)
    def too_broad(exc: TooBroad):
        return error_page(400, exc.title, str(exc))

    @bp.errorhandler(db.ViewerBusy)
    def busy(exc: db.ViewerBusy):
        bp_logger().warning("audit viewer: every database connection of the pool is in use")
        return error_page(503, "The viewer is busy", db.ViewerBusy.MESSAGE)

    @bp.errorhandler(DatabaseUnavailable)
    def unavailable(exc: DatabaseUnavailable):
        bp_logger().error("audit viewer: %s", exc)
        return error_page(
            503,
            "The audit database is unavailable",
            "The viewer cannot reach the audit database right now. Try again shortly.",
        )

    @bp.errorhandler(psycopg.errors.InsufficientPrivilege)
    @bp.errorhandler(psycopg.errors.UndefinedTable)
    @bp.errorhandler(psycopg.errors.InvalidSchemaName)
    def not_set_up(exc: psycopg.Error):
        # the viewer's role cannot read the log (no audit_reader, no audit schema): say so,
        # as `audit-capture viewer` does at start, rather than a bare 500
        problem = None
        try:
            with db.connect(db.current_settings()) as conn:
                problem = db.log_access_problem(conn)
        except (DatabaseUnavailable, psycopg.Error):
            pass
        if problem is None:
            raise exc
        bp_logger().error("audit viewer: %s", problem)
        return error_page(
            500,
            "The audit viewer is not set up",
            f"The viewer cannot read the audit log: {problem}.",
        )

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code is None or exc.code < 400:
            return exc
        return error_page(exc.code, exc.name, exc.description or exc.name)


def bp_logger() -> logging.Logger:
    return current_app.logger
