"""Does the database hold what this version of audit_capture installs?

Pure data: ``read_status(conn)`` returns dataclasses; the CLI prints them.

- Migration: the revision in ``audit.alembic_version`` against this package's head.
- Functions: every function of schema ``audit``. At install time the SQL stamps each
  one's COMMENT with a last line ``audit_capture sha256:<hex>``, its fingerprint
  (``audit.function_fingerprint(oid)``: body, security, settings, arguments). A
  function that no longer matches its stamp was edited by hand: ``modified``.
- Tracked tables: each row of ``audit.tracked_table`` with its audit triggers (the
  triggers that call a function of schema ``audit``). A trigger's COMMENT carries
  ``audit.trigger_fingerprint(oid)``; a table without any audit trigger is ``missing``.
- Capture gaps: ``audit.capture_gaps()`` checks every audit trigger the tracked table
  and each of its partitions and inheritance children must carry (present, enabled,
  calling the right function, defined as ``audit.track()`` makes it). Any gap makes the
  table ``not captured``, never ok: a trigger renamed, replaced or dropped behind the
  event triggers' back (an install without them), a partition created since.

- Indexes: an index of schema ``audit`` left INVALID (a ``CREATE INDEX CONCURRENTLY``
  that failed or was cancelled, as revision upgrades run them) is never used by a query
  and still slows every write; ``if not exists`` would keep it as it is, so it is named,
  with the statement that builds it again.

``capture_sql(conn, table)`` is the SQL behind a tracked table's capture, as the database
holds it (``audit.capture_sql(regclass)``): ``audit-capture status --show-sql TABLE``.

- Replication (``replication.read_status``): on a primary that publishes the log, its
  publication and slots (lag, WAL retained); on an audit server, its subscription. A
  warning (WAL retained above ``wal_warning`` bytes, a lost slot, a disabled
  subscription, the subscriber's own ids in the primary's range) makes the status not ok.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from audit_capture import migrate, replication
from audit_capture.database import one_value
from audit_capture.errors import AuditCaptureError
from audit_capture.replication import ReplicationStatus

STAMP = re.compile(r"audit_capture sha256:([0-9a-f]{64})\s*$")

# States
UP_TO_DATE = "up to date"
OUTDATED = "outdated"
NOT_INSTALLED = "not installed"
UNKNOWN_REVISION = "unknown revision"
INSTALLED = "installed"
MODIFIED = "modified"
UNSTAMPED = "unstamped"
MISSING = "missing"
DISABLED = "disabled"
# calls a generated capture function written for another oid: the table was restored
# from a dump (audit-capture migrate repair moves the triggers to the table's own)
STALE = "stale (calls the capture function of the table it was restored from)"
# a statement on the table or on one of its partitions or children escapes capture
GAP = "not captured"


@dataclass(frozen=True)
class MigrationStatus:
    installed: str | None
    head: str
    state: str  # UP_TO_DATE, OUTDATED, NOT_INSTALLED, UNKNOWN_REVISION

    @property
    def ok(self) -> bool:
        return self.state == UP_TO_DATE


@dataclass(frozen=True)
class FunctionStatus:
    signature: str  # audit.track(regclass, text, ...)
    state: str  # INSTALLED, MODIFIED, UNSTAMPED

    @property
    def ok(self) -> bool:
        return self.state == INSTALLED


@dataclass(frozen=True)
class TriggerStatus:
    name: str
    enabled: bool
    state: str  # INSTALLED, MODIFIED, UNSTAMPED, DISABLED, STALE

    @property
    def ok(self) -> bool:
        return self.state == INSTALLED


@dataclass(frozen=True)
class CaptureGap:
    relation: str  # the tracked table, or one of its partitions or inheritance children
    trigger: str  # the audit trigger it should carry
    problem: str  # missing, disabled, calls own.noop() instead of audit.capture(), ...

    def __str__(self) -> str:
        return f"{self.relation}: trigger {self.trigger}: {self.problem}"


@dataclass(frozen=True)
class TableStatus:
    relation: str
    resource_type: str
    triggers: tuple[TriggerStatus, ...]
    gaps: tuple[CaptureGap, ...] = ()

    @property
    def state(self) -> str:
        if not self.triggers:
            return MISSING
        bad = [t.state for t in self.triggers if not t.ok]
        if bad:
            return bad[0]
        return GAP if self.gaps else INSTALLED

    @property
    def ok(self) -> bool:
        return self.state == INSTALLED


#: Capture modes (triggers/07_capture.sql)
FAST = "fast"
GENERIC = "generic"


@dataclass(frozen=True)
class InvalidIndex:
    """An index of schema ``audit`` that PostgreSQL marks invalid."""

    name: str  # audit.action_log_text_time_idx
    table: str  # audit.action_log
    # the index of a partitioned table (the log): valid once each partition's index is
    # attached to it; REINDEX does not make it so
    partitioned: bool = False

    def __str__(self) -> str:
        if self.partitioned:
            return (
                f"{self.name} on {self.table}: INVALID (a partition's index is missing or not"
                f" attached; no query of the partitioned table uses it): build the partition's"
                f" index and `alter index {self.name} attach partition <its index>`"
            )
        return (
            f"{self.name} on {self.table}: INVALID (a CREATE INDEX CONCURRENTLY that did not"
            f" finish; no query uses it, every write still updates it): rebuild it with"
            f" `reindex index concurrently {self.name}`"
        )


@dataclass(frozen=True)
class Status:
    migration: MigrationStatus
    functions: tuple[FunctionStatus, ...] = ()
    tables: tuple[TableStatus, ...] = ()
    invalid_indexes: tuple[InvalidIndex, ...] = ()
    # FAST when the ALTER TABLE event trigger is installed (capture functions generated
    # per table), GENERIC otherwise (installed without a superuser); None: no schema
    capture_mode: str | None = None
    # None: the database neither publishes the log nor subscribes to it
    replication: ReplicationStatus | None = None

    @property
    def ok(self) -> bool:
        return (
            self.migration.ok
            and all(f.ok for f in self.functions)
            and all(t.ok for t in self.tables)
            and not self.invalid_indexes
            and (self.replication is None or self.replication.ok)
        )


def stamped_hash(comment: str | None) -> str | None:
    """The hash in a COMMENT's last line ``audit_capture sha256:<hex>``, if any."""
    if not comment:
        return None
    match = STAMP.search(comment.rstrip())
    return match.group(1) if match else None


