"""An audit server fed by logical replication: ``audit-capture replicate``.

The primary publishes ``audit.action_log`` and ``audit.action_item_chunk`` (publication
``audit_capture``); a second PostgreSQL server, the subscriber, holds the same audit
schema (installed through the same migrations, at the primary's revision) and
subscribes to it (subscription ``audit_capture``), so the viewer can read the whole
history there without loading the primary.

What is published, and why:

- ``publish = 'insert, update'``, never delete nor truncate: retention's partition drops
  (DDL, never replicated anyway) and anything a superuser deletes on the primary leave
  the subscriber's rows as they are; the subscriber may keep everything. UPDATE is
  published because one exists on a healthy primary: ``audit.batch`` grows its
  transaction's action statement by statement (row_count, action_type), and the
  append-only trigger refuses every other. Without it the subscriber would keep the
  batch action as its first statement wrote it.
- ``publish_via_partition_root = true``: rows travel as rows of the parent tables, so
  the subscriber partitions them its own way (its own months, its own default
  partition) and a partition detached or dropped on the primary means nothing there.

On the subscriber the apply worker runs with ``session_replication_role = replica``:
the append-only triggers (ordinary triggers) do not fire for replicated rows, and ids
arrive as the primary drew them. Anything that writes ``audit.action_log`` on the
subscriber itself (its own retention's action, an event, a table tracked there) draws
from the subscriber's identity sequence, which would hand out the primary's ids again
and collide with (or be collided with by) replicated rows. So the subscriber's own ids
start at ``SUBSCRIBER_FIRST_ID`` (10^15: far beyond anything a primary reaches, and
below 2^53, so still exact as a JavaScript number in the viewer's JSON), with the
sequence's MINVALUE there too; ``audit-capture status`` on the subscriber checks it.

``replicate()`` checks everything it can before it creates anything, and creates
the publication only after the subscriber answered; when creating the subscription
fails (the subscriber cannot reach the primary), it drops what this run created on the
primary. A second run finds everything in place and says so.

``read_status(conn)`` is the replication part of ``audit-capture status``: on a primary
the publication and the database's logical slots (active, lag in bytes and seconds,
WAL retained, with a warning above a threshold), on a subscriber the subscription
(worker, table states, time since the primary's last message, errors, id range).
Everything it reads is readable by any role but the lag in seconds, which needs
``pg_monitor`` (pg_stat_replication hides its details from others).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from audit_capture import database, migrate
from audit_capture.database import DatabaseUnavailable, one_row, one_value
from audit_capture.errors import AuditCaptureError

PUBLICATION = "audit_capture"
SUBSCRIPTION = "audit_capture"
PUBLISHED_TABLES = ("audit.action_log", "audit.action_item_chunk")
PUBLISH = "insert, update"
#: The first id of an action written on the subscriber itself.
SUBSCRIBER_FIRST_ID = 10**15
#: Retained WAL above this makes ``audit-capture status`` warn (``--wal-warning``).
DEFAULT_WAL_WARNING = 1024**3
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
#: The temporary slots of a subscription's initial table copies (pg_<subid>_sync_...).
_SYNC_SLOT = re.compile(r"^pg_\d+_sync_\d+_\d+$")


class ReplicationError(AuditCaptureError):
    """``replicate`` cannot go on: one line saying why and what to do; nothing it
    created stays behind on the primary."""


# -- sizes -------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
MAX_SIZE = 2**63 - 1  # bytes, as pg_size_bytes() takes them
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``1GB``, ``512 MB``, ``1048576``; a ValueError names it."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: expected a number of bytes or e.g. 512MB, 1GB")
    size = float(match.group(1)) * _UNITS[unit]
    if not size < MAX_SIZE:  # also a number too long for a float (inf)
        raise ValueError(f"{text!r} is more than any server's WAL (at most {MAX_SIZE:,} bytes)")
    return int(size)


def format_size(size: float) -> str:
    """``1.2 GB``, ``640 kB``, ``0 bytes``: as pg_size_pretty would, one decimal."""
    for unit, factor in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if abs(size) >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{int(size)} bytes"


# -- replicate ---------------------------------------------------------------------


@dataclass
class _Primary:
    conn: psycopg.Connection
    revision: str
    dbname: str


def replicate(
    primary_url: str,
    subscriber_url: str,
    *,
    primary_conninfo: str | None = None,
    slot_name: str | None = None,
    say: Callable[[str], object] = print,
) -> None:
    """Set up (or check) the replication of the log from ``primary_url`` to
    ``subscriber_url``; each step is one line given to ``say``. ``primary_conninfo``
    is how the subscriber's server reaches the primary (default: ``primary_url``).
    Raises ReplicationError (one line) when it cannot, leaving nothing it created on the
    primary."""
    if slot_name is not None and not _SLOT_NAME.match(slot_name):
        raise ReplicationError(
            f"--slot-name {slot_name!r}: a slot name is 1 to 63 lower case letters, digits"
            " and underscores"
        )
    conninfo = database.libpq_url(primary_conninfo or primary_url)
    with database.connect(primary_url, autocommit=True) as pconn:
        primary = _check_primary(pconn)
        _check_conninfo(pconn, conninfo, primary.dbname, say)
        try:
            sconn = database.connect(subscriber_url, autocommit=True)
        except DatabaseUnavailable as exc:
            raise ReplicationError(
                f"the subscriber cannot be reached: {exc} (nothing was created on the primary)"
            ) from None
        with sconn:
            _set_up(primary, sconn, subscriber_url, conninfo, slot_name, say)


def _check_primary(conn: psycopg.Connection) -> _Primary:
    wal_level = one_value(conn, "select pg_catalog.current_setting('wal_level')")
    if wal_level != "logical":
        raise ReplicationError(
            f"the primary's wal_level is {wal_level!r}; logical replication needs"
            " wal_level = logical: set it (ALTER SYSTEM SET wal_level = logical, or"
            " postgresql.conf) and restart PostgreSQL (the setting takes effect only at start)"
        )
    if one_value(conn, "select pg_catalog.pg_is_in_recovery()"):
        raise ReplicationError(
            "the --database-url server is a standby: run replicate against the primary"
        )
    revision = migrate.current_on(conn)
    if revision is None:
        raise ReplicationError(
            "the audit schema is not installed on the primary: run audit-capture migrate"
            " upgrade there first"
        )
    _known_revision(revision, "primary")
    free, total = one_row(
        conn,
        "select pg_catalog.current_setting('max_replication_slots')::int"
        " - (select count(*) from pg_catalog.pg_replication_slots),"
        " pg_catalog.current_setting('max_replication_slots')::int",
    )
    if free < 1 and not _publication_exists(conn):
        raise ReplicationError(
            f"the primary has no free replication slot (max_replication_slots = {total}, all"
            " in use): raise max_replication_slots (restart needed)"
        )
    may_publish = one_value(
        conn,
        "select r.rolsuper or (pg_catalog.pg_has_role(current_user, 'audit_owner', 'usage')"
        " and pg_catalog.has_database_privilege(pg_catalog.current_database(), 'create'))"
        " from pg_catalog.pg_roles r where r.rolname = current_user",
    )
    if not may_publish and not _publication_exists(conn):
        user = one_value(conn, "select current_user")
        raise ReplicationError(
            f"role {user!r} cannot create the publication on the primary: run replicate as a"
            " superuser, or as a member of audit_owner with CREATE on the database"
        )
    dbname = one_value(conn, "select pg_catalog.current_database()")
    return _Primary(conn=conn, revision=revision, dbname=dbname)


def _known_revision(revision: str, where: str) -> None:
    if revision not in migrate.revisions():
        raise ReplicationError(
            f"the {where}'s audit schema is at revision {revision!r}, which this"
            f" audit-capture does not know (its head is {migrate.head()}): use the"
            " audit-capture version that installed it"
        )


def _check_conninfo(
    conn: psycopg.Connection, conninfo: str, dbname: str, say: Callable[[str], object]
) -> None:
    """The role the subscriber will connect as must exist on the primary, log in, have
    REPLICATION (or be a superuser) and read both tables (the initial copy)."""
    try:
        params = database.parse(conninfo)
    except DatabaseUnavailable as exc:
        raise ReplicationError(f"--primary-conninfo: {exc}") from None
    named_db = params.get("dbname")
    if named_db != dbname:
        names = f"database {named_db!r}" if named_db else "no database"
        raise ReplicationError(
            f"the primary conninfo {database.describe_url(conninfo)!r} names {names}, not"
            f" the primary's {dbname!r}: add dbname={dbname}"
        )
    user = params.get("user")
    if not user:
        say(
            "primary: the conninfo names no user: the subscriber's server connects as its"
            " own default user (checked only when the subscription starts)"
        )
        return
    role = conn.execute(
        "select r.rolcanlogin, r.rolreplication or r.rolsuper, r.rolsuper,"
        " pg_catalog.has_table_privilege(r.oid, 'audit.action_log', 'select')"
        " and pg_catalog.has_table_privilege(r.oid, 'audit.action_item_chunk', 'select'),"
        " pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'connect')"
        " from pg_catalog.pg_roles r where r.rolname = %s",
        (user,),
    ).fetchone()
    if role is None:
        raise ReplicationError(
            f"role {user!r} (the user the subscriber connects to the primary as) does not"
            " exist on the primary: create it with LOGIN REPLICATION and grant it audit_reader"
        )
    can_login, replication, superuser, reads, connects = role
    missing = []
    if not can_login:
        missing.append(f"ALTER ROLE {user} LOGIN")
    if not replication:
        missing.append(f"ALTER ROLE {user} REPLICATION")
    if not reads:
        missing.append(f"GRANT audit_reader TO {user}")
    if not connects:
        missing.append(f"GRANT CONNECT ON DATABASE {dbname} TO {user}")
    if missing:
        raise ReplicationError(
            f"role {user!r} cannot feed the subscriber (it must log in, have REPLICATION and"
            f" read the log for the initial copy): on the primary, {'; '.join(missing)}"
        )
    if superuser:
        say(
            f"primary: note: the subscriber connects as superuser {user!r}; a role with"
            " LOGIN REPLICATION granted audit_reader is enough (--primary-conninfo)"
        )


def _publication_exists(conn: psycopg.Connection) -> bool:
    return one_value(
        conn,
        "select exists (select from pg_catalog.pg_publication where pubname = %s)",
        (PUBLICATION,),
    )


def _default_slot_name(dbname: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", f"{SUBSCRIPTION}_{dbname}".lower())[:63]


def _set_up(
    primary: _Primary,
    sconn: psycopg.Connection,
    subscriber_url: str,
    conninfo: str,
    slot_name: str | None,
    say: Callable[[str], object],
) -> None:
    pconn = primary.conn
    sub_db = one_value(sconn, "select pg_catalog.current_database()")
    _check_not_the_primary(pconn, sconn)
    _check_subscriber_role(sconn, sub_db)
    existing = _subscription(sconn)
    revision = migrate.current_on(sconn)
    if revision is not None:
        _known_revision(revision, "subscriber")
        _same_revision(revision, primary.revision, subscriber_url)
    if existing is None and revision is not None and _holds_replicated_rows(sconn):
        raise ReplicationError(
            f"the subscriber's database {sub_db!r} already holds actions of another log and"
            " no subscription: replicate into a database whose audit log is empty (the"
            " initial copy would collide with them)"
        )
    slot = existing.slot if existing else (slot_name or _default_slot_name(sub_db))
    if existing is None and _slot_exists(pconn, slot):
        raise ReplicationError(
            f"the replication slot {slot!r} already exists on the primary (another"
            " subscriber, or what a dropped subscription left): pass --slot-name NAME, or"
            f" drop it on the primary (select pg_drop_replication_slot('{slot}')) if"
            " nothing uses it"
        )

    created_publication = _ensure_publication(pconn, say)
    try:
        if revision is None:
            migrate.upgrade(subscriber_url, primary.revision)
            say(f"subscriber: audit schema installed at revision {primary.revision}")
        _ensure_own_id_range(sconn, say)
        _ensure_duplicate_guard(sconn, say)
        if existing is None:
            _create_subscription(pconn, sconn, conninfo, slot, say)
    except BaseException:
        if created_publication:
            _drop_publication(pconn)
        raise
    if existing is None:
        return
    if _unsubscribed(sconn, existing.oid):
        _subscribe_again(sconn, existing, say)
    elif not existing.enabled:
        sconn.execute(sql.SQL("alter subscription {} enable").format(sql.Identifier(existing.name)))
        say(f"subscriber: subscription {existing.name} was disabled: enabled again")
    else:
        say(
            f"replication already set up: publication {PUBLICATION} on the primary,"
            f" subscription {existing.name} on the subscriber (enabled, slot {existing.slot})"
        )


def _subscribe_again(
    sconn: psycopg.Connection, existing: _Subscription, say: Callable[[str], object]
) -> None:
    """The subscription again, on the log's tables as they are now (an upgrade replaced
    them: the apply worker maps the primary's tables to these by name, and skips, without
    a word, the changes of a table missing from pg_subscription_rel). REFRESH PUBLICATION
    would need the subscription enabled (skipping meanwhile): instead it is made again
    on the same slot, without a copy, its replication origin advanced to where the old one
    stopped, so that nothing is applied twice nor skipped."""
    name = sql.Identifier(existing.name)
    if existing.enabled:
        sconn.execute(sql.SQL("alter subscription {} disable").format(name))
        _wait_for_no_worker(sconn, existing.oid)
    conninfo, applied = one_row(
        sconn,
        "select s.subconninfo, o.remote_lsn from pg_catalog.pg_subscription s"
        " left join pg_catalog.pg_replication_origin_status o"
        "   on o.external_id = 'pg_' || s.oid"
        " where s.oid = %s",
        (existing.oid,),
    )
    sconn.execute(sql.SQL("alter subscription {} set (slot_name = none)").format(name))
    sconn.execute(sql.SQL("drop subscription {}").format(name))
    sconn.execute(
        sql.SQL(
            "create subscription {} connection {} publication {}"
            " with (create_slot = false, slot_name = {}, copy_data = false, enabled = false)"
        ).format(
            name, sql.Literal(conninfo), sql.Identifier(PUBLICATION), sql.Literal(existing.slot)
        )
    )
    made = one_value(
        sconn,
        "select oid from pg_catalog.pg_subscription where subname = %s"
        " and subdbid = (select oid from pg_catalog.pg_database"
        " where datname = pg_catalog.current_database())",
        (existing.name,),
    )
    if applied is not None:
        sconn.execute(
            "select pg_catalog.pg_replication_origin_advance('pg_' || %s, %s::pg_lsn)",
            (made, str(applied)),
        )
    sconn.execute(sql.SQL("alter subscription {} enable").format(name))
    say(
        f"subscriber: subscription {existing.name} made again on"
        f" {', '.join(PUBLISHED_TABLES)} as they are now (they were replaced since it was"
        f" made): same slot {existing.slot}, no copy, it resumes where it stopped"
    )


def _wait_for_no_worker(sconn: psycopg.Connection, subscription_oid: int) -> None:
    deadline = time.monotonic() + 60
    while one_value(
        sconn,
        "select exists (select from pg_catalog.pg_stat_subscription"
        " where subid = %s and pid is not null)",
        (subscription_oid,),
    ):
        if time.monotonic() > deadline:
            raise ReplicationError(
                "the subscription's workers did not stop within 60 s of ALTER SUBSCRIPTION"
                " ... DISABLE: run replicate again"
            )
        time.sleep(0.1)


def _check_not_the_primary(pconn: psycopg.Connection, sconn: psycopg.Connection) -> None:
    """A subscription to the same server (the same database: a loop; another database:
    CREATE SUBSCRIPTION waits for itself) is refused."""
    query = "select system_identifier from pg_catalog.pg_control_system()"
    try:
        same = one_value(pconn, query) == one_value(sconn, query)
    except psycopg.errors.InsufficientPrivilege:
        return  # not readable: CREATE SUBSCRIPTION will say what it says
    if same:
        raise ReplicationError(
            "the subscriber is on the primary's own PostgreSQL server: an audit server is a"
            " second server (--subscriber URL names it)"
        )


def _check_subscriber_role(sconn: psycopg.Connection, sub_db: str) -> None:
    version, superuser, user = one_row(
        sconn,
        "select pg_catalog.current_setting('server_version_num')::int, r.rolsuper, r.rolname"
        " from pg_catalog.pg_roles r where r.rolname = current_user",
    )
    if superuser:
        return
    if version < 160000:
        raise ReplicationError(
            f"role {user!r} is not a superuser of the subscriber: on PostgreSQL"
            f" {version // 10000} only a superuser may create a subscription (and own it:"
            " its apply worker runs as that role); from 16, a member of"
            " pg_create_subscription with CREATE on the database"
        )
    allowed = one_value(
        sconn,
        "select pg_catalog.pg_has_role(current_user, 'pg_create_subscription', 'usage')"
        " and pg_catalog.has_database_privilege(%s, 'create')",
        (sub_db,),
    )
    if not allowed:
        raise ReplicationError(
            f"role {user!r} may not create a subscription on the subscriber: grant it"
            " pg_create_subscription and CREATE on the database, or use a superuser"
        )


def _same_revision(subscriber: str, primary: str, subscriber_url: str) -> None:
    if subscriber == primary:
        return
    order = migrate.revisions()
    if order.index(subscriber) < order.index(primary):
        raise ReplicationError(
            f"the subscriber's audit schema is at revision {subscriber}, older than the"
            f" primary's {primary}: upgrade it first (audit-capture --database-url"
            f" {database.describe_url(subscriber_url)} migrate upgrade {primary}), then run"
            " replicate again"
        )
    raise ReplicationError(
        f"the subscriber's audit schema is at revision {subscriber}, newer than the"
        f" primary's {primary}: upgrade the primary to {subscriber} (audit-capture migrate"
        " upgrade), then run replicate again"
    )


@dataclass(frozen=True)
class _Subscription:
    oid: int
    name: str
    enabled: bool
    slot: str


def _subscription(sconn: psycopg.Connection) -> _Subscription | None:
    row = sconn.execute(
        "select s.oid, s.subname, s.subenabled, s.subslotname from pg_catalog.pg_subscription s"
        " join pg_catalog.pg_database d on d.oid = s.subdbid"
        " where d.datname = pg_catalog.current_database() and s.subname = %s",
        (SUBSCRIPTION,),
    ).fetchone()
    return _Subscription(*row) if row else None


def _holds_replicated_rows(sconn: psycopg.Connection) -> bool:
    """Rows below the subscriber's own id range: actions of some primary's log."""
    return one_value(
        sconn,
        "select exists (select from audit.action_log where id < %s)"
        " or exists (select from audit.action_item_chunk where action_id < %s)",
        (SUBSCRIBER_FIRST_ID, SUBSCRIBER_FIRST_ID),
    )


def _slot_exists(pconn: psycopg.Connection, slot: str) -> bool:
    return one_value(
        pconn,
        "select exists (select from pg_catalog.pg_replication_slots where slot_name = %s)",
        (slot,),
    )


def _ensure_publication(pconn: psycopg.Connection, say: Callable[[str], object]) -> bool:
    """Creates the publication, or puts back its tables and options; True when created."""
    tables = sql.SQL(", ").join(sql.Identifier(*t.split(".")) for t in PUBLISHED_TABLES)
    options = sql.SQL("publish = {}, publish_via_partition_root = true").format(
        sql.Literal(PUBLISH)
    )
    name = sql.Identifier(PUBLICATION)
    described = (
        f"publication {PUBLICATION} ({', '.join(PUBLISHED_TABLES)}; {PUBLISH} only,"
        " via the partition root)"
    )
    row = pconn.execute(
        "select p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate,"
        " p.pubviaroot, array(select r.prrelid::regclass::text from pg_catalog.pg_publication_rel r"
        " where r.prpubid = p.oid order by 1), p.pubowner::regrole::text"
        " from pg_catalog.pg_publication p where p.pubname = %s",
        (PUBLICATION,),
    ).fetchone()
    if row is None:
        pconn.execute(
            sql.SQL("create publication {} for table {} with ({})").format(name, tables, options)
        )
        say(f"primary: {described} created")
        _give_publication_to_audit_owner(pconn, say)
        return True
    all_tables, insert, update, delete, truncate, via_root, published, owner = row
    if owner != "audit_owner" and one_value(
        pconn, "select rolsuper from pg_catalog.pg_roles where rolname = current_user"
    ):
        _give_publication_to_audit_owner(pconn, say)
    if all_tables:
        raise ReplicationError(
            f"the primary's publication {PUBLICATION} publishes all tables: drop it (it is not"
            " the one replicate makes), then run replicate again"
        )
    if (insert, update, delete, truncate, via_root) != (True, True, False, False, True) or sorted(
        published
    ) != sorted(PUBLISHED_TABLES):
        with pconn.transaction():
            pconn.execute(sql.SQL("alter publication {} set table {}").format(name, tables))
            pconn.execute(sql.SQL("alter publication {} set ({})").format(name, options))
        say(f"primary: {described} put back as replicate makes it")
    return False


def _give_publication_to_audit_owner(
    pconn: psycopg.Connection, say: Callable[[str], object]
) -> None:
    """The publication belongs to audit_owner, like the tables it publishes, so that an
    upgrade (triggers/16_replication.sql, run as audit_owner) can move it onto tables
    that replace them, in the upgrade's own transaction."""
    try:
        with pconn.transaction():
            pconn.execute(
                sql.SQL("alter publication {} owner to audit_owner").format(
                    sql.Identifier(PUBLICATION)
                )
            )
    except psycopg.errors.InsufficientPrivilege:
        say(
            f"primary: note: the publication stays owned by {pconn.info.user!r}"
            " (only a superuser may give it to audit_owner): run upgrades of the audit"
            " schema as that role"
        )


