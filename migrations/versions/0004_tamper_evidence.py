"""tamper evidence

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 06:25:42.356122

Its SQL: the state files it adds or changes in migrations/sql/0004/ (written by
scripts/freeze-sql), and migrations/upgrade/0004.sql and
migrations/downgrade/0004.sql when it needs them; what runs outside a transaction
before them (CREATE INDEX CONCURRENTLY) in migrations/upgrade_concurrently/0004.sql and
migrations/downgrade_concurrently/0004.sql (migrations/README.md).
"""

from __future__ import annotations

from audit_capture import sqlfiles

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlfiles.upgrade(revision)


def downgrade() -> None:
    sqlfiles.downgrade(revision)
