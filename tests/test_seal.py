"""Tamper evidence: audit.seal() links the log into a hash chain, audit.verify_chain()
(audit-capture verify) finds what changed behind its back (triggers/17_seal.sql)."""

from __future__ import annotations

import json
from datetime import date

import psycopg
import pytest
from psycopg import errors
from test_cli import assert_one_line_error, run

from audit_capture import seal as seal_module

# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
def admin_url(make_role):
    return make_role("grant audit_admin to {role}")


@pytest.fixture
def admin(admin_url):
    with psycopg.connect(admin_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def reader_role_url(make_role):
    return make_role("grant audit_reader to {role}")


def write_activity(conn) -> None:
    """Single-row changes, a bulk statement with item chunks, an event: committed."""
    conn.execute(
        "insert into clients (name, email, status)"
        " select 'Client ' || g, 'c' || g || '@example.com', 'new' from generate_series(1, 30) g"
    )
    conn.execute("update clients set status = 'contacted' where name = 'Client 1'")
    conn.execute(
        "insert into clients (name, email, status) values ('Maria Lopez', 'm@x.io', 'new')"
    )
    conn.execute("select audit.log_action('login', 'LawRuler login', 'integration', 'lawruler')")
    conn.commit()


def seal(connection, max_actions: int = 100_000) -> tuple:
    row = connection.execute(
        "select actions_sealed, blocks, sealed_through, newest_id, head from audit.seal(%s)",
        (max_actions,),
    ).fetchone()
    if not connection.autocommit:
        connection.commit()
    return row


def findings(connection, heads: list[str] | None = None) -> list[tuple]:
    rows = connection.execute(
        "select finding, block_no, action_id from audit.verify_chain(%s)", (heads or [],)
    ).fetchall()
    if not connection.autocommit:
        connection.commit()
    return rows


def action_ids(conn) -> list[int]:
    ids = [i for (i,) in conn.execute("select id from audit.action_log order by id")]
    conn.commit()
    return ids


def sealed_ids(conn) -> list[int]:
    ids = [
        i
        for (i,) in conn.execute(
            "select unnest(action_ids) from audit.seal_block where kind = 'actions'"
            " order by block_no"
        )
    ]
    conn.commit()
    return ids


def bulk_action_id(conn) -> int:
    (action_id,) = conn.execute(
        "select id from audit.action_log where row_count > 1 order by id limit 1"
    ).fetchone()
    conn.commit()
    return action_id


def behind_its_back(conn, statement: str, params=None) -> None:
    """A superuser edit with the log's append-only triggers off (session_replication_role)."""
    conn.execute("set session_replication_role = replica")
    conn.execute(statement, params)
    conn.execute("reset session_replication_role")
    conn.commit()


def forge_action(conn, action_id: int) -> None:
    """A superuser writes an action of its own at ``action_id``."""
    behind_its_back(
        conn,
        "insert into audit.action_log (id, action, action_type, actor_type, db_user,"
        " transaction_id) overriding system value values (%s, 'Forged', 'login', 'admin',"
        " 'x', 1)",
        (action_id,),
    )


@pytest.fixture
def sealed(conn, admin):
    """A log with activity, sealed; returns the head."""
    write_activity(conn)
    done, blocks, through, newest, head = seal(admin)
    assert (done, through) == (len(action_ids(conn)), newest)
    return head


# -- sealing -----------------------------------------------------------------------------


def test_seal_covers_every_action_in_id_order_and_verifies_intact(conn, admin, sealed):
    assert sealed_ids(conn) == action_ids(conn)
    assert findings(admin) == []
    (head,) = conn.execute("select audit.chain_head()").fetchone()
    assert head == sealed and head.startswith("1:") and len(head.split(":")[1]) == 64
    # every action, the bulk one's chunks included, has a 16-byte digest
    (ok,) = conn.execute(
        "select bool_and(length(digests) = 16 * cardinality(action_ids))"
        " from audit.seal_block where kind = 'actions'"
    ).fetchone()
    assert ok


def test_a_second_seal_links_a_new_block_to_the_first(conn, admin, sealed):
    conn.execute("update clients set email = 'new@x.io' where name = 'Maria Lopez'")
    conn.commit()
    done, blocks, through, newest, head = seal(admin)
    assert (done, blocks, through) == (1, 1, max(action_ids(conn)))
    assert head.startswith("2:")
    (linked,) = conn.execute(
        "select b2.prev_hash = b1.block_hash from audit.seal_block b1, audit.seal_block b2"
        " where b1.block_no = 1 and b2.block_no = 2"
    ).fetchone()
    assert linked
    assert findings(admin, [sealed, head]) == []


def test_nothing_new_seals_nothing(conn, admin, sealed):
    done, blocks, through, newest, head = seal(admin)
    assert (done, blocks, head) == (0, 0, sealed)


def test_blocks_hold_at_most_1000_actions_and_max_actions_stops_a_call(conn, admin):
    conn.execute(
        "select audit.log_action('export', 'Call export to file') from generate_series(1, 2500)"
    )
    conn.commit()
    assert seal(admin, max_actions=1500)[:2] == (1500, 2)
    done, blocks, through, newest, head = seal(admin)
    assert (done, blocks, through) == (1000, 1, newest)
    sizes = [n for (n,) in conn.execute("select cardinality(action_ids) from audit.seal_block")]
    assert sizes == [1000, 500, 1000]
    assert sealed_ids(conn) == action_ids(conn)
    assert findings(admin) == []


def test_an_action_that_commits_late_with_a_lower_id_is_sealed_not_skipped(conn, admin, db_url):
    write_activity(conn)
    seal(admin)
    with psycopg.connect(db_url) as early, psycopg.connect(db_url) as late:
        early.execute("update clients set status = 'closed' where name = 'Client 2'")
        late.execute("update clients set status = 'closed' where name = 'Client 3'")
        late.commit()
        # the late one committed, but the early one still holds the lower id
        ids_before = sealed_ids(conn)
        done, blocks, through, newest, head = seal(admin)
        assert done == 0 and through < newest
        assert sealed_ids(conn) == ids_before
        early.commit()
    done, blocks, through, newest, head = seal(admin)
    assert done == 2 and through == newest
    assert sealed_ids(conn) == action_ids(conn)
    assert findings(admin) == []


def test_an_event_in_an_open_transaction_holds_the_seal_back_too(conn, admin, db_url):
    """audit.log_action() as the first write of its transaction: its transaction id is
    taken before the action's id, so the mark waits for it."""
    with psycopg.connect(db_url) as app:
        app.execute("select audit.log_action('login', 'SmartAdvocate login')")
        conn.execute("select audit.log_action('logout', 'SmartAdvocate logout')")
        conn.commit()
        done, blocks, through, newest, head = seal(admin)
        assert done == 0 and through < newest
        app.commit()
    assert seal(admin)[0] == 2
    assert sealed_ids(conn) == action_ids(conn)


def test_a_rolled_back_id_is_a_gap_the_chain_covers(conn, admin, db_url):
    with psycopg.connect(db_url) as app:
        app.execute("select audit.log_action('login', 'Rolled back')")
        app.rollback()
    conn.execute("select audit.log_action('login', 'Kept')")
    conn.commit()
    done, blocks, through, newest, head = seal(admin)
    assert done == 1 and through == newest
    assert findings(admin) == []


def test_a_batch_is_sealed_once_it_has_committed_whole(conn, admin, db_url):
    with psycopg.connect(db_url) as app:
        app.execute("select set_config('audit.batch', 'Batch client deletion', true)")
        app.execute("insert into clients (name) values ('B1')")
        app.execute("insert into clients (name) values ('B2')")
        assert seal(admin)[0] == 0
        app.execute("insert into clients (name) values ('B3')")
        app.commit()
    seal(admin)
    (rows,) = conn.execute(
        "select row_count from audit.action_log where action = 'Batch client deletion'"
    ).fetchone()
    assert rows == 3
    assert findings(admin) == []


# -- what verify catches ---------------------------------------------------------------------


def test_an_action_changed_behind_the_logs_back_is_named(conn, admin, sealed):
    target = action_ids(conn)[1]
    behind_its_back(
        conn, "update audit.action_log set actor_name = 'Someone Else' where id = %s", (target,)
    )
    assert findings(admin) == [("altered", 1, target)]
    assert findings(admin, [sealed]) == [("altered", 1, target)]


def test_an_item_chunk_changed_is_its_action_altered(conn, admin, sealed):
    target = bulk_action_id(conn)
    behind_its_back(
        conn,
        "update audit.action_item_chunk set items = replace(items, 'Client 7', 'Client 8')"
        " where action_id = %s",
        (target,),
    )
    assert findings(admin) == [("altered", 1, target)]


def test_an_item_chunk_removed_is_its_action_altered(conn, admin, sealed):
    target = bulk_action_id(conn)
    behind_its_back(conn, "delete from audit.action_item_chunk where action_id = %s", (target,))
    assert findings(admin) == [("altered", 1, target)]


def test_a_removed_action_is_named(conn, admin, sealed):
    target = action_ids(conn)[-1]
    behind_its_back(conn, "delete from audit.action_log where id = %s", (target,))
    assert findings(admin) == [("removed", 1, target)]


def test_an_action_replaced_by_a_forged_one_at_its_id_is_altered(conn, admin, sealed):
    target = max(action_ids(conn)) - 1
    behind_its_back(conn, "delete from audit.action_log where id = %s", (target,))
    forge_action(conn, target)
    assert findings(admin) == [("altered", 1, target)]


def test_an_id_inserted_into_a_sealed_gap_is_added(conn, admin, db_url):
    with psycopg.connect(db_url) as app:
        app.execute("select audit.log_action('login', 'Rolled back')")
        app.rollback()
    conn.execute("select audit.log_action('login', 'Kept')")
    conn.commit()
    seal(admin)
    (gap,) = conn.execute(
        "select min(id) - 1 from audit.action_log where action = 'Kept'"
    ).fetchone()
    conn.commit()
    forge_action(conn, gap)
    assert findings(admin) == [("added", 1, gap)]


def test_a_chain_block_edited_breaks_the_chain(conn, admin, sealed):
    conn.execute("select audit.log_action('login', 'Second')")
    conn.commit()
    seal(admin)
    behind_its_back(
        conn,
        "update audit.seal_block set digests = overlay(digests placing '\\x00'::bytea from 1)"
        " where block_no = 1",
    )
    assert findings(admin) == [("chain_broken", 1, None)]


def test_a_chain_rewritten_whole_is_caught_only_by_a_head_saved_before(conn, admin, sealed):
    """Someone with audit_owner's powers edits an action and seals the log again from
    scratch: the chain is consistent, and only the head kept outside the database tells."""
    target = action_ids(conn)[0]
    behind_its_back(conn, "update audit.action_log set changes = '{}' where id = %s", (target,))
    behind_its_back(conn, "delete from audit.seal_block")
    behind_its_back(conn, "delete from audit.seal_mark")
    rewritten = seal(admin)[4]
    assert rewritten != sealed and rewritten.split(":")[0] == sealed.split(":")[0]
    assert findings(admin) == []
    assert findings(admin, [sealed]) == [("head_mismatch", 1, None)]


def test_a_chain_cut_short_is_caught_by_a_later_head(conn, admin, sealed):
    conn.execute("select audit.log_action('login', 'Second')")
    conn.commit()
    second = seal(admin)[4]
    behind_its_back(conn, "delete from audit.seal_block where block_no = 2")
    assert findings(admin) == []
    assert findings(admin, [sealed, second]) == [("head_mismatch", 2, None)]


def test_the_chain_is_append_only_for_its_owner_too(conn, sealed):
    for statement in (
        "update audit.seal_block set sealed_by = 'x'",
        "delete from audit.seal_block",
        "truncate audit.seal_block",
    ):
        conn.execute("set role audit_owner")
        with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        conn.rollback()


# -- retention -------------------------------------------------------------------------------


def months_ago(conn, n: int) -> date:
    (month,) = conn.execute(
        "select (date_trunc('month', now() at time zone 'UTC')"
        " - make_interval(months => %s))::date",
        (n,),
    ).fetchone()
    conn.commit()
    return month


def old_month(conn, n: int, actions: int) -> None:
    month = months_ago(conn, n)
    conn.execute("select audit.prepare_partitions(%s, %s)", (month, month))
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " actor_type, actor_name, db_user, transaction_id)"
        " select %s::timestamp at time zone 'UTC' + make_interval(days => g %% 28),"
        " 'Client deleted', 'delete', 'client', 'admin', 'Olga', 'crm_app', 1"
        " from generate_series(1, %s) g",
        (month, actions),
    )
    conn.commit()