def _drop_publication(pconn: psycopg.Connection) -> None:
    pconn.execute(sql.SQL("drop publication if exists {}").format(sql.Identifier(PUBLICATION)))


def _ensure_own_id_range(sconn: psycopg.Connection, say: Callable[[str], object]) -> None:
    """The subscriber's own actions draw ids from SUBSCRIBER_FIRST_ID up."""
    if own_id_range_ok(sconn):
        return
    sconn.execute(
        sql.SQL(
            "alter table audit.action_log alter column id set minvalue {0} set start {0} restart"
        ).format(sql.Literal(SUBSCRIBER_FIRST_ID))
    )
    say(f"subscriber: its own actions take ids from {SUBSCRIBER_FIRST_ID:,} up")


#: The audit server's triggers that skip a row it holds already (16_replication.sql)
DUPLICATE_GUARDS = (
    ("audit.action_log", "action_log_skip_replicated", "audit.skip_replicated_action"),
    (
        "audit.action_item_chunk",
        "action_item_chunk_skip_replicated",
        "audit.skip_replicated_chunk",
    ),
)


def duplicate_guards_missing(conn: psycopg.Connection) -> list[str] | None:
    """The log's tables without their ENABLE ALWAYS duplicate guard; None where the
    installed revision has no such function (older than 16_replication.sql's)."""
    if not one_value(conn, "select to_regprocedure('audit.skip_replicated_action()') is not null"):
        return None
    return [
        table
        for table, trigger, _ in DUPLICATE_GUARDS
        if not one_value(
            conn,
            "select exists (select from pg_catalog.pg_trigger t"
            " where t.tgrelid = pg_catalog.to_regclass(%s) and t.tgname = %s"
            " and t.tgenabled = 'A')",
            (table, trigger),
        )
    ]


