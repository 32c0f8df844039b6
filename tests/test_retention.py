"""Retention (issue 13, item 2): old months leave the log as whole partitions, only at an
audit_admin's request, never inside the floor, one run at a time, and the log records
it: audit.apply_retention() (triggers/15_retention.sql), `audit-capture retention`."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import psycopg
import pytest
from audit_log import only_action
from psycopg import errors, sql
from test_cli import assert_one_line_error, run

from audit_capture import retention, set_context

KEEP = 24  # whole months kept before the current one in most tests


# -- the log's months ---------------------------------------------------------------


def this_month(conn) -> date:
    return conn.execute("select date_trunc('month', now() at time zone 'UTC')::date").fetchone()[0]


def months_ago(conn, n: int) -> date:
    return conn.execute(
        "select (date_trunc('month', now() at time zone 'UTC')"
        " - make_interval(months => %s))::date",
        (n,),
    ).fetchone()[0]


def suffix(month: date) -> str:
    return month.strftime("%Y_%m")


def partitions(conn) -> dict[str, tuple[str, str]]:
    """{'2025-01' | 'default' | 'legacy': (action partition, chunk partition)}."""
    rows = conn.execute(
        "select coalesce(to_char(month, 'YYYY-MM'), kind), action_partition::text,"
        " chunk_partition::text from audit.log_partitions"
    ).fetchall()
    conn.commit()
    return {key: (a, c) for key, a, c in rows}


def retired(conn) -> set[str]:
    """The tables a retention run detached and has not dropped yet."""
    rows = conn.execute(
        "select relname from pg_class where relnamespace = 'audit'::regnamespace"
        " and relname like 'retired%%'"
    ).fetchall()
    conn.commit()
    return {name for (name,) in rows}


def audit_tables(conn) -> set[str]:
    """Every table of the audit schema whose name says it holds actions or chunks."""
    rows = conn.execute(
        "select relname from pg_class where relnamespace = 'audit'::regnamespace"
        " and relkind in ('r', 'p') and relname ~ '^action_(log|item_chunk)'"
    ).fetchall()
    conn.commit()
    return {name for (name,) in rows}


def write_month(conn, month: date, actions: int, chunks_each: int = 0) -> None:
    """``actions`` actions in ``month`` (at noon UTC of its days), each with
    ``chunks_each`` item chunks, written straight into the log (superuser only)."""
    conn.execute(
        """
        with a as (
          insert into audit.action_log (occurred_at, action, action_type, resource_type,
                                        row_count, actor_type, actor_name, db_user, transaction_id)
          select %(month)s::timestamp at time zone 'UTC'
                 + make_interval(days => g %% 28, hours => 12),
                 'Batch client deletion', 'delete', 'client', 2000, 'admin', 'Olga Former',
                 'crm_app', 1
          from generate_series(1, %(actions)s) g
          returning id, occurred_at)
        insert into audit.action_item_chunk (action_id, occurred_at, first_item, item_count,
                                             resource_type, operation, items)
        select a.id, a.occurred_at, 1 + (k - 1) * 1000, 1000, 'client', 'DELETE', '[]'
        from a, generate_series(1, %(chunks)s) k
        """,
        {"month": month, "actions": actions, "chunks": chunks_each},
    )
    conn.commit()


def retention_actions(conn) -> list[tuple]:
    rows = conn.execute(
        "select id, action from audit.action_log where resource_type = 'audit_log' order by id"
    ).fetchall()
    conn.commit()
    return rows


def count_log(conn) -> tuple[int, int]:
    row = conn.execute(
        "select (select count(*) from audit.action_log),"
        " (select count(*) from audit.action_item_chunk)"
    ).fetchone()
    conn.commit()
    return row


def build_old_log(conn) -> None:
    """Months 30 to 1 before the current one prepared; actions in five of them, with
    chunks; the month 25 back (wholly older than --keep 24months) and 24 back (kept)."""
    conn.execute(
        "select audit.prepare_partitions(%s, %s)", (months_ago(conn, 30), months_ago(conn, 1))
    )
    conn.commit()
    write_month(conn, months_ago(conn, 27), 5, chunks_each=2)
    write_month(conn, months_ago(conn, 26), 1200)
    write_month(conn, months_ago(conn, 25), 7, chunks_each=1)
    write_month(conn, months_ago(conn, 24), 3, chunks_each=1)
    write_month(conn, months_ago(conn, 2), 4)


@pytest.fixture
def old_log(conn):
    """``conn`` on a copy of build_old_log's database (DB_TEMPLATES: built once)."""
    return conn


