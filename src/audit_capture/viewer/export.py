"""Exports of the current filter: CSV and JSON, streamed in constant memory.

Both hold the same rows in the same order as the pages (newest first, by
(occurred_at DESC, id DESC)) and every column of ``EXPORT_COLUMNS``.

* CSV is written by the server: ``COPY (select ...) TO STDOUT WITH (FORMAT csv, HEADER)``,
  free text that a spreadsheet would run as a formula led by an apostrophe
  (``_csv_value``).
  streamed through psycopg's copy. jsonb columns (``changes``, ``context``) come out as
  JSON text (a cursor feeding csv.writer would write Python reprs of the loaded
  objects, and be several times slower). COPY takes no server-side parameters, so
  psycopg binds the filter's values client-side, with proper quoting.
* JSON is an array of objects built by the server (``json_build_object(...)::text``)
  and read through a server-side cursor ``ITERSIZE`` rows at a time.

Chunks are gathered up to ``CHUNK_BYTES`` before being yielded, so a WSGI server writes
a few large blocks rather than one per row. Timestamps are ISO 8601 with their offset
(in the connection's TimeZone).

A long export may need a longer statement_timeout than the viewer's pages:
pass ``statement_timeout`` (milliseconds, 0 for none) to set one for the export's own
transaction only.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from psycopg import sql

from audit_capture.viewer.filters import Filters

CHUNK_BYTES = 64 * 1024
ITERSIZE = 2_000

#: The exported columns, in file order: every column of audit.action_log.
EXPORT_COLUMNS: tuple[str, ...] = (
    "id", "occurred_at", "action", "action_type", "resource_type", "resource_id",
    "resource_label", "row_count", "actor_id", "actor_name", "actor_type", "source",
    "changes", "db_user", "transaction_id", "request_id", "context", "table_name",
    "operation", "application_name", "client_addr",
)

LOG = sql.Identifier("audit", "action_log")
ORDER = sql.SQL("order by occurred_at desc, id desc")


#: Free-text columns, written by applications, actors and DBAs: what a CSV cell could
#: carry into a spreadsheet as a formula (the others are numbers, times, JSON objects
#: or closed vocabularies).
FREE_TEXT_COLUMNS = frozenset({
    "action", "resource_id", "resource_label", "actor_id", "actor_name", "db_user",
    "request_id", "table_name", "application_name",
})
#: SQL: the column with an apostrophe before a leading =, +, -, @, tab or carriage return
FORMULA_SAFE = sql.SQL("case when {0} ~ '^[-=+@\\t\\r]' then chr(39) || {0} else {0} end")


def _value(column: str) -> sql.Composable:
    """A column as exported: ISO 8601 for the timestamp, the rest as stored."""
    if column == "occurred_at":
        return sql.SQL("to_json(occurred_at) #>> '{}'")
    return sql.Identifier(column)


def _csv_value(column: str) -> sql.Composable:
    """A column as the CSV holds it: as ``_value``, except that free text a spreadsheet
    would run as a formula (a client named =HYPERLINK(...)) gets a leading apostrophe,
    which spreadsheets show as text. The JSON export keeps every value exact."""
    if column not in FREE_TEXT_COLUMNS:
        return _value(column)
    return FORMULA_SAFE.format(sql.Identifier(column))


def _select(filters: Filters, values: sql.Composable) -> tuple[sql.Composable, dict]:
    where, params = filters.where()
    return sql.SQL("select {} from {} where {} {}").format(values, LOG, where, ORDER), params


def _set_timeout(conn: psycopg.Connection, statement_timeout: int | None) -> None:
    if statement_timeout is not None:
        conn.execute("select set_config('statement_timeout', %s, true)",
                     (str(int(statement_timeout)),))


def _gather(chunks: Iterator[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def export_csv(conn: psycopg.Connection, filters: Filters, *,
               statement_timeout: int | None = None) -> Iterator[bytes]:
    """The rows of ``filters`` as CSV with a header line, in chunks of bytes.

    Raises TooBroad (while iterating) when the statement_timeout cancels the export.
    """
    from audit_capture.viewer.query import translate_errors

    columns = sql.SQL(", ").join(
        sql.SQL("{} as {}").format(_csv_value(c), sql.Identifier(c)) for c in EXPORT_COLUMNS)
    select, params = _select(filters, columns)
    copy = sql.SQL("copy ({}) to stdout with (format csv, header)").format(select)

    def chunks() -> Iterator[bytes]:
        with translate_errors(), conn.transaction():
            _set_timeout(conn, statement_timeout)
            with conn.cursor() as cur, cur.copy(copy, params) as stream:
                for data in stream:
                    yield bytes(data)

    return _gather(chunks())


def export_json(conn: psycopg.Connection, filters: Filters, *,
                statement_timeout: int | None = None) -> Iterator[bytes]:
    """The rows of ``filters`` as one JSON array of objects (keys EXPORT_COLUMNS), in
    chunks of bytes; read through a server-side cursor, so memory stays flat."""
    from audit_capture.viewer.query import translate_errors

    pairs = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(c), _value(c)) for c in EXPORT_COLUMNS)
    select, params = _select(filters, sql.SQL("json_build_object({})::text").format(pairs))

    def chunks() -> Iterator[bytes]:
        yield b"["
        first = True
        with translate_errors(), conn.transaction():
            _set_timeout(conn, statement_timeout)
            with conn.cursor(name="audit_viewer_export") as cur:
                cur.itersize = ITERSIZE
                cur.execute(select, params)
                for (obj,) in cur:
                    yield (b"\n" if first else b",\n") + obj.encode("utf-8")
                    first = False
        yield b"\n]\n"

    return _gather(chunks())
