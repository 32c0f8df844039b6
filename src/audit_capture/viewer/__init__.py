"""The Single Actions viewer: a Flask app and blueprint over ``audit.action_log``.

- ``create_app(config)``: the standalone viewer with its own sign-in
  (``audit-capture viewer`` serves it with waitress);
- ``make_blueprint(authorize, database_url=...)``: the viewer mounted in a host Flask
  application under its own URL prefix and authentication.

Its modules, in layers: each imports only from the layers below it (import-linter checks
this, ``[tool.importlinter]`` in pyproject.toml), and only the web layer imports Flask.

1. web (Flask): ``app`` (factory), ``blueprint`` (routes, access hook, error pages),
   ``views`` (the pages), ``auth`` (sign-in), ``csrf``, ``security`` (headers), ``db``
   (the read-only connection per request);
2. output: ``export`` (CSV and JSON, streamed), ``present`` (labels, badges, dates,
   counts in words);
3. reads: ``pages`` (the list, one keyset page at a time), ``counts``, ``text_search``,
   ``kind_probe``, ``planner``, ``rows``, ``actions`` (one action and its items),
   ``options`` (what the filter controls offer);
4. input: ``filters`` (URL parameters in, SQL and a sentence out), ``cursor`` (page
   positions), ``config`` (settings), ``sessions`` (signed-in sessions, kept on the
   server), ``ratelimit``;
5. ``errors`` (``BadRequest``, ``TooBroad``, ``translate_errors``).
"""

from __future__ import annotations

__all__ = ["create_app", "make_blueprint"]


def __getattr__(name: str) -> object:
    # lazy, so that importing a module of the lower layers (audit_capture.viewer.filters,
    # say) does not import Flask, an optional dependency (the [viewer] extra)
    if name == "create_app":
        from audit_capture.viewer.app import create_app

        return create_app
    if name == "make_blueprint":
        from audit_capture.viewer.blueprint import make_blueprint

        return make_blueprint
    raise AttributeError(name)
