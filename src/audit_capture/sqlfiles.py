"""Running the SQL files that make up the audit schema, and each revision's in a migration.

``triggers/*.sql`` is the current SQL: one state file per concern, each idempotent
(``create or replace``, ``if not exists``), run in lexical filename order;
``uninstall.sql`` is never part of an install and is what a downgrade to base runs.
Which files a revision of the package's chain runs is ``revisions``' job:
upgrade(rev) runs its upgrade file first, then every resolved state file;
downgrade(rev) runs the previous revision's resolved state files, then its downgrade
file; the baseline's downgrade runs its ``uninstall.sql``.

The files hold plpgsql ``$$`` bodies, ``%`` format placeholders and ``:name``-like
text, so they go to the server verbatim through psycopg without parameters (psycopg 3
then uses the simple query protocol, which accepts many statements in one string).
They never go through SQLAlchemy ``text()``, which would read ``:name`` as a bind.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from audit_capture import resources
from audit_capture.revisions import UNINSTALL_FILE, Chain

VERSION_TABLE_FILE = "version_table.sql"


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
    """A revision's upgrade(): ``upgrade/<revision>.sql`` if any, then every resolved
    state file of ``revision``."""
    chain = _running_chain()
    explicit = chain.upgrade_file(revision)
    _run_in_migration(
        ([explicit] if explicit.is_file() else []) + chain.install_files(revision), chain
    )


def downgrade(revision: str) -> None:
    """A revision's downgrade(): the previous revision's resolved state files, then
    ``downgrade/<revision>.sql`` if any; for the baseline, its ``uninstall.sql``."""
    chain = _running_chain()
    down = chain.parents[revision]
    if down is None:
        _uninstall_in_migration(chain.uninstall_file(revision), chain)
        return
    explicit = chain.downgrade_file(revision)
    _run_in_migration(chain.install_files(down) + ([explicit] if explicit.is_file() else []), chain)


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
    for path in paths:
        execute_file(driver_connection, path)
        give_version_table_to_schema_owner(driver_connection)
    restore_role(driver_connection)


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
