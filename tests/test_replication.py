"""``audit-capture replicate``: the log on an audit server through logical replication,
read there through the viewer; ``status`` on both sides; the faults.

Two servers of this module's own (replication_servers.py): a primary with wal_level =
logical and the subscriber. The end-to-end tests share one pair of databases set up
once (``pair``), in the order written; each fault test makes databases of its own.
Waits poll with a deadline: nothing here asserts a time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from html import unescape
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo
from replication_servers import create_database, drop_database

from audit_capture import migrate, replication
from audit_capture.cli import cli
from audit_capture.resources import triggers_dir

REPLICATOR = "audit_replicator"  # the least-privileged role the subscriber connects as
PASSWORD = "s3cret-Pa55word"
DEADLINE = 90  # seconds a replicated change may take on a loaded machine
_numbers = itertools.count(1)


def run(url: str | None, *args: str):
    argv = (["--database-url", url] if url else []) + list(args)
    return CliRunner().invoke(cli, argv, env={"AUDIT_CAPTURE_DATABASE_URL": None})


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], result.output
    return errors[0]


def wait_until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE} s: {what}")
        time.sleep(0.2)


def value(url: str, query: str, params=None):
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def rows(url: str, query: str, params=None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


LOG = "select id, md5(l::text) from audit.action_log l where id < 1000000000000000 order by id"
CHUNKS = "select action_id, first_item, md5(c::text) from audit.action_item_chunk c order by 1, 2"


# -- servers and databases ---------------------------------------------------------


@pytest.fixture(scope="module")
def primary_template(primary_server) -> str:
    """A database of the primary at head with the sample CRM: the template of each
    test's primary database."""
    from audit_capture.sample import install_crm

    url = create_database(primary_server, "primary_template")
    migrate.upgrade(url, "head")
    with psycopg.connect(url) as conn, conn.transaction():
        install_crm(conn)
    with psycopg.connect(primary_server.url(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("create role {} login replication password {}").format(
                sql.Identifier(REPLICATOR), sql.Literal(PASSWORD)
            )
        )
        admin.execute(sql.SQL("grant audit_reader to {}").format(sql.Identifier(REPLICATOR)))
    return "primary_template"


@pytest.fixture
def fresh(primary_server, subscriber_server, primary_template):
    """A primary database (from the template) and an empty subscriber database for one
    test, dropped after it: (primary URL, subscriber URL)."""
    number = next(_numbers)
    primary_name, subscriber_name = f"primary_{number}", f"audit_{number}"
    primary = create_database(primary_server, primary_name, primary_template)
    subscriber = create_database(subscriber_server, subscriber_name)
    try:
        yield primary, subscriber
    finally:
        _unsubscribe(subscriber)
        drop_database(subscriber_server, subscriber_name)
        drop_database(primary_server, primary_name)


def _unsubscribe(subscriber: str) -> None:
    with psycopg.connect(subscriber, autocommit=True) as conn:
        for (name,) in conn.execute(
            "select subname from pg_subscription s join pg_database d"
            " on d.oid = s.subdbid where d.datname = current_database()"
        ).fetchall():
            conn.execute(sql.SQL("drop subscription {}").format(sql.Identifier(name)))


def replicator_conninfo(primary_url: str, **overrides) -> str:
    return make_conninfo(primary_url, user=REPLICATOR, password=PASSWORD, **overrides)


def publications(primary_url: str) -> list[str]:
    return [name for (name,) in rows(primary_url, "select pubname from pg_publication")]


def slots(primary_url: str) -> list[str]:
    return [
        name
        for (name,) in rows(
            primary_url,
            "select slot_name from pg_replication_slots where database = current_database()",
        )
    ]


# -- end to end: one pair of databases, set up once ----------------------------------


class Pair:
    def __init__(self, primary: str, subscriber: str, output: str):
        self.primary = primary
        self.subscriber = subscriber
        self.output = output

    def caught_up(self) -> bool:
        """Every row of the primary's log is on the subscriber, as it is on the primary
        (the subscriber may hold more: what the primary no longer has)."""
        return all(
            set(rows(self.primary, query)) <= set(rows(self.subscriber, query))
            for query in (LOG, CHUNKS)
        )

    def wait(self, what: str = "the subscriber holds the primary's log") -> None:
        wait_until(what, self.caught_up)


@pytest.fixture(scope="module")
def pair(primary_server, subscriber_server, primary_template):
    """The primary's database with an action written before replicate ran, replicated
    to the subscriber as the least-privileged role REPLICATOR."""
    primary = create_database(primary_server, "crm", primary_template)
    subscriber = create_database(subscriber_server, "crm_audit")
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("insert into clients (name) values ('Before Replication')")
    result = run(
        primary,
        "replicate",
        "--subscriber",
        subscriber,
        "--primary-conninfo",
        replicator_conninfo(primary),
    )
    assert result.exit_code == 0, result.output
    wait_until(
        "the initial copy of both tables is done",
        lambda: (
            value(subscriber, "select array_agg(srsubstate::text) from pg_subscription_rel")
            == ["r", "r"]
        ),
    )
    yield Pair(primary, subscriber, result.output)
    _unsubscribe(subscriber)


def test_replicate_publishes_installs_and_subscribes(pair):
    assert pair.output.splitlines() == [
        "primary: publication audit_capture (audit.action_log, audit.action_item_chunk;"
        " insert, update only, via the partition root) created",
        f"subscriber: audit schema installed at revision {migrate.head()}",
        "subscriber: its own actions take ids from 1,000,000,000,000,000 up",
        *(
            [
                "subscriber: a replicated row it holds already is skipped, not an error"
                " (audit.maintain() on the primary may send rows of its default partitions"
                " again)"
            ]
            if "0003" in migrate.revisions()
            else []
        ),
        "subscriber: subscription audit_capture created (slot audit_capture_crm_audit on the"
        " primary); existing actions are being copied: audit-capture status on the"
        " subscriber shows when its tables are ready",
    ]
    assert PASSWORD not in pair.output
    assert migrate.current(pair.subscriber) == migrate.head()
    # copy_data: the action written before replicate ran reaches the subscriber
    pair.wait()
    assert value(pair.subscriber, "select action from audit.action_log") == "Client created"


def test_a_second_run_says_it_is_set_up_and_changes_nothing(pair):
    result = run(
        pair.primary,
        "replicate",
        "--subscriber",
        pair.subscriber,
        "--primary-conninfo",
        replicator_conninfo(pair.primary),
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "replication already set up: publication audit_capture on the primary, subscription"
        " audit_capture on the subscriber (enabled, slot audit_capture_crm_audit)"
    ]
    assert publications(pair.primary) == ["audit_capture"]
    assert slots(pair.primary) == ["audit_capture_crm_audit"]


def test_a_publication_changed_by_hand_is_put_back(pair):
    with psycopg.connect(pair.primary, autocommit=True) as conn:
        conn.execute("alter publication audit_capture set (publish = 'insert, delete, truncate')")
    assert (
        "WARNING: publication audit_capture publishes insert, delete, truncate"
        in run(pair.primary, "status").output
    )
    result = run(pair.primary, "replicate", "--subscriber", pair.subscriber)
    assert result.exit_code == 0, result.output
    assert "put back as replicate makes it" in result.output
    assert rows(
        pair.primary,
        "select pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot from pg_publication",
    ) == [(True, True, False, False, True)]


@pytest.fixture(scope="module")
def primary_writes(pair) -> int:
    """Bulk, status, event and audit.batch writes on the primary, once per worker's pair
    (its tests may run on another worker than the one that wrote): the id of the first
    action they made."""
    first = value(pair.primary, "select coalesce(max(id), 0) + 1 from audit.action_log")
    with psycopg.connect(pair.primary, autocommit=True) as conn:
        conn.execute(
            "insert into clients (name) select 'Client ' || g from generate_series(1, 40) g"
        )
        conn.execute("update clients set status = 'contacted' where name = 'Client 7'")
        conn.execute("update clients set notes = 'bulk' where name like 'Client 1%'")
        conn.execute("select audit.log_action('login', 'LawRuler login', 'integration')")
        with conn.transaction():  # audit.batch grows its action: an UPDATE of the log
            conn.execute("select set_config('audit.batch', 'Quarterly cleanup', true)")
            conn.execute("update clients set notes = 'one' where name = 'Client 2'")
            conn.execute("update clients set notes = 'many' where name like 'Client 3%'")
    pair.wait()
    return first


def test_writes_on_the_primary_reach_the_subscriber(pair, primary_writes):
    actions = rows(
        pair.subscriber,
        "select action, row_count from audit.action_log where id >= %s order by id",
        (primary_writes,),
    )
    assert actions == [
        ("Batch client creation", 40),
        ("Client status change", 1),
        ("Bulk client notes update", 11),
        ("LawRuler login", 0),
        ("Quarterly cleanup", 12),  # 1 + 11: the batch's UPDATE was replicated too
    ]
    # the action the pair's fixture wrote before replicate ran came over with the copy
    first = "select action, row_count from audit.action_log order by id limit 1"
    assert rows(pair.subscriber, first) == [("Client created", 1)]
    assert value(pair.subscriber, "select count(*) from audit.action_item_chunk") >= 2


def test_a_row_s_history_reads_the_same_on_the_subscriber(pair, primary_writes):
    """The chunks' ids (resource_ids, UPDATE chunks too) and the indexes by resource are
    on the audit server as well: audit.history() there answers as on the primary."""
    client = value(pair.primary, "select id::text from clients where name = 'Client 2'")
    # by resource type: the audit server has no clients table to name as a regclass
    history = "select action_id, action, row_count, items from audit.history('client', %s)"
    on_primary = rows(pair.primary, history, (client,))
    assert [action for _, action, _, _ in on_primary] == [
        "Quarterly cleanup",  # a batch of 12 rows: items in chunks
        "Batch client creation",  # a bulk INSERT of 40
    ]
    assert rows(pair.subscriber, history, (client,)) == on_primary


def test_the_viewer_reads_the_log_on_the_subscriber_with_a_read_only_role(
    pair, primary_writes, subscriber_server
):
    from viewer_data import app_config, sign_in

    from audit_capture.viewer import create_app
    from audit_capture.viewer.app import close

    pair.wait()
    with psycopg.connect(pair.subscriber, autocommit=True) as admin:
        admin.execute("create role subscriber_viewer login")
        admin.execute("grant audit_reader to subscriber_viewer")
    reader = make_conninfo(pair.subscriber, user="subscriber_viewer")
    app = create_app(app_config(reader))
    try:
        client = app.test_client()
        assert sign_in(client).status_code == 302
        page = unescape(client.get("/").text)
        for label in ("Batch client creation", "Client status change", "LawRuler login"):
            assert label in page
        bulk = value(
            pair.subscriber,
            "select id from audit.action_log where action = 'Bulk client notes update'",
        )
        detail = unescape(client.get(f"/actions/{bulk}").text)
        assert "Bulk client notes update" in detail
        items = rows(pair.subscriber, "select resource_id from audit.action_items(%s)", (bulk,))
        assert len(items) == 11
        for (resource_id,) in items:
            assert f">{resource_id}<" in detail
        assert "bulk" in detail  # the items' new value
    finally:
        close(app)
    # hostile: the viewer's role reads, never writes, on the audit server either
    with psycopg.connect(reader, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("delete from audit.action_log")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update audit.action_log set actor_name = 'someone else'")


def test_the_subscribers_own_actions_take_ids_of_their_own(pair):
    """An action written on the subscriber itself (its retention's, an event) never
    takes an id the primary will send."""
    own = value(pair.subscriber, "select audit.log_action('export', 'Audit server export')")
    assert own >= replication.SUBSCRIBER_FIRST_ID
    with psycopg.connect(pair.primary, autocommit=True) as conn:
        conn.execute("insert into clients (name) values ('After the local action')")
    pair.wait()
    assert (
        value(pair.subscriber, "select count(*) from audit.action_log where id = %s", (own,)) == 1
    )
    # resetting the range is seen by status, and replicate puts it back
    with psycopg.connect(pair.subscriber, autocommit=True) as conn:
        conn.execute("alter table audit.action_log alter column id set minvalue 1 restart with 1")
    result = run(pair.subscriber, "status")
    assert result.exit_code == 1
    assert "WARNING: this server's own actions would take ids below" in result.output
    result = run(pair.primary, "replicate", "--subscriber", pair.subscriber)
    assert "subscriber: its own actions take ids from 1,000,000,000,000,000 up" in result.output
    assert run(pair.subscriber, "status").exit_code == 0


def test_rows_removed_on_the_primary_stay_on_the_subscriber(pair):
    """Only inserts and updates are published: a month's partitions detached and
    dropped on the primary (what retention does), or rows a superuser deletes behind
    the append-only triggers' back on an unpartitioned log, stay on the subscriber."""
    with psycopg.connect(pair.primary, autocommit=True) as conn:  # an action with chunks,
        # whichever tests ran before this one on this worker
        conn.execute("insert into clients (name) select 'Kept ' || g from generate_series(1, 3) g")
    pair.wait()
    before = rows(pair.subscriber, LOG)
    chunks = value(pair.subscriber, "select count(*) from audit.action_item_chunk")
    with psycopg.connect(pair.primary, autocommit=True) as conn:
        if value(pair.primary, "select to_regclass('audit.log_partitions') is not null"):
            months = conn.execute(
                "select action_partition::text, chunk_partition::text from audit.log_partitions"
                " where kind = 'month' and from_at <= now() and now() < to_at"
            ).fetchall()
            assert len(months) == 1
            conn.execute("set role audit_owner")
            for parent, partition in zip(
                ("audit.action_log", "audit.action_item_chunk"), months[0], strict=True
            ):
                conn.execute(f"alter table {parent} detach partition {partition}")
                conn.execute(f"drop table {partition}")
            conn.execute("reset role")
        else:
            conn.execute("alter table audit.action_log disable trigger action_log_append_only")
            conn.execute("alter table audit.action_item_chunk disable trigger user")
            conn.execute("delete from audit.action_log")
            conn.execute("truncate audit.action_item_chunk")
            conn.execute("alter table audit.action_log enable trigger action_log_append_only")
            conn.execute("alter table audit.action_item_chunk enable trigger user")
        assert value(pair.primary, "select count(*) from audit.action_log") == 0
        marker = conn.execute(
            "select audit.log_action('logout', 'LawRuler logout', 'integration')"
        ).fetchone()[0]
    wait_until(
        "the marker reaches the subscriber",
        lambda: (
            value(pair.subscriber, "select count(*) from audit.action_log where id = %s", (marker,))
            == 1
        ),
    )
    after = rows(pair.subscriber, LOG)
    assert after[:-1] == before and after[-1][0] == marker
    assert value(pair.subscriber, "select count(*) from audit.action_item_chunk") == chunks > 0


def test_seal_is_refused_on_the_audit_server_and_runs_on_the_primary(pair):
    """Replicated actions arrive late and in any order: a seal of the audit server's copy
    would cover ranges they still arrive into. The primary seals."""
    assert_one_line_error(
        run(pair.subscriber, "seal"),
        "this database is an audit server: it receives the log from its primary by"
        " replication, so seal the primary",
    )
    assert value(pair.subscriber, "select count(*) from audit.seal_block") == 0
    sealed = run(pair.primary, "seal")
    assert sealed.exit_code == 0, sealed.output
    assert value(pair.primary, "select count(*) from audit.seal_block") > 0


def test_status_on_both_sides(pair):
    pair.wait()
    primary = run(pair.primary, "status")
    assert primary.exit_code == 0, primary.output
    assert (
        "replication (primary): publication audit_capture (audit.action_item_chunk,"
        " audit.action_log; insert, update, via the partition root), max_slot_wal_keep_size = -1"
        in primary.output
    )
    assert "  slot audit_capture_crm_audit: active, lag " in primary.output
    subscriber = run(pair.subscriber, "status")
    assert subscriber.exit_code == 0, subscriber.output
    assert (
        "replication (subscriber): subscription audit_capture (enabled, applying,"
        " slot audit_capture_crm_audit)" in subscriber.output
    )
    assert "  audit.action_log: ready" in subscriber.output
    assert "  audit.action_item_chunk: ready" in subscriber.output
    assert "last message from the primary" in subscriber.output


def test_status_reads_with_least_privilege(pair):
    """audit_reader shows the slot and its lag in bytes; the seconds need pg_monitor."""
    with psycopg.connect(pair.primary, autocommit=True) as conn:
        conn.execute("create role status_reader login in role audit_reader")
        conn.execute("create role status_monitor login in role audit_reader, pg_monitor")
    for role in ("status_reader", "status_monitor"):
        result = run(make_conninfo(pair.primary, user=role), "status")
        assert "  slot audit_capture_crm_audit: active, lag " in result.output, result.output
        assert "Traceback" not in result.output


def test_status_warns_when_the_subscriber_is_down_and_wal_piles_up(pair):
    with psycopg.connect(pair.subscriber, autocommit=True) as conn:
        conn.execute("alter subscription audit_capture disable")
    wait_until(
        "the slot is inactive",
        lambda: value(pair.primary, "select not active from pg_replication_slots") is True,
    )
    with psycopg.connect(pair.primary) as conn:
        # The test servers run synchronous_commit=off: without this, the rows' WAL may not
        # be written yet when status reads pg_current_wal_lsn() (seen on 18), and nothing
        # is retained.
        conn.execute("set synchronous_commit = on")
        conn.execute(
            "insert into clients (name) select 'Later ' || g from generate_series(1, 200) g"
        )
    result = run(pair.primary, "status", "--wal-warning", "16kB")
    assert result.exit_code == 1, result.output
    assert "slot audit_capture_crm_audit: INACTIVE" in result.output
    assert (
        "WARNING: slot audit_capture_crm_audit retains" in result.output
        and "(above 16.0 kB; the subscriber is not connected): max_slot_wal_keep_size is"
        " unlimited (-1)"
        in result.output
    ), result.output
    assert run(pair.primary, "status").exit_code == 0  # under the default 1 GB
    subscriber = run(pair.subscriber, "status")
    assert subscriber.exit_code == 1
    assert "WARNING: subscription audit_capture is disabled" in subscriber.output
    with psycopg.connect(pair.subscriber, autocommit=True) as conn:
        conn.execute("alter subscription audit_capture enable")
    pair.wait("the subscriber catches up once enabled again")


@pytest.mark.parametrize(
    ("value", "message"),
    [("lots", "'lots' is not a size"), ("9" * 400 + "GB", "is more than")],
)
def test_a_bad_wal_warning_is_one_line(pair, value, message):
    result = run(pair.primary, "status", "--wal-warning", value)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


# -- faults: each one line, nothing left on the primary -----------------------------


def test_wal_level_not_logical_is_one_line(db_url, empty_db_url):
    """The session's server runs with wal_level = replica."""
    result = run(db_url, "replicate", "--subscriber", empty_db_url)
    assert_one_line_error(
        result, "wal_level is 'replica'", "wal_level = logical", "restart PostgreSQL"
    )
    assert publications(db_url) == []
    assert migrate.current(empty_db_url) is None


def test_an_unreachable_subscriber_creates_nothing_on_the_primary(fresh):
    primary, _ = fresh
    result = run(primary, "replicate", "--subscriber", "postgresql://postgres@127.0.0.1:1/audit")
    assert_one_line_error(
        result, "the subscriber cannot be reached", "127.0.0.1:1", "nothing was created"
    )
    assert publications(primary) == [] and slots(primary) == []


def test_a_subscriber_that_cannot_reach_the_primary_leaves_nothing(fresh):
    primary, subscriber = fresh
    unreachable = make_conninfo(primary, port="1", password=PASSWORD)
    result = run(
        primary, "replicate", "--subscriber", subscriber, "--primary-conninfo", unreachable
    )
    error = assert_one_line_error(
        result, "the subscriber could not subscribe to the primary", "--primary-conninfo"
    )
    assert PASSWORD not in result.output and "***" in error
    assert publications(primary) == [] and slots(primary) == []
    subscriptions = (
        "select count(*) from pg_subscription s join pg_database d on d.oid = s.subdbid"
        " where d.datname = current_database()"
    )
    assert value(subscriber, subscriptions) == 0
    # a rerun with the conninfo the subscriber can use finishes the job
    result = run(
        primary,
        "replicate",
        "--subscriber",
        subscriber,
        "--primary-conninfo",
        replicator_conninfo(primary),
    )
    assert result.exit_code == 0, result.output
    assert "subscription audit_capture created" in result.output
    assert value(subscriber, subscriptions) == 1


def test_a_conninfo_naming_another_database_is_refused(fresh):
    primary, subscriber = fresh
    elsewhere = make_conninfo(primary, dbname="postgres", password=PASSWORD)
    result = run(primary, "replicate", "--subscriber", subscriber, "--primary-conninfo", elsewhere)
    error = assert_one_line_error(result, "names database 'postgres', not the primary's")
    assert PASSWORD not in error
    assert publications(primary) == [] and migrate.current(subscriber) is None


def test_a_bad_slot_name_is_one_line(fresh):
    primary, subscriber = fresh
    result = run(primary, "replicate", "--subscriber", subscriber, "--slot-name", "x'; drop")
    assert_one_line_error(result, '--slot-name "x\'; drop": a slot name is 1 to 63')
    assert publications(primary) == [] and migrate.current(subscriber) is None


def test_a_slot_of_that_name_already_on_the_primary_is_refused(fresh):
    primary, subscriber = fresh
    value(primary, "select pg_create_logical_replication_slot('taken_slot', 'pgoutput')")
    try:
        result = run(primary, "replicate", "--subscriber", subscriber, "--slot-name", "taken_slot")
        assert_one_line_error(result, "the replication slot 'taken_slot' already exists")
        assert publications(primary) == []
    finally:
        value(primary, "select pg_drop_replication_slot('taken_slot')")


def test_a_subscriber_on_an_older_revision_is_refused(fresh):
    primary, subscriber = fresh
    older = migrate.revisions()[0]
    migrate.upgrade(subscriber, older)
    result = run(primary, "replicate", "--subscriber", subscriber)
    assert_one_line_error(
        result,
        f"the subscriber's audit schema is at revision {older}, older than the primary's"
        f" {migrate.head()}: upgrade it first",
    )
    assert publications(primary) == []
    assert migrate.current(subscriber) == older


def test_a_subscriber_newer_than_the_primary_is_refused(primary_server, fresh):
    _, subscriber = fresh
    older = migrate.revisions()[0]
    name = f"old_primary_{next(_numbers)}"
    primary = create_database(primary_server, name)
    try:
        migrate.upgrade(primary, older)
        migrate.upgrade(subscriber, "head")
        result = run(primary, "replicate", "--subscriber", subscriber)
        assert_one_line_error(result, f"newer than the primary's {older}: upgrade the primary")
        assert publications(primary) == []
    finally:
        drop_database(primary_server, name)


def test_a_subscriber_holding_another_log_is_refused(fresh):
    primary, subscriber = fresh
    migrate.upgrade(subscriber, "head")
    value(subscriber, "select audit.log_action('login', 'Somebody else''s login')")
    result = run(primary, "replicate", "--subscriber", subscriber)
    assert_one_line_error(result, "already holds actions of another log")
    assert publications(primary) == []


def test_the_primary_itself_as_subscriber_is_refused(fresh, primary_server):
    primary, _ = fresh
    other = primary_server.url("postgres")
    result = run(primary, "replicate", "--subscriber", other)
    assert_one_line_error(result, "on the primary's own PostgreSQL server")
    assert publications(primary) == []


def test_a_replication_role_without_replication_is_refused(fresh):
    primary, subscriber = fresh
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create role {} login password {} in role audit_reader").format(
                sql.Identifier(f"weak_{conn.info.dbname}"), sql.Literal(PASSWORD)
            )
        )
        weak = f"weak_{conn.info.dbname}"
    try:
        conninfo = make_conninfo(primary, user=weak, password=PASSWORD)
        result = run(
            primary, "replicate", "--subscriber", subscriber, "--primary-conninfo", conninfo
        )
        assert_one_line_error(
            result, f"role '{weak}' cannot feed the subscriber", f"ALTER ROLE {weak} REPLICATION"
        )
        assert PASSWORD not in result.output
        assert publications(primary) == []
    finally:
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(weak)))