@pytest.fixture
def admin_url(make_role):
    """A LOGIN role granted audit_admin: the DBA."""
    return make_role("grant audit_admin to {role}")


@pytest.fixture
def admin(admin_url):
    with psycopg.connect(admin_url) as connection:
        yield connection


def apply_retention(connection, keep=KEEP, apply=True, archives=None, lock_wait="2 s"):
    rows = connection.execute(
        "select month, kind, actions, chunks, bytes, archive, action_id"
        " from audit.apply_retention(%s, %s, %s::jsonb, %s::interval)",
        (keep, apply, archives, lock_wait),
    ).fetchall()
    return rows


def dropped_months(conn, first: int = 30, last: int = 25) -> list[str]:
    return [months_ago(conn, n).strftime("%Y-%m") for n in range(first, last - 1, -1)]


# -- --keep ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "months"),
    [("24months", 24), ("24 months", 24), ("1month", 1), ("2years", 24), ("1 YEAR", 12)],
)
def test_keep_is_whole_months_or_years(text, months):
    assert retention.parse_keep(text) == months


@pytest.mark.parametrize("text", ["24", "soon", "30days", "-3months", "2.5years", "", "months"])
def test_keep_without_a_unit_or_with_another_is_refused_naming_it(text):
    with pytest.raises(ValueError, match="is not a number of months or years"):
        retention.parse_keep(text)


def test_keep_of_zero_is_refused():
    with pytest.raises(ValueError, match="keeps nothing"):
        retention.parse_keep("0months")


# -- dry run and apply ----------------------------------------------------------------


def test_dry_run_shows_each_month_and_changes_nothing(old_log, admin_url):
    conn = old_log
    before_tables, before_counts = audit_tables(conn), count_log(conn)
    result = run(admin_url, "retention", "--keep", "24months")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    gone = dropped_months(conn)
    assert [line.split()[0] for line in lines[1:-2]] == gone
    row_of = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert row_of[months_ago(conn, 27).strftime("%Y-%m")][1:3] == ["5", "10"]
    assert row_of[months_ago(conn, 26).strftime("%Y-%m")][1:3] == ["1,200", "0"]
    assert row_of[months_ago(conn, 25).strftime("%Y-%m")][1:3] == ["7", "7"]
    assert row_of["total"][1:3] == ["1,212", "17"]
    assert "(6 partition pairs)" in lines[-2]
    assert "nothing changed" in lines[-1]
    assert audit_tables(conn) == before_tables
    assert count_log(conn) == before_counts
    assert retention_actions(conn) == []


