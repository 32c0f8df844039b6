"""psycopg_pool: two pooled connections serving 200 requests of different actors never
attribute a change to the wrong actor, and never carry one request's actor into the next."""

from __future__ import annotations

import threading

import pytest
from audit_log import actions
from psycopg_pool import ConnectionPool

import audit_capture
from audit_capture.integrations.pool import audited_connection

REQUESTS = 200
THREADS = 8


@pytest.fixture
def pool(db_url):
    with ConnectionPool(db_url, min_size=2, max_size=2, open=True) as pool:
        yield pool


def serve(pool, numbers, errors):
    try:
        for n in numbers:
            actor = f"Actor {n}"
            with (
                audit_capture.context(
                    actor_id=n,
                    actor_name=actor,
                    actor_type="client",
                    source="api",
                    request_id=f"req-{n}",
                ),
                audited_connection(pool) as conn,
            ):
                # the row says who should be blamed for it
                conn.execute(
                    "insert into clients (name, notes) values (%s, %s)", (f"by {actor}", actor)
                )
            # between requests, work without any context must stay anonymous
            if n % 10 == 0:
                with audited_connection(pool) as conn:
                    conn.execute(
                        "insert into clients (name) values (%s)", (f"anonymous after {n}",)
                    )
    except Exception as exc:  # reported by the test
        errors.append(repr(exc))


def test_pooled_connections_never_misattribute(pool, conn):
    errors: list[str] = []
    threads = [
        threading.Thread(target=serve, args=(pool, range(i, REQUESTS, THREADS), errors))
        for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    logged = actions(conn, resource_type="client")
    attributed = [a for a in logged if a["resource_label"].startswith("by ")]
    anonymous = [a for a in logged if a["resource_label"].startswith("anonymous")]
    assert len(attributed) == REQUESTS and len(anonymous) == REQUESTS // 10
    for action in attributed:
        n = int(action["actor_id"])
        assert action["resource_label"] == f"by Actor {n}"
        assert (action["actor_name"], action["request_id"], action["source"]) == (
            f"Actor {n}",
            f"req-{n}",
            "api",
        )
    for action in anonymous:
        assert (
            action["actor_id"],
            action["actor_type"],
            action["source"],
            action["request_id"],
        ) == (None, "system", None, None)
