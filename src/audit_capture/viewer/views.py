"""The viewer's pages: the Single Actions list (with its exports) and one action's page.

The URL is the API: the list's filters, cursor and page size are query parameters
(``audit_capture.viewer.filters``), so a filtered view is a link one can send, and an
export is the same URL plus ``_format=csv``, ``json``, ``ndjson`` or ``ocsf``.

Each page says where its time went in a ``Server-Timing`` header (the browser's
developer tools show it beside the request): ``db``, the query layer (the pool's
connection, parsing the filters, the queries and their counts, the filter options),
and ``render``, the template. An export's response has ``db`` (its first rows, read
before the response starts). An error page has neither.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

import psycopg
from flask import (
    Response,
    abort,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from audit_capture.viewer import db
from audit_capture.viewer import filters as filter_args
from audit_capture.viewer.actions import change_rows, get_action, items_page
from audit_capture.viewer.actor_search import (
    DirectoryCache,
    describe,
    describe_many,
    load_directory,
    newest_on_page,
    result_limit,
    search_text,
)
from audit_capture.viewer.errors import BadRequest, TooBroad
from audit_capture.viewer.export import export_csv, export_json, export_ndjson, export_ocsf
from audit_capture.viewer.filters import (
    ACTOR_PARAM,
    SEVERAL_PARAMS,
    Filters,
    given_once,
    parse_filters,
)
from audit_capture.viewer.pages import list_page
from audit_capture.viewer.present import plural

ITEMS_PAGE_SIZE = 50
MAX_BIGINT = 2**63 - 1
EXPORTS = {
    "csv": (export_csv, "text/csv", "csv"),  # Flask adds "; charset=utf-8" to text types
    "json": (export_json, "application/json", "json"),
    "ndjson": (export_ndjson, "application/x-ndjson", "ndjson"),
    "ocsf": (export_ocsf, "application/x-ndjson", "ocsf.ndjson"),
}


def actions():
    """``/``: the Single Actions page, or its export when ``_format`` is given."""
    settings = db.current_settings()
    export_format = request.args.get("_format")
    if export_format is not None:
        return export(parse_filters(request.args, settings.zone), export_format)

    if ACTOR_TEXT in request.args:
        return choose_actor(request.args[ACTOR_TEXT])

    direction = filter_args.direction(request.args.get("_dir"))
    raw_size = request.args.get("_size")
    size = filter_args.page_size(raw_size) if raw_size else settings.page_size
    cursor = request.args.get("_cursor") or None

    with querying():
        conn = db.get_conn()
        options = db.filter_options(conn)
        try:
            filters = parse_filters(request.args, settings.zone, options=options)
        except BadRequest:  # or a value newer than the cached options: read them, try again
            options = db.filter_options(conn, refresh=True)
            filters = parse_filters(request.args, settings.zone, options=options)
        page = list_page(conn, filters, cursor=cursor, direction=direction, size=size)
        actor_text = ""
        chosen = filters.get(ACTOR_PARAM)
        if chosen is not None:
            # the sentence names each actor: "Actor is Maria Smith (Admin)"
            keys = list(chosen.values)
            # a first page of the actors alone holds each one's newest row
            alone = cursor is None and len(filters.active) == 1
            known = newest_on_page(keys, page.rows) if alone else {}
            rest = [k for k in keys if k not in known]
            read = describe_many(conn, rest) if len(rest) > 1 else [describe(conn, k) for k in rest]
            described = dict(zip(rest, read, strict=True))
            actors = [known[k] if k in known else described[k] for k in keys]
            filters = filters.shown_as(
                ACTOR_PARAM,
                [a.shown if a else shown for a, shown in zip(actors, chosen.displays, strict=True)],
                [f" ({a.kind})" if a is not None else "" for a in actors],
            )
            # the field shows the one actor; with several, the chips show them
            if not chosen.several:
                actor_text = actors[0].shown if actors[0] is not None else chosen.value

    base = dict(filters.query_args())
    if size != settings.page_size:
        base["_size"] = str(size)
    return timed_page(
        "audit_viewer/actions.html",
        page=page,
        # an action's page is this plus its id: url_for costs ~10 us, twice a row
        action_url=url_for(".action", action_id="0").removesuffix("0"),
        filters=filters,
        options=options,
        resource_labels=dict(options.resources),
        # a row's history is this plus its type, "?id=" and its id (present.list_rows)
        history_url=url_for(".history", resource_type="x").removesuffix("x"),
        selected={f.param: f.value for f in filters.active},
        # every value of each filter: the form's checkboxes, the hidden fields of actors
        chosen={f.param: f.values for f in filters.active},
        actor_text=actor_text,
        size=size,
        default_size=settings.page_size,
        next_url=page.next_cursor and list_url(base, _cursor=page.next_cursor, _dir="next"),
        prev_url=page.prev_cursor and list_url(base, _cursor=page.prev_cursor, _dir="prev"),
        first_url=list_url(base) if cursor else None,
        # one chip per value: removing one keeps the others
        clear_urls={
            (f.param, value): list_url(filters.without(f.param, value))
            for f in filters.active
            for value in f.values
        },
        clear_all_url=url_for(".actions"),
        csv_url=list_url(filters.query_args(), _format="csv"),
        json_url=list_url(filters.query_args(), _format="json"),
    )


#: The filter form's actor text field: what the admin typed (a few letters of a name or
#: id). The list never shows it: it is resolved into the ``actor`` filter, or a choice.
ACTOR_TEXT = "_actor"
ACTOR_CHOICES = 20
ACTOR_KEY = re.compile(r"(id|name):.+", re.DOTALL)


def choose_actor(typed: str):
    """The filter form sent the actor text field: a redirect to the list filtered by the
    one actor it names (or by every actor when it is empty), else a page listing the
    actors it matches, or saying that none does. With several actors (their hidden
    fields), the one it names is added to them, and an empty field keeps them. Works
    without JavaScript."""
    given_once(request.args, SEVERAL_PARAMS)
    current = request.args.get(ACTOR_PARAM) or ""
    grouped: dict[str, list[str]] = {}  # every value of a filter of several
    for k, v in request.args.items(multi=True):
        if k not in (ACTOR_TEXT, ACTOR_PARAM, "_cursor", "_dir") and v != "":
            grouped.setdefault(k, []).append(v)
    args: dict[str, str | list[str]] = {k: v for k, v in grouped.items()}
    # several actors (hidden fields; the text field is empty): the text adds one to them
    kept = [key for key in dict.fromkeys(request.args.getlist(ACTOR_PARAM)) if key]
    several = len(kept) > 1

    def with_actor(key: str | None = None) -> dict[str, str | list[str]]:
        actors = (kept if several else []) + ([key] if key else [])
        chosen = list(dict.fromkeys(actors))
        return {**args, ACTOR_PARAM: chosen} if chosen else dict(args)

    text = " ".join(typed.split())
    if not text:
        return redirect(list_url(with_actor()))  # cleared: every actor (but several kept)
    if ACTOR_KEY.fullmatch(text):
        return redirect(list_url(with_actor(text)))  # a filter value, as in a URL
    with querying():
        conn = db.get_conn()
        # the field left as shown, or (several) naming the actor a suggestion just chose
        for key in kept if several else [current] if current else []:
            actor = describe(conn, key)
            if text == (actor.shown if actor is not None else key):
                return redirect(list_url(with_actor(key)))
        matches = actor_directory(conn).find(search_text(typed, ACTOR_TEXT), limit=ACTOR_CHOICES)
    one = matches.chosen()
    if one is not None:
        return redirect(list_url(with_actor(one.key)))
    return timed_page(
        "audit_viewer/actor_choice.html",
        typed=text,
        matches=matches,
        choices=[(a, list_url(with_actor(a.key))) for a in matches.actors],
        back_url=list_url(with_actor()),
    )


ACTOR_DIRECTORIES = "audit_viewer_actor_directories"


def actor_directory(conn: psycopg.Connection):
    """Every actor of this viewer's log, read at most once a minute (``DirectoryCache``):
    one per viewer blueprint of the app, since each may read another database."""
    caches = current_app.extensions.setdefault(ACTOR_DIRECTORIES, {})
    cache = caches.get(request.blueprint) or caches.setdefault(request.blueprint, DirectoryCache())
    viewer_db = db.current_db()
    return cache.get(conn, background=lambda: viewer_db.read_apart(load_directory))


def actors_json():
    """``/actors?q=mar&limit=20``: the actors whose id or a word of whose name starts
    with ``q``, as JSON, for the filter form's suggestions. A bad ``q`` or ``limit`` is a
    400 with ``{"error": "..."}``."""
    try:
        given_once(request.args)
        unknown = sorted(k for k in request.args if k not in ("q", "limit"))
        if unknown:
            raise BadRequest(f"{unknown[0]} is not a parameter of /actors; expected q, limit")
        text = search_text(request.args.get("q"))
        limit = result_limit(request.args.get("limit"))
        matches = actor_directory(db.get_conn()).find(text, limit)
    except (BadRequest, TooBroad) as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(
        q=text,
        actors=[a.as_json() for a in matches.actors],
        more=matches.more,
        complete=matches.complete,
    )


def list_url(args: Mapping[str, str | list[str]], **page_args: str) -> str:
    """The list's URL with the query parameters ``args`` and ``page_args`` (a list of
    values: the parameter repeated, ``source=web&source=api``)."""
    # url_for's own keyword arguments (_external: a bool...) are typed, the URL's values
    # are not: a dict[str, Any] is what it takes
    values: dict[str, Any] = {**args, **page_args}
    return url_for(".actions", **values)


def export(filters: Filters, export_format: str) -> Response:
    """The current filter's rows as a streamed CSV, JSON, NDJSON or OCSF download.

    The stream has its own connection of the pool, not the request's: the request's is
    given back by the teardown as soon as this view returns, while the stream still has
    rows to read. The stream's is given back (its transaction ended) when the last row has
    gone out, when the stream fails, or when the server closes the response (the client
    went away). A failure after the first rows
    propagates out of the stream, so the server aborts the response (for chunked transfer,
    without the terminating chunk: the client sees an incomplete body, never a short file
    that looks whole).
    """
    if export_format not in EXPORTS:
        raise BadRequest(f"_format is {export_format!r}; expected one of {', '.join(EXPORTS)}")
    produce, mimetype, extension = EXPORTS[export_format]
    started = perf_counter()
    viewer_db = db.current_db()
    conn = viewer_db.getconn()
    release = db.releaser(viewer_db, conn)
    try:
        chunks = produce(conn, filters)
        # the first chunk runs the query: a bad or too broad filter fails here, as a page
        first = next(chunks, b"")
    except BaseException:
        release()
        raise
    db_ms = (perf_counter() - started) * 1000
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    filename = f"audit-actions_{filters.slug()}_{stamp}.{extension}"
    response = Response(
        _stream(release, first, chunks),
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            SERVER_TIMING: server_timing(db=db_ms),
        },
    )
    # a stream never started (the server failed before iterating) is given back here too
    response.call_on_close(release)
    return response


def _stream(
    release: Callable[[], None], first: bytes, rest: Generator[bytes, None, None]
) -> Iterator[bytes]:
    """``first`` then ``rest``; whatever ends it (the last row, an error, the server closing
    the response), the export's transaction is ended and its connection given back
    (``release``)."""
    try:
        yield first
        yield from rest
    finally:
        try:
            rest.close()  # a stream cut short: cancels the query, ends the transaction
        except psycopg.Error:
            pass  # the connection is already broken: closing it is all that is left
        finally:
            release()


ACTION_ID = re.compile(r"[0-9]{1,30}")


def action(action_id: str):
    """``/actions/<id>``: one action, what it changed, its items, where it came from."""
    if not ACTION_ID.fullmatch(action_id):
        raise BadRequest(f"the action id {action_id!r} is not a number")
    number = int(action_id)
    if number == 0 or number > MAX_BIGINT:
        abort(404, description=f"There is no action {number}.")
    after = item_offset(request.args.get("items_after"))

    with querying():
        conn = db.get_conn()
        found = get_action(conn, number)
        if found is None:
            abort(404, description=f"There is no action {number}.")
        items = items_page(conn, number, after=after, size=ITEMS_PAGE_SIZE)
    if after and not items.items:
        # the log is append-only, so only an edited link gets here
        raise BadRequest(past_the_last_item(after, found.row_count))
    return timed_page(
        "audit_viewer/action.html",
        action=found,
        changes=change_rows(found),
        items=items,
        items_after=after,
        items_size=ITEMS_PAGE_SIZE,
        next_items_url=items.next_after is not None
        and url_for(".action", action_id=number, items_after=items.next_after, _anchor="items"),
        prev_items_url=items.prev_after is not None
        and url_for(
            ".action", action_id=number, items_after=items.prev_after or None, _anchor="items"
        ),
    )


SERVER_TIMING = "Server-Timing"
#: the milliseconds this request has spent in the query layer so far (``querying``)
DB_MS = "audit_viewer_db_ms"


@contextmanager
def querying() -> Iterator[None]:
    """Counts the time spent inside towards the page's ``db`` duration."""
    started = perf_counter()
    try:
        yield
    finally:
        setattr(g, DB_MS, g.get(DB_MS, 0.0) + (perf_counter() - started) * 1000)


def timed_page(template: str, **values: Any) -> Response:
    """The page ``template`` renders with ``values``, with a ``Server-Timing`` header: the
    time spent in the query layer (``querying``) and in the template."""
    started = perf_counter()
    html = render_template(template, **values)
    render_ms = (perf_counter() - started) * 1000
    response = make_response(html)
    response.headers[SERVER_TIMING] = server_timing(db=g.get(DB_MS, 0.0), render=render_ms)
    return response


def server_timing(**durations_ms: float) -> str:
    """``db;dur=2.41, render;dur=7.90``: each duration in milliseconds."""
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in durations_ms.items())


def past_the_last_item(after: int, row_count: int) -> str:
    if not row_count:
        return f"items_after is {after}, but this action has no items"
    return f"items_after is {after}, past the last of this action's {plural(row_count, 'item')}"


def item_offset(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not re.fullmatch(r"[0-9]{1,9}", raw):  # isdigit() takes "²" and other scripts' digits
        raise BadRequest(f"items_after is {raw!r}; expected an item number")
    return int(raw)
