"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

This revision installs the SQL frozen in migrations/sql/${up_revision}/ (run
scripts/freeze-sql after creating it), so it keeps meaning the same thing when
triggers/*.sql changes later. Downgrade restores the previous revision's SQL.
"""

from __future__ import annotations

from audit_capture.sqlfiles import apply_frozen_sql

${imports if imports else ""}
# revision identifiers, used by Alembic.
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    apply_frozen_sql(revision)


def downgrade() -> None:
    apply_frozen_sql(down_revision)
