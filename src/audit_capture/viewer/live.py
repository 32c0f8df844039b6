"""The Live view: ``/live`` lists the newest actions as the Single Actions list draws
them, and its script (static/live.js, no inline script) polls ``/live/poll`` every few
seconds for the actions that have become final since (``live_feed``: never skipping an
action whose lower id commits late).

``/live/poll?after=<last id shown>&mark=<the mark of the last answer>`` answers JSON:
``{"after": id or null, "mark": text or null, "more": bool, "count": n, "html": the rows'
<tr>s, newest first}``; a bad parameter is a 400 ``{"error": "..."}``. Polling rather
than server-sent events: a short GET passes every proxy and holds no connection of
the pool between polls. A visitor who is not signed in is sent to sign in (the poll
gets the redirect, which the script turns into a message).

The Live view shows every action: the list's filters do not apply to it (the page says
so), and it takes no parameter.
"""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Blueprint, jsonify, render_template, request, url_for

from audit_capture.viewer import db, live_feed
from audit_capture.viewer.errors import BadRequest
from audit_capture.viewer.present import list_rows
from audit_capture.viewer.views import querying, timed_page

#: how often the page asks for new actions
POLL_SECONDS = 3
POLL_PARAMS = ("after", "mark")
ALL_ICONS = sorted(
    {"admin", "client", "system", "unknown", "web", "api", "ai", "mobile", "database"}
)


class LiveUnavailable(Exception):
    """This database cannot say which actions are final (a standby, an audit server fed
    by replication, a schema without audit.stream_mark): ``str(exc)`` says why."""


def register(bp: Blueprint) -> None:
    """Add the Live view's routes to the viewer blueprint ``bp``."""
    bp.add_url_rule("/live", "live", live_page)
    bp.add_url_rule("/live/poll", "live_poll", live_poll)

    @bp.errorhandler(LiveUnavailable)
    def unavailable(exc: LiveUnavailable):
        if request.endpoint == f"{bp.name}.live_poll":
            return jsonify(error=str(exc)), 409
        return render_template(
            "audit_viewer/error.html",
            status=409,
            title="The Live view is not available here",
            message=str(exc),
        ), 409


def feed(after: int | None, mark: Any) -> live_feed.FeedStep:
    """``live_feed.advance`` on this request's connection; LiveUnavailable when the
    database cannot take a mark."""
    conn = db.get_conn()
    try:
        return live_feed.advance(conn, after, mark, first=db.current_settings().page_size)
    except psycopg.errors.UndefinedFunction as exc:
        conn.rollback()
        raise LiveUnavailable(
            "This database's audit schema has no audit.stream_mark(), which the Live view"
            " needs: run audit-capture migrate upgrade."
        ) from exc
    except (
        psycopg.errors.ObjectNotInPrerequisiteState,
        psycopg.errors.FeatureNotSupported,
    ) as exc:
        conn.rollback()
        raise LiveUnavailable(
            "The Live view needs the database the application writes to: this one"
            " receives the log from elsewhere (an audit server fed by replication, or a"
            " standby), so it cannot tell which actions are final. The list shows them."
        ) from exc


def row_values() -> dict[str, Any]:
    """What ``_live_rows.html`` takes besides the rows."""
    return {"action_url": url_for(".action", action_id="0").removesuffix("0")}


def shown_rows(step: live_feed.FeedStep) -> list:
    conn = db.get_conn()
    labels = dict(db.filter_options(conn).resources) if step.rows else {}
    # each row's id links its history, as on the list (views.actions)
    history_url = url_for(".history", resource_type="x").removesuffix("x")
    return list_rows(step.rows, db.current_settings().zone, labels, history_url)


def no_parameters(route: str) -> None:
    """BadRequest for a parameter the route does not take, or one given twice."""
    for key in request.args:
        values = request.args.getlist(key)
        if len(values) > 1:
            raise BadRequest(f"{key[:40]!r} is given {len(values)} times; expected it once")
    unknown = sorted(k for k in request.args if k not in POLL_PARAMS or route == "/live")
    if unknown:
        expected = "it takes none" if route == "/live" else "expected after, mark"
        raise BadRequest(
            f"{unknown[0][:40]!r} is not a parameter of {route}; {expected}"
            " (the Live view shows every action, unfiltered)"
        )


def live_page():
    """``/live``: the newest settled actions, then the script appends the next ones."""
    no_parameters("/live")
    with querying():
        step = feed(None, None)
        rows = shown_rows(step)
    return timed_page(
        "audit_viewer/live.html",
        rows=rows,
        icons=ALL_ICONS,
        after="" if step.after is None else str(step.after),
        mark=live_feed.encode_mark(step.mark) or "",
        poll_url=url_for(".live_poll"),
        poll_ms=POLL_SECONDS * 1000,
        max_rows=live_feed.MAX_ROWS * 5,
        **row_values(),
    )


def live_poll():
    """``/live/poll``: the actions settled since ``after``, as JSON (module doc)."""
    try:
        no_parameters("/live/poll")
        after = live_feed.parse_after(request.args.get("after"))
        mark = live_feed.parse_mark(request.args.get("mark"))
        with querying():
            step = feed(after, mark)
            rows = shown_rows(step)
    except BadRequest as exc:
        return jsonify(error=str(exc)), 400
    html = render_template("audit_viewer/_live_rows.html", rows=rows, **row_values())
    response = jsonify(
        after=step.after,
        mark=live_feed.encode_mark(step.mark),
        more=step.more,
        count=len(rows),
        html=html,
    )
    response.headers["Cache-Control"] = "no-store"
    return response
