"""Stating who acts, and through what, for the current transaction of a psycopg 3
connection.

The values go to the server as bound parameters of ``set_config(name, value, true)``:
transaction-local, so a pooled connection never carries one request's actor into the
next. ``''`` means unset, as the capture trigger reads it.

    with conn.transaction():
        set_context(conn, actor_id="7", actor_name="Alice", actor_type="admin", source="web")
        conn.execute("update clients set status = 'closed' where id = 1")

``context(conn, ...)`` does the same for a block and puts the outer values back when it
exits; ``batch(conn, label)`` makes the block's changes one action; ``importing(conn)``
marks its inserts as an import.

Without a connection, ``context(...)`` states the *ambient* context of the running code
(a ``contextvars`` value, so threads and asyncio tasks each have their own): the
SQLAlchemy integration sends it at the start of every transaction, ``apply_context(conn)``
sends it on a plain psycopg connection.

    with audit_capture.context(actor_type="system", actor_name="Nightly import", source="ai"):
        run_the_import()

A context states the actor and the source completely (what it leaves out is unset);
the request id and the ``context`` metadata carry over from the outer context unless
given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from psycopg import pq

from audit_capture.database import one_row
from audit_capture.enums import ActorType, Source, coerce
from audit_capture.errors import ContextValueTooLong, InvalidContextValue, NoTransaction

#: Keyword arguments that carry over from the outer context when a context leaves them out.
INHERITED = ("request_id", "context")

#: The ambient context: the audit variables stated by the innermost ``context(...)``
#: without a connection, or a function working them out when they are needed
#: (``deferred_context``), or None.
_ambient: ContextVar[Mapping[str, str] | Callable[[], Mapping[str, str]] | None] = ContextVar(
    "audit_capture_context", default=None
)

#: The longest value of each context variable, in characters (as the log's indexes can
#: hold them); the same list as ``audit.value_limits()`` in SQL, which refuses them too.
LIMITS = {
    "audit.actor_id": 200,
    "audit.actor_name": 200,
    "audit.request_id": 200,
    "audit.batch": 200,
    "audit.context": 10_000,
}

#: "\u0000" in JSON text (not "\\u0000", an escaped backslash before "u0000").
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

#: The variables that make up an actor context, in the order they are read and written.
CONTEXT_VARIABLES = (
    "audit.actor_id",
    "audit.actor_name",
    "audit.actor_type",
    "audit.source",
    "audit.request_id",
    "audit.context",
)


def context_values(
    *,
    actor_id: object = None,
    actor_name: object = None,
    actor_type: ActorType | str | None = None,
    source: Source | str | None = None,
    request_id: object = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The audit variables for these values, validated; None becomes '' (unset).

    Ids and names are text (a user's numeric id or a UUID request id is written as
    its str), so every value is sent as text."""
    if context is not None and not isinstance(context, Mapping):
        raise TypeError(f"context must be a mapping, not {type(context).__name__}")
    values = (
        as_text(actor_id),
        as_text(actor_name),
        coerce(ActorType, "audit.actor_type", actor_type),
        coerce(Source, "audit.source", source),
        as_text(request_id),
        None if context is None else json.dumps(dict(context), default=str),
    )
    variables = {
        name: "" if v is None else v for name, v in zip(CONTEXT_VARIABLES, values, strict=True)
    }
    for name, value in variables.items():
        check_value(name, value)
    return variables


def stated_variables(**values: Any) -> dict[str, str]:
    """``context_values`` without the INHERITED variables that ``values`` leaves out, so
    that a nested context keeps the outer one's request id and metadata."""
    variables = context_values(**values)
    for name in INHERITED:
        if name not in values:
            del variables[f"audit.{name}"]
    return variables


def check_value(
    variable: str,
    value: str,
    limits: Mapping[str, int] = LIMITS,
    json_variables: tuple[str, ...] = ("audit.context",),
) -> None:
    """Refuse a value the log cannot hold, naming the variable: longer than its limit
    in ``limits``, or with a NUL character (text cannot hold one; in a JSON variable,
    JSON writes it "\\u0000", which jsonb refuses). record_action checks its arguments
    with it too, under their own limits."""
    if "\x00" in value or (variable in json_variables and _JSON_NUL.search(value)):
        raise InvalidContextValue(
            variable,
            value,
            message=f"{variable} holds a NUL character (\\x00), which PostgreSQL cannot store",
        )
    limit = limits.get(variable)
    if limit is not None and len(value) > limit:
        raise ContextValueTooLong(variable, value, limit)


def as_text(value: object) -> str | None:
    """A value for a text parameter: its str (a numeric id, a UUID), None kept."""
    return None if value is None else str(value)


def set_variables(conn: psycopg.Connection, variables: Mapping[str, str]) -> None:
    """Set audit variables for the current transaction, in one round trip."""
    _require_transaction(conn)
    if not variables:
        return
    calls = ", ".join("set_config(%s, %s, true)" for _ in variables)
    params = [p for item in variables.items() for p in item]
    conn.execute(f"select {calls}", params)