def test_a_month_dropped_by_retention_verifies(conn, admin, admin_url):
    old_month(conn, 30, 40)
    write_activity(conn)
    seal(admin)
    admin.execute("select * from audit.apply_retention(24, true)")
    admin.execute("select audit.drop_retired_partitions()")
    kinds = [k for (k,) in conn.execute("select kind from audit.seal_block order by block_no")]
    conn.commit()
    assert kinds == ["actions", "retention"]
    assert findings(admin) == []
    # ... and the retention's own action is sealed next, like any other
    assert seal(admin)[0] == 1
    assert findings(admin) == []


def test_a_month_dropped_without_retention_is_removed_actions(conn, admin):
    old_month(conn, 30, 3)
    write_activity(conn)
    seal(admin)
    part = f"action_log_p{months_ago(conn, 30):%Y_%m}"
    first_id = conn.execute(f"select min(id) from audit.{part}").fetchone()[0]
    conn.execute(f"alter table audit.action_log detach partition audit.{part}")
    conn.execute(f"drop table audit.{part}")
    conn.commit()
    found = findings(admin)
    assert found[0] == ("removed", 1, first_id) and len(found) == 3


# -- privileges ----------------------------------------------------------------------------


def test_an_application_role_can_neither_seal_verify_nor_touch_the_chain(conn, make_role, sealed):
    app_url = make_role("grant select, insert, update, delete on clients to {role}")
    with psycopg.connect(app_url, autocommit=True) as app:
        for statement in (
            "select * from audit.seal()",
            "select * from audit.verify_chain()",
            "select audit.chain_head()",
            "select * from audit.seal_block",
            "insert into audit.seal_mark values (999999999, '1')",
            "delete from audit.seal_block",
            "select audit.seal_retention('audit.action_log')",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute(statement)


def test_a_role_owning_tracked_tables_can_neither_seal_nor_touch_the_chain(
    conn, owning_app, admin, sealed
):
    """Its own writes are sealed like anyone's; the chain and its functions stay out of
    its reach, and a seal reads only the audit schema (no code of its runs)."""
    owning_app.execute("insert into owned_notes values (1, 'mine')")
    assert seal(admin)[0] == 1
    for statement in (
        "select * from audit.seal()",
        "select * from audit.verify_chain()",
        "update audit.seal_block set sealed_by = 'me'",
        "delete from audit.seal_mark",
        "select audit.append_block(null::audit.seal_block)",
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            owning_app.execute(statement)
    assert findings(admin) == []


def test_a_reader_verifies_but_may_not_seal(reader_role_url, sealed):
    with psycopg.connect(reader_role_url, autocommit=True) as reader:
        assert findings(reader, [sealed]) == []
        with pytest.raises(errors.InsufficientPrivilege):
            reader.execute("select * from audit.seal()")


def test_the_functions_are_security_definer_with_a_pinned_search_path(conn):
    rows = conn.execute(
        "select p.oid::regprocedure::text, p.prosecdef, p.proconfig, p.proowner::regrole::text"
        " from pg_proc p where p.oid in ('audit.seal(integer)'::regprocedure,"
        " 'audit.verify_chain(text[], integer)'::regprocedure, 'audit.chain_head()'::regprocedure)"
    ).fetchall()
    assert len(rows) == 3
    for name, definer, config, owner in rows:
        assert definer and owner == "audit_owner", name
        assert "search_path=pg_catalog, pg_temp" in config, name


# -- bad input -------------------------------------------------------------------------------


def test_seal_outside_read_committed_is_refused_naming_it(admin_url, sealed):
    with psycopg.connect(admin_url) as admin:
        admin.execute("set transaction isolation level repeatable read")
        with pytest.raises(errors.InvalidTransactionState, match="READ COMMITTED"):
            admin.execute("select * from audit.seal()")


@pytest.mark.parametrize("bad", [0, -1, None])
def test_seal_refuses_a_max_actions_below_one(admin, bad):
    with pytest.raises(errors.InvalidParameterValue, match="max_actions"):
        admin.execute("select * from audit.seal(%s)", (bad,))


@pytest.mark.parametrize("head", ["", "1", "1:abc", "x:" + "0" * 64, "1:" + "G" * 64, None])
def test_verify_refuses_a_head_that_is_not_one(admin, head):
    with pytest.raises(errors.InvalidParameterValue, match="not a chain head"):
        admin.execute("select * from audit.verify_chain(%s)", ([head],))


# -- the command line ----------------------------------------------------------------------------


def test_cli_seal_keeps_the_head_and_verify_checks_it(conn, admin_url, tmp_path):
    write_activity(conn)
    heads = tmp_path / "heads.txt"
    result = run(admin_url, "seal", "--head-file", str(heads))
    assert result.exit_code == 0, result.output
    (head,) = conn.execute("select audit.chain_head()").fetchone()
    conn.commit()
    assert f"head: {head}" in result.output and "sealed" in result.output
    assert heads.read_text().split()[0] == head
    result = run(admin_url, "verify", "--expect", str(heads))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("intact: ") and "1 saved head(s) found" in result.output


def test_cli_verify_names_the_first_tampered_action_and_exits_1(conn, admin_url, sealed):
    target = action_ids(conn)[2]
    behind_its_back(conn, "update audit.action_log set source = 'web' where id = %s", (target,))
    result = run(admin_url, "verify", "--expect", sealed)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[0] == (
        f"TAMPERED: action {target} differs from what block 1 sealed"
    )
    assert f"head: {sealed}" in result.output


def test_cli_seal_says_what_waits_for_an_open_transaction(conn, admin_url, db_url):
    with psycopg.connect(db_url) as app:
        app.execute("select audit.log_action('login', 'Open')")
        result = run(admin_url, "seal", "--wait", "0")
        app.rollback()
    assert result.exit_code == 0, result.output
    assert "wait for a transaction still open" in result.output


def test_cli_verify_reads_the_head_of_an_archive_manifest(conn, admin_url, tmp_path, sealed):
    manifest = tmp_path / "audit_log_2025-01.manifest.json"
    manifest.write_text(json.dumps({"chain_head": sealed}))
    result = run(admin_url, "verify", "--expect", str(manifest))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1:abc", "not a chain head"),
        ("/nonexistent/heads.txt", "no such file"),
        ("not-a-head", "no such file"),
    ],
)
def test_cli_verify_refuses_a_bad_expect_in_one_line(admin_url, sealed, value, fragment):
    assert_one_line_error(run(admin_url, "verify", "--expect", value), fragment)


