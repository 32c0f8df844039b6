"""The SQLAlchemy integration: one call wires an Engine (or sessionmaker) so that every
transaction carries the ambient audit context."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from audit_log import actions, only_action
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import audit_capture
from audit_capture.database import sqlalchemy_url
from audit_capture.integrations.sqlalchemy import instrument, uninstrument

ALICE = dict(actor_id=7, actor_name="Alice Admin", actor_type="admin", source="web")


class Base(DeclarativeBase):
    pass


class Client(Base):
    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


@pytest.fixture
def engine(db_url):
    engine = sa.create_engine(sqlalchemy_url(db_url))
    instrument(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def statements(engine, tmp_path):
    """What the engine's connections send to the server: libpq's own protocol trace."""
    with open(tmp_path / "libpq.trace", "w") as trace:
        event.listen(
            engine, "connect", lambda dbapi_conn, record: dbapi_conn.pgconn.trace(trace.fileno())
        )
        engine.dispose()  # new connections from now on are traced

        class Sent:
            def __iter__(self):
                trace.flush()
                text = (tmp_path / "libpq.trace").read_text()
                # one Parse (or Query) message per statement sent
                return iter(
                    line for line in text.splitlines() if "\tParse\t" in line or "\tQuery\t" in line
                )

        yield Sent()
        engine.dispose()


def test_session_writes_carry_the_context(engine, conn):
    with audit_capture.context(**ALICE), Session(engine) as session, session.begin():
        session.execute(sa.text("insert into clients (name) values ('Via ORM session')"))
    action = only_action(conn, action="Client created")
    assert (action["actor_id"], action["actor_name"], action["actor_type"], action["source"]) == (
        "7",
        "Alice Admin",
        "admin",
        "web",
    )


def test_core_connection_and_engine_begin(engine, conn):
    with audit_capture.context(**ALICE):
        with engine.connect() as connection:
            connection.execute(sa.text("insert into clients (name) values ('core')"))
            connection.commit()
            connection.execute(
                sa.text("insert into clients (name) values ('core, second transaction')")
            )
            connection.commit()
        with engine.begin() as connection:
            connection.execute(sa.text("insert into clients (name) values ('engine.begin')"))
    assert [a["actor_name"] for a in actions(conn, resource_type="client")] == ["Alice Admin"] * 3


def test_sessionmaker_is_accepted(db_url, conn):
    engine = sa.create_engine(sqlalchemy_url(db_url))
    factory = sessionmaker(bind=engine)
    assert instrument(factory) is engine
    try:
        with (
            audit_capture.context(actor_name="Importer", actor_type="system", source="api"),
            factory.begin() as session,
        ):
            session.execute(sa.text("insert into clients (name) values ('x')"))
        assert only_action(conn, action="Client created")["actor_name"] == "Importer"
    finally:
        engine.dispose()
    with pytest.raises(TypeError, match="Engine or a sessionmaker bound to one"):
        instrument(sessionmaker())


def test_nested_contexts_inside_one_transaction(engine, conn):
    with audit_capture.context(**ALICE, request_id="req-1"), engine.begin() as connection:
        connection.execute(sa.text("insert into clients (name) values ('outer')"))
        with audit_capture.context(actor_name="Intake agent", actor_type="system", source="ai"):
            connection.execute(sa.text("insert into clients (name) values ('inner')"))
        connection.execute(sa.text("insert into clients (name) values ('outer again')"))
    got = [
        (a["resource_label"], a["actor_name"], a["source"], a["request_id"])
        for a in actions(conn, resource_type="client")
    ]
    assert got == [
        ("outer", "Alice Admin", "web", "req-1"),
        ("inner", "Intake agent", "ai", "req-1"),
        ("outer again", "Alice Admin", "web", "req-1"),
    ]


def test_no_context_sends_nothing(engine, statements, conn):
    with engine.begin() as connection:
        connection.execute(sa.text("insert into clients (name) values ('no context')"))
    sent = list(statements)
    assert any("insert into clients" in s for s in sent)  # the trace sees the statements
    assert not any("set_config" in s for s in sent)
    assert only_action(conn, action="Client created")["actor_type"] == "system"


def test_one_round_trip_per_transaction(engine, statements):
    with audit_capture.context(**ALICE):
        with engine.begin() as connection:
            for i in range(3):
                connection.execute(sa.text("select :i"), {"i": i})
        with engine.begin() as connection:
            connection.execute(sa.text("select 1"))
    sent = list(statements)
    assert sum("set_config" in s for s in sent) == 2
    # nothing else of ours: no isolation level asked of the server, no extra rollback
    assert not any("isolation level" in s or "ROLLBACK" in s for s in sent)
    # bound parameters, never values spliced into the text
    assert all("Alice" not in s for s in sent if "set_config" in s)


def test_autocommit_connections_send_nothing(engine, statements, conn):
    with (
        audit_capture.context(**ALICE),
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
    ):
        connection.execute(sa.text("insert into clients (name) values ('autocommit')"))
    sent = list(statements)
    assert any("autocommit" in s for s in sent)
    assert not any("set_config" in s for s in sent)


def test_values_do_not_outlive_the_transaction(engine, conn):
    with audit_capture.context(**ALICE), engine.begin() as connection:
        connection.execute(sa.text("select 1"))
    # same pooled connection, no context now
    with engine.begin() as connection:
        connection.execute(sa.text("insert into clients (name) values ('after')"))
        assert (
            connection.execute(sa.text("select current_setting('audit.actor_name', true)")).scalar()
            == ""
        )
    assert only_action(conn, action="Client created")["actor_type"] == "system"


def test_rollback_then_a_new_transaction_sets_the_context_again(engine, conn):
    with audit_capture.context(**ALICE), engine.connect() as connection:
        connection.execute(sa.text("insert into clients (name) values ('rolled back')"))
        connection.rollback()
        connection.execute(sa.text("insert into clients (name) values ('kept')"))
        connection.commit()
    action = only_action(conn, action="Client created")
    assert (action["resource_label"], action["actor_name"]) == ("kept", "Alice Admin")


def test_a_failed_savepoint_rolls_back_and_the_transaction_goes_on(engine, conn):
    conn.execute("create unique index on clients (email)")
    conn.commit()
    with audit_capture.context(**ALICE), Session(engine) as session, session.begin():
        session.execute(sa.text("insert into clients (name, email) values ('Jane', 'j@x')"))
        # get-or-create: try the insert in a savepoint, take the duplicate error
        with pytest.raises(sa.exc.IntegrityError), session.begin_nested():
            session.execute(
                sa.text("insert into clients (name, email) values ('Jane again', 'j@x')")
            )
        session.execute(sa.text("insert into clients (name) values ('after the savepoint')"))
    got = [(a["resource_label"], a["actor_name"]) for a in actions(conn, resource_type="client")]
    assert got == [("Jane", "Alice Admin"), ("after the savepoint", "Alice Admin")]


def test_a_savepoint_rollback_brings_back_what_was_set_before_it(engine, conn):
    with Session(engine) as session, session.begin():
        with audit_capture.context(**ALICE):
            session.execute(sa.text("insert into clients (name) values ('by Alice')"))
            with (
                pytest.raises(RuntimeError),
                session.begin_nested(),
                audit_capture.context(actor_name="Bob", actor_type="client", source="mobile"),
            ):
                session.execute(sa.text("select 1"))
                raise RuntimeError("undo the savepoint")
            session.execute(
                sa.text("insert into clients (name) values ('Alice, after the savepoint')")
            )
        # the context ended; the server still had Alice's values from before the savepoint
        session.execute(sa.text("insert into clients (name) values ('nobody')"))
    got = [(a["resource_label"], a["actor_name"]) for a in actions(conn, resource_type="client")]
    assert got == [
        ("by Alice", "Alice Admin"),
        ("Alice, after the savepoint", "Alice Admin"),
        ("nobody", "postgres"),
    ]


def test_a_connection_dropped_without_close_leaves_nothing_applied(db_url, conn):
    import gc

    engine = sa.create_engine(sqlalchemy_url(db_url), pool_size=1, max_overflow=0)
    instrument(engine)
    job = dict(actor_name="Nightly import", actor_type="system", source="ai")

    def leak_a_connection():
        engine.connect().execute(sa.text("select 1"))  # context sent; neither committed nor closed

    try:
        with audit_capture.context(**job):
            leak_a_connection()
            gc.collect()  # the pool rolls it back and takes it again
            with engine.begin() as connection:  # the same connection, the same context
                connection.execute(sa.text("insert into clients (name) values ('next job')"))
    finally:
        engine.dispose()
    assert only_action(conn, action="Client created")["actor_name"] == "Nightly import"


def test_uninstrument(engine, statements):
    uninstrument(engine)
    with audit_capture.context(**ALICE), engine.begin() as connection:
        connection.execute(sa.text("select 1"))
    sent = list(statements)
    assert any("select 1" in s for s in sent)
    assert not any("set_config" in s for s in sent)


def test_bad_values_fail_before_anything_is_sent(engine):
    with (
        pytest.raises(audit_capture.InvalidContextValue, match="audit.source is 'webb'"),
        audit_capture.context(actor_type="admin", source="webb"),
    ):
        pass


def test_batch_and_importing_through_a_session(engine, conn):
    from audit_capture.integrations.sqlalchemy import batch, importing

    with audit_capture.context(**ALICE), Session(engine) as session, session.begin():
        with importing(session):
            session.execute(
                sa.text(
                    "insert into clients (id, name) select i, 'c' || i from generate_series(1, 3) i"
                )
            )
        with batch(session, "Batch client deletion"):
            for client_id in (1, 2, 3):
                session.execute(sa.text("delete from clients where id = :id"), {"id": client_id})
    imported = only_action(conn, action="Clients imported (3)")
    deleted = only_action(conn, action="Batch client deletion")
    assert (imported["action_type"], imported["actor_name"]) == ("import", "Alice Admin")
    assert (deleted["row_count"], deleted["actor_name"]) == (3, "Alice Admin")


def test_batch_and_importing_take_the_orm_changes_made_in_the_block(engine, conn):
    from audit_capture.integrations.sqlalchemy import batch, importing

    with audit_capture.context(**ALICE):
        with Session(engine) as session, session.begin():
            session.add(Client(name="Added before the import"))  # pending, not the import's
            with importing(session):
                session.add_all([Client(name=f"Imported {i}") for i in range(3)])
        with Session(engine) as session, session.begin():
            clients = session.scalars(sa.select(Client)).all()
            session.add(Client(name="Added before the batch"))
            with batch(session, "Batch client deletion"):
                for client in clients:
                    session.delete(client)  # sent at the next flush, not at once
    got = [(a["action"], a["row_count"]) for a in actions(conn, resource_type="client")]
    assert got == [
        ("Client created", 1),
        ("Clients imported (3)", 3),
        ("Client created", 1),
        ("Batch client deletion", 4),
    ]
