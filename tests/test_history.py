"""A record's history: audit.history() gives every action that touched one row, single-row
and many-row alike, newest first, keyset-paged, each with that row's items
(triggers/20_history.sql)."""

from __future__ import annotations

import itertools
import re
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

# every test runs in both capture modes: the chunks both write must be found
CAPTURE_MODES = ("generated", "generic")

# -- helpers ----------------------------------------------------------------------------


def history(conn, resource, resource_id, before=None, page_size=50) -> list[dict]:
    """audit.history() of a resource type (str) or a table (regclass given as 'name')."""
    kind = "%s::regclass" if resource.startswith("table:") else "%s"
    name = resource.removeprefix("table:")
    before_at, before_id = before or (None, None)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"select * from audit.history({kind}, %s, %s, %s, %s)",
            (name, resource_id, before_at, before_id, page_size),
        )
        rows = cur.fetchall()
    conn.commit()
    return rows


def expected_items(conn, action_id, resource_type, resource_id) -> list[dict]:
    """The row's items as audit.action_items() gives them."""
    rows = conn.execute(
        "select item_no, old, new from audit.action_items(%s)"
        " where resource_type = %s and resource_id = %s order by item_no",
        (action_id, resource_type, resource_id),
    ).fetchall()
    conn.commit()
    return [{"item_no": n, "old": old, "new": new} for n, old, new in rows]


def touching(conn, resource_type, resource_id) -> list[int]:
    """Every action whose items name the row (the slow way: every action's items), newest
    first."""
    rows = conn.execute(
        "select a.id from audit.action_log a"
        " where exists (select from audit.action_items(a.id) i"
        "               where i.resource_type = %s and i.resource_id = %s)"
        " order by a.occurred_at desc, a.id desc",
        (resource_type, resource_id),
    ).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def check_items(conn, rows, resource_type, resource_id) -> None:
    for row in rows:
        if row["operation"] == "TRUNCATE":
            assert row["items"] == []
        else:
            assert row["items"] == expected_items(
                conn, row["action_id"], resource_type, resource_id
            )


def new_clients(conn, count, name="Client") -> list[int]:
    with conn.transaction():
        rows = conn.execute(
            "insert into clients (name, status) select %s || ' ' || i, 'new'"
            " from generate_series(1, %s) i returning id",
            (name, count),
        ).fetchall()
    return [r[0] for r in rows]


def run(conn, *statements, batch=None) -> None:
    with conn.transaction():
        if batch:
            conn.execute("select set_config('audit.batch', %s, true)", (batch,))
        for statement in statements:
            conn.execute(statement)


# -- the history of one row --------------------------------------------------------------


def test_single_row_bulk_and_batch_actions_newest_first(conn):
    (maria,) = new_clients(conn, 1, "Maria Lopez")
    others = new_clients(conn, 499)
    run(conn, f"update clients set email = 'maria@example.com' where id = {maria}")
    run(conn, f"update clients set status = 'contacted' where id = {maria}")
    # the bulk status update that included her, and an unrelated one
    run(conn, f"update clients set status = 'qualified' where id <= {maria + 10}")
    run(conn, f"update clients set notes = 'x' where id > {maria + 100}")
    # a batch of single-row statements (an ORM's), her row among them
    run(
        conn,
        f"update clients set phone = '555' where id = {maria}",
        f"update clients set phone = '556' where id = {others[0]}",
        batch="Phone cleanup",
    )
    # the 500-row batch deletion
    run(conn, f"delete from clients where id between {maria} and {others[-1]}")
    rows = history(conn, "client", str(maria))
    labels = [r["action"] for r in rows]
    assert labels == [
        "Batch client deletion",
        "Phone cleanup",
        "Bulk client status update",
        "Client status change",
        "Client updated",
        "Client created",
    ]
    assert [r["action_id"] for r in rows] == touching(conn, "client", str(maria))
    assert [r["row_count"] for r in rows] == [500, 2, 11, 1, 1, 1]
    assert [r["operation"] for r in rows] == [
        "DELETE",
        "UPDATE",
        "UPDATE",
        "UPDATE",
        "UPDATE",
        "INSERT",
    ]
    assert [r["action_type"] for r in rows][:4] == [
        "delete",
        "update",
        "status_change",
        "status_change",
    ]
    assert all(r["actor_type"] == "system" and r["source"] is None for r in rows)
    check_items(conn, rows, "client", str(maria))
    deletion, batch, bulk, status, update, created = (r["items"] for r in rows)
    assert len(deletion) == 1 and deletion[0]["old"]["name"] == "Maria Lopez 1"
    assert deletion[0]["old"]["ssn"] == "[redacted]" and deletion[0]["new"] is None
    assert batch == [{"item_no": 1, "old": {"phone": None}, "new": {"phone": "555"}}]
    assert bulk[0]["old"] == {"status": "contacted"} and bulk[0]["new"] == {"status": "qualified"}
    assert status == [{"item_no": 1, "old": {"status": "new"}, "new": {"status": "contacted"}}]
    assert update == [{"item_no": 1, "old": {"email": None}, "new": {"email": "maria@example.com"}}]
    assert created[0]["old"] is None and created[0]["new"]["name"] == "Maria Lopez 1"
    # the regclass form gives the same
    assert history(conn, "table:clients", str(maria)) == rows
    # an untouched row of the same bulk actions has them, not hers alone
    assert [r["action"] for r in history(conn, "client", str(others[-1]))] == [
        "Batch client deletion",
        "Bulk client notes update",
        "Batch client creation",
    ]