def _ensure_duplicate_guard(sconn: psycopg.Connection, say: Callable[[str], object]) -> None:
    if not duplicate_guards_missing(sconn):
        return
    with sconn.transaction():
        for table, trigger, function in DUPLICATE_GUARDS:
            target = sql.Identifier(*table.split("."))
            name = sql.Identifier(trigger)
            sconn.execute(
                sql.SQL(
                    "create or replace trigger {} before insert on {}"
                    " for each row execute function {}()"
                ).format(name, target, sql.Identifier(*function.split(".")))
            )
            sconn.execute(sql.SQL("alter table {} enable always trigger {}").format(target, name))
    say(
        "subscriber: a replicated row it holds already is skipped, not an error"
        " (audit.maintain() on the primary may send rows of its default partitions again)"
    )


def own_id_range_ok(conn: psycopg.Connection) -> bool:
    """True when the identity of audit.action_log starts at SUBSCRIBER_FIRST_ID or later."""
    minimum = one_value(
        conn,
        "select s.min_value from pg_catalog.pg_sequences s"
        " where pg_catalog.format('%I.%I', s.schemaname, s.sequencename)"
        " = pg_catalog.pg_get_serial_sequence('audit.action_log', 'id')",
    )
    return minimum is not None and minimum >= SUBSCRIBER_FIRST_ID


