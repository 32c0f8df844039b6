"""Reading the log back in tests: plain queries, so a test says what it expects."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

COLUMNS = (
    "id, action, action_type, resource_type, resource_id, resource_label, row_count, "
    "actor_id, actor_name, actor_type, source, changes, db_user, transaction_id, "
    "request_id, context, table_name"
)


def actions(conn: psycopg.Connection, **where: object) -> list[dict]:
    """The log's actions, oldest first, optionally filtered by column equality."""
    clauses = " and ".join(f"{name} = %s" for name in where) or "true"
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"select {COLUMNS} from audit.action_log where {clauses} order by id",
            list(where.values()),
        )
        return cur.fetchall()


def only_action(conn: psycopg.Connection, **where: object) -> dict:
    """The one action matching ``where``; fails when there are none or several."""
    found = actions(conn, **where)
    assert len(found) == 1, f"expected one action matching {where}, got {found}"
    return found[0]


def items(conn: psycopg.Connection, action_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from audit.action_items(%s)", (action_id,))
        return cur.fetchall()


def count_actions(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) from audit.action_log").fetchone()[0]