def test_a_single_created_row_and_an_event_about_it(conn):
    run(conn, "insert into campaigns (name) values ('Spring')")
    (campaign,) = conn.execute("select id from campaigns").fetchone()
    run(conn, f"update campaigns set status = 'active' where id = {campaign}")
    run(
        conn,
        f"select audit.log_action('export', 'Campaign exported', 'campaign', '{campaign}')",
    )
    run(conn, f"delete from campaigns where id = {campaign}")
    rows = history(conn, "campaign", str(campaign))
    assert [(r["action"], r["action_type"]) for r in rows] == [
        ("Campaign deleted", "delete"),
        ("Campaign exported", "export"),
        ("Campaign status change", "status_change"),
        ("Campaign created", "create"),
    ]
    assert rows[1]["items"] == [] and rows[1]["operation"] is None
    check_items(conn, [rows[0], rows[2], rows[3]], "campaign", str(campaign))
    assert rows[3]["items"][0]["new"]["name"] == "Spring"
    assert rows[0]["items"][0]["old"]["status"] == "active"


def test_a_batch_touching_the_row_twice_gives_both_items(conn):
    ids = new_clients(conn, 3)
    run(
        conn,
        f"update clients set status = 'contacted' where id = {ids[0]}",
        f"update clients set email = 'a@b.c' where id in ({ids[1]}, {ids[2]})",
        f"update clients set status = 'qualified' where id = {ids[0]}",
        batch="Intake review",
    )
    (row,) = [r for r in history(conn, "client", str(ids[0])) if r["action"] == "Intake review"]
    assert row["row_count"] == 4
    assert row["items"] == [
        {"item_no": 1, "old": {"status": "new"}, "new": {"status": "contacted"}},
        {"item_no": 4, "old": {"status": "contacted"}, "new": {"status": "qualified"}},
    ]
    check_items(conn, [row], "client", str(ids[0]))


def test_a_batch_of_one_row_is_listed_once(conn):
    (client,) = new_clients(conn, 1)
    run(conn, f"update clients set email = 'x@y.z' where id = {client}", batch="Fix email")
    rows = history(conn, "client", str(client))
    assert [r["action"] for r in rows] == ["Fix email", "Client created"]
    assert rows[0]["items"] == [{"item_no": 1, "old": {"email": None}, "new": {"email": "x@y.z"}}]
    assert rows[0]["row_count"] == 1


# -- paging ---------------------------------------------------------------------------------