def read_status(
    conn: psycopg.Connection, wal_warning: int = replication.DEFAULT_WAL_WARNING
) -> Status:
    """The status of the audit schema in the database of ``conn`` (reads only);
    ``wal_warning``: the bytes of WAL a replication slot may retain before a warning."""
    migration = _migration_status(conn)
    if not _schema_exists(conn):
        return Status(migration=migration)
    return Status(
        migration=migration,
        functions=tuple(_function_statuses(conn)),
        tables=tuple(_table_statuses(conn)),
        capture_mode=_capture_mode(conn),
        invalid_indexes=tuple(_invalid_indexes(conn)),
        replication=replication.read_status(conn, wal_warning),
    )


def _invalid_indexes(conn: psycopg.Connection) -> list[InvalidIndex]:
    """The indexes of schema ``audit`` that are not valid (pg_index.indisvalid)."""
    return [
        InvalidIndex(name, table, partitioned)
        for name, table, partitioned in conn.execute(
            "select i.indexrelid::regclass::text, i.indrelid::regclass::text, c.relkind = 'I'"
            " from pg_catalog.pg_index i join pg_catalog.pg_class c on c.oid = i.indexrelid"
            " where c.relnamespace = 'audit'::regnamespace and not i.indisvalid order by 1"
        )
    ]