def test_apply_drops_exactly_the_old_months_both_tables_and_logs_itself(old_log, admin_url):
    conn = old_log
    kept_month = suffix(months_ago(conn, 24))
    before, (actions_before, chunks_before) = audit_tables(conn), count_log(conn)
    result = run(admin_url, "retention", "--keep", "24months", "--apply")
    assert result.exit_code == 0, result.output
    gone = {
        f"action_{table}_p{suffix(months_ago(conn, n))}"
        for n in range(30, 24, -1)
        for table in ("log", "item_chunk")
    }
    assert gone <= before
    assert audit_tables(conn) == before - gone
    assert {f"action_log_p{kept_month}", f"action_item_chunk_p{kept_month}"} <= audit_tables(conn)
    assert {"action_log_default", "action_item_chunk_default"} <= audit_tables(conn)
    assert retired(conn) == set()  # detached, then dropped
    assert "their 12 tables, detached from the log, are dropped" in result.output
    # exactly the old months' rows went, and the retention's own action came
    assert count_log(conn) == (actions_before - 1212 + 1, chunks_before - 17)

    action = only_action(conn, resource_type="audit_log")
    assert action["action"] == "Audit log retention: 6 months dropped, 1,212 actions"
    assert action["action_type"] == "delete"
    role = psycopg.conninfo.conninfo_to_dict(admin_url)["user"]
    assert (action["actor_name"], action["actor_type"], action["db_user"]) == (role, "system", role)
    assert action["source"] is None
    changes = action["changes"]
    assert [m["month"] for m in changes["dropped"]] == dropped_months(conn)
    assert [m["actions"] for m in changes["dropped"]] == [0, 0, 0, 5, 1200, 7]
    assert [m["chunks"] for m in changes["dropped"]] == [0, 0, 0, 10, 0, 7]
    assert (changes["actions"], changes["chunks"], changes["keep_months"]) == (1212, 17, 24)
    assert changes["archives"] == "not required"
    assert f"dropped; the log records it as action {action['id']}" in result.output
    # it lands in a month that is kept: the current one
    where = conn.execute(
        "select tableoid::regclass::text from audit.action_log where id = %s", (action["id"],)
    ).fetchone()[0]
    assert where == f"audit.action_log_p{suffix(this_month(conn))}"
    # nothing more to drop: a second run says so and logs nothing
    again = run(admin_url, "retention", "--keep", "24months", "--apply")
    assert again.exit_code == 0, again.output
    assert "nothing to drop" in again.output
    assert len(retention_actions(conn)) == 1


def test_the_action_names_the_context_actor_when_one_is_set(old_log, admin):
    with admin.transaction():
        set_context(admin, actor_id="dba-7", actor_name="Dana DBA", actor_type="admin")
        rows = apply_retention(admin)
    action = only_action(old_log, resource_type="audit_log")
    assert rows[0][-1] == action["id"]
    assert (action["actor_id"], action["actor_name"], action["actor_type"]) == (
        "dba-7",
        "Dana DBA",
        "admin",
    )


def test_one_month_one_action_singular(conn, admin):
    month = months_ago(conn, 5)
    conn.execute("select audit.prepare_partitions(%s, %s)", (month, month))
    conn.commit()
    write_month(conn, month, 1)
    with admin.transaction():
        apply_retention(admin, keep=4)
    assert [a for _, a in retention_actions(conn)] == [
        "Audit log retention: 1 month dropped, 1 action"
    ]


def test_the_retention_action_is_in_the_viewer(old_log, admin, user):
    with admin.transaction():
        apply_retention(admin)
    page = user.get("/")
    assert page.status_code == 200
    assert "Audit log retention: 6 months dropped, 1,212 actions" in page.text


# -- refusals: each one line, nothing changed ------------------------------------------


def assert_nothing_changed(conn, tables, counts):
    assert audit_tables(conn) == tables
    assert count_log(conn) == counts
    assert retention_actions(conn) == []


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (2, "keep_months is 2; expected at least 3 (the retention floor"),
        (0, "keep_months is 0; expected at least 3"),
        (-12, "keep_months is -12; expected at least 3"),
        (None, "keep_months is null"),
    ],
)
def test_keep_inside_the_floor_zero_or_in_the_future_is_refused(old_log, admin, keep, message):
    tables, counts = audit_tables(old_log), count_log(old_log)
    with pytest.raises(errors.InvalidParameterValue) as raised:
        apply_retention(admin, keep=keep)
    assert message in str(raised.value)
    admin.rollback()
    assert_nothing_changed(old_log, tables, counts)


def test_the_floor_never_lets_the_current_month_or_the_three_before_it_go(conn, admin):
    conn.execute("select audit.prepare_partitions(%s, %s)", (months_ago(conn, 4), this_month(conn)))
    conn.commit()
    for n in range(0, 5):
        write_month(conn, months_ago(conn, n), 1)
    with admin.transaction():
        rows = apply_retention(admin, keep=3)
    assert [r[0] for r in rows] == [months_ago(conn, 4)]
    kept = {suffix(months_ago(conn, n)) for n in range(0, 4)}
    assert {f"action_log_p{m}" for m in kept} <= audit_tables(conn)


