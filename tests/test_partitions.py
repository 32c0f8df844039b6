"""The partitioned log (issue 13, item 1): audit.action_log and audit.action_item_chunk are
partitioned by UTC month of the action's time (triggers/02_action_log.sql,
14_partitions.sql). Routing of actions and chunks, a batch across a month's end, the
default partition and audit.maintain(), and who may touch the partitions (nobody but
the owner's functions)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import pg_binaries
import psycopg
import pytest
from audit_log import items
from psycopg import errors, sql

from audit_capture import batch, record_action

APP_GRANTS = (
    "grant usage on schema public to {role}",
    "grant select, insert, update, delete on all tables in schema public to {role}",
    "grant usage on all sequences in schema public to {role}",
)


def _month(conn: psycopg.Connection, shift: int = 0) -> str:
    """The UTC month ``shift`` months from now, as partitions are named: 2026_12."""
    return conn.execute(
        "select to_char(date_trunc('month', now() at time zone 'UTC')"
        " + make_interval(months => %s), 'YYYY_MM')",
        (shift,),
    ).fetchone()[0]


def _partitions_of(conn: psycopg.Connection, table: str, where: str, *args: object) -> set[str]:
    rows = conn.execute(
        f"select distinct tableoid::regclass::text from {table} where {where}", args
    ).fetchall()
    return {row[0] for row in rows}


def _last_action(conn: psycopg.Connection) -> int:
    return conn.execute("select max(id) from audit.action_log").fetchone()[0]


def _forge_action(conn: psycopg.Connection, occurred_at: str, with_chunk: bool = True) -> int:
    """As the superuser (the test's own back door: no role can write the log), an action
    at ``occurred_at`` with two items in one chunk, as audit.prepare_partitions()'s users
    (history, fill scripts) write old months."""
    action_id = conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, actor_type, db_user,"
        " transaction_id, row_count, operation, resource_type)"
        " values (%s, 'Forged history', 'create', 'system', 'test', 1, 2, 'INSERT', 'client')"
        " returning id",
        (occurred_at,),
    ).fetchone()[0]
    if with_chunk:
        conn.execute(
            "insert into audit.action_item_chunk (action_id, occurred_at, first_item, item_count,"
            " resource_type, operation, items, resource_ids)"
            " values (%s, %s, 1, 2, 'client', 'INSERT', '[{\"id\": 1}, {\"id\": 2}]', '{1,2}')",
            (action_id, occurred_at),
        )
    return action_id


@pytest.fixture
def admin_url(make_role) -> str:
    return make_role("grant audit_admin to {role}")


def _maintain(url: str, months_ahead: int | None = None) -> list[tuple[str, str]]:
    with psycopg.connect(url, autocommit=True) as connection:
        if months_ahead is None:
            return connection.execute("select * from audit.maintain()").fetchall()
        return connection.execute("select * from audit.maintain(%s)", (months_ahead,)).fetchall()


# -- the install ---------------------------------------------------------------------


def test_an_install_has_the_current_month_the_next_three_and_the_default_pair(conn):
    rows = conn.execute(
        "select kind, to_char(month, 'YYYY_MM'), from_at = month::timestamp at time zone 'UTC',"
        " to_at = (month + interval '1 month')::timestamp at time zone 'UTC',"
        " action_partition::text, chunk_partition::text from audit.log_partitions"
    ).fetchall()
    months = [_month(conn, shift) for shift in range(4)]
    assert rows == [
        ("month", m, True, True, f"audit.action_log_p{m}", f"audit.action_item_chunk_p{m}")
        for m in months
    ] + [
        ("default", None, None, None, "audit.action_log_default", "audit.action_item_chunk_default")
    ]
    # every partition is the owner's, as the parents
    owners = conn.execute(
        "select distinct pg_get_userbyid(c.relowner) from pg_inherits i"
        " join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass)"
    ).fetchall()
    assert owners == [("audit_owner",)]
    # the viewer reads the partitions' statistics (pg_stats shows only what it may read)
    assert conn.execute(
        "select count(*) filter (where not has_table_privilege('audit_reader', c.oid, 'select')),"
        " count(*) filter (where has_table_privilege('public', c.oid, 'select'))"
        " from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass)"
    ).fetchone() == (0, 0)


def test_a_month_s_bounds_are_utc_whatever_the_session_time_zone(conn):
    conn.execute("set timezone = 'America/New_York'")
    first, last = conn.execute(
        "select min(from_at) at time zone 'UTC', max(to_at) at time zone 'UTC'"
        " from audit.log_partitions where kind = 'month'"
    ).fetchone()
    assert (first.day, first.hour, first.minute, last.day, last.hour) == (1, 0, 0, 1, 0)
    bound = conn.execute(
        "select pg_get_expr(relpartbound, oid) from pg_class where oid = %s::regclass",
        (f"audit.action_log_p{_month(conn)}",),
    ).fetchone()[0]
    assert "-05'" in bound or "-04'" in bound  # written in the session's zone, same instant


# -- routing -------------------------------------------------------------------------


def test_single_row_bulk_and_event_actions_and_their_chunks_land_in_their_month(conn):
    conn.execute("insert into clients (name) values ('One')")
    single = _last_action(conn)
    conn.execute("insert into clients (name) select 'Many ' || g from generate_series(1, 2500) g")
    bulk = _last_action(conn)
    record_action(conn, "login", "LawRuler login", resource_type="integration")
    event = _last_action(conn)
    conn.commit()

    month = _month(conn)
    assert _partitions_of(conn, "audit.action_log", "id in (%s, %s, %s)", single, bulk, event) == {
        f"audit.action_log_p{month}"
    }
    assert _partitions_of(conn, "audit.action_item_chunk", "action_id = %s", bulk) == {
        f"audit.action_item_chunk_p{month}"
    }
    # a chunk carries its action's time, not its own
    assert conn.execute(
        "select count(*), bool_and(c.occurred_at = l.occurred_at) from audit.action_item_chunk c"
        " join audit.action_log l on l.id = c.action_id where c.action_id = %s",
        (bulk,),
    ).fetchone() == (3, True)
    assert len(items(conn, bulk)) == 2500
    assert [i["new"]["name"] for i in items(conn, single)] == ["One"]


def test_rows_of_a_prepared_month_go_there_and_others_into_the_default(conn):
    ahead = _forge_action(conn, f"{_month(conn, 2).replace('_', '-')}-15 12:00:00+00")
    outside = _forge_action(conn, "2031-07-09 10:00:00+00")
    conn.commit()
    assert _partitions_of(conn, "audit.action_log", "id = %s", ahead) == {
        f"audit.action_log_p{_month(conn, 2)}"
    }
    assert _partitions_of(conn, "audit.action_item_chunk", "action_id = %s", ahead) == {
        f"audit.action_item_chunk_p{_month(conn, 2)}"
    }
    assert _partitions_of(conn, "audit.action_log", "id = %s", outside) == {
        "audit.action_log_default"
    }
    assert _partitions_of(conn, "audit.action_item_chunk", "action_id = %s", outside) == {
        "audit.action_item_chunk_default"
    }


def test_a_batch_begun_last_month_writes_its_later_chunks_into_the_action_s_month(conn):
    # The clock cannot be moved. The batch's first statement writes its action (with
    # that statement's time) and its first chunk; then, as the superuser with the
    # append-only triggers off (session_replication_role = replica: TEST ONLY, no role
    # can do this), the action, its chunk and audit.batch_action's note are set back to
    # 23:59:59 on the last day of the previous month, as if the batch had begun then.
    # Its later statements run "after midnight" (now): their chunks must carry the
    # action's time and land in the previous month's partition with it.
    previous = _month(conn, -1)
    conn.execute(
        "select audit.prepare_partitions(m, m) from (select (date_trunc('month', now() at time"
        " zone 'UTC') - interval '1 month')::date as m) p"
    )
    conn.commit()
    last_second = conn.execute(
        "select (date_trunc('month', now() at time zone 'UTC') at time zone 'UTC')"
        " - interval '1 second'"
    ).fetchone()[0]
    with conn.transaction(), batch(conn, "Month-end import"):
        conn.execute("insert into clients (name) values ('Before midnight')")
        action_id = _last_action(conn)
        conn.execute("set local session_replication_role = replica")
        for table, key in (
            ("audit.action_log", "id"),
            ("audit.action_item_chunk", "action_id"),
            ("audit.batch_action", "action_id"),
        ):
            conn.execute(
                sql.SQL("update {} set occurred_at = %s where {} = %s").format(
                    sql.SQL(table), sql.Identifier(key)
                ),
                (last_second, action_id),
            )
        conn.execute("set local session_replication_role = origin")
        conn.execute(
            "insert into clients (name)"
            " select 'After midnight ' || g from generate_series(1, 1500) g"
        )
        conn.execute("update clients set name = name || '!' where name like 'After midnight %'")
    action = conn.execute(
        "select occurred_at, row_count, tableoid::regclass::text from audit.action_log"
        " where id = %s",
        (action_id,),
    ).fetchone()
    assert action == (last_second, 3001, f"audit.action_log_p{previous}")
    assert conn.execute(
        "select count(*), sum(item_count), bool_and(occurred_at = %s),"
        " array_agg(distinct tableoid::regclass::text)"
        " from audit.action_item_chunk where action_id = %s",
        (last_second, action_id),
    ).fetchone() == (5, 3001, True, [f"audit.action_item_chunk_p{previous}"])
    assert conn.execute(
        "select count(*) from audit.action_item_chunk"
        " where occurred_at >= date_trunc('month', now())"
    ).fetchone() == (0,)
    listed = items(conn, action_id)
    assert [i["item_no"] for i in listed] == list(range(1, 3002))
    assert listed[0]["new"]["name"] == "Before midnight"


def test_an_action_s_time_never_changes_not_even_in_its_own_transaction(conn):
    conn.execute("insert into clients (name) values ('Moved?')")
    action_id = _last_action(conn)
    with pytest.raises(errors.InsufficientPrivilege, match="append-only: UPDATE is not allowed"):
        # (the one UPDATE the trigger allows: a batch growing its action, same time)
        conn.execute(
            "update audit.action_log set occurred_at = occurred_at - interval '40 days'"
            " where id = %s",
            (action_id,),
        )


# -- the default partition and maintain ----------------------------------------------


def test_maintain_moves_the_default_s_rows_into_their_months(conn, admin_url):
    old = _forge_action(conn, "2025-05-03 08:00:00+00")
    later = _forge_action(conn, "2031-07-09 10:00:00+00")
    conn.commit()
    before = {action_id: items(conn, action_id) for action_id in (old, later)}
    rows_before = conn.execute("select * from audit.action_log order by id").fetchall()
    conn.commit()  # (an open transaction that read the log would make maintain give up)

    steps = _maintain(admin_url)

    assert steps == [
        ("created", "audit.action_log_p2025_05"),
        ("created", "audit.action_item_chunk_p2025_05"),
        ("created", "audit.action_log_p2031_07"),
        ("created", "audit.action_item_chunk_p2031_07"),
        ("moved", "1 actions and 1 item chunks of 2025-05 out of the default partitions"),
        ("moved", "1 actions and 1 item chunks of 2031-07 out of the default partitions"),
    ]
    assert _partitions_of(conn, "audit.action_log", "id = %s", old) == {"audit.action_log_p2025_05"}
    assert _partitions_of(conn, "audit.action_item_chunk", "action_id = %s", later) == {
        "audit.action_item_chunk_p2031_07"
    }
    # the same rows, ids and items
    assert conn.execute("select * from audit.action_log order by id").fetchall() == rows_before
    assert {action_id: items(conn, action_id) for action_id in (old, later)} == before
    # the fresh default pair and the new months keep their guard and their reader
    assert conn.execute(
        "select bool_and(has_table_privilege('audit_reader', p, 'select'))"
        " from unnest(array['audit.action_log_default', 'audit.action_item_chunk_default',"
        " 'audit.action_log_p2025_05', 'audit.action_item_chunk_p2031_07']::regclass[]) p"
    ).fetchone() == (True,)
    with pytest.raises(errors.InsufficientPrivilege, match="append-only: TRUNCATE"):
        conn.execute("truncate audit.action_log_default")
    conn.rollback()

    # idempotent: nothing left to do
    assert _maintain(admin_url) == [
        (
            "ok",
            f"{_month(conn).replace('_', '-')} to {_month(conn, 3).replace('_', '-')} ready;"
            " no row of a month in the default partitions",
        )
    ]


def test_maintain_attaches_a_default_holding_one_month_as_that_month(conn, admin_url):
    # the usual case (rows written before their month was prepared): no row is copied,
    # so none is sent again to a subscriber of the log; the default pair is a new one
    forged = _forge_action(conn, "2025-05-03 08:00:00+00")
    defaults = conn.execute(
        "select 'audit.action_log_default'::regclass::oid,"
        " 'audit.action_item_chunk_default'::regclass::oid"
    ).fetchone()
    conn.commit()

    assert _maintain(admin_url) == [
        ("created", "audit.action_log_p2025_05"),
        ("created", "audit.action_item_chunk_p2025_05"),
        ("moved", "1 actions and 1 item chunks of 2025-05 out of the default partitions"),
    ]
    assert (
        conn.execute(
            "select 'audit.action_log_p2025_05'::regclass::oid,"
            " 'audit.action_item_chunk_p2025_05'::regclass::oid"
        ).fetchone()
        == defaults
    )
    assert _partitions_of(conn, "audit.action_log", "id = %s", forged) == {
        "audit.action_log_p2025_05"
    }
    assert [len(items(conn, forged))] == [2]
    # the month keeps its guard, its reader, and indexes named after the log's
    with pytest.raises(errors.InsufficientPrivilege, match="append-only: DELETE"):
        conn.execute("delete from audit.action_log_p2025_05")
    conn.rollback()
    assert conn.execute(
        "select has_table_privilege('audit_reader', 'audit.action_item_chunk_p2025_05', 'select'),"
        " to_regclass('audit.action_log_p2025_05_text_time_idx') is not null,"
        " to_regclass('audit.action_log_default_text_time_idx') is not null"
    ).fetchone() == (True, True, True)


def test_maintain_keeps_the_asked_months_ahead(conn, admin_url):
    steps = _maintain(admin_url, months_ahead=5)
    assert steps == [
        ("created", f"audit.action_log_p{_month(conn, 4)}"),
        ("created", f"audit.action_item_chunk_p{_month(conn, 4)}"),
        ("created", f"audit.action_log_p{_month(conn, 5)}"),
        ("created", f"audit.action_item_chunk_p{_month(conn, 5)}"),
    ]
    assert _maintain(admin_url, months_ahead=5)[0][0] == "ok"


def test_every_partition_s_text_index_keeps_its_pending_list_small(conn, admin_url):
    # the write that fills a GIN pending list merges it into the index: at PostgreSQL's
    # 4 MB that write stalled 80-150 ms (13_viewer_indexes.sql)
    _maintain(admin_url, months_ahead=5)
    options = conn.execute(
        "select c.relname, c.reloptions from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'audit.action_log_text_time_idx'::regclass order by 1"
    ).fetchall()
    assert [name for name, _ in options] == sorted(
        [f"action_log_p{_month(conn, n)}_text_time_idx" for n in range(6)]
        + ["action_log_default_text_time_idx"]
    )
    assert {tuple(reloptions) for _, reloptions in options} == {("gin_pending_list_limit=256",)}


def test_status_sees_no_drift_in_the_partitions_maintain_made(conn, admin_url):
    from audit_capture.status import read_status

    _forge_action(conn, "2025-05-03 08:00:00+00")
    conn.commit()
    assert [step for step, _ in _maintain(admin_url, months_ahead=6)].count("moved") == 1
    with psycopg.connect(conn.info.dsn, autocommit=True) as connection:
        result = read_status(connection)
    assert result.ok, result
    assert not result.invalid_indexes


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("select audit.maintain(-1)", "months_ahead is -1; expected 0 to 120"),
        ("select audit.maintain(null)", "months_ahead is null; expected 0 to 120"),
        (
            "select audit.prepare_partitions('2026-05-02', '2026-06-01')",
            "from_month is 2026-05-02; expected the first day of a month",
        ),
        (
            "select audit.prepare_partitions('2026-06-01', '2026-05-01')",
            r"to_month \(2026-05-01\) is before from_month \(2026-06-01\)",
        ),
        (
            "select audit.prepare_partitions('2026-06-01', null)",
            "to_month is null; expected the first day of a month",
        ),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(admin_url, call, message):
    with (
        psycopg.connect(admin_url, autocommit=True) as connection,
        pytest.raises(errors.InvalidParameterValue, match=message),
    ):
        connection.execute(call)


def test_prepare_partitions_creates_missing_months_once(conn, admin_url):
    with psycopg.connect(admin_url, autocommit=True) as connection:
        created = connection.execute(
            "select p::text from audit.prepare_partitions('2024-11-01', '2025-01-01') p"
        ).fetchall()
        again = connection.execute(
            "select p from audit.prepare_partitions('2024-11-01', '2025-01-01') p"
        ).fetchall()
    assert [row[0] for row in created] == [
        f"audit.{table}_p{month}"
        for month in ("2024_11", "2024_12", "2025_01")
        for table in ("action_log", "action_item_chunk")
    ]
    assert again == []


def _wait_for_lock(watcher: psycopg.Connection, pid: int, failures: list) -> None:
    """Until the session ``pid`` waits for a lock (no timing: polls, bounded)."""
    for _ in range(600):
        waiting = watcher.execute(
            "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", (pid,)
        ).fetchone()
        if (waiting and waiting[0]) or failures:
            return
        watcher.execute("select pg_sleep(0.05)")
    raise AssertionError(f"session {pid} never waited for a lock")


def _in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list, list]:
    results: list = []
    failures: list = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results, failures


def test_two_maintain_runs_at_once_do_the_work_once(conn, admin_url):
    _forge_action(conn, "2025-05-03 08:00:00+00")
    conn.commit()
    first = psycopg.connect(admin_url)
    second = psycopg.connect(admin_url, autocommit=True)
    try:
        assert first.execute("select step from audit.maintain()").fetchall()[-1] == ("moved",)
        # the first run's transaction is open: the second waits for its advisory lock
        thread, results, failures = _in_thread(
            lambda: second.execute("select * from audit.maintain()").fetchall()
        )
        with psycopg.connect(conn.info.dsn, autocommit=True) as watcher:
            _wait_for_lock(watcher, second.info.backend_pid, failures)
        first.commit()
        thread.join(timeout=120)
        assert not failures, failures
        assert [step for step, _ in results[0]] == ["ok"]
    finally:
        first.close()
        second.close()
    assert conn.execute(
        "select count(*) from audit.log_partitions where month = '2025-05-01'"
    ).fetchone() == (1,)


def test_a_write_during_the_move_waits_then_lands_in_its_month(conn, admin_url):
    _forge_action(conn, "2025-05-03 08:00:00+00")
    conn.commit()
    mover = psycopg.connect(admin_url)
    writer = psycopg.connect(conn.info.dsn, autocommit=True)
    try:
        mover.execute("select * from audit.maintain()").fetchall()  # holds the parents' locks
        thread, _, failures = _in_thread(
            lambda: writer.execute("insert into clients (name) values ('During the move')")
        )
        with psycopg.connect(conn.info.dsn, autocommit=True) as watcher:
            _wait_for_lock(watcher, writer.info.backend_pid, failures)
        mover.commit()
        thread.join(timeout=120)
        assert not failures, failures
    finally:
        mover.close()
        writer.close()
    assert _partitions_of(conn, "audit.action_log", "resource_label = 'During the move'") == {
        f"audit.action_log_p{_month(conn)}"
    }


def test_maintain_gives_up_without_change_when_the_log_stays_locked(conn, admin_url):
    forged = _forge_action(conn, "2025-05-03 08:00:00+00")
    conn.commit()
    reader = psycopg.connect(conn.info.dsn)
    try:
        reader.execute("select count(*) from audit.action_log")  # a long read, still open
        with (
            psycopg.connect(admin_url, autocommit=True) as connection,
            pytest.raises(errors.LockNotAvailable) as refused,
        ):
            connection.execute("select * from audit.maintain()")
    finally:
        reader.close()
    assert re.match(
        r"audit\.maintain: the log is in use \(its lock was not free within \d+ms\): nothing"
        r" changed; run it again",
        refused.value.diag.message_primary,
    )
    assert _partitions_of(conn, "audit.action_log", "id = %s", forged) == {
        "audit.action_log_default"
    }
    assert conn.execute(
        "select count(*) from audit.log_partitions where month = '2025-05-01'"
    ).fetchone() == (0,)


# -- privileges ----------------------------------------------------------------------


@pytest.fixture(params=["reader", "application", "table owner", "admin"])
def someone(request, make_role) -> tuple[str, str]:
    grants = {
        "reader": ("grant audit_reader to {role}",),
        "application": APP_GRANTS,
        "table owner": ("grant usage, create on schema public to {role}",),
        "admin": ("grant audit_admin to {role}", "grant usage, create on schema public to {role}"),
    }[request.param]
    return request.param, make_role(*grants)


def test_only_an_admin_runs_maintain_and_prepare_partitions(someone):
    who, url = someone
    with psycopg.connect(url, autocommit=True) as connection:
        for call in (
            "select * from audit.maintain()",
            "select audit.prepare_partitions('2040-01-01', '2040-01-01')",
        ):
            if who == "admin":
                connection.execute(call)
            else:
                with pytest.raises(errors.InsufficientPrivilege):
                    connection.execute(call)
        # the internal functions: nobody
        for call in (
            "select audit.make_month_partitions('2041-01-01')",
            "select audit.move_default_rows()",
            "select audit.prepare_months('2041-01-01', '2041-01-01')",
            "select audit.make_default_partitions()",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                connection.execute(call)


def test_nobody_but_the_owner_creates_attaches_or_detaches_a_partition(conn, someone):
    # Hostile: a role that could attach a table of its own, with a trigger of its own,
    # would run its code on every audited write (and could detach a month to hide it).
    _, url = someone
    month = _month(conn)
    before = conn.execute("select * from audit.log_partitions").fetchall()
    columns = conn.execute(
        "select string_agg(format('%I %s', attname, format_type(atttypid, atttypmod)), ', '"
        " order by attnum) from pg_attribute where attrelid = 'audit.action_log'::regclass"
        " and attnum > 0 and not attisdropped"
    ).fetchone()[0]
    with psycopg.connect(url, autocommit=True) as connection:
        with pytest.raises(errors.InsufficientPrivilege):
            connection.execute(
                "create table audit.action_log_p2040_01 partition of audit.action_log"
                " for values from ('2040-01-01 00:00:00+00') to ('2040-02-01 00:00:00+00')"
            )
        if connection.execute("select has_schema_privilege('public', 'create')").fetchone()[0]:
            connection.execute(f"create table public.mine ({columns})")
            connection.execute(
                "create function public.mine_fires() returns trigger language plpgsql"
                " as $$ begin raise notice 'hostile code ran'; return new; end $$"
            )
            connection.execute(
                "create trigger mine_fires before insert on public.mine"
                " for each row execute function public.mine_fires()"
            )
            with pytest.raises(errors.InsufficientPrivilege, match="must be owner"):
                connection.execute(
                    "alter table audit.action_log attach partition public.mine for values"
                    " from ('2040-01-01 00:00:00+00') to ('2040-02-01 00:00:00+00')"
                )
            with pytest.raises(errors.InsufficientPrivilege, match="must be owner"):
                connection.execute(
                    "alter table audit.action_log attach partition public.mine default"
                )
        with pytest.raises(errors.InsufficientPrivilege, match="must be owner"):
            connection.execute(
                f"alter table audit.action_log detach partition audit.action_log_p{month}"
            )
        with pytest.raises(errors.InsufficientPrivilege):
            connection.execute(f"drop table audit.action_item_chunk_p{month}")
    assert conn.execute("select * from audit.log_partitions").fetchall() == before


@pytest.mark.parametrize("role", ["superuser", "audit_owner"])
@pytest.mark.parametrize(
    "statement",
    [
        "truncate audit.action_log_p{month}",
        "truncate audit.action_item_chunk_p{month}",
        "truncate audit.action_log_default",
        "truncate audit.action_item_chunk_default",
        "delete from audit.action_log_p{month}",
        "delete from audit.action_item_chunk_p{month}",
        "delete from audit.action_log_default",
        "update audit.action_item_chunk_p{month} set items = '[]'",
        "update audit.action_log_p{month} set action = 'Rewritten'",
    ],
)
def test_a_partition_is_append_only_for_everyone_the_owner_included(conn, role, statement):
    conn.execute("insert into clients (name) select 'Kept ' || g from generate_series(1, 3) g")
    _forge_action(conn, "2031-07-09 10:00:00+00")  # a row in the default pair
    conn.commit()
    if role == "audit_owner":
        conn.execute("set role audit_owner")
    with pytest.raises(errors.InsufficientPrivilege, match="is append-only"):
        conn.execute(statement.format(month=_month(conn)))


# -- reading items -------------------------------------------------------------------


def load_auto_explain_or_skip(conn) -> None:
    """LOAD 'auto_explain'. Missing from a server chosen with AUDIT_CAPTURE_TEST_PGBIN (the
    version legs: pgserver's 16.2 build has no contrib modules), a skip saying so;
    missing from the default server (Debian's, which always has it), a failure."""
    try:
        conn.execute("load 'auto_explain'")
    except psycopg.errors.UndefinedFile:
        if not pg_binaries.chosen():
            raise
        conn.rollback()
        version = conn.execute("show server_version").fetchone()[0]
        pytest.skip(
            f"PostgreSQL {version} from {pg_binaries.bin_dir()} has no auto_explain module,"
            " which shows the plan of the statement inside audit.action_items()"
        )


def test_action_items_reads_the_chunks_of_the_action_s_month_only(conn):
    # chunks in three months, so that reading one action's could touch all of them
    conn.execute(
        "select audit.prepare_partitions('2025-05-01', '2025-05-01'),"
        " audit.prepare_partitions('2031-07-01', '2031-07-01')"
    )
    _forge_action(conn, "2025-05-03 08:00:00+00")
    _forge_action(conn, "2031-07-09 10:00:00+00")
    conn.execute("insert into clients (name) select 'Many ' || g from generate_series(1, 2500) g")
    bulk = _last_action(conn)
    conn.commit()

    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    load_auto_explain_or_skip(conn)
    for setting, value in (
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_nested_statements", "on"),
        ("auto_explain.log_analyze", "on"),
        ("auto_explain.log_timing", "off"),
        ("auto_explain.log_level", "notice"),
    ):
        conn.execute(sql.SQL("set {} = {}").format(sql.Identifier(*setting.split(".")), value))
    assert len(conn.execute("select * from audit.action_items(%s)", (bulk,)).fetchall()) == 2500

    (plan,) = [n for n in notices if "from audit.action_item_chunk c\n  cross join" in n]
    scanned = {
        name
        for line in plan.splitlines()
        if "never executed" not in line
        for name in re.findall(r" on (action_item_chunk_\w+)", line)
    }
    assert scanned == {f"action_item_chunk_p{_month(conn)}"}, plan


# -- audit-capture maintain --------------------------------------------------------


def _cli(url: str, *args: str):
    from click.testing import CliRunner

    from audit_capture.cli import cli

    return CliRunner().invoke(
        cli, ["--database-url", url, *args], env={"AUDIT_CAPTURE_DATABASE_URL": None}
    )


def test_the_maintain_command_prints_what_it_did_and_exits_0(conn, admin_url):
    _forge_action(conn, "2025-05-03 08:00:00+00")
    conn.commit()
    result = _cli(admin_url, "maintain", "--months-ahead", "4")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "created: audit.action_log_p2025_05",
        "created: audit.action_item_chunk_p2025_05",
        "moved: 1 actions and 1 item chunks of 2025-05 out of the default partitions",
        f"created: audit.action_log_p{_month(conn, 4)}",
        f"created: audit.action_item_chunk_p{_month(conn, 4)}",
        "done: 4 partition(s) created, 1 month(s) moved out of the default",
    ]
    again = _cli(admin_url, "maintain", "--months-ahead", "4")
    assert again.exit_code == 0, again.output
    assert again.output == (
        f"ok: {_month(conn).replace('_', '-')} to {_month(conn, 4).replace('_', '-')} ready;"
        " no row of a month in the default partitions\n"
    )


@pytest.mark.parametrize("grants", [("grant audit_reader to {role}",), APP_GRANTS])
def test_the_maintain_command_refuses_a_non_admin_in_one_line(make_role, grants):
    url = make_role(*grants)
    role = url.split("user=")[1].split()[0]
    result = _cli(url, "maintain")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: role {role} may not maintain the log's partitions: a superuser runs"
        f" `grant audit_admin to {role};`\n"
    )


def test_the_maintain_command_exits_75_when_the_log_stays_locked(conn, admin_url):
    _forge_action(conn, "2025-05-03 08:00:00+00")
    conn.commit()
    reader = psycopg.connect(conn.info.dsn)
    try:
        reader.execute("select count(*) from audit.action_log")  # a long read, still open
        result = _cli(admin_url, "maintain")
    finally:
        reader.close()
    assert result.exit_code == 75, result.output
    (line,) = result.output.splitlines()
    assert line.startswith("Error: audit.maintain: the log is in use (its lock was not free")
    assert line.endswith(
        "nothing changed; run it again (from cron: the next run does it) (exit status 75)"
    )


def test_the_maintain_command_refuses_a_bad_months_ahead(admin_url):
    result = _cli(admin_url, "maintain", "--months-ahead", "-1")
    assert result.exit_code == 2
    assert "Invalid value for '--months-ahead': -1 is not in the range 0<=x<=120." in result.output
