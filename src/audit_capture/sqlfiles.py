"""Running the SQL files that make up the audit schema, and each revision's in a migration.

``triggers/*.sql`` is the current SQL: one state file per concern, each idempotent
(``create or replace``, ``if not exists``), run in lexical filename order;
``uninstall.sql`` is never part of an install and is what a downgrade to base runs.
Which files a revision of the package's chain runs is ``revisions``' job:
upgrade(rev) runs its upgrade file first, then every resolved state file;
downgrade(rev) runs the previous revision's resolved state files, then its downgrade
file; the baseline's downgrade runs its ``uninstall.sql``. Before either, a revision's
``upgrade_concurrently/<rev>.sql`` (``downgrade_concurrently/``) runs outside the
migration's transaction, one statement at a time, as ``audit_owner``: CREATE INDEX
CONCURRENTLY on the live log does not block its writes (``run_concurrently``).

The files hold plpgsql ``$$`` bodies, ``%`` format placeholders and ``:name``-like
text, so they go to the server verbatim through psycopg without parameters (psycopg 3
then uses the simple query protocol, which accepts many statements in one string).
They never go through SQLAlchemy ``text()``, which would read ``:name`` as a bind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from audit_capture import resources
from audit_capture.revisions import UNINSTALL_FILE, Chain, ConcurrentStatement, Direction

VERSION_TABLE_FILE = "version_table.sql"
# set by migrations/env.py when migrate owns the connection (no caller's transaction
# around it): the revision may then leave the transaction (autocommit_block())
AUTOCOMMIT_OPTION = "audit_capture_autocommit"
SCHEMA_OWNER = "audit_owner"

log = logging.getLogger(__name__)


def install_files(folder: Path) -> list[Path]:
    """The ``.sql`` files of ``folder`` that an install runs, in the order it runs them."""
    return sorted(
        (path for path in folder.glob("*.sql") if path.name != UNINSTALL_FILE),
        key=lambda path: path.name,
    )


# -- running SQL ----------------------------------------------------------------------


def execute_sql(conn: psycopg.Connection, sql_text: str) -> None:
    """Run a whole SQL script (many statements) on ``conn``, inside its transaction."""
    conn.execute(sql_text, prepare=False)


def execute_file(conn: psycopg.Connection, path: Path) -> None:
    try:
        execute_sql(conn, path.read_text(encoding="utf-8"))
    except psycopg.Error as exc:
        exc.add_note(f"while running {path}")
        raise


def install(conn: psycopg.Connection, files: list[Path] | None = None) -> list[Path]:
    """Run ``files`` (default: the current ``triggers/``) on ``conn``.

    Does not commit. Returns the files it ran.
    """
    files = install_files(resources.triggers_dir()) if files is None else files
    for path in files:
        execute_file(conn, path)
    restore_role(conn)
    return files


def uninstall(conn: psycopg.Connection, folder: Path | None = None) -> None:
    """Run ``uninstall.sql`` of ``folder`` (default: the current ``triggers/``)."""
    execute_file(conn, (folder or resources.triggers_dir()) / UNINSTALL_FILE)
    restore_role(conn)


def restore_role(conn: psycopg.Connection) -> None:
    """Undo a ``set local role`` left by the SQL files (they create objects as the
    audit schema's owner), so the rest of the transaction runs as the caller again."""
    conn.execute("reset role")


def version_table_file() -> Path:
    """``migrations/version_table.sql``: run after each SQL file of a revision."""
    return resources.migrations_dir() / VERSION_TABLE_FILE


def give_version_table_to_schema_owner(conn: psycopg.Connection) -> None:
    """Make ``audit.alembic_version`` belong to the audit schema's owner and readable by
    the audit roles (``migrations/version_table.sql`` says why)."""
    execute_file(conn, version_table_file())


# -- inside an Alembic revision ------------------------------------------------------


def _running_chain() -> Chain:
    """The chain Alembic is running (the package's, or a test's copy)."""
    from alembic import context

    return Chain(Path(context.script.dir))


def upgrade(revision: str) -> None:
    """A revision's upgrade(): ``upgrade_concurrently/<revision>.sql`` if any (outside
    the transaction), ``upgrade/<revision>.sql`` if any, then every resolved state file
    of ``revision``."""
    chain = _running_chain()
    outside = run_concurrently(chain, revision, "upgrade")
    explicit = chain.upgrade_file(revision)
    try:
        _run_in_migration(
            ([explicit] if explicit.is_file() else []) + chain.install_files(revision), chain
        )
    except Exception as exc:
        if outside:
            exc.add_note(
                f"{outside} ran before, outside the transaction: what it did stays done "
                f"(revision {revision} is not applied); run the upgrade again to finish it"
            )
        raise


def downgrade(revision: str) -> None:
    """A revision's downgrade(): ``downgrade_concurrently/<revision>.sql`` if any
    (outside the transaction), the previous revision's resolved state files, then
    ``downgrade/<revision>.sql`` if any; for the baseline, its ``uninstall.sql``."""
    chain = _running_chain()
    down = chain.parents[revision]
    if down is None:
        _uninstall_in_migration(chain.uninstall_file(revision), chain)
        return
    run_concurrently(chain, revision, "downgrade")
    explicit = chain.downgrade_file(revision)
    _run_in_migration(chain.install_files(down) + ([explicit] if explicit.is_file() else []), chain)


def run_concurrently(chain: Chain, revision: str, direction: Direction) -> str | None:
    """Run ``revision``'s ``<direction>_concurrently/<revision>.sql``, if it has one,
    outside the migration's transaction: the transaction so far is committed
    (Alembic's ``autocommit_block()``), then each statement runs on its own in
    autocommit, as ``audit_owner`` (the owner of the log builds its indexes). Before a
    ``create index concurrently if not exists <name>``, an index of that name that a
    failed concurrent build left INVALID is dropped (``if not exists`` would keep it).

    Offline (``--sql``) it prints the same, between a COMMIT and a BEGIN, for psql.
    On a caller's connection already in a transaction nothing can leave it: the file
    is skipped, with a warning naming the lock, and the transactional part (the upgrade
    or downgrade file and the state files, which must do the same work) does it all;
    INVALID indexes of the file's names are dropped in the transaction first.

    Returns the file's name when its statements ran (online, outside the transaction).
    """
    from alembic import context, op

    path = chain.concurrent_file(revision, direction)
    statements = chain.concurrent_statements(revision, direction)
    if not statements:
        return None
    name = path.relative_to(chain.root).as_posix()
    migration = op.get_context()
    if context.is_offline_mode():
        with migration.autocommit_block():
            _print_concurrently(migration.impl.static_output, name, statements)
        return None
    if not migration.opts.get(AUTOCOMMIT_OPTION):
        tables = sorted({statement.index[1] for statement in statements if statement.index})
        drops = any(statement.drops_index for statement in statements)
        log.warning(
            "revision %s: the connection is already in a transaction, so %s cannot run "
            "(CREATE INDEX CONCURRENTLY runs outside a transaction): its indexes are built "
            "inside the transaction instead, which holds a SHARE lock on %s%s and blocks "
            "every INSERT, UPDATE and DELETE of every tracked table (their audited writes) "
            "until it commits.%s To build them without blocking writes, run `audit-capture "
            "migrate %s` (or migrate.%s(url, ...)) on a connection of its own.",
            revision,
            name,
            ", ".join(tables) or "the tables it indexes",
            " (ACCESS EXCLUSIVE, which blocks reads too, where it drops an index)" if drops else "",
            " The work of its other statements is done in the transaction too, under its "
            "locks, however long it takes (the scan that validates a constraint, for one)."
            if any(statement.other for statement in statements)
            else "",
            direction,
            direction,
        )
        conn = _driver_connection()
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(SCHEMA_OWNER)))
        for statement in statements:
            if statement.index:
                for index, table, _text in _per_partition(conn, statement):
                    _drop_invalid_index(conn, index, table, concurrently=False)
        restore_role(conn)
        return None
    with migration.autocommit_block(), _warnings_logged(_driver_connection()):
        conn = _driver_connection()
        assert conn.autocommit, "autocommit_block() left a transaction open"
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(SCHEMA_OWNER)))
        try:
            for statement in statements:
                builds = (
                    _per_partition(conn, statement)
                    if statement.index
                    else [("", "", statement.text.strip())]
                )
                for index, table, text in builds:
                    if index:
                        _drop_invalid_index(conn, index, table, concurrently=True)
                    try:
                        conn.execute(text, prepare=False)
                    except psycopg.Error as exc:
                        exc.add_note(f"while running {path}, line {statement.line}")
                        raise
        finally:
            conn.execute("reset role")
    return name