def _create_subscription(
    pconn: psycopg.Connection,
    sconn: psycopg.Connection,
    conninfo: str,
    slot: str,
    say: Callable[[str], object],
) -> None:
    try:
        sconn.execute(
            sql.SQL(
                "create subscription {} connection {} publication {}"
                " with (copy_data = true, slot_name = {})"
            ).format(
                sql.Identifier(SUBSCRIPTION),
                sql.Literal(conninfo),
                sql.Identifier(PUBLICATION),
                sql.Literal(slot),
            )
        )
    except psycopg.Error as exc:
        left = _slot_exists(pconn, slot)
        if left:  # created on the primary before the subscriber's transaction failed
            try:
                pconn.execute("select pg_catalog.pg_drop_replication_slot(%s)", (slot,))
                left = False
            except psycopg.Error:
                pass
        reason = _one_line(exc)
        tail = (
            f"; the slot {slot!r} it made on the primary could not be dropped: drop it there"
            if left
            else ""
        )
        raise ReplicationError(
            f"the subscriber could not subscribe to the primary at"
            f" {database.describe_url(conninfo)!r}: {reason} (--primary-conninfo is how the"
            f" SUBSCRIBER's server reaches the primary){tail}"
        ) from None
    say(
        f"subscriber: subscription {SUBSCRIPTION} created (slot {slot} on the primary);"
        " existing actions are being copied: audit-capture status on the subscriber shows"
        " when its tables are ready"
    )