def test_a_subscriber_role_that_may_not_create_a_subscription_is_refused(fresh):
    primary, subscriber = fresh
    with psycopg.connect(subscriber, autocommit=True) as conn:
        name = f"dba_{conn.info.dbname}"
        conn.execute(sql.SQL("create role {} login createrole").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("grant create on database {} to {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(name)
            )
        )
        version = conn.execute("show server_version_num").fetchone()[0]
    result = run(primary, "replicate", "--subscriber", make_conninfo(subscriber, user=name))
    if int(version) < 160000:  # only a superuser may create a subscription before 16
        assert_one_line_error(result, f"role '{name}' is not a superuser of the subscriber")
    else:  # from 16, a member of pg_create_subscription with CREATE on the database
        assert_one_line_error(
            result,
            f"role '{name}' may not create a subscription on the subscriber: grant it"
            " pg_create_subscription and CREATE on the database",
        )
    assert publications(primary) == []


def test_parse_size():
    assert replication.parse_size("1GB") == 1024**3
    assert replication.parse_size("512 mb") == 512 * 1024**2
    assert replication.parse_size("100") == 100
    for bad in ("", "1 GiB", "-1GB", "GB"):
        with pytest.raises(ValueError, match="is not a size"):
            replication.parse_size(bad)


# -- the log's tables replaced under a subscription (a schema upgrade) ---------------


