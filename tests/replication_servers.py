"""Two more throwaway PostgreSQL servers for the replication tests: a primary with
``wal_level = logical`` and an audit server (the subscriber), started as the session's
server is (``EmbeddedPostgresql``: as ``nobody`` when root, 127.0.0.1 only), for one
test module, and stopped at its end by the fixture that started them. The session's
server (conftest.py) stays as it is: wal_level replica, no slot, no subscription.

conftest.py imports the two fixtures, so any test may ask for them:

- ``primary_server``     the primary (wal_level = logical, a few slots and WAL senders)
- ``subscriber_server``  the audit server
- ``create_database(server, name, template="template0")`` and ``drop_database(...)``
"""

from __future__ import annotations

import psycopg
import pytest
from pg_binaries import bin_dir
from psycopg import sql

from audit_capture.embedded import SERVER_SETTINGS, EmbeddedPostgresql

PRIMARY_SETTINGS = (
    f"{SERVER_SETTINGS} -c wal_level=logical -c max_replication_slots=20"
    " -c max_wal_senders=20 -c wal_sender_timeout=10s"
)
SUBSCRIBER_SETTINGS = (
    f"{SERVER_SETTINGS} -c max_logical_replication_workers=20 -c max_worker_processes=30"
    " -c wal_retrieve_retry_interval=500ms"
)


def _start(settings: str) -> EmbeddedPostgresql:
    return EmbeddedPostgresql(bin_dir=bin_dir(), postgres_args=settings)


@pytest.fixture(scope="module")
def primary_server():
    server = _start(PRIMARY_SETTINGS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def subscriber_server():
    server = _start(SUBSCRIBER_SETTINGS)
    try:
        yield server
    finally:
        # subscriptions first: their workers would keep connecting to a stopped primary
        _drop_subscriptions(server)
        server.stop()


def _drop_subscriptions(server: EmbeddedPostgresql) -> None:
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        databases = [
            name
            for (name,) in admin.execute(
                "select distinct d.datname from pg_subscription s"
                " join pg_database d on d.oid = s.subdbid"
            )
        ]
    for name in databases:
        with psycopg.connect(server.url(name), autocommit=True) as conn:
            for (sub,) in conn.execute("select subname from pg_subscription").fetchall():
                ident = sql.Identifier(sub)
                conn.execute(sql.SQL("alter subscription {} disable").format(ident))
                conn.execute(sql.SQL("alter subscription {} set (slot_name = none)").format(ident))
                conn.execute(sql.SQL("drop subscription {}").format(ident))


def create_database(server: EmbeddedPostgresql, name: str, template: str = "template0") -> str:
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return server.url(name)


def drop_database(server: EmbeddedPostgresql, name: str) -> None:
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