def _one_line(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) if diag is not None else None
    text = message or str(exc)
    return " ".join(text.split())


# -- status ------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotStatus:
    """A logical replication slot of the primary's database."""

    name: str
    active: bool
    lag_bytes: int | None  # pg_current_wal_lsn() - confirmed_flush_lsn
    lag_seconds: float | None  # pg_stat_replication.replay_lag (needs pg_monitor)
    lag_seconds_hidden: bool  # pg_stat_replication's details hidden from this role
    retained_bytes: int | None  # pg_current_wal_lsn() - restart_lsn
    wal_status: str | None  # reserved, extended, unreserved, lost


@dataclass(frozen=True)
class PublicationStatus:
    name: str
    tables: tuple[str, ...]
    publishes: str  # "insert, update"
    via_root: bool
    max_slot_wal_keep_size: str  # "-1" (unlimited) or e.g. "10GB"
    slots: tuple[SlotStatus, ...]


@dataclass(frozen=True)
class SubscriptionStatus:
    name: str
    enabled: bool
    slot: str | None
    worker_running: bool
    tables: tuple[tuple[str, str], ...]  # (table, state: ready, copying, ...)
    last_message_seconds: float | None  # since the primary's last message
    apply_errors: int | None
    sync_errors: int | None
    own_id_range: bool
    # the log's tables without the duplicate guard (None: not in this revision)
    unguarded: tuple[str, ...] | None = None
    # the log's tables that the subscription does not apply to (a table replaced since
    # the subscription was made: PostgreSQL skips its changes without a word)
    unsubscribed: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplicationStatus:
    publication: PublicationStatus | None = None
    subscription: SubscriptionStatus | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.warnings