# The leaf partitions of a partitioned table (none for another table)
_LEAVES = """
select n.nspname, c.relname
from pg_catalog.pg_partition_tree(pg_catalog.to_regclass(%s)) t
join pg_catalog.pg_class c on c.oid = t.relid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where t.isleaf and c.relkind = 'r'
order by c.relname
"""


def _per_partition(
    conn: psycopg.Connection, statement: ConcurrentStatement
) -> list[tuple[str, str, str]]:
    """(index name, schema-qualified table, statement) of each build that a ``create
    index concurrently if not exists <name> on <schema>.<table> ...`` makes: itself, or
    on a PARTITIONED table (whose index CREATE INDEX CONCURRENTLY cannot build) the same
    index on each of its leaf partitions, one at a time, under the name PostgreSQL gives
    a partition's index when it creates the partitioned one (``_partition_index_name()``:
    an upgraded log's partitions then have the indexes, names included, of a fresh
    install's; ``_index_column_names()``). The state file's ``create index if not exists
    <name> on <table>`` finds them, valid and of the same definition, and attaches them
    to the partitioned index instead of building (under its lock: the catalog only). A
    partition created meanwhile gets its index from the partitioned one.
    """
    assert statement.index is not None
    name, table = statement.index
    text = statement.text.strip()
    row = conn.execute(
        "select c.relkind from pg_catalog.pg_class c where c.oid = pg_catalog.to_regclass(%s)",
        (table,),
    ).fetchone()
    if row is None or row[0] != "p":
        return [(name, table, text)]
    target = _index_target(name, table)
    try:
        columns = _index_column_names(conn, target, text, table)
    except psycopg.errors.UndefinedFunction:
        # what the index computes is made by a statement before it, which has not run (a
        # caller's transaction skips the file): no earlier run built any of it either
        return [(name, table, text)]
    builds = []
    for schema, leaf in conn.execute(_LEAVES, (table,)).fetchall():
        index = _partition_index_name(conn, schema, leaf, columns)
        create = sql.SQL("create {}index concurrently if not exists {} on {}")

        def on(match: re.Match[str], create=create, index=index, schema=schema, leaf=leaf) -> str:
            return create.format(
                sql.SQL(match.group(1) or ""), sql.Identifier(index), sql.Identifier(schema, leaf)
            ).as_string(conn)

        builds.append((index, f"{schema}.{leaf}", target.sub(on, text, count=1)))
    return builds


