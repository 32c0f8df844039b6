"""``audit-capture tail``: the log as a stream of JSON lines, in id order, never skipping.

    audit-capture tail --follow --after 41872 --format ocsf | vector --config siem.toml

Each action is one line, one JSON object: its columns (``ACTION_COLUMNS``, the same
object as a line of the viewer's ``_format=ndjson`` export, ``occurred_at`` in UTC), or
with ``--format ocsf`` its OCSF event (``audit_capture.ocsf``). A shipper (Vector, Fluent
Bit, Filebeat) that remembers the last ``id`` it read resumes with ``--after ID``.

Never skipping: ids are drawn before commit, so an action with a lower id may commit
after a higher one was printed. The stream prints only up to the settled horizon: a
mark (``audit.stream_mark()``, triggers/18_stream.sql) is the id sequence's last value
and the transactions that had drawn an id and were still open just after; every id up
to it is final once a later mark finds none of those still open. The marks are kept
here, in memory: the reader writes nothing to the database. Only a transaction that
drew an action id holds the stream back, for as long as it stays open.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

import psycopg
from psycopg import sql

from audit_capture import database, ocsf
from audit_capture.errors import AuditCaptureError

MARK_FUNCTION = "audit.stream_mark()"

#: The keys of each line of ``--format ndjson``, in order: every column of
#: audit.action_log (the viewer's exports take the same list).
ACTION_COLUMNS: tuple[str, ...] = (
    "id",
    "occurred_at",
    "action",
    "action_type",
    "resource_type",
    "resource_id",
    "resource_label",
    "row_count",
    "actor_id",
    "actor_name",
    "actor_type",
    "source",
    "changes",
    "db_user",
    "transaction_id",
    "request_id",
    "context",
    "table_name",
    "operation",
    "application_name",
    "client_addr",
)

FORMATS = ("ndjson", "ocsf")

#: Actions read per statement.
BATCH = 1_000

#: Marks kept while transactions stay open (one per poll): past this, every other one
#: of the middle is dropped, which only makes the horizon advance in larger steps.
MAX_MARKS = 1_000

#: Without --follow: how often to look again while an open transaction holds ids back.
POLL_SECONDS = 0.2


class StreamRefused(AuditCaptureError):
    """The stream cannot run as asked; ``str(exc)`` says why and what to do."""


def object_sql() -> sql.Composed:
    """SQL: an action of audit.action_log (as ``action_log``) as one JSON object, text,
    the keys ``ACTION_COLUMNS`` (occurred_at in the session's TimeZone, with its offset)."""
    pairs = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(
            sql.Literal(column),
            sql.SQL("to_json(action_log.occurred_at) #>> '{}'")
            if column == "occurred_at"
            else sql.SQL("action_log.{}").format(sql.Identifier(column)),
        )
        for column in ACTION_COLUMNS
    )
    return sql.SQL("json_build_object({})::text").format(pairs)