def _capture_mode(conn: psycopg.Connection) -> str:
    fast = one_value(
        conn,
        "select exists (select from pg_catalog.pg_event_trigger "
        "where evtname = 'audit_capture_alter_table' and evtenabled <> 'D')",
    )
    return FAST if fast else GENERIC


def _migration_status(conn: psycopg.Connection) -> MigrationStatus:
    head = migrate.head()
    installed = migrate.current_on(conn)
    if installed is None:
        state = NOT_INSTALLED
    elif installed == head:
        state = UP_TO_DATE
    elif installed in migrate.revisions():
        state = OUTDATED
    else:
        state = UNKNOWN_REVISION
    return MigrationStatus(installed=installed, head=head, state=state)


def _schema_exists(conn: psycopg.Connection) -> bool:
    return one_value(
        conn, "select exists (select from pg_catalog.pg_namespace where nspname = 'audit')"
    )


# The fingerprints are computed by the installed SQL itself (audit.function_fingerprint,
# audit.trigger_fingerprint: the same functions that stamped the COMMENTs), so the
# definition of "unchanged" lives in one place. Without them, the plain body hash.
FUNCTION_FINGERPRINT = sql.SQL(
    "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(p.prosrc, 'UTF8')), 'hex')"
)
TRIGGER_FINGERPRINT = sql.SQL(
    "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to("
    "pg_catalog.pg_get_triggerdef(t.oid), 'UTF8')), 'hex')"
)


def _has_function(conn: psycopg.Connection, signature: str) -> bool:
    return one_value(conn, "select to_regprocedure(%s) is not null", (signature,))


def _function_fingerprint(conn: psycopg.Connection) -> sql.Composable:
    if _has_function(conn, "audit.function_fingerprint(oid)"):
        return sql.SQL("audit.function_fingerprint(p.oid)")
    return FUNCTION_FINGERPRINT


def _trigger_fingerprint(conn: psycopg.Connection) -> sql.Composable:
    if _has_function(conn, "audit.trigger_fingerprint(oid)"):
        return sql.SQL("audit.trigger_fingerprint(t.oid)")
    return TRIGGER_FINGERPRINT


def _function_statuses(conn: psycopg.Connection):
    rows = conn.execute(
        sql.SQL(
            """
            select p.oid::regprocedure::text,
                   {fingerprint},
                   pg_catalog.obj_description(p.oid, 'pg_proc')
            from pg_catalog.pg_proc p
            where p.pronamespace = 'audit'::regnamespace
            order by 1
            """
        ).format(fingerprint=_function_fingerprint(conn))
    ).fetchall()
    for signature, actual, comment in rows:
        stamped = stamped_hash(comment)
        if stamped is None:
            state = UNSTAMPED
        elif stamped == actual:
            state = INSTALLED
        else:
            state = MODIFIED
        yield FunctionStatus(signature=signature, state=state)