def test_cli_verify_refuses_a_folder_a_binary_file_and_a_huge_one_in_one_line(admin_url, tmp_path):
    assert_one_line_error(run(admin_url, "verify", "--expect", str(tmp_path)), "Is a directory")
    binary = tmp_path / "heads.bin"
    binary.write_bytes(b"1:" + bytes(range(128, 256)))
    assert_one_line_error(run(admin_url, "verify", "--expect", str(binary)), "not UTF-8 text")
    huge = tmp_path / "heads.txt"
    with huge.open("wb") as file:  # sparse: 65 MiB that take no room
        file.truncate(65 * 1024**2)
    assert_one_line_error(
        run(admin_url, "verify", "--expect", str(huge)), "68,157,440 bytes; a head file"
    )


def test_cli_verify_checks_a_head_saved_twice_once(conn, admin_url, tmp_path, sealed):
    heads = tmp_path / "heads.txt"
    heads.write_text(f"{sealed}  2026-01-01T00:00:00Z\n{sealed}  2026-01-01T00:05:00Z\n")
    result = run(admin_url, "verify", "--expect", str(heads))
    assert result.exit_code == 0, result.output
    assert "1 saved head(s) found" in result.output


def test_cli_verify_refuses_an_empty_head_file_and_a_manifest_without_one(admin_url, tmp_path):
    empty = tmp_path / "heads.txt"
    empty.write_text("# no head yet\n")
    assert_one_line_error(run(admin_url, "verify", "--expect", str(empty)), "no chain head")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"month": "2025-01"}))
    assert_one_line_error(run(admin_url, "verify", "--expect", str(manifest)), "no chain_head")