def test_keyset_pages_cover_the_history_once(conn):
    ids = new_clients(conn, 20)
    target = ids[5]
    for i in range(7):
        run(conn, f"update clients set notes = 'single {i}' where id = {target}")
        run(conn, f"update clients set notes = 'bulk {i}' where id <= {ids[5 + i]}")
        if i % 3 == 0:
            run(
                conn,
                f"update clients set phone = '{i}' where id = {target}",
                f"update clients set phone = '{i}' where id = {ids[0]}",
                batch=f"Batch {i}",
            )
    whole = history(conn, "client", str(target), page_size=1000)
    assert len(whole) == 1 + 7 + 7 + 3
    assert [r["action_id"] for r in whole] == touching(conn, "client", str(target))
    for size in (1, 2, 5, 50):
        seen: list[dict] = []
        before = None
        while True:
            page = history(conn, "client", str(target), before=before, page_size=size)
            assert len(page) <= size
            seen.extend(page)
            if len(page) < size:
                break
            before = (page[-1]["occurred_at"], page[-1]["action_id"])
        assert seen == whole, size
    # the pair is strict: the last row of a page does not come again
    first = whole[3]
    after = history(conn, "client", str(target), before=(first["occurred_at"], first["action_id"]))
    assert after == whole[4:]


def test_actions_of_one_statement_time_are_ordered_by_id(conn):
    (client,) = new_clients(conn, 1)
    # one transaction: the same statement_timestamp() for each? no: one per statement;
    # give them the same time through one statement of a function's several writes
    with conn.transaction():
        conn.execute(
            "do $$ begin"
            f" update clients set notes = 'a' where id = {client};"
            f" update clients set notes = 'b' where id = {client};"
            f" update clients set notes = 'c' where id = {client};"
            " end $$"
        )
    rows = history(conn, "client", str(client))
    assert len({r["occurred_at"] for r in rows[:3]}) == 1
    assert [r["items"][0]["new"]["notes"] for r in rows[:3]] == ["c", "b", "a"]
    page = history(
        conn,
        "client",
        str(client),
        before=(rows[0]["occurred_at"], rows[0]["action_id"]),
        page_size=1,
    )
    assert page == rows[1:2]


@pytest.mark.parametrize("size", [0, -1, 1001, None])
def test_a_page_size_out_of_range_is_refused(conn, size):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="page_size is"):
        conn.execute("select * from audit.history('client', '1', page_size => %s)", (size,))
    conn.rollback()


# -- truncate -------------------------------------------------------------------------------


def test_a_truncate_is_in_the_history_of_the_rows_it_emptied_only(conn):
    run(conn, "insert into cases (title) values ('Old case')")
    (old_case,) = conn.execute("select max(id) from cases").fetchone()
    run(conn, "truncate cases cascade")
    run(conn, "insert into cases (title) values ('New case'), ('Other')")
    (new_case,) = conn.execute("select min(id) from cases").fetchone()
    # the truncate came before the new row existed
    assert [r["action"] for r in history(conn, "case", str(new_case))] == ["Batch case creation"]
    # ... and after the old one
    old = history(conn, "case", str(old_case))
    assert [r["action"] for r in old] == ["Cases table truncated", "Case created"]
    assert old[0]["items"] == [] and old[0]["operation"] == "TRUNCATE"
    run(conn, "truncate cases cascade")
    rows = history(conn, "case", str(new_case))
    assert [r["action"] for r in rows] == ["Cases table truncated", "Batch case creation"]
    assert [r["action"] for r in history(conn, "case", str(old_case))] == [
        "Cases table truncated",
        "Cases table truncated",
        "Case created",
    ]
    # another table's truncate is not the row's
    run(conn, "truncate case_tasks")
    assert [r["action"] for r in history(conn, "case", str(new_case))] == [
        "Cases table truncated",
        "Batch case creation",
    ]
    # paged: the truncate keeps its place
    page = history(conn, "case", str(old_case), page_size=1)
    assert [r["action"] for r in page] == ["Cases table truncated"]
    rest = history(
        conn, "case", str(old_case), before=(page[0]["occurred_at"], page[0]["action_id"])
    )
    assert [r["action"] for r in rest] == ["Cases table truncated", "Case created"]


# -- keys and types -------------------------------------------------------------------------