_TABLE_STATES = {
    "i": "initializing",
    "d": "copying",
    "f": "copied",
    "s": "synchronized",
    "r": "ready",
}


def read_status(
    conn: psycopg.Connection, wal_warning: int = DEFAULT_WAL_WARNING
) -> ReplicationStatus | None:
    """The replication state seen from ``conn``'s database (reads only); None when it
    neither publishes nor subscribes to the log."""
    publication = _publication_status(conn)
    subscription = _subscription_status(conn)
    if publication is None and subscription is None:
        return None
    warnings: list[str] = []
    if publication is not None:
        warnings += _publication_warnings(publication, wal_warning)
    if subscription is not None:
        warnings += _subscription_warnings(subscription)
    return ReplicationStatus(publication, subscription, tuple(warnings))


def _publication_status(conn: psycopg.Connection) -> PublicationStatus | None:
    row = conn.execute(
        "select p.pubname, array(select r.prrelid::regclass::text"
        " from pg_catalog.pg_publication_rel r where r.prpubid = p.oid order by 1),"
        " pg_catalog.concat_ws(', ', case when p.pubinsert then 'insert' end,"
        " case when p.pubupdate then 'update' end, case when p.pubdelete then 'delete' end,"
        " case when p.pubtruncate then 'truncate' end), p.pubviaroot"
        " from pg_catalog.pg_publication p where p.pubname = %s",
        (PUBLICATION,),
    ).fetchone()
    if row is None:
        return None
    name, tables, publishes, via_root = row
    keep = one_value(conn, "select pg_catalog.current_setting('max_slot_wal_keep_size')")
    in_recovery = one_value(conn, "select pg_catalog.pg_is_in_recovery()")
    current = "pg_catalog.pg_current_wal_lsn()" if not in_recovery else "null::pg_lsn"
    hidden = not one_value(
        conn, "select pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'usage')"
    )
    slots = tuple(
        SlotStatus(
            name=slot_name,
            active=active,
            lag_bytes=None if lag is None else int(lag),
            lag_seconds=None if seconds is None else float(seconds),
            lag_seconds_hidden=hidden,
            retained_bytes=None if retained is None else int(retained),
            wal_status=wal_status,
        )
        for slot_name, active, lag, seconds, retained, wal_status in conn.execute(
            sql.SQL(
                "select s.slot_name::text, s.active,"
                " pg_catalog.pg_wal_lsn_diff({current}, s.confirmed_flush_lsn),"
                " extract(epoch from r.replay_lag),"
                " pg_catalog.pg_wal_lsn_diff({current}, s.restart_lsn), s.wal_status"
                " from pg_catalog.pg_replication_slots s"
                " left join pg_catalog.pg_stat_replication r on r.pid = s.active_pid"
                " where s.slot_type = 'logical'"
                " and s.database = pg_catalog.current_database() order by 1"
            ).format(current=sql.SQL(current))
        )
        if not _SYNC_SLOT.match(slot_name)
    )
    return PublicationStatus(name, tuple(tables), publishes, via_root, keep, slots)


