"""Alembic environment of audit_capture's own migration chain.

Run through ``audit_capture.migrate`` (or ``audit-capture migrate ...``), which passes
the database URL in ``config.attributes["database_url"]`` (or an open SQLAlchemy
connection in ``config.attributes["connection"]``).

The version table is ``audit.alembic_version``: inside the audit schema, so it never
collides with the host application's own ``public.alembic_version``.
"""

from __future__ import annotations

from contextlib import nullcontext

from alembic import context
from sqlalchemy import exc, text

from audit_capture import database, sqlfiles

VERSION_SCHEMA = "audit"
VERSION_TABLE = "alembic_version"

config = context.config


def _configure(**kwargs) -> None:
    context.configure(
        version_table_schema=VERSION_SCHEMA,
        version_table=VERSION_TABLE,
        transactional_ddl=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """``--sql`` mode: print the SQL instead of running it."""
    url = config.attributes.get("database_url") or "postgresql://"
    _configure(url=database.sqlalchemy_url(url), literal_binds=True, dialect_name="postgresql")
    with context.begin_transaction():
        # the version table lives in the audit schema, which the first revision makes:
        # the script must create it first, as _run() does online
        context.execute("create schema if not exists audit")
        context.run_migrations()


def _drop_version_table_if_unused(connection) -> None:
    """After a downgrade to base, leave no trace: the empty version table and an
    empty audit schema go away. A schema that still holds anything is kept."""
    connection.execute(
        text(
            """
            do $$
            begin
              if to_regclass('audit.alembic_version') is not null
                 and not exists (select 1 from audit.alembic_version) then
                drop table audit.alembic_version;
              end if;
            end
            $$
            """
        )
    )
    if connection.execute(text("select to_regclass('audit.alembic_version')")).scalar() is None:
        try:
            with connection.begin_nested():
                connection.execute(text("drop schema if exists audit restrict"))
        except exc.DBAPIError:
            pass  # the schema holds other objects: keep it


def _run(connection) -> None:
    """Run the migrations on ``connection``.

    On a connection of our own (or a caller's outside a transaction), Alembic manages
    the transaction itself, so that a revision may leave it: its
    ``upgrade_concurrently/<rev>.sql`` runs in ``autocommit_block()`` (revision 0002
    builds its indexes with CREATE INDEX CONCURRENTLY, which cannot run inside a
    transaction; ``sqlfiles.run_concurrently``). On a caller's connection already in a
    transaction, everything runs inside it: those files are skipped, with a warning,
    and the transactional part builds the indexes under a lock that blocks writes.
    """
    if connection.in_transaction():
        with nullcontext():
            connection.execute(text("create schema if not exists audit"))
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
            _drop_version_table_if_unused(connection)
        return
    with connection.begin():
        connection.execute(text("create schema if not exists audit"))
    _configure(connection=connection, **{sqlfiles.AUTOCOMMIT_OPTION: True})
    with context.begin_transaction():
        context.run_migrations()
    with connection.begin():
        _drop_version_table_if_unused(connection)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("database_url")
    if not url:
        raise database.DatabaseUnavailable("no database URL given to the audit_capture migrations")
    engine = database.create_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