def test_a_composite_key_as_capture_renders_it(conn):
    with conn.transaction():
        conn.execute(
            "create table seats (room int, code text, taken boolean not null default false,"
            " primary key (room, code))"
        )
        conn.execute("select audit.track('seats', 'seat', status_columns => '{taken}')")
    run(conn, "insert into seats values (1, 'a b'), (1, 'c'), (2, 'a b')")
    run(conn, "update seats set taken = true where room = 1 and code = 'a b'")
    run(conn, "update seats set taken = not taken")
    run(conn, "delete from seats where room = 1 and code = 'a b'")
    key = '(1,"a b")'
    (logged,) = conn.execute(
        "select resource_id from audit.action_log where resource_type = 'seat' and row_count = 1"
        " and operation = 'UPDATE'"
    ).fetchone()
    assert logged == key
    rows = history(conn, "table:seats", key)
    assert [r["action"] for r in rows] == [
        "Seat deleted",
        "Bulk seat status update",
        "Seat status change",
        "Batch seat creation",
    ]
    check_items(conn, rows, "seat", key)
    assert rows[1]["items"][0]["new"] == {"taken": False}
    assert [r["action"] for r in history(conn, "seat", '(2,"a b")')] == [
        "Bulk seat status update",
        "Batch seat creation",
    ]
    # the text form is the logged one: another spelling is another row
    assert history(conn, "seat", "(1,a b)") == []


def test_a_partition_of_a_tracked_table_gives_its_resource_type(conn):
    with conn.transaction():
        conn.execute(
            "create table visits (id int, region text, primary key (id, region))"
            " partition by list (region)"
        )
        conn.execute("create table visits_eu partition of visits for values in ('eu')")
        conn.execute("select audit.track('visits', 'visit')")
    run(conn, "insert into visits values (1, 'eu')")
    assert [r["action"] for r in history(conn, "table:visits_eu", "(1,eu)")] == ["Visit created"]