def _index_target(name: str, table: str) -> re.Pattern[str]:
    """The head of ``create [unique] index concurrently if not exists <name> on [only]
    <table>`` in a statement, to be replaced (``_per_partition``, its psql twin)."""
    return re.compile(
        rf"\bcreate (unique )?index concurrently if not exists {re.escape(name)}"
        rf" on (?:only )?{re.escape(table)}\b",
        re.IGNORECASE,
    )


# An empty temporary table with the columns of the table: the probe's index is made on
# it, so that the log itself is only read (no lock that a write waits for)
_PROBE_TABLE = "create temporary table audit_capture_probe_table (like {table})"
# the probe index's column names, in order
_PROBE_COLUMNS = (
    "select a.attname from pg_catalog.pg_attribute a"
    " where a.attrelid = 'pg_temp.audit_capture_name_probe'::regclass order by a.attnum"
)


def _probe_index(target: re.Pattern[str], text: str) -> str:
    """``text``'s index (its ``target`` head) made as the probe, on the empty copy."""
    return target.sub(
        lambda match: (
            f"create {match.group(1) or ''}index audit_capture_name_probe"
            " on pg_temp.audit_capture_probe_table"
        ),
        text,
        count=1,
    )


def _index_column_names(
    conn: psycopg.Connection, target: re.Pattern[str], text: str, table: str
) -> list[str]:
    """The names PostgreSQL gives the columns of the index that ``text`` creates (a
    column's own, an expression's from its function: "coalesce"), read from the same
    index made on an empty temporary table with the table's columns (CREATE TABLE ...
    LIKE reads the log's definition under ACCESS SHARE: no write waits for it), in a
    transaction rolled back at once."""
    probe = _probe_index(target, text)
    with conn.transaction(force_rollback=True):
        conn.execute(_PROBE_TABLE.format(table=table), prepare=False)
        conn.execute(probe, prepare=False)
        rows = conn.execute(_PROBE_COLUMNS).fetchall()
    return [r[0] for r in rows]


