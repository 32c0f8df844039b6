"""A record's history page: ``/history/<resource_type>?id=<resource_id>``, "History of
Client Maria Lopez #35", every action that touched that row, newest first, each with
what it changed on the row (``resource_history``), a keyset page at a time.

The id is a query parameter, not a path segment: a resource id is any text (a slash, a
space, a percent sign, a composite key's row literal ``(1,"a b")``), and a query
parameter carries every one of them there and back unchanged, where a path segment
would be split at a slash or rewritten by a server that normalises paths. The resource
type, a word of lower-case letters, digits and ``_`` (``audit.tracked_table``'s rule),
reads well in the path.

``_cursor`` is the list's opaque page position (``cursor``): the "Older" link carries
the last row's (occurred_at, id), and a garbled or edited one is a 400 page; ``_size``
the page size, as on the list.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template, request, url_for

from audit_capture.viewer import db
from audit_capture.viewer import filters as filter_args
from audit_capture.viewer.errors import TooBroad
from audit_capture.viewer.filters import given_once
from audit_capture.viewer.present import resource_type_label
from audit_capture.viewer.resource_history import (
    HistoryUnavailable,
    find_resource,
    history_page,
    named_by_items,
    parse_resource_id,
    parse_resource_type,
)
from audit_capture.viewer.views import querying, timed_page

ID_PARAM = "id"
TOO_LONG = "Reading this row's history took too long; try again in a moment."


def register(bp: Blueprint) -> None:
    """Add the history page's route to the viewer blueprint ``bp``."""
    # path: a type with a slash reaches the page, which says there is no such type
    bp.add_url_rule("/history/<path:resource_type>", "history", history)

    @bp.errorhandler(HistoryUnavailable)
    def unavailable(exc: HistoryUnavailable):
        current_app.logger.error("audit viewer: %s", exc)
        return render_template(
            "audit_viewer/error.html",
            status=503,
            title="The history is not available here",
            message=str(exc),
        ), 503


def history_url(resource_type: str, resource_id: str, **args: str) -> str:
    """The history page of the row ``resource_id`` of ``resource_type``."""
    # url_for's own keyword arguments are typed, the URL's values are not (views.list_url)
    values: dict[str, Any] = {ID_PARAM: resource_id, **args}
    return url_for(".history", resource_type=resource_type, **values)


def history(resource_type: str):
    """``/history/<resource_type>?id=<resource_id>``: the row's actions, newest first."""
    given_once(request.args)
    parse_resource_type(resource_type)  # an impossible type is a 404 before the id's 400
    resource_id = parse_resource_id(request.args.get(ID_PARAM))
    raw_size = request.args.get("_size")
    settings = db.current_settings()
    size = filter_args.page_size(raw_size) if raw_size else settings.page_size
    cursor = request.args.get("_cursor") or None

    with querying():
        conn = db.get_conn()
        try:
            resource = find_resource(conn, resource_type, resource_id)
            page = history_page(conn, resource, cursor=cursor, size=size)
            resource = named_by_items(conn, resource, None if cursor else page)
        except TooBroad as exc:  # no filter to narrow: the database was busy, or locked
            raise TooBroad(TOO_LONG, "The history took too long") from exc

    kept = {"_size": str(size)} if size != settings.page_size else {}
    return timed_page(
        "audit_viewer/history.html",
        resource=resource,
        # "Client": the registry's word, else the type's own ("case_task": "Case task")
        type_word=resource.type_label or resource_type_label(resource.resource_type),
        page=page,
        action_url=url_for(".action", action_id="0").removesuffix("0"),
        older_url=page.next_cursor
        and history_url(
            resource.resource_type, resource.resource_id, _cursor=page.next_cursor, **kept
        ),
        newest_url=cursor and history_url(resource.resource_type, resource.resource_id, **kept),
    )
