"""The Single Actions viewer: a Flask app and blueprint over ``audit.action_log``.

- ``create_app(config)``: the standalone viewer with its own sign-in
  (``audit-capture viewer`` serves it with waitress);
- ``make_blueprint(authorize, database_url=...)``: the viewer mounted in a host Flask
  application under its own URL prefix and authentication;
- ``filters`` and ``query``: the URL parameters and the keyset queries behind the pages.

Modules: ``app`` (factory), ``blueprint`` (routes, access hook, error pages), ``views``
(the pages), ``auth`` (sign-in), ``sessions`` (signed-in sessions, kept on the server), ``csrf``, ``ratelimit``, ``security`` (headers),
``db`` (the read-only connection per request), ``config`` (settings), ``present``
(labels, badges, dates).
"""

from __future__ import annotations

__all__ = ["create_app", "make_blueprint"]


def __getattr__(name: str):
    # lazy: importing audit_capture.viewer.filters must not need Flask's app machinery
    if name == "create_app":
        from audit_capture.viewer.app import create_app

        return create_app
    if name == "make_blueprint":
        from audit_capture.viewer.blueprint import make_blueprint

        return make_blueprint
    raise AttributeError(name)
