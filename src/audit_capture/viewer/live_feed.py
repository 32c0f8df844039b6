"""The Live view's feed: the log's newest actions in id order, never skipping one.

Ids are drawn before commit, so an action with a lower id can commit after a higher one
was shown. The feed shows only up to the settled horizon of ``audit.stream_mark()``
(triggers/18_stream.sql, ``audit_capture.stream``): a mark is the id sequence's last
value and the transactions holding action ids just after; every id up to it is final
once a later mark finds none of those still open.

Where the marks live: with the client. Each answer hands the browser the one mark it
must bring back (``encode_mark``), and the next poll brings it with the last id shown
(``after``). Nothing is kept on the server, so any worker process behind any proxy can
answer any poll, and a host application's blueprint needs no session of its own. The
mark that comes back is validated strictly (``parse_mark``: digits and virtual
transaction ids only, at most ``MAX_WRITERS`` of them, an id no higher than the
sequence has drawn), but it is not signed: a forged or edited mark can only make the
feed settle too early for the client that sent it, so that client may miss an action
in its own view. It reads nothing the list does not already show to the same person
(the same role, the same rows), so there is nothing to protect from it.

One mark a client, not the list ``stream.Horizon`` keeps: a mark that a long
transaction holds back stays the client's until that transaction ends (the newer marks
of meanwhile, which that transaction holds back too, are dropped), so the horizon
reaches the newest actions one poll later than tail's would. When more than
``MAX_WRITERS`` transactions hold action ids at once, the newest mark is too long to
hand out: that poll settles nothing new, and the next quieter one does (the feed waits,
it never skips).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from audit_capture import stream
from audit_capture.viewer.errors import BadRequest
from audit_capture.viewer.rows import LIST_COLUMNS, LOG, LogRow, column_list

MAX_BIGINT = 2**63 - 1
#: open writers a mark handed to a client may name (its URL stays under ~4 kB)
MAX_WRITERS = 256
#: the longest mark parameter accepted: MAX_WRITERS of the longest virtual transaction ids
MAX_MARK_LENGTH = 20 + MAX_WRITERS * 23
#: actions one poll returns at most; the client asks again at once for the rest
MAX_ROWS = 200

_ID = re.compile(r"[0-9]{1,19}")
_WRITER = r"-?[0-9]{1,10}/[0-9]{1,10}"
_MARK = re.compile(rf"([0-9]{{1,19}}):((?:{_WRITER})(?:,{_WRITER})*)?")


def parse_after(raw: str | None) -> int | None:
    """The ``after`` parameter: the last id the client shows; None when absent or empty
    (the client shows nothing yet). BadRequest when it is not an id."""
    if raw is None or raw == "":
        return None
    if not _ID.fullmatch(raw) or int(raw) > MAX_BIGINT:
        raise BadRequest(f"after is {raw[:40]!r}; expected the id of the last action shown")
    return int(raw)


def parse_mark(raw: str | None) -> stream.Mark | None:
    """The ``mark`` parameter as ``encode_mark`` wrote it ("41872:3/7,5/12"); None when
    absent or empty. BadRequest when it is anything else."""
    if raw is None or raw == "":
        return None
    bad = BadRequest(f"mark is {raw[:40]!r}, which is not a mark this viewer gave; reload the page")
    if len(raw) > MAX_MARK_LENGTH:
        raise bad
    match = _MARK.fullmatch(raw)
    if match is None:
        raise bad
    last_id = int(match.group(1))
    writers = match.group(2).split(",") if match.group(2) else []
    if last_id > MAX_BIGINT or len(writers) > MAX_WRITERS or len(set(writers)) != len(writers):
        raise bad
    return stream.Mark(last_id, frozenset(writers))


def encode_mark(mark: stream.Mark | None) -> str | None:
    """The ``mark`` parameter of ``mark`` ("41872:3/7,5/12"), or None."""
    if mark is None:
        return None
    return f"{mark.last_id}:{','.join(sorted(mark.open_writers))}"


@dataclass
class FeedStep:
    """One answer of the feed: the settled actions to show (newest first), the id the
    client now shows up to (None: nothing settled yet), the mark it brings back, and
    whether more settled actions wait (ask again at once)."""

    rows: list[LogRow]
    after: int | None
    mark: stream.Mark | None
    more: bool


def take_mark(conn: psycopg.Connection) -> stream.Mark:
    """``audit.stream_mark()`` in a transaction of its own, committed: the rows are then
    read in a new transaction, whose snapshot is taken after the mark whatever the
    connection's isolation level (a snapshot taken before it could miss a commit that
    the mark counts as ended)."""
    conn.commit()
    row = conn.execute("select last_id, open_writers from audit.stream_mark()").fetchone()
    conn.commit()
    if row is None:  # cannot happen: the function returns one row
        raise psycopg.InterfaceError("audit.stream_mark() returned no row")
    return stream.Mark(int(row[0]), frozenset(row[1]))


def advance(
    conn: psycopg.Connection,
    after: int | None,
    mark: stream.Mark | None,
    *,
    first: int,
    limit: int = MAX_ROWS,
) -> FeedStep:
    """The feed after ``after`` with the client's ``mark``: a new mark, the horizon it
    settles, and the actions up to it: those after ``after`` (at most ``limit``, oldest
    first read, shown newest first), or, when ``after`` is None, the ``first`` newest.
    BadRequest when ``after`` or ``mark`` names an id the sequence has not drawn."""
    now = take_mark(conn)
    named = {"after": after, "mark": mark.last_id if mark is not None else None}
    for name, value in named.items():
        if value is not None and value > now.last_id:
            raise BadRequest(
                f"{name} names action {value}, but this database has drawn action ids"
                f" only up to {now.last_id}; reload the page"
            )
    horizon = stream.Horizon(marks=[mark] if mark is not None else [])
    upto = horizon.add(now)
    # the oldest mark still unsettled: the client's, or else the one just taken
    pending = horizon.marks[0] if horizon.marks else None
    if pending is not None and len(pending.open_writers) > MAX_WRITERS:
        pending = None  # too long to hand out: the next poll takes a new one
    cur = conn.cursor(row_factory=class_row(LogRow))
    if after is None:
        if upto == 0:
            return FeedStep([], None, pending, more=False)
        query = sql.SQL("select {} from {} where id <= %s order by id desc limit {}").format(
            column_list(LIST_COLUMNS), LOG, sql.Literal(first)
        )
        rows = cur.execute(query, (upto,), prepare=False).fetchall()
        return FeedStep(rows, upto, pending, more=False)
    if upto <= after:
        return FeedStep([], after, pending, more=False)
    query = sql.SQL("select {} from {} where id > %s and id <= %s order by id limit {}").format(
        column_list(LIST_COLUMNS), LOG, sql.Literal(limit)
    )
    rows = cur.execute(query, (after, upto), prepare=False).fetchall()
    if len(rows) == limit and rows[-1].id < upto:
        # the rest up to ``upto`` is settled: a mark of it alone (no open writer) settles
        # itself at the next poll, which reads on from the last row
        return FeedStep(rows[::-1], rows[-1].id, stream.Mark(upto, frozenset()), more=True)
    return FeedStep(rows[::-1], upto, pending, more=False)