@pytest.mark.parametrize(
    ("keep", "fragments"),
    [
        (
            "2months",
            ("Error: keeping 2 months is under the retention floor", "nothing was dropped"),
        ),
        ("24", ("'24' is not a number of months or years",)),
        ("soon", ("'soon' is not a number of months or years",)),
        ("0months", ("'0months' keeps nothing",)),
        (
            "99999999999999999999months",
            ("'99999999999999999999months' is not a number of months or years",),
        ),
    ],
)
def test_cli_refusals_are_one_line_and_change_nothing(old_log, admin_url, keep, fragments):
    tables, counts = audit_tables(old_log), count_log(old_log)
    result = run(admin_url, "retention", "--keep", keep, "--apply")
    assert result.exit_code != 0
    errors_ = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors_) == 1, result.output
    for fragment in fragments:
        assert fragment in errors_[0], result.output
    assert "Traceback" not in result.output
    assert_nothing_changed(old_log, tables, counts)


# -- privileges -------------------------------------------------------------------------

APP_GRANTS = (
    "grant usage on schema public to {role}",
    "grant select, insert, update, delete on all tables in schema public to {role}",
)


@pytest.fixture(params=["reader", "application", "table_owner", "public"])
def not_admin_url(request, make_role):
    grants = {
        "reader": ("grant audit_reader to {role}",),
        "application": APP_GRANTS,
        "table_owner": ("grant usage, create on schema public to {role}",),
        "public": (),
    }[request.param]
    url = make_role(*grants)
    if request.param == "table_owner":
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute("create table owned_notes (id int primary key, body text)")
    return url


def test_only_audit_admin_may_run_retention(old_log, not_admin_url):
    tables, counts = audit_tables(old_log), count_log(old_log)
    month = suffix(months_ago(old_log, 27))
    with psycopg.connect(not_admin_url, autocommit=True) as hostile:
        for statement in [
            "select audit.apply_retention(24, true)",
            "select audit.apply_retention(24)",
            "select audit.drop_retired_partitions()",
            f"drop table audit.action_log_p{month}",
            f"drop table audit.action_item_chunk_p{month}",
            f"alter table audit.action_log detach partition audit.action_log_p{month}",
        ]:
            with pytest.raises(errors.InsufficientPrivilege):
                hostile.execute(statement)
    result = run(not_admin_url, "retention", "--keep", "24months", "--apply")
    assert_one_line_error(
        result, "may not run retention: it is for audit_admin", "grant audit_admin to"
    )
    assert_nothing_changed(old_log, tables, counts)


@pytest.mark.parametrize(
    "function", [retention.FUNCTION, "audit.drop_retired_partitions(interval)"]
)
def test_the_functions_are_security_definer_owned_by_audit_owner(conn, function):
    row = conn.execute(
        "select p.prosecdef, pg_get_userbyid(p.proowner), p.proconfig"
        " from pg_proc p where p.oid = %s::regprocedure",
        (function,),
    ).fetchone()
    assert row == (True, "audit_owner", ["search_path=pg_catalog, pg_temp"])
    grantees = conn.execute(
        "select coalesce(array_agg(distinct a.grantee::regrole::text), '{}') from pg_proc p,"
        " aclexplode(p.proacl) a where p.oid = %s::regprocedure and a.privilege_type = 'EXECUTE'",
        (function,),
    ).fetchone()[0]
    assert sorted(g.replace("-", "public") for g in grantees) == ["audit_admin", "audit_owner"]


# -- two runs, locks, a killed run -------------------------------------------------------


def test_a_second_run_at_the_same_time_is_refused_at_once(old_log, admin, admin_url):
    tables = audit_tables(old_log)
    with psycopg.connect(admin_url) as second:
        admin.execute("select audit.apply_retention(24, false)")  # a dry run takes no lock
        admin.execute("select audit.apply_retention(24, true)")  # holds it until commit
        with pytest.raises(errors.LockNotAvailable, match="another audit retention run"):
            apply_retention(second)
        second.rollback()
        result = run(admin_url, "retention", "--keep", "24months", "--apply")
        assert_one_line_error(result, "another audit retention run", "nothing was dropped")
        # (the first run holds the log: only the catalog can be read, as it was)
        assert audit_tables(old_log) == tables
        admin.commit()
    assert len(retention_actions(old_log)) == 1
    assert f"action_log_p{suffix(months_ago(old_log, 25))}" not in audit_tables(old_log)


