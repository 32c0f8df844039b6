"""The standalone viewer: ``create_app(config)``, served by ``audit-capture viewer``.

    app = create_app({
        "DATABASE_URL": "postgresql://viewer@db/crm",     # a role granted audit_reader
        "SECRET_KEY": "...",            # audit-capture viewer new-secret (weak keys refused)
        "USERS": {"alice": "scrypt:32768:8:1$..."},       # audit-capture viewer hash-password
        "TIMEZONE": "Europe/Paris",
    })

Without ``config``, the settings come from ``AUDIT_CAPTURE_VIEWER_CONFIG`` (a TOML file)
and the ``AUDIT_CAPTURE_VIEWER_*`` environment variables (``config.py``), the database
from ``AUDIT_CAPTURE_DATABASE_URL``; so ``waitress-serve --call
audit_capture.viewer.app:create_app`` works too. Bad settings raise ``ConfigError``.
The viewer's connection pool opens on the first request; ``close(app)`` closes it (the
process's exit does too).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException

from audit_capture.viewer import auth, config, security
from audit_capture.viewer.blueprint import DEFAULT_NAME, make_blueprint, template_helpers
from audit_capture.viewer.config import ConfigError

DATABASE_URL_ENVVAR = "AUDIT_CAPTURE_DATABASE_URL"
CONFIG_ENVVAR = "AUDIT_CAPTURE_VIEWER_CONFIG"


def create_app(config_values: Mapping[str, Any] | None = None) -> Flask:
    """The standalone viewer: sign-in pages and the viewer at ``/``."""
    if config_values is None:
        settings = config.load(path=os.environ.get(CONFIG_ENVVAR), environ=os.environ)
        settings.setdefault("DATABASE_URL", os.environ.get(DATABASE_URL_ENVVAR))
    else:
        settings = config.load(config_values)
    if not settings.get("DATABASE_URL"):
        raise ConfigError(f"no database URL: pass --database-url or set {DATABASE_URL_ENVVAR}")

    app = Flask(__name__, static_folder=None)
    app.config.update(settings)

    viewer = make_blueprint(
        auth.is_signed_in,
        unauthorized=auth.to_sign_in,
        database_url=settings["DATABASE_URL"],
        timezone=settings["TIMEZONE"],
        page_size=settings["PAGE_SIZE"],
        statement_timeout_ms=settings["STATEMENT_TIMEOUT_MS"],
        pool_min_size=settings["POOL_MIN_SIZE"],
        pool_max_size=settings["POOL_MAX_SIZE"],
        options_cache_seconds=settings["OPTIONS_CACHE_SECONDS"],
    )
    app.register_blueprint(viewer)
    auth.init_app(app)
    app.after_request(security.add_headers)

    viewer_settings = config.ViewerSettings(
        database_url=None, timezone=settings["TIMEZONE"], page_size=settings["PAGE_SIZE"]
    )

    @app.context_processor
    def helpers():
        return template_helpers(f"{DEFAULT_NAME}.", viewer_settings)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return render_template(
            "audit_viewer/error.html",
            status=exc.code,
            title=exc.name,
            message=exc.description or exc.name,
        ), exc.code

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        app.logger.exception("audit viewer: unexpected error")
        return render_template(
            "audit_viewer/error.html",
            status=500,
            title="Something went wrong",
            message="The viewer could not show this page. The error has been logged.",
        ), 500

    return app


def close(app: Flask) -> None:
    """Close the database pools of the viewers ``app`` holds."""
    for viewer_db in app.extensions.get("audit_viewer", {}).values():
        viewer_db.close()