def test_unknown_types_tables_and_ids(conn):
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match="unknown resource type 'clients'"
    ) as caught:
        conn.execute("select * from audit.history('clients', '1')")
    assert "client" in (caught.value.diag.message_hint or "")
    conn.rollback()
    with conn.transaction():
        conn.execute("create table notes (id int primary key)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="notes is not tracked"):
        conn.execute("select * from audit.history('notes'::regclass, '1')")
    conn.rollback()
    assert history(conn, "client", "987654") == []
    assert history(conn, "table:clients", "not a number") == []
    # a type whose table was untracked since keeps its history
    (client,) = new_clients(conn, 1)
    with conn.transaction():
        conn.execute("select audit.untrack('clients')")
    assert [r["action"] for r in history(conn, "client", str(client))] == ["Client created"]


# -- who may read it ------------------------------------------------------------------------


def test_only_readers_may_call_it(conn, make_role):
    (client,) = new_clients(conn, 1)
    run(conn, f"update clients set notes = 'secret note' where id = {client}")
    stranger = make_role()
    with psycopg.connect(stranger) as other:
        for call in (
            "select * from audit.history('client', %s)",
            "select * from audit.history('clients'::regclass, %s)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="function history"):
                other.execute(call, (str(client),))
            other.rollback()
    # EXECUTE alone reads nothing: the log is read with the caller's own rights
    name = conninfo_to_dict(stranger)["user"]
    with conn.transaction():
        conn.execute(
            sql.SQL("grant execute on function {} to {}").format(
                sql.SQL("audit.history(text, text, timestamptz, bigint, integer)"),
                sql.Identifier(str(name)),
            )
        )
    with (
        psycopg.connect(stranger) as other,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="audit"),
    ):
        other.execute("select * from audit.history('client', %s)", (str(client),))
    reader = make_role("grant audit_reader to {role}")
    with psycopg.connect(reader) as other:
        rows = other.execute(
            "select action, items from audit.history('client', %s)", (str(client),)
        ).fetchall()
    assert rows[0][0] == "Client updated"
    assert rows[0][1] == [{"item_no": 1, "old": {"notes": None}, "new": {"notes": "secret note"}}]
    admin = make_role("grant audit_admin to {role}")
    with psycopg.connect(admin) as other:
        assert (
            len(
                other.execute(
                    "select * from audit.history('clients'::regclass, %s)", (str(client),)
                ).fetchall()
            )
            == 2
        )


def test_it_runs_as_its_caller(conn):
    definer = conn.execute(
        "select p.oid::regprocedure::text, p.prosecdef from pg_proc p"
        " where p.pronamespace = 'audit'::regnamespace and p.proname in ('history', 'item_ids')"
        " order by 1"
    ).fetchall()
    conn.commit()
    assert len(definer) == 3
    assert [secdef for _, secdef in definer] == [False, False, False]


_owner_numbers = itertools.count(1)


@pytest.fixture
def owner(conn, db_url):
    """A LOGIN role owning schema `own`, with a marker its hostile code calls."""
    name = f"hist_owner_{next(_owner_numbers)}_{conn.info.dbname}"
    with conn.transaction():
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create schema own authorization {}").format(sql.Identifier(name)))
        conn.execute("create table public.seen (who text, what text)")
        conn.execute("grant insert on public.seen to public")
        conn.execute(
            "create function public.mark(what text) returns int language sql"
            " as $$ insert into public.seen values (current_user, what) returning 1 $$"
        )
    yield make_conninfo(db_url, user=name)
    conn.rollback()
    with conn.transaction():
        conn.execute(
            sql.SQL("drop schema own cascade; drop owned by {0}; drop role {0}").format(
                sql.Identifier(name)
            )
        )


# The owner's key type, its casts to text and json(b) and its operators, and functions
# and operators named like those the history reads with, in the owner's schema: each
# records who ran it.
HOSTILE = """
create type own.mood as enum ('calm', 'tense');
create table own.moods (k own.mood, n int, note text, primary key (k, n));
create function own.mood_text(v own.mood) returns text language plpgsql as
  $b$ begin perform public.mark('cast'); return 'HIJACKED'; end $b$;
create cast (own.mood as text) with function own.mood_text(own.mood) as implicit;
create function own.mood_eq(a own.mood, b own.mood) returns boolean language plpgsql as
  $b$ begin perform public.mark('='); return false; end $b$;
create operator own.= (leftarg = own.mood, rightarg = own.mood, function = own.mood_eq);
create function own.array_positions(a text[], b text) returns int[] language plpgsql as
  $b$ begin perform public.mark('array_positions'); return '{1}'; end $b$;
create function own.contains(a text[], b text[]) returns boolean language plpgsql as
  $b$ begin perform public.mark('@>'); return true; end $b$;
create operator own.@> (leftarg = text[], rightarg = text[], function = own.contains);
create function own.json_array_elements(j json) returns setof json language plpgsql as
  $b$ begin perform public.mark('json_array_elements'); return; end $b$;
"""


def test_a_table_owner_s_code_never_runs_in_it(conn, owner, make_role):
    with psycopg.connect(owner, autocommit=True) as own:
        own.execute(HOSTILE)
        own.execute("alter role current_user set search_path = own, public")
    with conn.transaction():
        conn.execute("select audit.track('own.moods', 'mood')")
    with psycopg.connect(owner, autocommit=True) as own:
        own.execute("set search_path = own, public")
        own.execute("insert into own.moods values ('calm', 1, 'a')")
        own.execute("insert into own.moods select 'calm', i, 'b' from generate_series(2, 4) i")
        own.execute("update own.moods set note = 'c'")
        own.execute("update own.moods set note = 'd' where n = 1")
        own.execute("delete from own.moods")
    reader = make_role("grant audit_reader to {role}", "grant usage on schema own to {role}")
    with psycopg.connect(reader, autocommit=True) as other:
        other.execute("set search_path = own, public")
        rows = other.execute(
            "select action, items from audit.history('own.moods'::regclass, '(calm,1)')"
        ).fetchall()
    assert [r[0] for r in rows] == [
        "Batch mood deletion",
        "Mood updated",
        "Bulk mood note update",
        "Mood created",
    ]
    assert rows[1][1] == [{"item_no": 1, "old": {"note": "c"}, "new": {"note": "d"}}]
    # the history ran nobody's code; capture none as audit_owner
    assert (
        conn.execute(
            "select who, what from public.seen where what <> 'cast' or who = 'audit_owner'"
        ).fetchall()
        == []
    )
    conn.commit()


# -- chunks of every format -------------------------------------------------------------


def test_update_chunks_written_before_0004_are_found_and_a_downgrade_reads_newer_ones(db_url, conn):
    from audit_capture import migrate

    ids = new_clients(conn, 5)
    run(conn, f"update clients set status = 'contacted' where id <= {ids[2]}")  # at head
    conn.close()
    migrate.downgrade(db_url, "0003")
    with psycopg.connect(db_url) as old:
        # revision 0003 reads the chunk written at 0004 (its resource_ids went)
        (action,) = old.execute(
            "select id from audit.action_log where action = 'Bulk client status update'"
        ).fetchone()
        assert old.execute(
            "select resource_id, old, new from audit.action_items(%s) order by item_no", (action,)
        ).fetchall() == [(str(i), {"status": "new"}, {"status": "contacted"}) for i in ids[:3]]
        with old.transaction():  # written at 0003: no resource_ids
            old.execute(f"update clients set status = 'qualified' where id >= {ids[1]}")
        assert old.execute(
            "select count(*) from audit.action_item_chunk"
            " where operation = 'UPDATE' and resource_ids is not null"
        ).fetchone() == (0,)
    migrate.upgrade(db_url, "head")
    with psycopg.connect(db_url) as new:
        with new.transaction():
            new.execute(f"update clients set status = 'closed' where id in ({ids[1]}, {ids[4]})")
        rows = history(new, "client", str(ids[1]))
        assert [r["action"] for r in rows] == [
            "Bulk client status update",
            "Bulk client status update",
            "Bulk client status update",
            "Batch client creation",
        ]
        assert [r["items"][0]["new"] for r in rows[:3]] == [
            {"status": "closed"},
            {"status": "qualified"},
            {"status": "contacted"},
        ]
        check_items(new, rows, "client", str(ids[1]))
        # ... through the index: the 0003 chunk by its items' ids
        new.execute("set enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in new.execute(
                "explain select action_id from audit.action_item_chunk c"
                ' where coalesce(c.resource_ids, audit.item_ids(c.items)) collate "C"'
                " @> array[%s]",
                (str(ids[1]),),
            ).fetchall()
        )
        assert "action_item_chunk_resource_idx" in plan or "_coalesce_idx" in plan, plan