def test_a_long_query_on_the_log_makes_it_give_up_after_lock_wait(old_log, admin, pg_superuser_url):
    tables, counts = audit_tables(old_log), count_log(old_log)
    with psycopg.connect(old_log.info.dsn) as viewer:
        viewer.execute("select count(*) from audit.action_log")  # its transaction stays open
        with pytest.raises(errors.LockNotAvailable) as raised:
            apply_retention(admin, lock_wait="200 ms")
        assert "could not lock audit.action_log and the months it drops within 0.2 s" in str(
            raised.value
        )
        assert "nothing was dropped; run it again later" in str(raised.value)
        admin.rollback()
        assert_nothing_changed(old_log, tables, counts)
    with admin.transaction():
        apply_retention(admin)  # the query has ended: it goes through
    assert len(retention_actions(old_log)) == 1


def test_a_write_into_an_old_month_makes_it_give_up(old_log, admin):
    tables = audit_tables(old_log)
    month = months_ago(old_log, 26)
    with psycopg.connect(old_log.info.dsn) as writer:
        writer.execute(
            "insert into audit.action_log (occurred_at, action, action_type, actor_type,"
            " db_user, transaction_id) values (%s::timestamp at time zone 'UTC', 'Late',"
            " 'create', 'system', 'x', 1)",
            (month,),
        )
        with pytest.raises(
            errors.LockNotAvailable, match=f"could not lock audit.action_log_p{suffix(month)}"
        ):
            apply_retention(admin, lock_wait="200 ms")
        admin.rollback()
        assert audit_tables(old_log) == tables
        writer.commit()
    with admin.transaction():
        rows = apply_retention(admin)
    assert {r[0]: r[2] for r in rows}[month] == 1201  # the late action counted and gone


def _wait_until(predicate, what: str, tries: int = 600):
    import time

    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting until {what}")


def test_a_run_killed_halfway_drops_nothing_and_a_rerun_finishes(
    old_log, admin_url, pg_superuser_url
):
    conn = old_log
    tables, counts = audit_tables(conn), count_log(conn)
    failures: list[BaseException] = []
    with psycopg.connect(conn.info.dsn) as blocker:
        # a reader keeps the log's parent: the run counts and locks the old months, then
        # waits for the parent, where it is terminated
        blocker.execute("select count(*) from audit.action_log")
        with psycopg.connect(admin_url) as victim:
            pid = victim.info.backend_pid

            def go():
                try:
                    apply_retention(victim, lock_wait="60 s")
                except BaseException as exc:  # noqa: BLE001 - checked below
                    failures.append(exc)

            thread = threading.Thread(target=go)
            thread.start()

            def waiting_for_the_log() -> bool:
                row = conn.execute(
                    "select exists (select from pg_locks where pid = %s and not granted"
                    " and relation = 'audit.action_log'::regclass)",
                    (pid,),
                ).fetchone()
                conn.commit()
                return row[0]

            _wait_until(waiting_for_the_log, "the run waits for audit.action_log")
            with psycopg.connect(pg_superuser_url, autocommit=True) as su:
                su.execute("select pg_terminate_backend(%s)", (pid,))
            thread.join(30)
            victim.close()
        assert failures and isinstance(failures[0], psycopg.OperationalError)
        blocker.rollback()
    assert_nothing_changed(conn, tables, counts)
    result = run(admin_url, "retention", "--keep", "24months", "--apply")
    assert result.exit_code == 0, result.output
    assert [a for _, a in retention_actions(conn)] == [
        "Audit log retention: 6 months dropped, 1,212 actions"
    ]


# -- --require-archive --------------------------------------------------------------------