def _replace_log_tables(url: str) -> None:
    """What an upgrade that partitions the log does to a table, in short: the old one
    renamed, a new one under the name."""
    with psycopg.connect(url) as conn, conn.transaction():
        for table in ("action_log", "action_item_chunk"):
            conn.execute(f"alter table audit.{table} rename to {table}_old")
            conn.execute(f"create table audit.{table} (like audit.{table}_old including all)")
            conn.execute(f"alter table audit.{table} owner to audit_owner")


def _confirmed_past(primary: str, lsn: str) -> bool:
    return value(
        primary,
        "select bool_and(confirmed_flush_lsn >= %s::pg_lsn) from pg_replication_slots"
        " where slot_name not like 'pg\\_%%' and database = current_database()",
        (lsn,),
    )


def test_a_log_table_replaced_on_the_subscriber_is_seen_and_subscribed_again(fresh):
    primary, subscriber = fresh
    result = run(
        primary,
        "replicate",
        "--subscriber",
        subscriber,
        "--primary-conninfo",
        replicator_conninfo(primary),
    )
    assert result.exit_code == 0, result.output
    logged = "select id from audit.action_log where action = %s"
    first = value(primary, "select audit.log_action('login', 'First login')")
    wait_until("the first action arrives", lambda: value(subscriber, logged, ("First login",)))

    _replace_log_tables(subscriber)
    status = run(subscriber, "status")
    assert status.exit_code == 1
    assert (
        "WARNING: subscription audit_capture does not apply to audit.action_log,"
        " audit.action_item_chunk (replaced since it was made" in status.output
    )
    # PostgreSQL's own behaviour, the reason for the warning: the change is skipped
    value(primary, "select audit.log_action('login', 'Skipped login')")
    lsn = value(primary, "select pg_current_wal_lsn()::text")
    wait_until("the subscriber confirms past the write", lambda: _confirmed_past(primary, lsn))
    assert value(subscriber, logged, ("Skipped login",)) is None

    result = run(primary, "replicate", "--subscriber", subscriber)
    assert result.exit_code == 0, result.output
    assert "subscriber: subscription audit_capture made again on audit.action_log," in (
        result.output
    )
    value(primary, "select audit.log_action('login', 'Later login')")
    wait_until("a later action arrives", lambda: value(subscriber, logged, ("Later login",)))
    # resumed where it stopped: nothing applied twice
    assert value(subscriber, "select count(*) from audit.action_log where id = %s", (first,)) == 0
    assert (
        value(
            subscriber,
            "select count(*) from pg_stat_subscription_stats where apply_error_count > 0",
        )
        == 0
    )


