"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Its SQL: the state files it adds or changes in migrations/sql/${up_revision}/ (written by
scripts/freeze-sql), and migrations/upgrade/${up_revision}.sql and
migrations/downgrade/${up_revision}.sql when it needs them; what runs outside a transaction
before them (CREATE INDEX CONCURRENTLY) in migrations/upgrade_concurrently/${up_revision}.sql and
migrations/downgrade_concurrently/${up_revision}.sql (migrations/README.md).
"""

from __future__ import annotations

from audit_capture import sqlfiles

${imports if imports else ""}# revision identifiers, used by Alembic.
revision = "${up_revision}"
down_revision = ${'"%s"' % down_revision if down_revision else "None"}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    sqlfiles.upgrade(revision)


def downgrade() -> None:
    sqlfiles.downgrade(revision)