def stub_verifier(manifests: dict[str, tuple[int, int]]):
    """A verify(directory, month) standing in for the archive's: the manifest's counts
    of each month it has, an error for the others."""

    def verify(directory: Path, month: str) -> tuple[int, int]:
        if month not in manifests:
            raise FileNotFoundError(f"{directory}/audit_log_{month.replace('-', '_')}.ndjson.gz")
        return manifests[month]

    return verify


def all_archived(conn) -> dict[str, tuple[int, int]]:
    counts = {m: (0, 0) for m in dropped_months(conn)}
    counts[months_ago(conn, 27).strftime("%Y-%m")] = (5, 10)
    counts[months_ago(conn, 26).strftime("%Y-%m")] = (1200, 0)
    counts[months_ago(conn, 25).strftime("%Y-%m")] = (7, 7)
    return counts


def test_require_archive_drops_when_every_month_is_verified(old_log, admin, tmp_path):
    result = retention.run(
        admin, KEEP, apply=True, archive_dir=tmp_path, verify=stub_verifier(all_archived(old_log))
    )
    assert [m.archive for m in result.months] == ["verified"] * 6
    action = only_action(old_log, resource_type="audit_log")
    assert action["changes"]["archives"] == "verified"


def test_require_archive_refuses_a_month_without_one(old_log, admin, tmp_path):
    tables, counts = audit_tables(old_log), count_log(old_log)
    manifests = all_archived(old_log)
    missing = months_ago(old_log, 26).strftime("%Y-%m")
    del manifests[missing]
    dry = retention.run(admin, KEEP, archive_dir=tmp_path, verify=stub_verifier(manifests))
    states = {m.name: m.archive for m in dry.months}
    assert states[missing].endswith(f"audit_log_{missing.replace('-', '_')}.ndjson.gz")
    assert list(states.values()).count("verified") == 5
    with pytest.raises(retention.RetentionRefused, match=f"no verified archive of {missing} in"):
        retention.run(
            admin, KEEP, apply=True, archive_dir=tmp_path, verify=stub_verifier(manifests)
        )
    assert_nothing_changed(old_log, tables, counts)


def test_require_archive_refuses_a_month_archived_before_more_rows_arrived(
    old_log, admin, tmp_path
):
    tables = audit_tables(old_log)
    manifests = all_archived(old_log)
    month = months_ago(old_log, 25).strftime("%Y-%m")
    manifests[month] = (6, 7)  # archived when it held one action fewer
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as raised:
        retention.run(
            admin, KEEP, apply=True, archive_dir=tmp_path, verify=stub_verifier(manifests)
        )
    assert (
        f"no verified archive of {month} (its archive holds 6 actions and 7 chunks,"
        " the partitions 7 and 7): nothing was dropped"
    ) in str(raised.value)
    assert audit_tables(old_log) == tables
    assert retention_actions(old_log) == []


# -- the legacy partition (an install upgraded from 0002) ----------------------------------


def build_legacy_log(conn) -> None:
    """The contract's legacy pair, made by hand as helper E's upgrade makes it: the old
    tables attached for (MINVALUE) to the first month boundary after the upgrade (here
    30 months back), legacy chunks at '-infinity'."""
    boundary = months_ago(conn, 30)
    conn.execute("set role audit_owner")
    conn.execute(
        "create table audit.action_log_legacy"
        " (like audit.action_log including defaults including constraints)"
    )
    conn.execute(
        "create table audit.action_item_chunk_legacy"
        " (like audit.action_item_chunk including defaults including constraints)"
    )
    conn.execute(
        sql.SQL(
            "alter table audit.action_log attach partition audit.action_log_legacy"
            " for values from (minvalue) to ({b});"
            " alter table audit.action_item_chunk attach partition audit.action_item_chunk_legacy"
            " for values from (minvalue) to ({b})"
        ).format(b=sql.Literal(f"{boundary} 00:00:00+00"))
    )
    conn.execute("reset role")
    conn.commit()
    write_month(conn, months_ago(conn, 40), 8)
    conn.execute(
        "insert into audit.action_item_chunk (action_id, occurred_at, first_item, item_count,"
        " resource_type, operation, items) select id, '-infinity', 1, 1, 'client', 'DELETE', '[]'"
        " from audit.action_log where occurred_at < %s",
        (boundary,),
    )
    conn.commit()
    conn.execute("select audit.prepare_partitions(%s, %s)", (boundary, months_ago(conn, 1)))
    conn.commit()
    write_month(conn, months_ago(conn, 29), 2)


