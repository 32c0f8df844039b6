"""Exports of the current filter: CSV, JSON, NDJSON and OCSF, streamed in constant memory.

All hold the same rows in the same order as the pages (newest first, by
(occurred_at DESC, id DESC)) and every column of ``EXPORT_COLUMNS`` (OCSF: mapped by
``audit_capture.ocsf``).

All are read in batches of ``ITERSIZE`` rows, each starting after the last row of the
one before (keyset, along the (occurred_at, id) order), all in one REPEATABLE READ
transaction (one snapshot). An actor with an id is read per source
(``rows.actor_branches``: action_log_actor_source_idx holds an actor's rows in time
order for each source), the branches merged in order by the batch's statement (Merge
Append): a busy actor's 900,000 rows are never sorted, a departed actor's are found at
once (the time index would be walked to its end).

* CSV is written by the server: ``COPY (select ... limit ITERSIZE) TO STDOUT WITH
  (FORMAT csv)``, batch after batch. jsonb columns (``changes``, ``context``) come out
  as JSON text; in every text column, text that a spreadsheet would run as a formula is
  led by an apostrophe (``_csv_value``). COPY takes no server-side parameters, so
  psycopg binds the filter's values client-side, with proper quoting.
* JSON is an array of objects built by the server (``json_build_object(...)::text``),
  one object a line. NDJSON is the same objects without the array: one a line, each
  line whole JSON (what Vector, Fluent Bit and Filebeat read). OCSF is each object
  mapped to its OCSF event, one a line.

Each batch is a statement of its own, so the statement_timeout bounds the work of
finding the next rows, never the time a client takes to download the file (one COPY
for the whole file was cancelled under a slow client). Chunks are gathered up to
``CHUNK_BYTES`` before being yielded, so a WSGI server writes a few large blocks rather
than one per row. Timestamps are ISO 8601 with their offset (in the connection's
TimeZone).

A long export may need a longer statement_timeout than the viewer's pages:
pass ``statement_timeout`` (milliseconds, 0 for none) to set one for the export's own
transaction only.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator

import psycopg
from psycopg import sql

from audit_capture import ocsf, stream
from audit_capture.viewer.errors import translate_errors
from audit_capture.viewer.filters import Filters
from audit_capture.viewer.rows import LOG, actor_branches, branch_order, merged

CHUNK_BYTES = 64 * 1024
ITERSIZE = 2_000

#: The exported columns, in file order: every column of audit.action_log, as tail
#: prints them (one list for both).
EXPORT_COLUMNS: tuple[str, ...] = stream.ACTION_COLUMNS

# qualified: in ORDER BY a bare name is first an output column, and the CSV's output
# columns named occurred_at and id are text (sorted as text, and by a full sort rather
# than along the index)
KEYS = sql.SQL("action_log.occurred_at desc, action_log.id desc")
ORDER = sql.SQL("order by {}").format(KEYS)


#: The columns that are not text: numbers and the timestamp. Every other column is
#: exported as text that a spreadsheet could read as a formula, free text above all
#: (resource_type is free text through audit.log_action, db_user a role's name,
#: application_name whatever a client sets), so the CSV escapes every one of them.
NOT_TEXT_COLUMNS = frozenset({"id", "occurred_at", "row_count", "transaction_id"})
#: SQL, the column as text: an apostrophe before text a spreadsheet would run (a leading
#: =, +, - or @, their full-width forms, after spaces or not, or a leading control
#: character such as tab or carriage return)
FORMULA_SAFE = sql.SQL(
    "case when ({0})::text ~ '^([[:space:]]*[-=+@\\uFF1D\\uFF0B\\uFF0D\\uFF20]|[[:cntrl:]])'"
    " then chr(39) || ({0})::text else ({0})::text end"
)


def _value(column: str) -> sql.Composable:
    """A column as exported: ISO 8601 for the timestamp, the rest as stored."""
    if column == "occurred_at":
        return sql.SQL("to_json(occurred_at) #>> '{}'")
    return sql.Identifier(column)


#: The jsonb columns: an object, an array or a string starts with {, [ or " (never a
#: formula), so only a bare number, boolean or null (a negative number starts with -) is
#: tested; the large values are turned into text once, not twice. (log_action and
#: set_context take objects only, so today every value takes the first branch.)
JSON_COLUMNS = frozenset({"changes", "context"})
JSON_FORMULA_SAFE = sql.SQL(
    "case when jsonb_typeof({0}) in ('object', 'array', 'string') then ({0})::text else {1} end"
)


def _csv_value(column: str) -> sql.Composable:
    """A column as the CSV holds it: as ``_value``, except that text a spreadsheet
    would run as a formula (a client named =HYPERLINK(...)) gets a leading apostrophe,
    which spreadsheets show as text. The JSON export keeps every value exact."""
    if column in NOT_TEXT_COLUMNS:
        return _value(column)
    safe = FORMULA_SAFE.format(sql.Identifier(column))
    if column in JSON_COLUMNS:
        return JSON_FORMULA_SAFE.format(sql.Identifier(column), safe)
    return safe


def _batch(
    filters: Filters, columns: sql.Composable, after: tuple[object, int] | None
) -> tuple[sql.Composed, dict]:
    """``select columns`` of the first ``ITERSIZE`` rows of ``filters`` after ``after``
    (the occurred_at and id of the last row sent; None: from the newest), in page order.
    An actor with an id: each source's rows in order along action_log_actor_source_idx,
    merged."""
    where, params = filters.where()
    params = dict(params)
    after_condition: sql.Composable = sql.SQL("true")
    if after is not None:  # the rows after the last one sent, along the index
        after_condition = sql.SQL(
            "(action_log.occurred_at, action_log.id)"
            " < (%(export_after_at)s::timestamptz, %(export_after_id)s::bigint)"
        )
        params.update(export_after_at=after[0], export_after_id=after[1])
    limit = sql.Literal(ITERSIZE)
    branches = actor_branches(filters)
    if branches is None:
        select = sql.SQL("select {} from {} where ({}) and {} {} limit {}").format(
            columns, LOG, where, after_condition, ORDER, limit
        )
        return select, params
    selects = []
    for branch in branches:
        branch_where, branch_params = branch.where()
        params.update(branch_params)  # the same names and values in every branch
        selects.append(
            sql.SQL("select * from {} where ({}) and {} order by {} limit {}").format(
                LOG, branch_where, after_condition, branch_order(branch, "next"), limit
            )
        )
    return merged(selects, columns, KEYS, ITERSIZE), params


def _set_timeout(conn: psycopg.Connection, statement_timeout: int | None) -> None:
    if statement_timeout is not None:
        conn.execute(
            "select set_config('statement_timeout', %s, true)", (str(int(statement_timeout)),)
        )


def _gather(chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def export_csv(
    conn: psycopg.Connection, filters: Filters, *, statement_timeout: int | None = None
) -> Generator[bytes, None, None]:
    """The rows of ``filters`` as CSV with a header line, in chunks of bytes.

    Raises TooBroad (while iterating) when the statement_timeout cancels a batch.
    """
    columns = sql.SQL(", ").join(
        sql.SQL("{} as {}").format(_csv_value(c), sql.Identifier(c)) for c in EXPORT_COLUMNS
    )

    def batch(after: tuple[str, int] | None) -> tuple[sql.Composed, dict]:
        select, batch_params = _batch(filters, columns, after)
        return sql.SQL("copy ({}) to stdout with (format csv)").format(select), batch_params

    def chunks() -> Iterator[bytes]:
        yield (",".join(EXPORT_COLUMNS) + "\n").encode("ascii")  # what HEADER writes
        # one snapshot for every batch, the file the log as of one instant (inside a
        # caller's transaction, that transaction's isolation applies)
        own_transaction = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with translate_errors(), conn.transaction():
            if own_transaction:
                conn.execute("set transaction isolation level repeatable read")
            _set_timeout(conn, statement_timeout)
            after = None
            while True:
                rows, last, block = 0, b"", bytearray()
                copy, batch_params = batch(after)
                # the whole batch is read before any of it is sent: a slow client then
                # holds up no statement, only the wait between two
                with conn.cursor() as cur, cur.copy(copy, batch_params) as stream:
                    for data in stream:  # libpq hands over one whole row at a time
                        last = bytes(data)
                        rows += 1
                        block += last
                yield bytes(block)
                if rows < ITERSIZE:
                    return
                # the last row starts with its id and occurred_at: never quoted
                action_id, occurred_at = last.split(b",", 2)[:2]
                after = (occurred_at.decode("ascii"), int(action_id))

    return _gather(chunks())


def _objects(
    conn: psycopg.Connection, filters: Filters, statement_timeout: int | None
) -> Iterator[str]:
    """The rows of ``filters`` as JSON objects (text, keys EXPORT_COLUMNS), one by one,
    read in batches of ``ITERSIZE`` in one snapshot: what the JSON, NDJSON and OCSF
    exports are made of."""
    pairs = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(c), _value(c)) for c in EXPORT_COLUMNS
    )
    # each object, and the keys of its row: where the next batch starts
    columns = sql.SQL("json_build_object({})::text, action_log.occurred_at, action_log.id").format(
        pairs
    )
    own_transaction = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with translate_errors(), conn.transaction():
        if own_transaction:  # one snapshot for every batch, as the CSV's
            conn.execute("set transaction isolation level repeatable read")
        _set_timeout(conn, statement_timeout)
        after = None
        while True:
            select, params = _batch(filters, columns, after)
            rows = conn.execute(select, params, prepare=False).fetchall()
            for obj, _at, _id in rows:
                yield obj
            if len(rows) < ITERSIZE:
                break
            _obj, occurred_at, action_id = rows[-1]
            after = (occurred_at, action_id)


def export_json(
    conn: psycopg.Connection, filters: Filters, *, statement_timeout: int | None = None
) -> Generator[bytes, None, None]:
    """The rows of ``filters`` as one JSON array of objects (keys EXPORT_COLUMNS), in
    chunks of bytes; read in batches of ``ITERSIZE`` rows, so memory stays flat.

    Raises TooBroad (while iterating) when the statement_timeout cancels a batch.
    """

    def chunks() -> Iterator[bytes]:
        yield b"["
        separator = b"\n"
        for obj in _objects(conn, filters, statement_timeout):
            yield separator + obj.encode("utf-8")
            separator = b",\n"
        yield b"\n]\n"

    return _gather(chunks())


def export_ndjson(
    conn: psycopg.Connection, filters: Filters, *, statement_timeout: int | None = None
) -> Generator[bytes, None, None]:
    """The rows of ``filters`` as newline-delimited JSON: one object a line, the JSON
    export's objects (keys EXPORT_COLUMNS, the same order); what a log shipper reads, and
    what ``audit-capture tail`` prints (there in UTC).

    Raises TooBroad (while iterating) when the statement_timeout cancels a batch.
    """
    lines = (obj.encode("utf-8") + b"\n" for obj in _objects(conn, filters, statement_timeout))
    return _gather(lines)


def export_ocsf(
    conn: psycopg.Connection, filters: Filters, *, statement_timeout: int | None = None
) -> Generator[bytes, None, None]:
    """The rows of ``filters`` as OCSF events (``audit_capture.ocsf``), one a line.

    Raises TooBroad (while iterating) when the statement_timeout cancels a batch.
    """
    lines = (
        json.dumps(ocsf.event(json.loads(obj)), ensure_ascii=False).encode("utf-8") + b"\n"
        for obj in _objects(conn, filters, statement_timeout)
    )
    return _gather(lines)
