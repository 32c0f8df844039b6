"""close the holes an outside security review found (issue 10)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:06:18.300500

Installs the SQL frozen in migrations/sql/0005/.

Downgrade restores revision 0004's SQL, then migrations/downgrade/0005.sql removes what
0005 added.
"""

from __future__ import annotations

from audit_capture.sqlfiles import apply_downgrade_sql, apply_frozen_sql

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_frozen_sql(revision)


def downgrade() -> None:
    apply_frozen_sql(down_revision)
    apply_downgrade_sql(revision)
