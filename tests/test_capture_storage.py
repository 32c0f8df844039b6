"""What a faster storage makes delicate: every item of a big action comes back exactly
once with the right before and after; values of every common type round-trip through
the diff and the items; chunks and batches number their items without gaps."""

from __future__ import annotations

import json

import pytest
from audit_log import actions, items, only_action

from audit_capture import batch

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")


def test_items_of_a_100000_row_update_come_back_exactly_once(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name, status) "
            "select i, 'Client ' || i, 'new' from generate_series(1, 100000) i"
        )
        conn.execute("update clients set status = 'contacted', notes = 'n' || id")
    action = only_action(conn, action="Bulk client status update")
    assert action["row_count"] == 100000
    rows = conn.execute(
        "select item_no, resource_id, old, new from audit.action_items(%s)", (action["id"],)
    ).fetchall()
    assert [r[0] for r in rows] == list(range(1, 100001))
    assert sorted(int(r[1]) for r in rows) == list(range(1, 100001))
    for _, resource_id, old, new in rows:
        assert old == {"status": "new", "notes": None}
        assert new == {"status": "contacted", "notes": f"n{resource_id}"}


@pytest.mark.parametrize("count", [999, 1000, 1001, 2500])
def test_chunk_boundaries_number_items_without_gaps(conn, count):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name) select i, 'c' || i from generate_series(1, %s) i",
            (count,),
        )
        conn.execute("delete from clients")
    action = only_action(conn, action="Batch client deletion")
    got = items(conn, action["id"])
    assert [i["item_no"] for i in got] == list(range(1, count + 1))
    assert sorted(int(i["resource_id"]) for i in got) == list(range(1, count + 1))
    assert all(i["old"]["name"] == "c" + i["resource_id"] and i["new"] is None for i in got)


def test_a_batch_of_many_statements_numbers_items_across_chunks(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name) select i, 'c' || i from generate_series(1, 2200) i"
        )
    with conn.transaction(), batch(conn, "Cleanup"):
        conn.execute("delete from clients where id <= 1500")  # two chunks
        for client_id in range(1501, 1511):  # ten single rows
            conn.execute("delete from clients where id = %s", (client_id,))
        conn.execute("delete from clients where id > 1510")  # one more chunk
    action = only_action(conn, action="Cleanup")
    got = items(conn, action["id"])
    assert action["row_count"] == len(got) == 2200
    assert [i["item_no"] for i in got] == list(range(1, 2201))
    assert sorted(int(i["resource_id"]) for i in got) == list(range(1, 2201))


MIXED_TABLE = """
create type mood as enum ('calm', 'tense');
create table mixed (
  code text primary key,
  amount numeric(12, 4),
  ratio double precision,
  tags text[],
  scores integer[],
  doc jsonb,
  raw json,
  blob bytea,
  feeling mood,
  seen_at timestamptz,
  due_on date,
  flag boolean,
  span interval,
  addr inet,
  uid uuid
);
select audit.track('mixed', 'mixed');
"""

FIRST = (
    "A-1",
    "12.5000",
    0.25,
    ["a", "b,c", 'quote"d'],
    [1, 2, None],
    {"k": [1, {"x": None}]},
    '{"raw": true}',
    b"\x00\x01\xff",
    "calm",
    "2026-03-01 10:00:00+00",
    "2026-03-02",
    True,
    "1 day 02:03:04",
    "10.1.2.3",
    "6f1c2a4e-1b2c-4d5e-8f90-123456789abc",
)
SECOND = (
    "A-1",
    "-0.0001",
    None,
    [],
    None,
    {"k": "changed"},
    "[1, 2]",
    b"",
    "tense",
    "2026-03-01 12:30:00.123456+02",
    None,
    False,
    "-5 minutes",
    "::1",
    None,
)


def insert_mixed(conn, values, table="mixed"):
    conn.execute(
        f"insert into {table} values"
        " (%s, %s, %s, %s, %s, %s::jsonb, %s::json, %s, %s, %s, %s, %s, %s, %s, %s)",
        (*values[:5], json.dumps(values[5]), *values[6:]),
    )


def snapshot(conn):
    """The rows of `mixed` as PostgreSQL's own to_jsonb renders them."""
    return {code: row for code, row in conn.execute("select code, to_jsonb(m) from mixed m")}


def test_mixed_types_round_trip_through_changes_and_items(conn):
    with conn.transaction():
        conn.execute(MIXED_TABLE)
        insert_mixed(conn, FIRST)
        before = snapshot(conn)["A-1"]
        conn.execute(
            "update mixed set amount = %s, ratio = %s, tags = %s, scores = %s, doc = %s::jsonb, "
            "raw = %s::json, blob = %s, feeling = %s, seen_at = %s, due_on = %s, flag = %s, "
            "span = %s, addr = %s, uid = %s where code = 'A-1'",
            (*SECOND[1:5], json.dumps(SECOND[5]), *SECOND[6:]),
        )
        after = snapshot(conn)["A-1"]
        conn.execute("delete from mixed")
    created, updated, deleted = actions(conn, resource_type="mixed")
    assert created["changes"] == before
    assert deleted["changes"] == after
    assert set(updated["changes"]) == set(before) - {"code"}
    for column, change in updated["changes"].items():
        assert change == {"old": before[column], "new": after[column]}, column
    (item,) = items(conn, updated["id"])
    assert item["old"] == {c: before[c] for c in updated["changes"]}
    assert item["new"] == {c: after[c] for c in updated["changes"]}