def read_variables(conn: psycopg.Connection, names: tuple[str, ...]) -> dict[str, str]:
    """The current values of audit variables ('' for unset), in one round trip."""
    _require_transaction(conn)
    calls = ", ".join("coalesce(current_setting(%s, true), '')" for _ in names)
    row = one_row(conn, f"select {calls}", list(names))
    return dict(zip(names, row, strict=True))


def set_context(conn: psycopg.Connection, **values: Any) -> None:
    """Set the whole actor context of the connection's current transaction.

    Keywords: actor_id, actor_name, actor_type ('admin', 'client', 'system'),
    source ('web', 'api', 'ai', 'mobile'), request_id, context (a JSON-able mapping).
    A value left out is cleared. Raises InvalidContextValue for an unknown actor_type
    or source, a value longer than its limit (``LIMITS``: 200 characters for ids and
    names, 10,000 for the JSON of ``context``) or a NUL character, before anything is
    sent.
    """
    set_variables(conn, context_values(**values))


@contextmanager
def context(conn: psycopg.Connection | None = None, /, **values: Any) -> Iterator[None]:
    """State the actor context for a block; the outer context is back when it exits.

    With a psycopg connection, the values are set on its current transaction at once.
    Without one, they become the ambient context (see the module's docstring).
    """
    new = stated_variables(**values)
    if conn is not None:
        with _overriding(conn, new):
            yield
        return
    token = _ambient.set({**(ambient_variables() or {}), **new})
    try:
        yield
    finally:
        _ambient.reset(token)


@contextmanager
def deferred_context(resolve: Callable[[], Mapping[str, str]]) -> Iterator[None]:
    """State an ambient context worked out only when a statement needs it: every
    ``ambient_variables()`` inside the block (the SQLAlchemy integration before a
    statement, ``apply_context``) calls ``resolve()`` for the variables, so they can
    depend on what the running code sets after the block began (the Flask integration:
    a user loaded by a hook that runs after its own)."""
    token = _ambient.set(resolve)
    try:
        yield
    finally:
        _ambient.reset(token)


def ambient_variables() -> Mapping[str, str] | None:
    """The audit variables of the ambient context, or None when none was stated."""
    value = _ambient.get()
    return value() if callable(value) else value


def apply_context(conn: psycopg.Connection) -> bool:
    """Send the ambient context to the connection's current transaction.

    One round trip when there is an ambient context, none otherwise; returns whether
    anything was sent.
    """
    variables = ambient_variables()
    if not variables:
        return False
    set_variables(conn, variables)
    return True


@contextmanager
def batch(conn: psycopg.Connection, label: str) -> Iterator[None]:
    """Make every tracked change of the block one action labelled ``label``.

    An ORM that deletes 50 clients one statement at a time then logs one
    "Batch client deletion" with 50 items.
    """
    if not label or not str(label).strip():
        raise ValueError("batch label must not be empty")
    check_value("audit.batch", str(label))
    # audit.batch_action_id is cleared on the way in and out, so two batch blocks of
    # one transaction are two actions even when they share a label.
    with _overriding(conn, {"audit.batch": str(label), "audit.batch_action_id": ""}):
        yield


@contextmanager
def importing(conn: psycopg.Connection) -> Iterator[None]:
    """Log the block's inserts as an import ("Clients imported (N)")."""
    with _overriding(conn, {"audit.action_type": "import"}):
        yield


@contextmanager
def _overriding(conn: psycopg.Connection, new: Mapping[str, str]) -> Iterator[None]:
    names = tuple(new)
    outer = read_variables(conn, names)
    if "audit.batch_action_id" in outer:
        outer["audit.batch_action_id"] = ""
    set_variables(conn, new)
    try:
        yield
    finally:
        # Transaction-local values die with their transaction: if the block committed
        # or rolled back, there is nothing to put back (and writing would open a new
        # transaction). A failed transaction cannot take the restore either.
        if conn.info.transaction_status == pq.TransactionStatus.INTRANS:
            set_variables(conn, outer)


def require_sync_connection(conn: object) -> None:
    """Refuse an asyncio connection, whose execute() would only make a coroutine that
    nobody awaits: the values would silently never reach the server."""
    if isinstance(conn, psycopg.AsyncConnection):
        raise TypeError(
            "audit_capture's helpers take a psycopg.Connection, not an AsyncConnection; "
            "with asyncio, state the context in SQL: "
            '`await conn.execute("select audit.set_context(actor_id => %s, ...)", ...)`'
        )


def _require_transaction(conn: psycopg.Connection) -> None:
    require_sync_connection(conn)
    if conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        raise NoTransaction(
            "the audit context is transaction-local, but this connection is in autocommit "
            "mode outside a transaction; wrap the work in `with conn.transaction():`"
        )
