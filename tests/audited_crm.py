"""The audited sample CRM in a database: the audit schema migrated to head, then the
sample CRM's tables, tracked. What conftest's ``audit_template`` holds, and what a test
that runs its own server (``test_faults``) installs there."""

from __future__ import annotations

import psycopg

from audit_capture import migrate
from audit_capture.sample import install_crm


def install_audited_crm(url: str) -> None:
    """Into the (empty) database at ``url``: the audit schema at head, the sample CRM."""
    migrate.upgrade(url, "head")
    with psycopg.connect(url) as conn, conn.transaction():
        install_crm(conn)