@pytest.fixture
def legacy_log(conn):
    """``conn`` on a copy of build_legacy_log's database (DB_TEMPLATES: built once)."""
    return conn


# each built once per worker, copied for every test that uses its fixture (conftest.py)
DB_TEMPLATES = {"old_log": build_old_log, "legacy_log": build_legacy_log}


def test_the_legacy_partition_goes_once_its_whole_range_is_older(legacy_log, admin):
    conn = legacy_log
    assert partitions(conn)["legacy"] == (
        "audit.action_log_legacy",
        "audit.action_item_chunk_legacy",
    )
    with admin.transaction():
        rows = apply_retention(admin, keep=31, apply=False)
    assert rows == []  # the legacy range ends 30 months back: not wholly older than 31
    with admin.transaction():
        rows = apply_retention(admin, keep=29)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (None, "legacy", 8, 8),
        (months_ago(conn, 30), "month", 0, 0),
    ]
    assert "legacy" not in partitions(conn)
    assert "default" in partitions(conn)
    assert not {"action_log_legacy", "action_item_chunk_legacy"} & audit_tables(conn)
    assert [a for _, a in retention_actions(conn)] == [
        "Audit log retention: 1 month and the pre-partitioning log dropped, 8 actions"
    ]


def test_the_default_partition_is_never_dropped(conn, admin):
    # an action far in the past, outside every prepared month, lands in the default
    write_month(conn, date(2001, 1, 1), 1)
    assert (
        conn.execute(
            "select tableoid::regclass::text from audit.action_log where occurred_at < '2002-01-01'"
        ).fetchone()[0]
        == "audit.action_log_default"
    )
    conn.commit()
    with admin.transaction():
        assert apply_retention(admin, keep=3) == []
    assert "default" in partitions(conn)


def test_require_archive_of_the_legacy_partition_asks_for_each_of_its_months(
    legacy_log, admin, tmp_path
):
    conn = legacy_log
    manifests = {months_ago(conn, n).strftime("%Y-%m"): (0, 0) for n in range(40, 29, -1)}
    manifests[months_ago(conn, 40).strftime("%Y-%m")] = (8, 8)
    asked: list[str] = []

    def verify(directory: Path, month: str) -> tuple[int, int]:
        asked.append(month)
        return stub_verifier(manifests)(directory, month)

    result = retention.run(admin, 29, apply=True, archive_dir=tmp_path, verify=verify)
    assert [(m.name, m.archive) for m in result.months] == [
        ("legacy", "verified"),
        (months_ago(conn, 30).strftime("%Y-%m"), "verified"),
    ]
    # the legacy range's months, from its first action's to its end, then month -30
    assert asked == [months_ago(conn, n).strftime("%Y-%m") for n in range(40, 29, -1)]
    assert "legacy" not in partitions(conn)


