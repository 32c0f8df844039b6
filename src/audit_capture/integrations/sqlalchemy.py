"""SQLAlchemy: every transaction begins with the ambient audit context.

    engine = create_engine("postgresql+psycopg://app@db/crm")
    audit_capture.integrations.sqlalchemy.instrument(engine)   # or a sessionmaker

    with audit_capture.context(actor_id=7, actor_name="Alice", actor_type="admin", source="web"):
        with Session(engine) as session, session.begin():
            session.add(Client(name="Jane"))                     # logged as Alice, Web

Before the first statement of a transaction (and before any statement after the
ambient context changed mid-transaction), one ``select set_config(...)`` with bound
parameters runs on the same DBAPI cursor: transaction-local, so nothing outlives the
transaction on a pooled connection. No ambient context: nothing is sent, the trigger's
defaults apply. Works for ``Session``, Core connections and ``engine.begin()``; the
statement is skipped in AUTOCOMMIT mode, where a transaction-local value could not
outlive it (use a transaction).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import RollbackToSavepointClause

from audit_capture.context import CONTEXT_VARIABLES, ambient_variables
from audit_capture.context import batch as connection_batch
from audit_capture.context import importing as connection_importing

#: Where a connection remembers what it set in its current transaction.
APPLIED = "audit_capture.applied"
#: What APPLIED holds after a savepoint was rolled back: the server has undone some of
#: what was set (not always back to the values of the savepoint's start, when they were
#: set again inside it), so the next statement states everything again.
UNKNOWN = object()


def instrument(target: Engine | sessionmaker) -> Engine:
    """Make every transaction of ``target`` (an Engine, or a sessionmaker bound to
    one) start with the ambient audit context. Idempotent; returns the engine."""
    engine = _engine_of(target)
    if not event.contains(engine, "before_cursor_execute", _apply_before_statement):
        event.listen(engine, "before_cursor_execute", _apply_before_statement)
        for name in ("commit", "rollback"):
            event.listen(engine, name, _forget_applied)
        event.listen(engine, "rollback_savepoint", _unknown_after_savepoint)
        event.listen(engine, "checkin", _forget_on_checkin)
    return engine


def uninstrument(target: Engine | sessionmaker) -> None:
    """Undo ``instrument``."""
    engine = _engine_of(target)
    if event.contains(engine, "before_cursor_execute", _apply_before_statement):
        event.remove(engine, "before_cursor_execute", _apply_before_statement)
        for name in ("commit", "rollback"):
            event.remove(engine, name, _forget_applied)
        event.remove(engine, "rollback_savepoint", _unknown_after_savepoint)
        event.remove(engine, "checkin", _forget_on_checkin)


def _engine_of(target: Engine | sessionmaker) -> Engine:
    if isinstance(target, Engine):
        return target
    bind = getattr(target, "kw", {}).get("bind")
    if isinstance(bind, Engine):
        return bind
    raise TypeError(f"instrument() takes an Engine or a sessionmaker bound to one, not {target!r}")


def _apply_before_statement(conn: Connection, cursor, statement, parameters, context, executemany):
    variables = ambient_variables()
    applied = conn.info.get(APPLIED)
    if variables == applied:
        return  # nothing stated, or already set in this transaction
    if _autocommit(conn) or _rolls_back_to_savepoint(context):
        return
    cursor.execute(*_set_config(variables or _cleared(applied)))
    conn.info[APPLIED] = variables


def _autocommit(conn: Connection) -> bool:
    # the DBAPI connection's own flag: Connection.get_isolation_level() never reports
    # AUTOCOMMIT, and asks the server (a round trip, and a rollback) every time
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


def _rolls_back_to_savepoint(context) -> bool:
    # Values set now would be undone by the statement itself, and after an error it
    # is the only statement the server takes: a set_config would fail in its place
    # and leave the transaction aborted.
    compiled = getattr(context, "compiled", None)
    return isinstance(getattr(compiled, "statement", None), RollbackToSavepointClause)


def _forget_applied(conn: Connection, *args) -> None:
    # transaction-local values end with the transaction
    conn.info.pop(APPLIED, None)


def _forget_on_checkin(dbapi_connection, connection_record) -> None:
    # A Connection dropped without close() goes back through the pool's own rollback,
    # which fires no Connection event: conn.info (the pooled record's) would still
    # say "applied" to the next checkout, and a context equal to it would not be sent.
    connection_record.info.pop(APPLIED, None)


def _unknown_after_savepoint(conn: Connection, *args) -> None:
    # the values set inside the savepoint are undone, those set before it are not:
    # the next statement states the context again (or clears it) whatever it was
    if APPLIED in conn.info:
        conn.info[APPLIED] = UNKNOWN


def _set_config(variables: Mapping[str, str]) -> tuple[str, list[str]]:
    calls = ", ".join("set_config(%s, %s, true)" for _ in variables)
    return f"select {calls}", [p for item in variables.items() for p in item]


def _cleared(applied: Mapping[str, str] | object) -> dict[str, str]:
    # the ambient context ended mid-transaction: unset what this transaction set
    # applied: what this transaction set, or UNKNOWN after a savepoint was rolled back
    names = applied if isinstance(applied, Mapping) else CONTEXT_VARIABLES
    return {name: "" for name in names}


@contextmanager
def batch(connection: Connection | Session, label: str) -> Iterator[None]:
    """``audit_capture.batch`` for a SQLAlchemy Connection or Session in a transaction:
    every tracked change of the block becomes one action labelled ``label``.

    A Session is flushed on the way in and out, so the batch holds exactly the
    changes made in the block: ``session.delete(obj)`` in a loop is one action."""
    _flush(connection)
    with connection_batch(_driver_connection(connection), label):
        yield
        _flush(connection)


@contextmanager
def importing(connection: Connection | Session) -> Iterator[None]:
    """``audit_capture.importing`` for a SQLAlchemy Connection or Session: the block's
    inserts are logged as an import (a Session is flushed on the way in and out)."""
    _flush(connection)
    with connection_importing(_driver_connection(connection)):
        yield
        _flush(connection)


def _flush(connection: Connection | Session) -> None:
    # the ORM sends its changes when it likes (autoflush, commit): pending changes
    # from before the block are not the block's, and the block's must not wait for
    # a flush after it
    if isinstance(connection, Session):
        connection.flush()


def _driver_connection(connection: Connection | Session):
    if isinstance(connection, Session):
        connection = connection.connection()
    # the psycopg connection under SQLAlchemy's, in the same transaction
    return connection.connection.driver_connection


def record_action(connection: Connection | Session, action_type, action: str, **details) -> int:
    """``audit_capture.record_action`` for a SQLAlchemy Connection or Session: the event
    goes through SQLAlchemy, so it carries the ambient context like any statement."""
    from audit_capture.events import LOG_ACTION_SQL, log_action_arguments

    if isinstance(connection, Session):
        connection = connection.connection()
    # through SQLAlchemy's driver-level execute, so the context is applied first
    return connection.exec_driver_sql(
        LOG_ACTION_SQL, log_action_arguments(action_type, action, **details)
    ).scalar_one()
