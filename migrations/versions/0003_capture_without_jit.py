"""capture functions without JIT; rewrite generated capture functions on upgrade

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 02:38:15.989006

Installs the SQL frozen in migrations/sql/0003/. The capture functions now run with
`jit = off` (07_capture.sql says why: a plan cached after a bulk statement made every
later one-row statement of the session pay a JIT compilation), and 98_regenerate.sql
rewrites the generated capture function of every table already tracked in the fast mode,
so the change reaches them. Downgrade restores revision 0002's SQL; generated functions
keep the setting, which changes no result.
"""

from __future__ import annotations

from audit_capture.sqlfiles import apply_frozen_sql

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_frozen_sql(revision)


def downgrade() -> None:
    apply_frozen_sql(down_revision)