def test_mixed_types_round_trip_through_bulk_items(conn):
    with conn.transaction():
        conn.execute(MIXED_TABLE)
        conn.execute(
            "create table mixed_stage (like mixed)"
        )  # untracked: rows arrive in one statement
        insert_mixed(conn, FIRST, "mixed_stage")
        insert_mixed(conn, ("B-2", *SECOND[1:]), "mixed_stage")
        conn.execute("insert into mixed select * from mixed_stage")
        before = snapshot(conn)
        conn.execute(
            "update mixed set feeling = 'tense', doc = doc || '{\"n\": 1}', amount = amount + 1"
        )
        after = snapshot(conn)
        conn.execute("delete from mixed")
    created, updated, deleted = actions(conn, resource_type="mixed")
    assert {i["resource_id"]: i["new"] for i in items(conn, created["id"])} == before
    assert {i["resource_id"]: i["old"] for i in items(conn, deleted["id"])} == after
    for item in items(conn, updated["id"]):
        code = item["resource_id"]
        changed = {c for c in before[code] if before[code][c] != after[code][c]}
        assert item["old"] == {c: before[code][c] for c in changed}
        assert item["new"] == {c: after[code][c] for c in changed}


def test_a_window_of_items_reads_only_what_it_asks_for(conn):
    with conn.transaction():
        conn.execute(
            "insert into clients (id, name) select i, 'c' || i from generate_series(1, 2500) i"
        )
    action = only_action(conn, action="Batch client creation")
    window = conn.execute(
        "select item_no, resource_id from audit.action_items(%s, 995, 10)", (action["id"],)
    ).fetchall()
    assert [n for n, _ in window] == list(range(995, 1005))  # across a chunk boundary
    everything = {
        n: r
        for n, r in conn.execute(
            "select item_no, resource_id from audit.action_items(%s)", (action["id"],)
        )
    }
    assert all(everything[n] == r for n, r in window)
    assert (
        conn.execute(
            "select count(*) from audit.action_items(%s, 2500, 50)", (action["id"],)
        ).fetchone()[0]
        == 1
    )


def test_columns_named_like_the_capture_aliases_and_a_domain_over_an_enum(conn):
    """A column named n or o was read by capture as the whole row (to_jsonb(n) took the
    column: a created row was logged as its value 1), and PostgreSQL finds no = for a
    domain over an enum (tracking a table keyed by one failed, its UPDATE too)."""
    conn.autocommit = True  # one statement, one transaction
    conn.execute("create type stage as enum ('new', 'won', 'lost', 'gone')")
    conn.execute("create domain stage_d as stage")
    conn.execute("create table deals (k stage_d primary key, n int, o stage_d, note text)")
    conn.execute(
        "select audit.track('deals', 'deal', label_column => 'o', status_columns => '{o}')"
    )
    conn.execute("insert into deals values ('new', 1, 'new', 'a')")
    conn.execute("update deals set o = 'won', n = 2")
    conn.execute("insert into deals values ('won', 3, null, 'b')")
    conn.execute("update deals set note = 'c'")
    conn.execute(
        "update deals set k = (case when k::stage = 'won' then 'lost' else 'gone' end)::stage_d"
    )
    conn.execute("update deals set k = 'new' where n = 2")
    conn.execute("delete from deals")
    logged = actions(conn, resource_type="deal")
    assert [(a["action"], a["resource_id"], a["resource_label"]) for a in logged] == [
        ("Deal created", "new", "new"),
        ("Deal status change", "new", "won"),
        ("Deal created", "won", None),
        ("Bulk deal note update", None, None),
        ("Bulk deal k update", None, None),
        ("Deal updated", "new", "won"),
        ("Batch deal deletion", None, None),
    ]
    assert logged[0]["changes"] == {"k": "new", "n": 1, "o": "new", "note": "a"}
    assert logged[1]["changes"] == {"n": {"old": 1, "new": 2}, "o": {"old": "new", "new": "won"}}
    assert sorted((i["old"]["k"], i["new"]["k"]) for i in items(conn, logged[4]["id"])) == [
        ("new", "gone"),
        ("won", "lost"),
    ]
    assert logged[5]["changes"] == {"k": {"old": "gone", "new": "new"}}
    assert sorted(i["old"]["n"] for i in items(conn, logged[6]["id"])) == [2, 3]
