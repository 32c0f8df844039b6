"""``audit-capture archive load FILE [--schema NAME]``: an archived month back in
PostgreSQL for an investigation, the rows as they were (every column, every chunk).

Two places to load into:

* ``--schema NAME`` (default ``audit_archive``): plain tables ``NAME.action_log`` and
  ``NAME.action_item_chunk`` with the log's columns, types and checks (``LIKE``, so the
  database needs the audit schema for its types), indexes for reading (id, time, actor;
  chunks by action), SELECT granted to audit_reader. For SQL.
* ``--schema audit``: the audit schema of ANOTHER database, installed with
  ``audit-capture migrate upgrade`` (its partitions and indexes, ``audit.action_items()``):
  the viewer, pointed at that database, shows the month unchanged. Refused in the
  database the archive came from (its live log), and needs a role that may insert into
  the log (a superuser, or a member of audit_owner).

Several months may go into one place; a month whose actions (or ids) the tables hold
already is refused. The file is verified against its manifest before anything is
loaded, hashed again while it is loaded (a file changed in between is refused), and the
counts loaded must equal the manifest's: all or nothing, in one transaction.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from audit_capture.archive import manifest as manifests
from audit_capture.archive import source
from audit_capture.archive.errors import ArchiveError
from audit_capture.archive.month import Month
from audit_capture.archive.verify import Inflater, check_manifest_file
from audit_capture.database import one_row, one_value

DEFAULT_SCHEMA = "audit_archive"
AUDIT_SCHEMA = "audit"

# the plain tables' indexes for reading (the audit schema has its own)
READING_INDEXES = (
    "create unique index if not exists action_log_id_idx on {schema}.action_log (id)",
    "create index if not exists action_log_occurred_at_idx"
    " on {schema}.action_log (occurred_at desc, id desc)",
    "create index if not exists action_log_actor_idx"
    " on {schema}.action_log (actor_id, occurred_at desc)",
    "create index if not exists action_log_resource_idx"
    " on {schema}.action_log (resource_type, resource_id, occurred_at desc)",
    "create unique index if not exists action_item_chunk_action_idx"
    " on {schema}.action_item_chunk (action_id, first_item)",
)


@dataclass(frozen=True)
class LoadOutcome:
    month: Month
    schema: str
    actions: int
    chunks: int
    items: int


def resolve(path: Path | str) -> tuple[Path, Month]:
    """The manifest of FILE (the data file or the manifest itself) and its month."""
    path = Path(path)
    name = path.name
    for suffix in (manifests.DATA_SUFFIX, manifests.MANIFEST_SUFFIX):
        if name.startswith(manifests.PREFIX) and name.endswith(suffix):
            try:
                month = Month.parse(name[len(manifests.PREFIX) : -len(suffix)])
            except ArchiveError:
                break
            return path.with_name(manifests.manifest_name(month)), month
    raise ArchiveError(
        f"{path}: not an archive file (expected {manifests.PREFIX}YYYY-MM{manifests.DATA_SUFFIX}"
        f" or its {manifests.MANIFEST_SUFFIX})"
    )


def load(conn: psycopg.Connection, path: Path | str, schema: str = DEFAULT_SCHEMA) -> LoadOutcome:
    """Load the archived month of ``path`` into ``schema`` (module docstring), in one
    transaction of ``conn``, committed at the end; ArchiveError (nothing loaded) when
    the file does not match its manifest or the target is refused."""
    manifest_path, month = resolve(path)
    checked = check_manifest_file(manifest_path)
    if not checked.ok:
        raise ArchiveError(f"{checked.problem}: refused, nothing loaded")
    manifest = checked.manifest
    assert manifest is not None
    data_path = manifest_path.parent / manifest["file"]
    if not schema or schema.strip() != schema:
        raise ArchiveError(f"--schema is {schema!r}; expected a schema name")
    conn.rollback()
    try:
        with conn.transaction():
            conn.execute("select set_config('search_path', 'pg_catalog, pg_temp', true)")
            conn.execute("select set_config('TimeZone', 'UTC', true)")
            conn.execute("select set_config('client_encoding', 'UTF8', true)")
            if one_value(conn, "select to_regclass('audit.action_log') is null"):
                raise ArchiveError(
                    "this database has no audit schema (the archive's tables take its types):"
                    " install it first with audit-capture migrate upgrade"
                )
            if schema == AUDIT_SCHEMA:
                _prepare_audit_target(conn, manifest, month)
            else:
                _prepare_plain_target(conn, schema)
            _check_columns(conn, schema, manifest)
            _refuse_overlap(conn, schema, manifest, month)
            outcome = _copy_in(conn, data_path, schema, manifest, month)
            if schema == AUDIT_SCHEMA:
                _advance_identity(conn)
            else:
                for statement in READING_INDEXES:
                    conn.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))
                _grant_to_readers(conn, schema)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ArchiveError(
            f"cannot load into schema {schema}: {exc.diag.message_primary}"
        ) from None
    return outcome


def _prepare_audit_target(conn: psycopg.Connection, manifest: dict[str, Any], month: Month):
    identity = source.source_identity(conn)
    theirs = manifest["source"]
    if (
        identity["system_identifier"] is not None
        and theirs.get("system_identifier") == identity["system_identifier"]
        and theirs.get("database") == identity["database"]
    ):
        raise ArchiveError(
            f"database {identity['database']!r} is the one the archive came from: its audit"
            " schema is the live log. Load into the audit schema of another database, or"
            " into a separate schema (--schema audit_archive)"
        )
    may_insert = one_value(
        conn,
        "select has_table_privilege('audit.action_log', 'INSERT')"
        " and has_table_privilege('audit.action_item_chunk', 'INSERT')",
    )
    if not may_insert:
        raise ArchiveError(
            "loading into the audit schema needs a role that may insert into the log:"
            " a superuser, or a member of audit_owner"
        )
    # the month's own partitions, where the installed schema prepares them (revision 0003)
    if one_value(
        conn, "select to_regprocedure('audit.prepare_partitions(date, date)') is not null"
    ):
        conn.execute(
            "select audit.prepare_partitions(%(month)s, %(month)s)",
            {"month": month.start.date()},
        )


def _prepare_plain_target(conn: psycopg.Connection, schema: str) -> None:
    owner = one_value(
        conn,
        "select (select pg_get_userbyid(nspowner) from pg_namespace where nspname = %s)",
        (schema,),
    )
    if owner is None:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    elif owner != one_value(conn, "select current_user"):
        raise ArchiveError(
            f"schema {schema} exists and belongs to {owner}: load into a schema of your own"
            " (a new name is created)"
        )
    for table in ("action_log", "action_item_chunk"):
        kind, table_owner = one_row(
            conn,
            "select c.relkind::text, pg_get_userbyid(c.relowner) from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relname = %s"
            " union all select null, null limit 1",
            (schema, table),
        )
        if kind is None:
            conn.execute(
                sql.SQL(
                    "create table {target} (like {source} including all"
                    " excluding identity excluding indexes)"
                ).format(
                    target=sql.Identifier(schema, table),
                    source=sql.Identifier(AUDIT_SCHEMA, table),
                )
            )
        elif kind != "r" or table_owner != one_value(conn, "select current_user"):
            raise ArchiveError(
                f"{schema}.{table} exists and is not a plain table of yours: load into"
                " another schema"
            )


def _check_columns(conn: psycopg.Connection, schema: str, manifest: dict[str, Any]) -> None:
    """Every archived column has a column of the same name to go to (a column the
    target has more, added by a later revision, stays null)."""
    for table, archived in manifest["columns"].items():
        target = {name for name, _type in source.columns(conn, f"{schema}.{table}")}
        missing = [name for name in archived if name not in target]
        if missing:
            raise ArchiveError(
                f"{schema}.{table} has no column {', '.join(missing)} of the archive:"
                " load into a schema made by this audit-capture"
            )


def _refuse_overlap(
    conn: psycopg.Connection, schema: str, manifest: dict[str, Any], month: Month
) -> None:
    query = sql.SQL(
        "select exists (select from {} where (occurred_at >= %(start)s and occurred_at < %(end)s)"
        " or id between %(first)s and %(last)s)"
    ).format(sql.Identifier(schema, "action_log"))
    params = {**source.bounds(month), "first": manifest["first_id"], "last": manifest["last_id"]}
    if one_value(conn, query, params):
        raise ArchiveError(
            f"{schema}.action_log already holds actions of {month} (or ids"
            f" {manifest['first_id']}-{manifest['last_id']}): nothing loaded"
        )


def _copy_in(
    conn: psycopg.Connection,
    data_path: Path,
    schema: str,
    manifest: dict[str, Any],
    month: Month,
) -> LoadOutcome:
    conn.execute("create temp table archive_line (line text not null) on commit drop")
    # CSV with a delimiter and a quote that JSON text never holds raw (control
    # characters are escaped in JSON): each line arrives as it is, backslashes included
    copy_sql = (
        "copy archive_line (line) from stdin with (format csv, delimiter E'\\x01', quote E'\\x02')"
    )
    with conn.cursor().copy(copy_sql) as copy, open(data_path, "rb") as raw:
        reader = Inflater(raw)
        try:
            for piece in reader:
                copy.write(piece)
        except zlib.error:
            reader.finish()
    if reader.sha.hexdigest() != manifest["sha256"] or not reader.ended:
        raise ArchiveError(f"{data_path} changed while it was loaded: refused, nothing loaded")
    log_table = sql.Identifier(schema, "action_log")
    chunk_table = sql.Identifier(schema, "action_item_chunk")
    overriding = sql.SQL("overriding system value" if schema == AUDIT_SCHEMA else "")
    actions = conn.execute(
        sql.SQL(
            "insert into {table} {overriding} select r.* from archive_line a,"
            " json_populate_record(null::{table}, a.line::json) r order by r.id"
        ).format(table=log_table, overriding=overriding)
    ).rowcount
    chunks = conn.execute(
        sql.SQL(
            "insert into {table} select r.* from archive_line a,"
            " json_populate_recordset(null::{table}, a.line::json -> 'item_chunks') r"
            " where a.line not like %s"
        ).format(table=chunk_table),
        ('%,"item_chunks":[]}',),
    ).rowcount
    items = one_value(
        conn,
        sql.SQL(
            "select coalesce(sum(c.item_count), 0)::bigint from {chunks} c"
            " where c.action_id in (select id from {log} where occurred_at >= %(start)s"
            " and occurred_at < %(end)s)"
        ).format(chunks=chunk_table, log=log_table),
        source.bounds(month),
    )
    found = {"actions": actions, "chunks": chunks, "items": items}
    wrong = [
        f"{name} {found[name]:,} against {manifest[name]:,}"
        for name in found
        if found[name] != manifest[name]
    ]
    if wrong:
        raise ArchiveError(
            f"{data_path}: loaded {'; '.join(wrong)} in the manifest: refused, nothing loaded"
        )
    return LoadOutcome(month, schema, actions, chunks, items)


def _advance_identity(conn: psycopg.Connection) -> None:
    """The log's identity goes past the loaded ids (a later insert never collides)."""
    conn.execute(
        "select setval(x.seq, x.top) from (select"
        " pg_get_serial_sequence('audit.action_log', 'id')::regclass as seq,"
        " (select max(id) from audit.action_log) as top) x"
        " where x.top > coalesce(pg_sequence_last_value(x.seq), 0)"
    )


def _grant_to_readers(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(
        sql.SQL(
            "grant usage on schema {schema} to audit_reader;"
            " grant select on {log}, {chunks} to audit_reader"
        ).format(
            schema=sql.Identifier(schema),
            log=sql.Identifier(schema, "action_log"),
            chunks=sql.Identifier(schema, "action_item_chunk"),
        )
    )
