"""audit schema baseline

Revision ID: 0001
Revises:
Create Date: 2026-12-02

The whole audit schema: the state files of migrations/sql/0001/ (migrations/README.md).
Its downgrade to base runs their uninstall.sql, which removes everything.
"""

from __future__ import annotations

from audit_capture import sqlfiles

# revision identifiers, used by Alembic.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlfiles.upgrade(revision)


def downgrade() -> None:
    sqlfiles.downgrade(revision)
