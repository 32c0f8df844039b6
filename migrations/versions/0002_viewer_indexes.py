"""viewer indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:09:20.353279

The indexes the viewer's filters need (migrations/sql/0002/13_viewer_indexes.sql says
which and why), on a log that may be live: every audited write inserts into
audit.action_log, so a plain CREATE INDEX, which blocks writes for the whole build,
would stall the application for minutes on a big log. So the upgrade first builds each
index with CREATE INDEX CONCURRENTLY, outside any transaction (Alembic's
autocommit_block: the preceding work is committed first), and only then installs the
frozen SQL of this revision, whose plain `create index if not exists` finds the
indexes built and does nothing (it would build them, locked, on a path that skipped
the concurrent step, such as a `--sql` script run in one transaction).

A concurrent build that fails (or is interrupted) leaves an INVALID index behind, which
`if not exists` would keep forever: the upgrade drops such leftovers first.

Downgrade drops the indexes (concurrently too) and re-installs revision 0001's SQL.
"""

from __future__ import annotations

import re

from alembic import context, op

from audit_capture.sqlfiles import apply_frozen_sql, frozen_sql_dir

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX_FILE = "13_viewer_indexes.sql"
_CREATE = re.compile(r"^create index if not exists (\w+) (on audit\.action_log .*);$", re.M)


def viewer_indexes() -> list[tuple[str, str]]:
    """(name, "on audit.action_log ...") of each index in this revision's frozen SQL."""
    text = (frozen_sql_dir(revision) / INDEX_FILE).read_text(encoding="utf-8")
    found = _CREATE.findall(text)
    if not found:
        raise RuntimeError(f"no `create index if not exists` line in {INDEX_FILE}")
    return found


def _invalid_indexes(names: list[str]) -> list[str]:
    if context.is_offline_mode():
        return []
    rows = op.get_bind().exec_driver_sql(
        "select c.relname from pg_catalog.pg_index i"
        " join pg_catalog.pg_class c on c.oid = i.indexrelid"
        " where c.relnamespace = 'audit'::regnamespace and not i.indisvalid"
        " and c.relname = any(%(names)s)",
        {"names": names},
    )
    return [row[0] for row in rows]


def upgrade() -> None:
    indexes = viewer_indexes()
    with op.get_context().autocommit_block():
        # the index belongs to the table's owner; building it needs that role
        op.execute("set role audit_owner")
        try:
            for name in _invalid_indexes([name for name, _ in indexes]):
                op.execute(f"drop index concurrently if exists audit.{name}")
            for name, definition in indexes:
                op.execute(f"create index concurrently if not exists {name} {definition}")
        finally:
            op.execute("reset role")
    apply_frozen_sql(revision)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("set role audit_owner")
        try:
            for name, _definition in viewer_indexes():
                op.execute(f"drop index concurrently if exists audit.{name}")
        finally:
            op.execute("reset role")
    apply_frozen_sql(down_revision)