_NAMEDATALEN = 64


def _partition_index_name(
    conn: psycopg.Connection, schema: str, leaf: str, columns: list[str]
) -> str:
    """The name CREATE INDEX on a partitioned table gives the index it makes on the
    partition ``leaf`` (PostgreSQL's ChooseIndexName(): the partition's name and the
    index's column names joined by "_", each shortened in turn, longer first, to fit
    63 bytes with "_idx"; "_idx1", "_idx2"... while another relation of the schema has
    the name). An index of that name on ``leaf`` itself is this one (a run before)."""
    addition = ""
    for column in columns:  # ChooseIndexNameAddition()
        addition = f"{addition}_{column}" if addition else column
        if len(addition.encode()) >= _NAMEDATALEN:
            break
    label, attempt = "idx", 0
    while True:
        overhead = 1 + 1 + len(label)  # makeObjectName(): "_" name2, "_" label
        first, second = len(leaf.encode()), len(addition.encode())
        while first + second > _NAMEDATALEN - 1 - overhead:
            if first > second:
                first -= 1
            else:
                second -= 1
        name = f"{leaf.encode()[:first].decode()}_{addition.encode()[:second].decode()}_{label}"
        row = conn.execute(
            "select coalesce(i.indrelid = pg_catalog.to_regclass(%s), false)"
            " from pg_catalog.pg_class c left join pg_catalog.pg_index i on i.indexrelid = c.oid"
            " where c.relname = %s and c.relnamespace = pg_catalog.to_regnamespace(%s)",
            (
                sql.Identifier(schema, leaf).as_string(conn),
                name,
                sql.Identifier(schema).as_string(conn),
            ),
        ).fetchone()
        if row is None or row[0]:
            return name
        attempt += 1
        label = f"idx{attempt}"


_INVALID_INDEX = """
select n.nspname, c.relname
from pg_catalog.pg_index i
join pg_catalog.pg_class c on c.oid = i.indexrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relname = {name}
  and c.relnamespace = (select relnamespace from pg_catalog.pg_class where oid = {table})
  and not i.indisvalid
"""


def _drop_invalid_index(
    conn: psycopg.Connection, name: str, table: str, *, concurrently: bool
) -> None:
    """Drop the index ``name`` of ``table``'s schema if it is INVALID (left by a failed
    CREATE INDEX CONCURRENTLY, or by one still running elsewhere: one migration at a time)."""
    query = sql.SQL(_INVALID_INDEX).format(name=sql.Literal(name), table=sql.SQL("to_regclass(%s)"))
    row = conn.execute(query, (table,)).fetchone()
    if row is None:
        return
    log.warning("dropping the INVALID index %s.%s (a failed concurrent build left it)", *row)
    drop = "drop index concurrently if exists {}" if concurrently else "drop index if exists {}"
    conn.execute(sql.SQL(drop).format(sql.Identifier(*row)))


