"""capture core: the audit schema, its functions, the action log and tracking

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Installs the SQL frozen in migrations/sql/0001/ (a copy of triggers/*.sql made by
scripts/freeze-sql), applied in lexical filename order. Downgrade runs
migrations/sql/0001/uninstall.sql, which removes everything the upgrade installed.
"""

from __future__ import annotations

from audit_capture.sqlfiles import apply_frozen_sql, uninstall_frozen_sql

# revision identifiers, used by Alembic.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_frozen_sql(revision)


def downgrade() -> None:
    uninstall_frozen_sql(revision)
