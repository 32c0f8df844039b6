"""psycopg_pool: a pooled connection whose transaction carries the ambient context.

    pool = ConnectionPool(url)
    with audit_capture.context(actor_id=7, actor_name="Alice", actor_type="admin", source="api"):
        with audited_connection(pool) as conn:
            conn.execute("update clients set status = 'retained' where id = %s", (12,))

``audited_connection`` takes a connection from the pool, opens a transaction, sends the
ambient context (one round trip, none when there is no context), and commits when the
block ends (rolls back on an exception). The values are transaction-local, so the next
user of the connection never inherits them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from audit_capture.context import apply_context


@contextmanager
def audited_connection(pool, **getconn_kwargs) -> Iterator[psycopg.Connection]:
    """A connection from ``pool`` in a transaction that carries the ambient context."""
    with pool.connection(**getconn_kwargs) as conn, conn.transaction():
        apply_context(conn)
        yield conn
