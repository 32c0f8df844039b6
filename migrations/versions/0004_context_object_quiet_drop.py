"""context is a JSON object; no NOTICE on DROP TABLE

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 04:39:56.442159

Installs the SQL frozen in migrations/sql/0004/. audit.context must be a JSON object
(audit.check_context_object(), called by audit.set_context() and
audit.current_context(), so by capture and log_action too): "[1]" or "42" was accepted
before and is now refused with the value in the message, as the Python helpers already
did. DROP TABLE no longer prints a NOTICE per dropped relation: the event trigger drops
a generated capture function only where there is one. Downgrade restores revision
0003's SQL (the new function stays, unused).
"""

from __future__ import annotations

from audit_capture.sqlfiles import apply_frozen_sql


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_frozen_sql(revision)


def downgrade() -> None:
    apply_frozen_sql(down_revision)