def test_require_archive_with_the_archive_itself(old_log, admin_url, tmp_path):
    """The archive's own writer and verify (helper C's audit_capture.archive): every old
    month archived, retention goes; a month that received an action after it was
    archived, or whose file was tampered with, is refused and nothing goes."""
    from audit_capture import archive

    conn = old_log
    folder = tmp_path / "archive"
    folder.mkdir()
    archive.archive(conn, folder, months_ago(conn, 24).strftime("%Y-%m"))
    late = months_ago(conn, 25)
    write_month(conn, late, 1)  # arrives after its month was archived
    tables, counts = audit_tables(conn), count_log(conn)
    result = run(admin_url, "retention", "--keep", "24months", "--require-archive", str(folder))
    assert result.exit_code == 0, result.output
    assert f"{late:%Y-%m}" in [line.split()[0] for line in result.output.splitlines()]
    refused = run(
        admin_url, "retention", "--keep", "24months", "--apply", "--require-archive", str(folder)
    )
    assert_one_line_error(refused, f"no verified archive of {late:%Y-%m}", "nothing was dropped")
    assert_nothing_changed(conn, tables, counts)

    archive.archive(conn, tmp_path / "again", months_ago(conn, 24).strftime("%Y-%m"))
    data = sorted((tmp_path / "again").glob("*.ndjson.gz"))[0]
    data.write_bytes(data.read_bytes()[:-1] + bytes([data.read_bytes()[-1] ^ 1]))
    tampered = run(
        admin_url, "retention", "--keep", "24months", "--apply",
        "--require-archive", str(tmp_path / "again"),
    )  # fmt: skip
    assert_one_line_error(tampered, "no verified archive of", data.name)
    assert_nothing_changed(conn, tables, counts)

    archive.archive(conn, tmp_path / "third", months_ago(conn, 24).strftime("%Y-%m"))
    done = run(
        admin_url, "retention", "--keep", "24months", "--apply",
        "--require-archive", str(tmp_path / "third"),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert only_action(conn, resource_type="audit_log")["changes"]["archives"] == "verified"


# -- the two steps: detach (under the log's lock), then drop (locking none of the log) --


def test_the_months_are_detached_then_dropped_apart(old_log, admin):
    conn = old_log
    with admin.transaction():
        apply_retention(admin)
    month = suffix(months_ago(conn, 25))
    # out of the log, still on disk, under a name that cannot clash with a new month
    assert f"retired_action_log_p{month}" in retired(conn)
    assert len(retired(conn)) == 12
    assert f"action_log_p{month}" not in audit_tables(conn)
    assert not conn.execute(
        "select relispartition from pg_class where oid = %s::regclass",
        (f"audit.retired_action_log_p{month}",),
    ).fetchone()[0]
    conn.commit()
    # the drop, in a transaction apart, holds no lock of the log: audited writes go on
    admin.execute("select audit.drop_retired_partitions()")
    held = conn.execute(
        "select coalesce(array_agg(relation::regclass::text), '{}') from pg_locks"
        " where pid = %s and relation in (select p.r from audit.log_partitions l,"
        "   unnest(array[l.action_partition, l.chunk_partition,"
        "   'audit.action_log'::regclass, 'audit.action_item_chunk'::regclass]) p(r))",
        (admin.info.backend_pid,),
    ).fetchone()[0]
    conn.commit()
    assert held == []
    with psycopg.connect(conn.info.dsn) as writer:
        writer.execute("set lock_timeout = '1s'")
        writer.execute("insert into clients (name) values ('Written meanwhile')")
        writer.commit()
    admin.commit()
    assert retired(conn) == set()
    only_action(conn, action="Client created")


def test_a_run_killed_between_its_two_steps_is_finished_by_the_next(old_log, admin, admin_url):
    conn = old_log
    with admin.transaction():  # the first step committed, the second never ran
        apply_retention(admin)
    assert len(retired(conn)) == 12
    dry = run(admin_url, "retention", "--keep", "24months")
    assert "12 table(s) an earlier run detached are still to drop" in dry.output
    assert len(retired(conn)) == 12
    again = run(admin_url, "retention", "--keep", "24months", "--apply")
    assert again.exit_code == 0, again.output
    assert "dropped 12 table(s) an earlier run had detached" in again.output
    assert "nothing to drop" in again.output
    assert retired(conn) == set()
    assert len(retention_actions(conn)) == 1


def test_a_month_prepared_again_after_a_killed_run_waits_for_the_drop(old_log, admin):
    conn = old_log
    with admin.transaction():
        apply_retention(admin)
    month = months_ago(conn, 25)
    conn.execute("select audit.prepare_partitions(%s, %s)", (month, month))
    conn.commit()
    write_month(conn, month, 2)
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as raised:
        apply_retention(admin)
    assert f"audit.retired_action_log_p{suffix(month)} is left from an earlier retention run" in (
        str(raised.value)
    )
    admin.rollback()
    assert f"action_log_p{suffix(month)}" in audit_tables(conn)
    retention.run(admin, KEEP, apply=True)  # drops the leftovers first, then the month
    assert retired(conn) == set()
    assert f"action_log_p{suffix(month)}" not in audit_tables(conn)
