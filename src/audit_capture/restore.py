"""``audit-capture restore``: bring back what an action deleted or changed.

    audit-capture restore 123               # the one row action 123 deleted or updated
    audit-capture restore 123 --item 7      # item 7 of a many-row action
    audit-capture restore 123 --all-items   # all of them: one transaction, one action

The work is SQL's (triggers/19_restore.sql): ``audit.restore()`` runs with the caller's
own privileges on the table (SECURITY INVOKER), writes through the table's capture
triggers as one action ("Client restored", create or update) whose context names the
action it undoes (``{"restores": 123}``), and refuses, changing nothing, when the row
exists again, a later action changed it, a column's value was never logged or no longer
fits. This module calls it in one transaction and turns a refusal into one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from audit_capture import database
from audit_capture.errors import AuditCaptureError

RESTORE_FUNCTION = "audit.restore(bigint,integer,boolean,boolean)"


class RestoreRefused(AuditCaptureError):
    """The restore did not happen (nothing changed); ``str(exc)`` says why."""


@dataclass(frozen=True)
class Restored:
    """The action a restore wrote."""

    action_id: int
    action: str
    action_type: str
    row_count: int
    restores: int


def restore(
    conn: psycopg.Connection,
    action_id: int,
    *,
    item: int | None = None,
    all_items: bool = False,
    force: bool = False,
    actor_id: str | None = None,
    actor_name: str | None = None,
) -> Restored:
    """Restore action ``action_id`` (one item, or all) in one transaction of its own,
    committed on success and rolled back on any refusal. With ``actor_id`` or
    ``actor_name`` the restore's actor is that admin; else the database role."""
    installed, allowed, user, quoted = database.function_access(conn, RESTORE_FUNCTION)
    conn.rollback()
    if not installed:
        raise RestoreRefused(
            "this database's audit schema has no audit.restore(): "
            "run `audit-capture migrate upgrade` first"
        )
    if not allowed:
        raise RestoreRefused(
            f"role {user} may not restore: it is for audit_admin (with the table's own "
            f"privileges); a superuser runs `grant audit_admin to {quoted};`"
        )
    try:
        with conn.transaction():
            if actor_id or actor_name:
                conn.execute(
                    "select audit.set_context(actor_id => %s, actor_name => %s,"
                    " actor_type => 'admin')",
                    (actor_id, actor_name),
                )
            (new_id,) = database.one_row(
                conn,
                "select audit.restore(%s, %s, %s, %s)",
                (action_id, item, all_items, force),
            )
            row = conn.execute(
                "select a.id, a.action::text, a.action_type::text, a.row_count"
                " from audit.action_log a where a.id = %s",
                (new_id,),
            ).fetchone()
    except psycopg.DatabaseError as exc:
        if exc.diag.sqlstate is None or exc.diag.message_primary is None:
            raise
        raise RestoreRefused(_sentence(exc)) from None
    assert row is not None
    return Restored(row[0], row[1], row[2], row[3], action_id)


def _sentence(exc: psycopg.DatabaseError) -> str:
    message = (exc.diag.message_primary or "").strip()
    hint = (exc.diag.message_hint or "").strip()
    return f"{message}. {hint}" if hint else message


def report_line(result: Restored) -> str:
    rows = "1 row" if result.row_count == 1 else f"{result.row_count:,} rows"
    return (
        f"restored action {result.restores}: action {result.action_id} "
        f'"{result.action}" ({result.action_type}, {rows})'
    )
