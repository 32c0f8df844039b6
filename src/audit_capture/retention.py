"""``audit-capture retention``: old months leave the log whole, and the log records it.

    audit-capture retention --keep 24months                  # what would go; changes nothing
    audit-capture retention --keep 24months --apply          # drops it
    audit-capture retention --keep 2years --apply --require-archive /backups/audit

The work is SQL's (triggers/15_retention.sql). ``audit.apply_retention(keep_months,
apply, archives, lock_wait)`` finds the month partition pairs wholly older than
``keep_months`` whole months before the current UTC month (and the legacy pair of an
upgraded install once its whole range is) and counts them; with ``apply`` it detaches
them from the log in one transaction (renamed ``audit.retired_<name>``) and writes one
action, "Audit log retention: 3 months dropped, 31,204,117 actions". Then
``audit.drop_retired_partitions()``, in a transaction of its own that locks nothing of
the log, drops those tables; ``run()`` calls it once before too, for tables a run
killed between the two steps left. Only audit_admin may run either; the default
partitions never go; the current month and the ``audit.retention_floor_months()``
before it never go.

With ``--require-archive DIR`` each month to drop must have an archive in DIR that the
archive's own verify (``audit_capture.archive.verify_month``, handed over by the CLI:
``verifier()``) finds intact; its manifest's counts are handed to the SQL function,
which compares them with the month's partitions under the lock that keeps them from
changing until the detach: a month archived before more rows arrived in it is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg

from audit_capture import database
from audit_capture.errors import AuditCaptureError

#: The SQL function's signature, for privilege checks.
FUNCTION = "audit.apply_retention(integer, boolean, jsonb, interval)"

#: How long the run waits for a lock (the log's parents, the months' partitions) before
#: it stops, having changed nothing. Audited writes queue behind it that long at most.
DEFAULT_LOCK_WAIT_SECONDS = 2.0

_KEEP = re.compile(r"(?P<count>[0-9]{1,5})\s*(?P<unit>months?|years?)", re.IGNORECASE)


class RetentionRefused(AuditCaptureError):
    """Retention cannot run as asked; ``str(exc)`` is one line saying why and what to do."""


def parse_keep(text: str) -> int:
    """``--keep``'s value as whole months: ``24months``, ``24 months``, ``1month``,
    ``2years`` (24). Anything else (``24``, ``soon``, ``30days``, ``-3months``,
    ``0months``) raises ValueError naming the value: a bare number would leave the unit
    to a guess, and days or weeks cannot be a whole number of month partitions."""
    match = _KEEP.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a number of months or years (e.g. 24months, 2years)")
    count = int(match["count"])
    months = count * 12 if match["unit"].lower().startswith("year") else count
    if months < 1:
        raise ValueError(f"{text!r} keeps nothing: give at least one month")
    return months


@dataclass(frozen=True)
class Month:
    """One partition pair that goes (or went)."""

    month: date | None  # None: the legacy pair
    kind: str  # 'month' or 'legacy'
    from_at: datetime | None
    to_at: datetime
    actions: int
    chunks: int
    bytes: int
    archive: str | None  # None (not required), 'verified', 'missing', or what differs

    @property
    def name(self) -> str:
        """``2025-01``, or ``legacy`` for the pre-partitioning log."""
        return self.month.strftime("%Y-%m") if self.month is not None else self.kind

    @property
    def archive_key(self) -> str:
        return self.name


@dataclass(frozen=True)
class Result:
    keep_months: int
    applied: bool
    months: list[Month]
    action_id: int | None  # the retention's own action, when applied and something went
    label: str | None  # its label
    dropped_tables: list[str] = field(default_factory=list)  # the run's retired tables
    left_tables: list[str] = field(default_factory=list)  # dropped, left by an earlier run
    retired: list[str] = field(default_factory=list)  # (dry run) left by an earlier run

    @property
    def actions(self) -> int:
        return sum(m.actions for m in self.months)

    @property
    def chunks(self) -> int:
        return sum(m.chunks for m in self.months)

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.months)


#: verify(directory, month) -> (actions, chunks) of a verified archive of ``month``
#: ("2025-01"), or raises with a line saying what is wrong.
Verifier = Callable[[Path, str], tuple[int, int]]


def check_access(conn: psycopg.Connection) -> None:
    """Raise RetentionRefused saying what to do when retention cannot run here: the
    schema lacks it (an older revision), or the role is not granted audit_admin."""
    installed, allowed, role, quoted = database.function_access(conn, FUNCTION)
    if not installed:
        raise RetentionRefused(
            "this database's audit schema has no retention (audit.apply_retention): "
            "run `audit-capture migrate upgrade` first"
        )
    if not allowed:
        raise RetentionRefused(
            f"role {role} may not run retention: it is for audit_admin; a superuser runs "
            f"`grant audit_admin to {quoted};`"
        )


def run(
    conn: psycopg.Connection,
    keep_months: int,
    *,
    apply: bool = False,
    archive_dir: Path | None = None,
    verify: Verifier | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> Result:
    """Retention on ``conn`` in one transaction of its own (committed when ``apply``,
    rolled back otherwise). With ``archive_dir``, each month must have an archive there
    that ``verify`` accepts (``verifier(audit_capture.archive.verify_month)``)."""
    check_access(conn)
    floor = database.one_value(conn, "select audit.retention_floor_months()")
    conn.rollback()
    if keep_months < floor:
        raise RetentionRefused(
            f"keeping {keep_months} month{'s' if keep_months != 1 else ''} is under the"
            f" retention floor: the current month and the {floor} before it are never"
            " dropped; nothing was dropped"
        )
    archives: dict[str, dict[str, int]] | None = None
    problems: dict[str, str] = {}
    if archive_dir is not None:
        if verify is None:
            raise ValueError("archive_dir needs verify, the archive's verify_month")
        planned = _call(conn, keep_months, False, None, lock_wait)
        conn.rollback()
        archives = {}
        for month in planned.months:
            try:
                actions = chunks = 0
                for name in _archived_months(conn, month):
                    more_actions, more_chunks = verify(archive_dir, name)
                    actions, chunks = actions + more_actions, chunks + more_chunks
            except Exception as exc:  # noqa: BLE001 - any failure is "not verified"
                problems[month.name] = _first_line(exc)
            else:
                archives[month.archive_key] = {"actions": actions, "chunks": chunks}
            conn.rollback()
        if apply and problems:
            name, problem = next(iter(problems.items()))
            raise RetentionRefused(
                f"no verified archive of {name} in {archive_dir}: {problem}; nothing was dropped"
            )
    left: list[str] = []
    if apply:
        # tables an earlier run detached but did not get to drop (killed in between)
        left = drop_retired(conn, lock_wait)
    try:
        result = _call(conn, keep_months, apply, archives, lock_wait)
    except BaseException:
        conn.rollback()
        raise
    if not apply:
        conn.rollback()
        if problems:
            months = [
                m if m.name not in problems else _with_archive(m, problems[m.name])
                for m in result.months
            ]
            result = replace(result, months=months)
        return replace(result, retired=retired_tables(conn))
    conn.commit()
    try:
        dropped = drop_retired(conn, lock_wait)
    except psycopg.Error as exc:
        raise RetentionRefused(
            f"the months left the log (action {result.action_id}), but dropping their"
            f" detached tables failed: {_first_line(exc)}; run it again to drop them"
        ) from None
    return replace(result, dropped_tables=dropped, left_tables=left)


def drop_retired(conn: psycopg.Connection, lock_wait: float) -> list[str]:
    """audit.drop_retired_partitions() in a transaction of its own: the names of the
    retired tables it dropped."""
    try:
        rows = conn.execute(
            "select audit.drop_retired_partitions(make_interval(secs => %s))", (lock_wait,)
        ).fetchall()
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return [name for (name,) in rows]


def retired_tables(conn: psycopg.Connection) -> list[str]:
    """Tables a retention run detached and has not dropped yet (a run killed between its
    two steps): the next --apply drops them."""
    rows = conn.execute(
        "select c.oid::regclass::text from pg_class c"
        " where c.relnamespace = 'audit'::regnamespace and c.relkind = 'r'"
        " and not c.relispartition"
        " and c.relname ~ '^retired_action_(log|item_chunk)_(p[0-9]{4}_[0-9]{2}|legacy)$'"
        " order by 1"
    ).fetchall()
    conn.rollback()
    return [name for (name,) in rows]


def _archived_months(conn: psycopg.Connection, month: Month) -> list[str]:
    """The archive's months ("YYYY-MM") that hold ``month``'s rows: itself, or for the
    legacy pair every month from its first action's to its end (the archive writes
    calendar months)."""
    if month.kind != "legacy":
        return [month.name]
    rows = conn.execute(
        "select to_char(m, 'YYYY-MM') from generate_series("
        " date_trunc('month', (select min(occurred_at) from audit.action_log"
        "                      where occurred_at < %(to)s) at time zone 'UTC'),"
        " (%(to)s::timestamptz at time zone 'UTC') - interval '1 month', interval '1 month') m",
        {"to": month.to_at},
    ).fetchall()
    return [name for (name,) in rows]


def _with_archive(month: Month, state: str) -> Month:
    return Month(
        month.month,
        month.kind,
        month.from_at,
        month.to_at,
        month.actions,
        month.chunks,
        month.bytes,
        state,
    )


def _call(
    conn: psycopg.Connection,
    keep_months: int,
    apply: bool,
    archives: dict[str, dict[str, int]] | None,
    lock_wait: float,
) -> Result:
    rows = conn.execute(
        "select month, kind, from_at, to_at, actions, chunks, bytes, archive, action_id"
        " from audit.apply_retention(%s, %s, %s::jsonb, make_interval(secs => %s))",
        (keep_months, apply, None if archives is None else json.dumps(archives), lock_wait),
    ).fetchall()
    months = [Month(*row[:8]) for row in rows]
    action_id = rows[0][8] if rows else None
    label = None
    if action_id is not None:
        label = database.one_value(
            conn, "select action from audit.action_log where id = %s", (action_id,)
        )
    return Result(keep_months, apply, months, action_id, label)


def verifier(verify_month: Callable[..., Any], conn: psycopg.Connection) -> Verifier:
    """The archive's ``verify_month(folder, month, conn)`` (helper C's
    ``audit_capture.archive``; the CLI hands it over) as a Verifier. Its verdict has
    ``ok``, ``problem`` (one line naming the file) and ``manifest`` (the month's counts;
    None for a month that holds no action and so needs no archive). With ``conn`` it
    also checks the manifest's source database and counts against the month as the
    database holds it now; audit.apply_retention() checks the counts once more under
    the lock that keeps them until the drop."""

    def verify(directory: Path, month: str) -> tuple[int, int]:
        result = verify_month(directory, month, conn)
        if not result.ok:
            raise RetentionRefused(result.problem)
        manifest = result.manifest
        if manifest is None:
            return 0, 0
        return int(manifest["actions"]), int(manifest["chunks"])

    return verify


def _first_line(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    text = getattr(diag, "message_primary", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


# -- what the command prints ----------------------------------------------------------


def human_bytes(n: int) -> str:
    """``1.2 GB`` (powers of 1,024, as pg_size_pretty)."""
    size = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size):,} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def report_lines(result: Result, keep_text: str) -> Iterable[str]:
    """The command's output, line by line."""
    if result.left_tables:
        yield (
            f"dropped {len(result.left_tables)} table(s) an earlier run had detached:"
            f" {', '.join(result.left_tables)}"
        )
    if result.retired:
        yield (
            f"{len(result.retired)} table(s) an earlier run detached are still to drop"
            f" (--apply drops them): {', '.join(result.retired)}"
        )
    if not result.months:
        yield (
            f"nothing to drop: every month partition is within --keep {keep_text}"
            " (the default partitions are never dropped)"
        )
        return
    archives = any(m.archive is not None for m in result.months)
    header = f"{'month':<10} {'actions':>15} {'chunks':>12} {'size':>11}"
    yield header + ("  archive" if archives else "")
    for m in result.months:
        line = f"{m.name:<10} {m.actions:>15,} {m.chunks:>12,} {human_bytes(m.bytes):>11}"
        yield line + (f"  {m.archive}" if archives else "")
    count = len(result.months)
    yield (
        f"{'total':<10} {result.actions:>15,} {result.chunks:>12,}"
        f" {human_bytes(result.bytes):>11}  ({count} partition pair{'s' if count != 1 else ''})"
    )
    if result.applied:
        yield f"dropped; the log records it as action {result.action_id}: {result.label}"
        yield (f"their {len(result.dropped_tables)} tables, detached from the log, are dropped")
    else:
        yield "dry run: nothing changed; add --apply to drop them"