def formatter(output_format: str) -> Callable[[str], str]:
    """The line for an action's JSON object: itself (ndjson) or its OCSF event."""
    if output_format == "ndjson":
        return lambda text: text
    if output_format == "ocsf":
        return lambda text: json.dumps(ocsf.event(json.loads(text)), ensure_ascii=False)
    raise StreamRefused(f"--format is {output_format!r}; expected one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class Mark:
    """``audit.stream_mark()``: every id up to ``last_id`` is final once none of
    ``open_writers`` (virtual transaction ids) is open."""

    last_id: int
    open_writers: frozenset[str]


@dataclass
class Horizon:
    """The settled horizon: the highest id below which no action can still appear.

    ``advance`` takes a new mark; a kept mark is settled once the new mark's open
    writers include none of its own (a transaction holds the sequence's lock until it
    ends, and a virtual transaction id is never another transaction's)."""

    settled: int = 0
    marks: list[Mark] = field(default_factory=list)

    def advance(self, conn: psycopg.Connection) -> int:
        """Take a mark (``audit.stream_mark()``); the settled horizon after it."""
        last_id, writers = database.one_row(
            conn, "select last_id, open_writers from audit.stream_mark()"
        )
        return self.add(Mark(int(last_id), frozenset(writers)))

    def add(self, now: Mark) -> int:
        """The settled horizon after the mark ``now``, the newest."""
        self.marks.append(now)
        settled = [m.last_id for m in self.marks if not (m.open_writers & now.open_writers)]
        if settled:
            self.settled = max(self.settled, *settled)
        self.marks = [m for m in self.marks if m.last_id > self.settled]
        if len(self.marks) > MAX_MARKS:
            del self.marks[1:-1:2]
        return self.settled


def check_access(conn: psycopg.Connection) -> None:
    """Raise StreamRefused when the schema has no stream mark or the role may not read."""
    installed, allowed, user, quoted = database.function_access(conn, MARK_FUNCTION)
    if not installed:
        raise StreamRefused(
            "this database's audit schema has no stream (audit.stream_mark):"
            " run `audit-capture migrate upgrade` first"
        )
    if not allowed:
        raise StreamRefused(
            f"role {user} may not read the log: tail is for audit_reader;"
            f" a superuser runs `grant audit_reader to {quoted};`"
        )


def check_ids_drawn_here(conn: psycopg.Connection) -> None:
    """Raise StreamRefused where the log's ids are not drawn from this database's
    sequence (an audit server fed by replication, a restored copy whose sequence is
    behind): marks there would settle nothing, and the stream would wait forever."""
    last_id, newest = database.one_row(
        conn,
        "select m.last_id, (select max(l.id) from audit.action_log l) from audit.stream_mark() m",
    )
    if newest is not None and newest > last_id:
        raise StreamRefused(
            f"the log holds action {newest} but this database has drawn ids only up to"
            f" {last_id}: its actions are written elsewhere (an audit server fed by"
            " replication?); run tail against the database the application writes to"
        )


def read_after(conn: psycopg.Connection, after: int, upto: int) -> list[tuple[int, str]]:
    """Up to ``BATCH`` actions with ids after ``after`` and up to ``upto``, in id order:
    (id, JSON object)."""
    query = sql.SQL(
        "select action_log.id, {} from audit.action_log"
        " where action_log.id > %s and action_log.id <= %s order by action_log.id limit {}"
    ).format(object_sql(), sql.Literal(BATCH))
    return [(int(i), text) for i, text in conn.execute(query, (after, upto)).fetchall()]


@dataclass
class Tail:
    """Reads the log after ``after`` up to the settled horizon, batch by batch.

    ``conn`` must be in autocommit (each statement its own snapshot, taken after the
    mark that settled what it reads) with TimeZone UTC."""

    conn: psycopg.Connection
    after: int
    horizon: Horizon = field(default_factory=Horizon)

    def settled_lines(self) -> Iterator[tuple[int, str]]:
        """Every action now settled after ``self.after``: (id, JSON object)."""
        upto = self.horizon.advance(self.conn)
        while self.after < upto:
            rows = read_after(self.conn, self.after, upto)
            if not rows:
                self.after = upto  # the rest are gaps: rolled back, or dropped
                return
            for action_id, text in rows:
                self.after = action_id
                yield action_id, text

    def newest(self) -> int:
        """The newest id drawn by the last mark, settled or not."""
        return max([self.horizon.settled, *(m.last_id for m in self.horizon.marks)])


def connect(url: str) -> psycopg.Connection:
    """A connection for the stream: autocommit, UTC."""
    conn = database.connect(url, autocommit=True)
    conn.execute("set timezone = 'UTC'")
    return conn


class StopFlag:
    """Set by SIGINT or SIGTERM while installed: a follow loop ends after the line it
    is writing, and its wait between polls is cut short."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, object] = {}

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.event.set()

    def __enter__(self) -> StopFlag:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; true when stopped meanwhile."""
        return self.event.wait(seconds)
