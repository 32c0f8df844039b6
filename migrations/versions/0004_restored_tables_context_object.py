"""tables restored from pg_dump keep capturing; context is a JSON object; quiet DROP TABLE

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 04:39:56.442159

Installs the SQL frozen in migrations/sql/0004/.

- A table restored by pg_dump into another database gets a new oid, while its triggers
  still call the generated capture function named for the old one. ALTER TABLE wrote
  audit.capture_<new oid>() and left the triggers on the stale copy: after a dropped
  column every UPDATE of the table failed. The ALTER TABLE event trigger now moves the
  triggers to the table's own function (audit.adopt_capture_function()), and so does
  this install (98_regenerate.sql) for every restored table; `audit-capture status`
  reports such triggers as stale.
- audit.context must be a JSON object (audit.check_context_object(), called by
  audit.set_context() and audit.current_context(), so by capture and log_action too):
  "[1]" or "42" was accepted before and is now refused with the value in the message.
- DROP TABLE no longer prints a NOTICE per dropped relation.
- RENAME COLUMN of a column a setting names (label, status, ignored, redacted columns,
  label rules) is followed: capture reads the settings through audit.current_settings()
  (attribute numbers kept in tracked_table.setting_columns, a new column), and the
  event trigger writes the new names into the registry. A renamed redacted column was
  logged in clear before.
- A tracked table's owner cannot switch off (DISABLE TRIGGER, ENABLE REPLICA TRIGGER) or
  drop its audit triggers unless it is a superuser or a member of audit_admin
  (audit.may_change_audit_triggers(), checked by the event triggers).
- A partition of a tracked table can be created by its owner (the cloned key-change
  trigger takes EXECUTE on audit.capture_key_change(), now everyone's; the function
  ignores untracked tables), and a primary-key change inside a partition is noted under
  the tracked partitioned table, so its versions pair up.
- audit_reader may run the fingerprints that `audit-capture status` compares.

Downgrade restores revision 0003's SQL, then migrations/downgrade/0004.sql removes the
functions and the registry column 0004 added.
"""

from __future__ import annotations

from audit_capture.sqlfiles import apply_downgrade_sql, apply_frozen_sql

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_frozen_sql(revision)


def downgrade() -> None:
    apply_frozen_sql(down_revision)
    apply_downgrade_sql(revision)