def _print_concurrently(output, name: str, statements: list[ConcurrentStatement]) -> None:
    """``run_concurrently()`` as a psql script: Alembic has printed COMMIT before it and
    prints BEGIN after it."""
    output(
        f"-- {name}: OUTSIDE a transaction, one statement at a time.\n"
        "-- psql runs each statement in autocommit (its default): run this script without\n"
        "-- --single-transaction (-1) and with AUTOCOMMIT on, or CREATE INDEX CONCURRENTLY\n"
        "-- fails (cannot run inside a transaction block)."
    )
    output(f"set role {SCHEMA_OWNER};")
    for statement in statements:
        lines = statement.text.strip().splitlines()
        comments = 0
        while lines[comments].lstrip().startswith("--") or not lines[comments].strip():
            comments += 1
        if comments:
            output("\n".join(lines[:comments]))
        if statement.index:
            index, table = statement.index
            query = sql.SQL(_INVALID_INDEX).format(
                name=sql.Literal(index), table=sql.SQL("to_regclass({})").format(sql.Literal(table))
            )
            output(
                f"-- an index {index} left INVALID by a failed build is dropped first\n"
                "-- (psql's \\gexec runs the statement that the query returns, if any)\n"
                "select format('drop index concurrently if exists %I.%I', nspname, relname)"
                f" from ({query.as_string().strip()}\n) as invalid \\gexec"
            )
            _print_per_partition(output, statement, "\n".join(lines[comments:]))
            continue
        output("\n".join(lines[comments:]))
    output("reset role;")