# -- the ways in ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _filled(conn) -> None:
    """60,000 actions over 60 days (bench/fill_log.py: single-row actions and bulk ones
    whose items include ids of single-row actions; months of 20,000 actions and a few
    hundred chunks), indexes built over them, analyzed."""
    sys.path.insert(0, str(ROOT / "bench"))
    import fill_log

    conn.execute("set maintenance_work_mem = '64MB'")
    fill_log.fill_unindexed(conn, 60_000, days=60)
    conn.commit()
    conn.autocommit = True
    conn.execute("vacuum analyze audit.action_log")
    conn.execute("vacuum analyze audit.action_item_chunk")
    conn.autocommit = False


DB_TEMPLATES = {"filled": _filled}


@pytest.fixture
def filled():
    """The test's database is a copy of the filled template (DB_TEMPLATES)."""


def _mixed_row(conn) -> tuple[str, str]:
    """A resource with both single-row actions and items in bulk actions."""
    row = conn.execute(
        "select c.resource_type, r from audit.action_item_chunk c, unnest(c.resource_ids) r"
        " where exists (select from audit.action_log a where a.resource_type = c.resource_type"
        "               and a.resource_id = r)"
        " group by 1, 2 order by count(*) desc, 1, 2 limit 1"
    ).fetchone()
    conn.commit()
    return row