def test_an_upgrade_moves_the_publication_onto_the_new_tables(fresh):
    """triggers/16_replication.sql, run by every upgrade and repair in its transaction:
    the publication (audit_owner's) follows the names, and rows written after the
    change reach the audit server."""
    primary, subscriber = fresh
    assert run(primary, "replicate", "--subscriber", subscriber).exit_code == 0
    assert value(primary, "select pubowner::regrole::text from pg_publication") == "audit_owner"
    # the primary's new tables: replaced in one transaction with the state file
    with psycopg.connect(primary) as conn, conn.transaction():
        for table in ("action_log", "action_item_chunk"):
            conn.execute(f"alter table audit.{table} rename to {table}_old")
            conn.execute(f"create table audit.{table} (like audit.{table}_old including all)")
            conn.execute(f"alter table audit.{table} owner to audit_owner")
        conn.execute("set local role audit_owner")
        conn.execute((Path(triggers_dir()) / "16_replication.sql").read_text())
    assert rows(primary, "select prrelid::regclass::text from pg_publication_rel order by 1") == [
        ("audit.action_item_chunk",),
        ("audit.action_log",),
    ]
    value(primary, "select audit.log_action('login', 'After the upgrade')")
    logged = "select id from audit.action_log where action = 'After the upgrade'"
    wait_until("the new table's row arrives", lambda: value(subscriber, logged))