def _publication_warnings(publication: PublicationStatus, wal_warning: int) -> list[str]:
    warnings = []
    if publication.publishes != PUBLISH or not publication.via_root:
        warnings.append(
            f"publication {publication.name} publishes {publication.publishes or 'nothing'}"
            f"{'' if publication.via_root else ' per partition'}: replicate makes it"
            f" '{PUBLISH}' via the partition root (run audit-capture replicate again);"
            " a published delete or truncate reaches the audit server"
        )
    if sorted(publication.tables) != sorted(PUBLISHED_TABLES):
        warnings.append(
            f"publication {publication.name} publishes"
            f" {', '.join(publication.tables) or 'no table'}, not"
            f" {', '.join(PUBLISHED_TABLES)}: rows of the log's tables as they are now do not"
            " reach the audit server (run audit-capture replicate again)"
        )
    unlimited = publication.max_slot_wal_keep_size in ("-1", "")
    for slot in publication.slots:
        if slot.wal_status == "lost":
            warnings.append(
                f"slot {slot.name} lost WAL it needed (past max_slot_wal_keep_size ="
                f" {publication.max_slot_wal_keep_size}): its subscriber can no longer catch"
                " up; see the README (Audit server) to set it up again"
            )
        elif slot.retained_bytes is not None and slot.retained_bytes > wal_warning:
            risk = (
                "max_slot_wal_keep_size is unlimited (-1): the primary keeps WAL until the"
                " subscriber returns or its disk is full"
                if unlimited
                else f"past max_slot_wal_keep_size = {publication.max_slot_wal_keep_size} the"
                " slot is invalidated and the subscriber must be set up again"
            )
            warnings.append(
                f"slot {slot.name} retains {format_size(slot.retained_bytes)} of WAL (above"
                f" {format_size(wal_warning)}; the subscriber is"
                f" {'behind' if slot.active else 'not connected'}): {risk}"
            )
    return warnings


