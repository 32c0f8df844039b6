"""Running the SQL files that make up the audit schema.

``triggers/*.sql`` is the current SQL. Each Alembic revision of the package's own chain
installs a frozen copy of it, ``migrations/sql/<revision>/*.sql`` (made by
``scripts/freeze-sql``), so an old revision keeps meaning what it meant when it was
written. Files run in lexical filename order; ``uninstall.sql`` is never part of an
install and is what a downgrade to base runs.

The files hold plpgsql ``$$`` bodies, ``%`` format placeholders and ``:name``-like
text, so they go to the server verbatim through psycopg without parameters (psycopg 3
then uses the simple query protocol, which accepts many statements in one string).
They never go through SQLAlchemy ``text()``, which would read ``:name`` as a bind.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from audit_capture import resources

UNINSTALL_FILE = "uninstall.sql"
VERSION_TABLE_FILE = "version_table.sql"


def install_files(folder: Path) -> list[Path]:
    """The ``.sql`` files of ``folder`` that an install runs, in the order it runs them."""
    return sorted(
        (path for path in folder.glob("*.sql") if path.name != UNINSTALL_FILE),
        key=lambda path: path.name,
    )


def frozen_sql_dir(revision: str) -> Path:
    """``migrations/sql/<revision>/``: the SQL frozen for one revision."""
    folder = resources.migrations_dir() / "sql" / revision
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no frozen SQL for revision {revision!r}: {folder} is missing "
            "(run scripts/freeze-sql after creating a revision)"
        )
    return folder


def execute_sql(conn: psycopg.Connection, sql_text: str) -> None:
    """Run a whole SQL script (many statements) on ``conn``, inside its transaction."""
    conn.execute(sql_text, prepare=False)


def execute_file(conn: psycopg.Connection, path: Path) -> None:
    try:
        execute_sql(conn, path.read_text(encoding="utf-8"))
    except psycopg.Error as exc:
        exc.add_note(f"while running {path}")
        raise


def install(conn: psycopg.Connection, folder: Path | None = None) -> list[Path]:
    """Install the SQL of ``folder`` (default: the current ``triggers/``) on ``conn``.

    Does not commit. Returns the files it ran.
    """
    files = install_files(folder or resources.triggers_dir())
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


# -- inside an Alembic revision ------------------------------------------------------


def _run_in_migration(paths: list[Path]) -> None:
    from alembic import context, op

    if context.is_offline_mode():
        # the script runs in psql exactly what an online upgrade runs, file by file
        output = op.get_context().impl.static_output
        after_each = version_table_file().read_text(encoding="utf-8")
        for path in paths:
            output(f"-- {path.parent.name}/{path.name}")
            output(path.read_text(encoding="utf-8"))
            output(after_each)
        output("reset role;")
        return
    driver_connection = op.get_bind().connection.driver_connection
    for path in paths:
        execute_file(driver_connection, path)
        give_version_table_to_schema_owner(driver_connection)
    restore_role(driver_connection)


def version_table_file() -> Path:
    """``migrations/version_table.sql``: run after each SQL file of a revision."""
    return resources.migrations_dir() / VERSION_TABLE_FILE


def give_version_table_to_schema_owner(conn: psycopg.Connection) -> None:
    """Make ``audit.alembic_version`` belong to the audit schema's owner and readable by
    the audit roles (``migrations/version_table.sql`` says why)."""
    execute_file(conn, version_table_file())


def apply_frozen_sql(revision: str) -> None:
    """In a revision's upgrade(): install the SQL frozen for ``revision``."""
    _run_in_migration(install_files(frozen_sql_dir(revision)))


def apply_downgrade_sql(revision: str) -> None:
    """In a revision's downgrade(), after the previous revision's SQL: run
    ``migrations/downgrade/<revision>.sql``, which removes what ``revision`` added."""
    _run_in_migration([resources.migrations_dir() / "downgrade" / f"{revision}.sql"])


def uninstall_frozen_sql(revision: str) -> None:
    """In a revision's downgrade() to base: run ``uninstall.sql`` frozen for ``revision``.

    ``uninstall.sql`` may drop the whole audit schema, and with it Alembic's version
    table ``audit.alembic_version``. Alembic still has to delete its row afterwards, so
    the table is put back with its rows when the uninstall removed it; the migration
    environment drops it again once it is empty.
    """
    from alembic import context, op

    paths = [frozen_sql_dir(revision) / UNINSTALL_FILE]
    if context.is_offline_mode():
        _run_in_migration(paths)
        return
    conn = op.get_bind().connection.driver_connection
    versions = [
        row[0]
        for row in conn.execute(
            "select version_num from audit.alembic_version"
            if _version_table_exists(conn)
            else "select null where false"
        )
    ]
    _run_in_migration(paths)
    if not _version_table_exists(conn):
        conn.execute("create schema if not exists audit")
        conn.execute(
            "create table audit.alembic_version ("
            " version_num varchar(32) not null,"
            " constraint alembic_version_pkc primary key (version_num))"
        )
        for version in versions:
            conn.execute("insert into audit.alembic_version (version_num) values (%s)", (version,))


def _version_table_exists(conn: psycopg.Connection) -> bool:
    return conn.execute("select to_regclass('audit.alembic_version') is not null").fetchone()[0]