def test_an_upgrade_of_the_audit_server_under_an_enabled_subscription_is_refused(fresh):
    primary, subscriber = fresh
    assert run(primary, "replicate", "--subscriber", subscriber).exit_code == 0
    _replace_log_tables(subscriber)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="would skip"):
        migrate.repair(subscriber)
    with psycopg.connect(subscriber, autocommit=True) as conn:
        conn.execute("alter subscription audit_capture disable")
    migrate.repair(subscriber)  # disabled: the repair (an upgrade) goes through
    result = run(primary, "replicate", "--subscriber", subscriber)
    assert "made again on audit.action_log" in result.output, result.output
    value(primary, "select audit.log_action('login', 'After the upgrade')")
    logged = "select id from audit.action_log where action = 'After the upgrade'"
    wait_until("the row reaches the new table", lambda: value(subscriber, logged))


def test_the_partitioning_upgrade_with_an_audit_server(primary_server, subscriber_server):
    """Revision 0003 replaces both tables (the old ones become legacy partitions). The
    README's order: the primary first (its publication follows in the upgrade's
    transaction; the audit server applies what came before, then stops on the first
    chunk with the new column), then the audit server with its subscription disabled,
    then replicate again: every action on both sides, none twice."""
    from audit_capture.sample import install_crm

    number = next(_numbers)
    primary = create_database(primary_server, f"upgrading_{number}")
    subscriber = create_database(subscriber_server, f"upgrading_audit_{number}")
    try:
        migrate.upgrade(primary, "0002")
        with psycopg.connect(primary) as conn, conn.transaction():
            install_crm(conn)
            conn.execute(
                "insert into clients (name) select 'Old ' || g from generate_series(1, 5) g"
            )
        assert run(primary, "replicate", "--subscriber", subscriber).exit_code == 0
        assert migrate.current(subscriber) == "0002"
        both = Pair(primary, subscriber, "")
        both.wait()

        migrate.upgrade(primary, "head")
        assert rows(
            primary, "select prrelid::regclass::text from pg_publication_rel order by 1"
        ) == [
            ("audit.action_item_chunk",),
            ("audit.action_log",),
        ]
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute(
                "insert into clients (name) select 'New ' || g from generate_series(1, 5) g"
            )
            conn.execute("select audit.log_action('login', 'Upgraded login')")
        refused = run(subscriber, "migrate", "upgrade")
        assert refused.exit_code != 0 and "would no longer apply" in refused.output, refused.output
        with psycopg.connect(subscriber, autocommit=True) as conn:
            conn.execute("alter subscription audit_capture disable")
        migrate.upgrade(subscriber, "head")
        result = run(primary, "replicate", "--subscriber", subscriber)
        assert "made again on audit.action_log" in result.output, result.output
        both.wait("every action, old and new, on the upgraded audit server")
        actions = rows(subscriber, "select action, row_count from audit.action_log order by id")
        assert actions[-2:] == [("Batch client creation", 5), ("Upgraded login", 0)]
        assert len(actions) == len(rows(primary, "select id from audit.action_log"))
        status = run(subscriber, "status")
        assert status.exit_code == 0, status.output
    finally:
        _unsubscribe(subscriber)
        drop_database(subscriber_server, f"upgrading_audit_{number}")
        drop_database(primary_server, f"upgrading_{number}")


