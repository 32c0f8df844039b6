"""Keeping the log's month partitions ready: ``audit-capture maintain``.

audit.action_log and audit.action_item_chunk are partitioned by UTC month
(triggers/02_action_log.sql, 14_partitions.sql). ``audit.maintain(months_ahead)``
creates the current month's pair and the next ``months_ahead`` months' where missing,
and moves rows that landed in the default partitions (a time outside the prepared
months) into their months. It is meant for cron, every hour::

    17 * * * * audit-capture --database-url postgresql://dba@db/crm maintain

Each run is one transaction. When there is nothing to do it takes no lock. When it
creates a month or moves rows it holds an ACCESS EXCLUSIVE lock on both parents for
that moment (audited writes wait, then go on), and waits at most half of the server's
deadlock_timeout for that lock: if the log stays in use longer (a long read or
transaction), it gives up, changing nothing, and exits with status 75 (EX_TEMPFAIL);
the next hourly run does the work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg

from audit_capture import database
from audit_capture.errors import AuditCaptureError

#: The cron line the README gives (any minute; every hour).
CRON_LINE = "17 * * * * audit-capture --database-url postgresql://dba@db/crm maintain"

#: Exit status when the log stayed locked (sysexits.h EX_TEMPFAIL: try again later).
EXIT_LOG_BUSY = 75


class NotAllowed(AuditCaptureError):
    """The schema is missing, or the role may not maintain the log's partitions."""


class LogBusy(AuditCaptureError):
    """The log stayed locked longer than maintain waits: nothing changed."""


def maintain(conn: psycopg.Connection, months_ahead: int = 3) -> list[tuple[str, str]]:
    """Run audit.maintain(months_ahead) on ``conn`` (committed); its (step, detail) rows.

    Raises NotAllowed (with the GRANT to run) before calling it when the role lacks
    audit_admin, LogBusy when the log stayed locked.
    """
    installed, allowed, role, quoted_role = database.function_access(
        conn, "audit.maintain(integer)"
    )
    if not installed:
        raise NotAllowed(
            "audit_capture 0003 or later is not installed in this database:"
            " run `audit-capture migrate upgrade` first"
        )
    if not allowed:
        raise NotAllowed(
            f"role {role} may not maintain the log's partitions: a superuser runs"
            f" `grant audit_admin to {quoted_role};`"
        )
    try:
        with conn.transaction():
            rows = conn.execute(
                "select step, detail from audit.maintain(%s)", (months_ahead,)
            ).fetchall()
    except psycopg.errors.LockNotAvailable as exc:
        raise LogBusy(
            (exc.diag.message_primary or str(exc)).strip() + f" (exit status {EXIT_LOG_BUSY})"
        ) from None
    return [(str(step), str(detail)) for step, detail in rows]


def describe(steps: Iterable[Sequence[str]]) -> list[str]:
    """The lines ``audit-capture maintain`` prints: one per step, then a summary."""
    steps = list(steps)
    lines = [f"{step}: {detail}" for step, detail in steps]
    created = sum(1 for step, _ in steps if step == "created")
    moved = sum(1 for step, _ in steps if step == "moved")
    if created or moved:
        lines.append(
            f"done: {created} partition(s) created, {moved} month(s) moved out of the default"
        )
    return lines
