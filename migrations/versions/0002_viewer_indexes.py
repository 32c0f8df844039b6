"""viewer indexes: text search by day and month, actor by source

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 17:39:03.453903

Its SQL: the state files it adds or changes in migrations/sql/0002/ (written by
scripts/freeze-sql), and migrations/upgrade/0002.sql and
migrations/downgrade/0002.sql when it needs them; what runs outside a transaction
before them (CREATE INDEX CONCURRENTLY) in migrations/upgrade_concurrently/0002.sql and
migrations/downgrade_concurrently/0002.sql (migrations/README.md).
"""

from __future__ import annotations

from audit_capture import sqlfiles

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlfiles.upgrade(revision)


def downgrade() -> None:
    sqlfiles.downgrade(revision)