def test_months_the_audit_server_has_not_prepared_land_in_its_default(fresh):
    """Partitions are each side's own: a month the primary prepared and the audit
    server did not arrives in the audit server's default partition, and its own
    maintain (prepare_partitions here) moves it into a month of its own."""
    from datetime import UTC, datetime

    from viewer_data import old_action

    primary, subscriber = fresh
    when = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
    with psycopg.connect(primary) as conn:
        conn.execute("select audit.prepare_partitions('2025-03-01', '2025-03-01')")
        conn.commit()
        old = old_action(conn, when, action="Client updated in March 2025")
    assert (
        value(
            primary, "select tableoid::regclass::text from audit.action_log where id = %s", (old,)
        )
        == "audit.action_log_p2025_03"
    )
    assert run(primary, "replicate", "--subscriber", subscriber).exit_code == 0
    where = "select tableoid::regclass::text from audit.action_log where id = %s"
    wait_until("the old action is copied", lambda: value(subscriber, where, (old,)) is not None)
    assert value(subscriber, where, (old,)) == "audit.action_log_default"
    value(subscriber, "select count(*) from audit.prepare_partitions('2025-03-01', '2025-03-01')")
    assert value(subscriber, where, (old,)) == "audit.action_log_p2025_03"
    # and replication goes on after the audit server's own partition change
    value(primary, "select audit.log_action('login', 'After the move')")
    logged = "select id from audit.action_log where action = 'After the move'"
    wait_until("a later action arrives", lambda: value(subscriber, logged))


