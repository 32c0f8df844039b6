"""partitioned log

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 21:52:13.111481

Its SQL: the state files it adds or changes in migrations/sql/0003/ (written by
scripts/freeze-sql), and migrations/upgrade/0003.sql and
migrations/downgrade/0003.sql when it needs them; what runs outside a transaction
before them (CREATE INDEX CONCURRENTLY) in migrations/upgrade_concurrently/0003.sql and
migrations/downgrade_concurrently/0003.sql (migrations/README.md).
"""

from __future__ import annotations

from audit_capture import sqlfiles

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlfiles.upgrade(revision)


def downgrade() -> None:
    sqlfiles.downgrade(revision)