def _print_per_partition(output, statement: ConcurrentStatement, code: str) -> None:
    """A CREATE INDEX CONCURRENTLY for psql: as written on a plain table, and on a
    partitioned one the same index on each leaf partition under the name PostgreSQL
    would give it (``_per_partition()``, ``_partition_index_name()``, in SQL: the index's
    column names read from a probe on an empty copy, rolled back), which psql's
    \\if chooses when the script runs."""
    assert statement.index is not None
    name, table = statement.index
    target = _index_target(name, table)
    probe = _probe_index(target, code)
    template = target.sub(
        lambda m: f"create {m.group(1) or ''}index concurrently if not exists %I on %I.%I",
        code.replace("%", "%%"),
        count=1,
    )
    leaves = sql.SQL(
        "select (select format('drop index concurrently if exists %I.%I', n.nspname, x.relname)"
        "\n        from pg_catalog.pg_class x join pg_catalog.pg_index i on i.indexrelid = x.oid"
        "\n        where x.relname = k.name and x.relnamespace = c.relnamespace"
        " and not i.indisvalid),"
        "\n       format({template}, k.name, n.nspname, c.relname)"
        "\nfrom pg_catalog.pg_partition_tree(pg_catalog.to_regclass({table})) t"
        "\njoin pg_catalog.pg_class c on c.oid = t.relid"
        "\njoin pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        "\ncross join lateral ("
        "\n  select left(c.relname, w.f) || '_' || left(w.a, w.s) || '_' || w.label as name"
        "\n  from generate_series(0, 99) g"
        "\n  cross join lateral (select case when g = 0 then 'idx' else 'idx' || g end as label,"
        "\n                             :'audit_index_columns'::text as a) l"
        "\n  cross join lateral (select length(c.relname) as f0, length(l.a) as s0,"
        "\n                             63 - 2 - length(l.label) as m) z"
        "\n  cross join lateral (select l.label, l.a,"
        "\n    case when z.f0 + z.s0 <= z.m then z.f0 when z.f0 > z.s0 and 2 * z.s0 <= z.m"
        " then z.m - z.s0"
        "\n         when z.s0 >= z.f0 and 2 * z.f0 <= z.m then z.f0 else (z.m + 1) / 2 end as f,"
        "\n    case when z.f0 + z.s0 <= z.m then z.s0 when z.f0 > z.s0 and 2 * z.s0 <= z.m"
        " then z.s0"
        "\n         when z.s0 >= z.f0 and 2 * z.f0 <= z.m then z.m - z.f0 else z.m / 2 end as s) w"
        "\n  where not exists (select from pg_catalog.pg_class o"
        "\n                    left join pg_catalog.pg_index oi on oi.indexrelid = o.oid"
        "\n                    where o.relnamespace = c.relnamespace"
        "\n                      and o.relname = left(c.relname, w.f) || '_' || left(w.a, w.s)"
        " || '_' || w.label"
        "\n                      and oi.indrelid is distinct from c.oid)"
        "\n  order by g limit 1) k"
        "\nwhere t.isleaf and c.relkind = 'r' order by c.relname \\gexec"
    ).format(template=sql.Literal(template), table=sql.Literal(table))
    output(
        "-- CREATE INDEX CONCURRENTLY cannot build a partitioned table's index: there, the\n"
        "-- same index on each of its partitions, one at a time, named as PostgreSQL names\n"
        "-- a partition's index (an INVALID one a failed build left dropped first); the\n"
        "-- transaction's CREATE INDEX then attaches them\n"
        "select coalesce((select c.relkind = 'p' from pg_catalog.pg_class c where c.oid ="
        f" pg_catalog.to_regclass({sql.Literal(table).as_string()})), false)"
        " as audit_partitioned \\gset\n"
        "\\if :audit_partitioned\n"
        "begin;\n"
        f"{_PROBE_TABLE.format(table=table)};\n"
        f"{probe}\n"
        f"select pg_catalog.array_to_string(array({_PROBE_COLUMNS}), '_')"
        " as audit_index_columns \\gset\n"
        "rollback;\n"
        f"{leaves.as_string()}\n"
        "\\else\n"
        f"{code}\n"
        "\\endif"
    )


def _run_in_migration(paths: list[Path], chain: Chain) -> None:
    from alembic import context, op

    if context.is_offline_mode():
        # the script runs in psql exactly what an online upgrade runs, file by file
        output = op.get_context().impl.static_output
        after_each = version_table_file().read_text(encoding="utf-8")
        for path in paths:
            output(f"-- {path.relative_to(chain.root).as_posix()}")
            output(path.read_text(encoding="utf-8"))
            output(after_each)
        output("reset role;")
        return
    driver_connection = _driver_connection()
    with _warnings_logged(driver_connection):
        for path in paths:
            execute_file(driver_connection, path)
            give_version_table_to_schema_owner(driver_connection)
        restore_role(driver_connection)


def _warn(diagnostic: psycopg.errors.Diagnostic) -> None:
    if diagnostic.severity_nonlocalized == "WARNING":
        log.warning("%s", diagnostic.message_primary)


@contextmanager
def _warnings_logged(conn: psycopg.Connection) -> Iterator[None]:
    """A file's RAISE WARNING (revision 0003's downgrade says what it copies) reaches the
    person running the migration, through this module's logger; NOTICEs ('already
    exists, skipping') do not."""
    conn.add_notice_handler(_warn)
    try:
        yield
    finally:
        conn.remove_notice_handler(_warn)


def _uninstall_in_migration(path: Path, chain: Chain) -> None:
    """Run ``uninstall.sql`` in the baseline's downgrade to base.

    ``uninstall.sql`` may drop the whole audit schema, and with it Alembic's version
    table ``audit.alembic_version``. Alembic still has to delete its row afterwards, so
    the table is put back with its rows when the uninstall removed it; the migration
    environment drops it again once it is empty.
    """
    from alembic import context

    if context.is_offline_mode():
        _run_in_migration([path], chain)
        return
    conn = _driver_connection()
    versions = [
        row[0]
        for row in conn.execute(
            "select version_num from audit.alembic_version"
            if _version_table_exists(conn)
            else "select null where false"
        )
    ]
    _run_in_migration([path], chain)
    if not _version_table_exists(conn):
        conn.execute("create schema if not exists audit")
        conn.execute(
            "create table audit.alembic_version ("
            " version_num varchar(32) not null,"
            " constraint alembic_version_pkc primary key (version_num))"
        )
        for version in versions:
            conn.execute("insert into audit.alembic_version (version_num) values (%s)", (version,))


def _driver_connection() -> psycopg.Connection:
    """The psycopg connection under the running migration's SQLAlchemy connection."""
    from alembic import op

    conn = op.get_bind().connection.driver_connection
    assert isinstance(conn, psycopg.Connection), conn
    return conn


def _version_table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass('audit.alembic_version') is not null").fetchone()
    return bool(row and row[0])
