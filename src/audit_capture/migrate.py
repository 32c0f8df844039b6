"""Install, upgrade and remove the audit schema with the package's own Alembic chain.

No alembic.ini is needed: the configuration is built here, pointing Alembic at the
``migrations/`` folder shipped with the package. The version table is
``audit.alembic_version``.

    from audit_capture import migrate
    migrate.upgrade("postgresql://app@db/crm")        # install or upgrade to head
    migrate.current("postgresql://app@db/crm")        # '0001'
    migrate.repair("postgresql://app@db/crm")         # head's SQL again, at head
    migrate.downgrade("postgresql://app@db/crm", "base")  # remove everything
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import sql

from audit_capture import database, resources, sqlfiles
from audit_capture.errors import AuditCaptureError
from audit_capture.revisions import Chain

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where it runs, not here: importing it (and SQLAlchemy, Mako) takes
# most of a second, and every audit-capture command imports this module, while only the
# migrate commands, status and replicate use it.

VERSION_SCHEMA = "audit"
VERSION_TABLE = "alembic_version"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for the package's chain, connecting to ``url``."""
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolates '%': escape it in the path.
    config.set_main_option("script_location", str(resources.migrations_dir()).replace("%", "%%"))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade (or install) the audit schema to ``revision`` (default: this package's head)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Downgrade the audit schema to ``revision``; ``"base"`` removes it entirely."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def repair(url: str) -> str:
    """Apply the head revision's SQL again to a database already at head, in one
    transaction; returns the revision.

    ``upgrade`` does nothing at head; this puts back what the SQL files make when
    something changed it behind the chain's back: a hand-edited or dropped audit
    function (``audit-capture status`` says ``modified``), the event triggers of fast
    capture when a superuser runs it after a non-superuser install, the generated
    capture function of every table tracked in the fast mode. The files are idempotent:
    the log, its items and the tracked tables stay as they are. Raises
    ``AuditCaptureError`` when the database is not at this package's head.
    """
    with database.connect(url) as conn:
        installed, target = current_on(conn), head()
        if installed != target:
            raise AuditCaptureError(
                f"the audit schema is at {installed or 'no revision (not installed)'}, not at "
                f"this package's head {target}: run audit-capture migrate upgrade instead"
            )
        sqlfiles.install(conn, Chain.packaged().install_files(target))
        sqlfiles.give_version_table_to_schema_owner(conn)
        conn.commit()
    return target


def upgrade_sql(revision: str = "head", from_revision: str | None = None) -> None:
    """Print the SQL of an upgrade instead of running it (Alembic offline mode)."""
    from alembic import command

    target = f"{from_revision}:{revision}" if from_revision else revision
    command.upgrade(alembic_config(None), target, sql=True)


def current(url: str) -> str | None:
    """The revision installed in the database, or None when the audit schema is not installed."""
    with database.connect(url, autocommit=True) as conn:
        return current_on(conn)


def current_on(conn) -> str | None:
    """``current()`` on an open psycopg connection; reads only, changes nothing."""
    row = conn.execute(
        "select to_regclass(%s) is not null", (f"{VERSION_SCHEMA}.{VERSION_TABLE}",)
    ).fetchone()
    if not row[0]:
        return None
    query = sql.SQL("select version_num from {}").format(
        sql.Identifier(VERSION_SCHEMA, VERSION_TABLE)
    )
    rows = conn.execute(query).fetchall()
    if not rows:
        return None
    if len(rows) > 1:
        return ",".join(sorted(r[0] for r in rows))
    return rows[0][0]


def head() -> str:
    """This package's newest revision."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no revision in {resources.migrations_dir() / 'versions'}")
    return head


def revisions() -> list[str]:
    """This package's revisions, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]
