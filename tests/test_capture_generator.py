"""The capture generator (triggers/06_capture_queries.sql, 07_capture.sql): templates
whose {{slots}} audit.fill() fills in one pass, the capture function's own variable
names written where the queries need them."""

from __future__ import annotations

import psycopg
import pytest
from audit_log import actions, items
from psycopg import sql

CAPTURE_MODES = ("generated", "generic")


def fill(conn, template: str, slots: dict) -> str:
    return conn.execute(
        "select audit.fill(%s, %s::jsonb)", (template, psycopg.types.json.Jsonb(slots))
    ).fetchone()[0]


def test_fill_puts_each_value_in_its_slot_and_never_searches_a_value_again(conn):
    assert fill(conn, "a {{x}} b {{y}} c {{x}}", {"x": "1", "y": "{{x}}"}) == "a 1 b {{x}} c 1"
    assert fill(conn, "{{x}}{{y}}", {"x": "{{", "y": "y}}"}) == "{{y}}"
    assert fill(conn, "no slot, {single} braces", {}) == "no slot, {single} braces"


@pytest.mark.parametrize(
    ("slots", "message"),
    [
        ({"x": "1"}, "no value for the slot {{y}}"),
        ({"x": "1", "y": None}, "no value for the slot {{y}}"),
        ({"x": "1", "y": "2", "z": "3"}, "the template has no slot for z"),
    ],
)
def test_fill_refuses_a_missing_value_or_a_value_without_a_slot(conn, slots, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        fill(conn, "{{x}} {{y}}", slots)


# Column names that look like the generator's own words: a slot, the capture function's
# variables, the query's parameters and aliases.
ODD_COLUMNS = ["{{rows}}", "p_action_id", "$1", "{{changes}}}", "k"]


def test_columns_named_like_slots_variables_and_parameters_are_only_names(conn, capture_mode):
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in ODD_COLUMNS)
    with conn.transaction():
        conn.execute(sql.SQL("create table public.odd (id int primary key, {})").format(columns))
        conn.execute(
            "select audit.track('public.odd', 'odd', label_column => '{{rows}}',"
            " redacted_columns => '{$1}', status_columns => '{p_action_id}')"
        )
    row = {c: f"v{i}" for i, c in enumerate(ODD_COLUMNS)}
    names = sql.SQL(", ").join(map(sql.Identifier, ODD_COLUMNS))

    def insert(*ids: int) -> None:
        values = sql.SQL(", ").join(
            sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Literal, (i, *row.values()))))
            for i in ids
        )
        with conn.transaction():
            conn.execute(sql.SQL("insert into public.odd (id, {}) values {}").format(names, values))

    insert(1)
    insert(2, 3)
    with conn.transaction():
        conn.execute("update public.odd set \"p_action_id\" = 'moved', \"$1\" = 'x' where id = 1")
    with conn.transaction():
        conn.execute("update public.odd set \"{{changes}}}\" = 'w', id = id + 10")
    with conn.transaction():
        conn.execute("delete from public.odd")

    logged = actions(conn, resource_type="odd")
    assert [(a["action"], a["action_type"]) for a in logged] == [
        ("Odd created", "create"),
        ("Batch odd creation", "create"),
        ("Odd status change", "status_change"),
        ("Bulk odd update", "update"),
        ("Batch odd deletion", "delete"),
    ]
    assert logged[0]["changes"] == {"id": 1, **row, "$1": "[redacted]"}
    assert logged[0]["resource_label"] == "v0"
    assert logged[2]["changes"] == {
        "p_action_id": {"old": "v1", "new": "moved"},
        "$1": {"old": "[redacted]", "new": "[redacted]"},
    }
    moved = sorted((i["old"]["id"], i["new"]["id"]) for i in items(conn, logged[3]["id"]))
    assert moved == [(1, 11), (2, 12), (3, 13)]
    assert {i["new"]["{{changes}}}"] for i in items(conn, logged[3]["id"])} == {"w"}
    assert len(items(conn, logged[4]["id"])) == 3


def test_a_generated_function_names_its_own_variables(conn, capture_mode):
    source = conn.execute(
        "select prosrc from pg_proc p join pg_trigger t on t.tgfoid = p.oid"
        " where t.tgrelid = 'public.clients'::regclass and t.tgname = 'audit_capture_insert'"
    ).fetchone()[0]
    if capture_mode == "generated":
        assert "select p_action_id, p_occurred_at, p_items_before + (i / 1000)" in source
        assert "$1" not in source and "$2" not in source and "$3" not in source
    else:
        assert "execute audit.capture_query(tg_relid, 'INSERT', 'many', '$1', '$2', '$3')" in source
        assert "using p_action_id, p_items_before, p_occurred_at" in source