def _table_statuses(conn: psycopg.Connection):
    if not one_value(conn, "select to_regclass('audit.tracked_table') is not null"):
        return
    tables = conn.execute(
        "select relation::oid, relation::text, resource_type from audit.tracked_table order by 2"
    ).fetchall()
    trigger_fingerprint = _trigger_fingerprint(conn)
    gaps: dict[int, list[CaptureGap]] = {}
    if _has_function(conn, "audit.capture_gaps(regclass)"):
        for tracked, relation, trigger, problem in conn.execute(
            "select tracked::oid, relation::text, trigger_name, problem"
            " from audit.capture_gaps() order by relation::text, trigger_name"
        ):
            gaps.setdefault(tracked, []).append(CaptureGap(relation, trigger, problem))
    for oid, relation, resource_type in tables:
        triggers = conn.execute(
            sql.SQL(
                """
                select t.tgname,
                       t.tgenabled <> 'D',
                       {fingerprint},
                       pg_catalog.obj_description(t.oid, 'pg_trigger'),
                       p.proname ~ '^capture_[0-9]+$' and p.proname <> 'capture_' || t.tgrelid
                from pg_catalog.pg_trigger t
                join pg_catalog.pg_proc p on p.oid = t.tgfoid
                where t.tgrelid = %s and not t.tgisinternal
                  and p.pronamespace = 'audit'::regnamespace
                order by t.tgname
                """
            ).format(fingerprint=trigger_fingerprint),
            (oid,),
        ).fetchall()
        statuses = []
        for name, enabled, actual, comment, stale in triggers:
            stamped = stamped_hash(comment)
            if stale:
                state = STALE
            elif stamped is None:
                state = UNSTAMPED
            elif stamped != actual:
                state = MODIFIED
            elif not enabled:
                state = DISABLED
            else:
                state = INSTALLED
            statuses.append(TriggerStatus(name=name, enabled=enabled, state=state))
        yield TableStatus(
            relation=relation,
            resource_type=resource_type,
            triggers=tuple(statuses),
            gaps=tuple(gaps.get(oid, ())),
        )


class NotCaptured(AuditCaptureError, LookupError):
    """``capture_sql`` was asked about a table that does not exist or is not tracked (nor
    a partition or inheritance child of a tracked table); the message names it."""


class NotAllowed(AuditCaptureError, PermissionError):
    """``capture_sql`` was asked by a role not granted audit_reader; the message says so."""


# Characters a terminal would act on rather than show (escape sequences, a carriage
# return that overwrites the line, bidirectional overrides that reorder it), such as a
# table's owner may put in its names: shown as ⟨U+001B⟩. Line breaks and tabs stay.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, keep_lines: bool = True) -> str:
    """``text`` with the characters a terminal would act on marked ``⟨U+XXXX⟩`` (line
    breaks too, unless ``keep_lines``)."""
    pattern = _HIDDEN if keep_lines else re.compile(f"[\n\t]|{_HIDDEN.pattern}")
    return pattern.sub(lambda m: f"\u27e8U+{ord(m.group()):04X}\u27e9", text)


def capture_sql(conn: psycopg.Connection, table: str) -> str:
    """The SQL that captures ``table`` (a name as SQL writes it: ``clients``,
    ``crm."Clients"``), as the database holds it: the definitions of its audit triggers
    and those of its partitions and inheritance children, of the functions they call,
    and in the generic mode the queries ``audit.capture()`` writes out. Raises
    NotCaptured for an unknown or untracked table, NotAllowed for a role not granted
    audit_reader."""
    shown = printable(repr(table), keep_lines=False)
    if not _schema_exists(conn) or not _has_function(conn, "audit.capture_sql(regclass)"):
        raise NotCaptured(
            "this database has no audit.capture_sql(): install or upgrade the audit schema "
            "(audit-capture migrate upgrade)"
        )
    if not one_value(
        conn, "select pg_catalog.has_function_privilege('audit.capture_sql(regclass)', 'execute')"
    ):
        user = one_value(conn, "select current_user")
        raise NotAllowed(
            f"role {user!r} may not read the capture SQL: grant audit_reader to {user}"
        )
    found = conn.execute(
        "select c.oid, audit.tracked_root(c.oid) is not null from pg_catalog.pg_class c"
        " where c.oid = pg_catalog.to_regclass(%s)",
        (table,),
    ).fetchone()
    if found is None:
        raise NotCaptured(f"no table {shown} in this database (name it as SQL does: crm.clients)")
    oid, tracked = found
    if not tracked:
        raise NotCaptured(
            f"{shown} is not tracked, nor a partition or inheritance child of a tracked table "
            "(audit-capture status lists the tracked tables)"
        )
    (text,) = conn.execute("select audit.capture_sql(%s::oid::regclass)", (oid,)).fetchall()[0]
    return text