def test_cli_seal_and_verify_without_the_role_are_one_line_refusals(make_role, sealed):
    nobody = make_role()
    assert_one_line_error(run(nobody, "seal"), "may not seal the log", "audit_admin")
    assert_one_line_error(run(nobody, "verify"), "may not verify the log", "audit_reader")


def test_an_archive_manifest_keeps_the_head_and_verify_checks_it(conn, admin_url, tmp_path):
    old_month(conn, 3, 5)
    (head,) = conn.execute("select audit.chain_head()").fetchone()
    conn.commit()
    assert head is None
    seal(conn)
    (head,) = conn.execute("select audit.chain_head()").fetchone()
    conn.commit()
    month = months_ago(conn, 3)
    before = months_ago(conn, 2).strftime("%Y-%m")
    result = run(admin_url, "archive", "--before", before, "--to", str(tmp_path))
    assert result.exit_code == 0, result.output
    manifest = tmp_path / f"audit_log_{month:%Y-%m}.manifest.json"
    assert json.loads(manifest.read_text())["chain_head"] == head
    result = run(admin_url, "verify", "--expect", str(manifest))
    assert result.exit_code == 0, result.output
    assert "1 saved head(s) found" in result.output


def test_expected_heads_reads_each_form(tmp_path):
    heads = tmp_path / "heads.txt"
    heads.write_text(
        "# kept by the DBA\n1:" + "a" * 64 + "  2026-12-01T00:00:00Z\n\n2:" + "b" * 64 + "\n"
    )
    assert seal_module.expected_heads(str(heads)) == ["1:" + "a" * 64, "2:" + "b" * 64]
    assert seal_module.expected_heads("3:" + "c" * 64) == ["3:" + "c" * 64]
