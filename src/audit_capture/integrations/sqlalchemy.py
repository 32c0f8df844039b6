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

from collections.abc import Mapping

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import sessionmaker

from audit_capture.context import ambient_variables

#: Where a connection remembers what it set in its current transaction.
APPLIED = "audit_capture.applied"


def instrument(target: Engine | sessionmaker) -> Engine:
    """Make every transaction of ``target`` (an Engine, or a sessionmaker bound to
    one) start with the ambient audit context. Idempotent; returns the engine."""
    engine = _engine_of(target)
    if not event.contains(engine, "before_cursor_execute", _apply_before_statement):
        event.listen(engine, "before_cursor_execute", _apply_before_statement)
        for name in ("commit", "rollback", "rollback_savepoint"):
            event.listen(engine, name, _forget_applied)
    return engine


def uninstrument(target: Engine | sessionmaker) -> None:
    """Undo ``instrument``."""
    engine = _engine_of(target)
    if event.contains(engine, "before_cursor_execute", _apply_before_statement):
        event.remove(engine, "before_cursor_execute", _apply_before_statement)
        for name in ("commit", "rollback", "rollback_savepoint"):
            event.remove(engine, name, _forget_applied)


def _engine_of(target: Engine | sessionmaker) -> Engine:
    if isinstance(target, Engine):
        return target
    bind = getattr(target, "kw", {}).get("bind")
    if isinstance(bind, Engine):
        return bind
    raise TypeError(
        f"instrument() takes an Engine or a sessionmaker bound to one, not {target!r}"
    )


def _apply_before_statement(conn: Connection, cursor, statement, parameters, context, executemany):
    variables = ambient_variables()
    applied = conn.info.get(APPLIED)
    if variables == applied:
        return  # nothing stated, or already set in this transaction
    if conn.get_isolation_level() == "AUTOCOMMIT":
        return
    cursor.execute(*_set_config(variables or _cleared(applied)))
    conn.info[APPLIED] = variables


def _forget_applied(conn: Connection, *args) -> None:
    # transaction-local values end with the transaction (or the savepoint that set them)
    conn.info.pop(APPLIED, None)


def _set_config(variables: Mapping[str, str]) -> tuple[str, list[str]]:
    calls = ", ".join("set_config(%s, %s, true)" for _ in variables)
    return f"select {calls}", [p for item in variables.items() for p in item]


def _cleared(applied: Mapping[str, str] | None) -> dict[str, str]:
    # the ambient context ended mid-transaction: unset what this transaction set
    return {name: "" for name in (applied or {})}