def test_rows_the_primarys_maintain_copies_again_do_not_stop_the_audit_server(fresh):
    """audit.maintain() moving rows of several months out of the primary's default
    partitions inserts them again; the audit server skips what it holds already
    (its ENABLE ALWAYS guard) instead of stopping on a duplicate key."""
    from datetime import UTC, datetime

    from viewer_data import old_action

    primary, subscriber = fresh
    with psycopg.connect(primary) as conn:
        olds = [
            old_action(conn, datetime(2024, month, 10, tzinfo=UTC), action=f"Old {month}")
            for month in (1, 2)
        ]
    where = "select tableoid::regclass::text from audit.action_log where id = %s"
    assert value(primary, where, (olds[0],)) == "audit.action_log_default"
    result = run(primary, "replicate", "--subscriber", subscriber)
    assert "a replicated row it holds already is skipped" in result.output, result.output
    assert rows(
        subscriber,
        "select c.relname::text, t.tgenabled::text from pg_trigger t join pg_class c"
        " on c.oid = t.tgrelid where t.tgname = 'action_log_skip_replicated' order by 1",
    ) == [
        (name, "A")
        for name in sorted(
            value(
                subscriber,
                "select array_agg(c.relname::text) from pg_class c join pg_inherits i"
                " on i.inhrelid = c.oid where i.inhparent = 'audit.action_log'::regclass",
            )
            + ["action_log"]
        )
    ]
    wait_until("the old actions are copied", lambda: value(subscriber, where, (olds[1],)))
    with psycopg.connect(primary, autocommit=True) as conn:
        steps = conn.execute("select step, detail from audit.maintain()").fetchall()
    assert value(primary, where, (olds[0],)) == "audit.action_log_p2024_01", steps
    value(primary, "select audit.log_action('login', 'After maintain')")
    logged = "select id from audit.action_log where action = 'After maintain'"
    wait_until("replication goes on past the copied rows", lambda: value(subscriber, logged))
    assert value(subscriber, "select count(*) from audit.action_log where action like 'Old %'") == 2
    assert value(subscriber, "select sum(apply_error_count) from pg_stat_subscription_stats") == 0
    assert run(subscriber, "status").exit_code == 0
