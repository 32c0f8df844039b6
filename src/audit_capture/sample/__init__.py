"""The sample legal-intake CRM that the tests and the demo log.

``install_crm(conn)`` creates its tables (clients, campaigns, cases, case tasks, batch
jobs, integrations) and tracks them with the settings that make every event of the
product brief come out as DESIGN.md's table says.
"""

from importlib import resources

import psycopg

SCHEMA_FILE = "crm_schema.sql"
TRACKING_FILE = "crm_tracking.sql"


def read_sql(name: str) -> str:
    """The text of one of this package's SQL files."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def install_crm(conn: psycopg.Connection) -> None:
    """Create the sample CRM tables and track them, in the caller's transaction.

    The audit schema must be installed first (``audit-capture migrate upgrade``).
    """
    with conn.cursor() as cur:
        cur.execute(read_sql(SCHEMA_FILE))
        cur.execute(read_sql(TRACKING_FILE))