def test_a_history_page_reads_the_indexes_by_resource_not_the_months(conn, filled):
    resource_type, resource_id = _mixed_row(conn)
    whole = history(conn, resource_type, resource_id, page_size=1000)
    kinds = {r["row_count"] > 1 for r in whole}
    assert kinds == {True, False}, whole  # single-row and bulk actions mixed
    # every page, in one transaction: no partition holding more than a few rows was
    # scanned whole (the statistics of the queries above flushed first: the view shows
    # what the backend has not flushed yet)
    conn.execute("select pg_stat_force_next_flush()")
    conn.commit()
    time.sleep(0.1)
    with conn.transaction():
        pages: list[dict] = []
        before = None
        for _ in range(20):  # the first calls plan with the values, the later ones reuse
            page = history_in(conn, resource_type, resource_id, before, 2)
            pages.extend(page)
            if len(page) < 2:
                break
            before = (page[-1]["occurred_at"], page[-1]["action_id"])
        scanned = conn.execute(
            "select s.relname, s.seq_scan from pg_stat_xact_user_tables s"
            " join pg_class c on c.oid = s.relid"
            " where s.schemaname = 'audit' and c.reltuples > 100 and s.seq_scan > 0"
            " and (s.relname like 'action_log_%%' or s.relname like 'action_item_chunk_%%')"
        ).fetchall()
    assert scanned == []
    assert pages == whole
    check_items(conn, whole, resource_type, resource_id)
    # the queries as the function writes them use the indexes (the expressions and their
    # collation must match the indexes' character for character)
    for query, index in (
        (
            "select action_id from audit.action_item_chunk c where coalesce(c.resource_ids,"
            ' audit.item_ids(c.items)) collate "C" @> array[%s] and c.resource_type = %s',
            "_coalesce_idx",
        ),
        (
            'select id from audit.action_log a where a.resource_type = %s collate "C"'
            ' and a.resource_id = %s collate "C" order by a.occurred_at desc, a.id desc limit 50',
            "_resource_type_resource_id_occurred_at",
        ),
    ):
        params = (resource_id, resource_type) if "chunk" in query else (resource_type, resource_id)
        plan = "\n".join(r[0] for r in conn.execute("explain " + query, params).fetchall())
        conn.commit()
        assert index in plan and not _scanned_whole(conn, plan), plan
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            'explain select id from audit.action_log a where a.resource_type = %s collate "C"'
            " and a.operation = 'TRUNCATE' order by a.occurred_at desc, a.id desc limit 50",
            (resource_type,),
        ).fetchall()
    )
    assert "_resource_type_occurred_at_id_idx" in plan and not _scanned_whole(conn, plan), plan


def _scanned_whole(conn, plan: str) -> list[str]:
    """The partitions holding more than a few rows that a plan reads whole (an empty
    month's partition is: nothing to seek in)."""
    names = re.findall(r"Seq Scan on (\w+)", plan)
    rows = conn.execute(
        "select relname from pg_class where relnamespace = 'audit'::regnamespace"
        " and relname = any (%s) and reltuples > 100",
        (names,),
    ).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def history_in(conn, resource, resource_id, before, page_size) -> list[dict]:
    """audit.history() in the caller's transaction."""
    before_at, before_id = before or (None, None)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from audit.history(%s, %s, %s, %s, %s)",
            (resource, resource_id, before_at, before_id, page_size),
        )
        return cur.fetchall()


def test_chunks_of_an_upgraded_install_s_legacy_partition_are_found(empty_db_url):
    from audit_capture import migrate

    migrate.upgrade(empty_db_url, "0002")  # one table: chunks without occurred_at
    with psycopg.connect(empty_db_url) as old:
        with old.transaction():
            old.execute("create table notes (id int primary key, body text)")
            old.execute("select audit.track('notes', 'note')")
            old.execute("insert into notes select i, 'a' from generate_series(1, 3) i")
            old.execute("update notes set body = 'b'")
        with old.transaction():
            old.execute("update notes set body = 'c' where id = 2")
    migrate.upgrade(empty_db_url, "head")
    with psycopg.connect(empty_db_url) as new:
        assert new.execute(
            "select count(*) from audit.action_item_chunk where occurred_at = '-infinity'"
        ).fetchone() == (2,)
        with new.transaction():
            new.execute("update notes set body = 'd' where id <= 2")
        rows = history(new, "note", "2")
        assert [r["action"] for r in rows] == [
            "Bulk note body update",
            "Note updated",
            "Bulk note body update",
            "Batch note creation",
        ]
        assert [r["items"] for r in rows] == [
            [{"item_no": 2, "old": {"body": "c"}, "new": {"body": "d"}}],
            [{"item_no": 1, "old": {"body": "b"}, "new": {"body": "c"}}],
            [{"item_no": 2, "old": {"body": "a"}, "new": {"body": "b"}}],
            [{"item_no": 2, "old": None, "new": {"id": 2, "body": "a"}}],
        ]
        check_items(new, rows, "note", "2")
        # paged across the legacy months
        page = history(new, "note", "2", page_size=2)
        rest = history(new, "note", "2", (page[-1]["occurred_at"], page[-1]["action_id"]), 2)
        assert page + rest == rows