def _subscription_status(conn: psycopg.Connection) -> SubscriptionStatus | None:
    row = conn.execute(
        "select s.oid, s.subname, s.subenabled, s.subslotname,"
        " exists (select from pg_catalog.pg_stat_subscription w"
        "         where w.subid = s.oid and w.relid is null and w.pid is not null),"
        " (select extract(epoch from pg_catalog.now() - max(w.last_msg_receipt_time))"
        "  from pg_catalog.pg_stat_subscription w where w.subid = s.oid and w.relid is null),"
        " e.apply_error_count, e.sync_error_count"
        " from pg_catalog.pg_subscription s"
        " join pg_catalog.pg_database d on d.oid = s.subdbid"
        " left join pg_catalog.pg_stat_subscription_stats e on e.subid = s.oid"
        " where d.datname = pg_catalog.current_database() and %s = any (s.subpublications)"
        " order by s.subname limit 1",
        (PUBLICATION,),
    ).fetchone()
    if row is None:
        return None
    oid, name, enabled, slot, running, last_message, apply_errors, sync_errors = row
    unguarded = duplicate_guards_missing(conn)
    tables = tuple(
        (str(table), _TABLE_STATES.get(state) or str(state))
        for table, state in conn.execute(
            "select r.srrelid::regclass::text, r.srsubstate::text"
            " from pg_catalog.pg_subscription_rel r where r.srsubid = %s order by 1",
            (oid,),
        )
    )
    return SubscriptionStatus(
        name=name,
        enabled=enabled,
        slot=slot,
        worker_running=running,
        tables=tables,
        last_message_seconds=None if last_message is None else float(last_message),
        apply_errors=apply_errors,
        sync_errors=sync_errors,
        own_id_range=own_id_range_ok(conn),
        unsubscribed=tuple(_unsubscribed(conn, oid)),
        unguarded=None if unguarded is None else tuple(unguarded),
    )


def _unsubscribed(conn: psycopg.Connection, subscription_oid: int) -> list[str]:
    """The log's tables (by their names now) missing from the subscription's tables."""
    return [
        table
        for (table,) in conn.execute(
            "select t from unnest(%s::text[]) t where not exists (select"
            " from pg_catalog.pg_subscription_rel r where r.srsubid = %s"
            " and r.srrelid = pg_catalog.to_regclass(t))",
            (list(PUBLISHED_TABLES), subscription_oid),
        )
    ]


def _subscription_warnings(subscription: SubscriptionStatus) -> list[str]:
    warnings = []
    name = subscription.name
    if not subscription.enabled:
        warnings.append(
            f"subscription {name} is disabled: nothing arrives, and the primary's slot keeps"
            f" WAL meanwhile (ALTER SUBSCRIPTION {name} ENABLE)"
        )
    elif not subscription.worker_running:
        warnings.append(
            f"subscription {name} has no running apply worker: the primary is unreachable"
            " or applying fails (the subscriber's server log says why)"
        )
    if subscription.unsubscribed:
        warnings.append(
            f"subscription {name} does not apply to {', '.join(subscription.unsubscribed)}"
            " (replaced since it was made, as a schema upgrade does): PostgreSQL skips their"
            " changes without an error; disable it and run audit-capture replicate again"
            " (README, Audit server: upgrades)"
        )
    if subscription.unguarded:
        warnings.append(
            f"{', '.join(subscription.unguarded)} on this server would stop replication on a"
            " row the primary sends again (audit.maintain() moving rows of several months):"
            " run audit-capture replicate again (it adds the guard)"
        )
    if not subscription.own_id_range:
        warnings.append(
            f"this server's own actions would take ids below {SUBSCRIBER_FIRST_ID:,}, the"
            " primary's range: run audit-capture replicate again (it moves them up)"
        )
    return warnings
