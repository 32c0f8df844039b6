"""A role that owns a tracked table (and the types of its columns) is an attacker the
security model names: nothing it can write (a table or column name, a cast, an operator,
a function) may ever run as audit_owner, the role that owns the log. Capture runs as
audit_owner (SECURITY DEFINER), so every name it writes into SQL must stay quoted and
every value of a type the owner made must become JSON or text without calling a cast or
an operator the owner could define.

Each hostile function here records who ran it in `seen` (writable by everyone): the
tests check that audit_owner never did, and that capture still logged every write."""

from __future__ import annotations

import itertools

import psycopg
import pytest
from audit_log import actions, items
from psycopg import sql
from psycopg.conninfo import make_conninfo

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")

_role_numbers = itertools.count(1)

# Names are at most 63 bytes. Every control character, both quotes, a backslash,
# comment and dollar-quote markers; and a line that would run code if the name ever
# ended a comment (the attack).
HOSTILE_TABLES = [
    "o" + "".join(chr(c) for c in range(1, 32)) + "'\"\\--*/$$/*'",
    "o\ndeclare z int := public.mark('table');--",
]
# the generated body is assembled from placeholders such as "\n    UPDATE many;"
HOSTILE_COLUMN = "id\n    UPDATE many;\n    INSERT one;\"'$1*/--\r"


@pytest.fixture
def owner(conn, db_url):
    """A LOGIN role owning schema `own`, and the marker table and function its hostile
    code calls; yields (the role's url, its name). Dropped afterwards."""
    name = f"owner_{next(_role_numbers)}_{conn.info.dbname}"
    with conn.transaction():
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create schema own authorization {}").format(sql.Identifier(name)))
        conn.execute("create table public.seen (who text, what text)")
        conn.execute("grant insert on public.seen to public")
        conn.execute(
            "create function public.mark(what text) returns int language sql"
            " as $$ insert into public.seen values (current_user, what) returning 1 $$"
        )
    yield make_conninfo(db_url, user=name), name
    conn.rollback()
    with conn.transaction():
        conn.execute(
            sql.SQL("drop schema own cascade; drop owned by {0}; drop role {0}").format(
                sql.Identifier(name)
            )
        )


def ran_as(conn) -> list[tuple[str, str]]:
    return conn.execute("select who, what from public.seen order by 1, 2").fetchall()


def as_owner(url: str, *statements: str | sql.Composable) -> None:
    with psycopg.connect(url, autocommit=True) as owner:
        for statement in statements:
            owner.execute(statement)


@pytest.mark.parametrize(
    "hostile_table", HOSTILE_TABLES, ids=["control-characters", "comment-break"]
)
def test_a_hostile_table_or_column_name_never_runs_as_audit_owner(owner, conn, hostile_table):
    url, _ = owner
    as_owner(url, "create table own.orders (id int primary key, item text)")
    with conn.transaction():
        conn.execute("select audit.track('own.orders', 'order', label_column => 'item')")
    table = sql.Identifier("own", hostile_table)
    as_owner(
        url,
        sql.SQL("alter table own.orders rename to {}").format(sql.Identifier(hostile_table)),
        sql.SQL("insert into {} values (1, 'one')").format(table),
        sql.SQL("update {} set item = 'x'").format(table),
    )
    assert ran_as(conn) == []
    column = sql.Identifier(HOSTILE_COLUMN)
    as_owner(
        url,
        sql.SQL("alter table {} rename column item to {}").format(table, column),
        sql.SQL("insert into {} values (2, 'two'), (3, 'three')").format(table),
        sql.SQL("update {} set {} = {} || '!' where {} <> 'x'").format(
            table, column, column, column
        ),
        sql.SQL("update {} set id = id + 10").format(table),
        sql.SQL("delete from {} where {} = 'x'").format(table, column),
        sql.SQL("delete from {}").format(table),
    )
    assert ran_as(conn) == []
    logged = actions(conn, resource_type="order")
    assert [a["action"] for a in logged] == [
        "Order created",
        "Order updated",
        "Batch order creation",
        f"Bulk order {HOSTILE_COLUMN} update",
        "Bulk order id update",
        "Order deleted",
        "Batch order deletion",
    ]
    assert logged[0]["changes"] == {"id": 1, "item": "one"}
    assert logged[1]["resource_label"] == "x"
    assert logged[5]["resource_label"] == "x"
    assert [i["new"] for i in items(conn, logged[2]["id"])] == [
        {"id": 2, HOSTILE_COLUMN: "two"},
        {"id": 3, HOSTILE_COLUMN: "three"},
    ]
    assert sorted(i["new"][HOSTILE_COLUMN] for i in items(conn, logged[3]["id"])) == [
        "three!",
        "two!",
    ]
    assert sorted((i["old"]["id"], i["new"]["id"]) for i in items(conn, logged[4]["id"])) == [
        (1, 11),
        (2, 12),
        (3, 13),
    ]
    quoted = conn.execute("select format('%%I.%%I', 'own', %s::text)", (hostile_table,)).fetchone()[
        0
    ]
    assert logged[-1]["table_name"] == quoted


HOSTILE_TYPES = """
create type own.mood as enum ('calm', 'tense', 'it''s "odd", (really)\\');
create domain own.dmood as own.mood;
create type own.pair as (a int, m own.mood);
create type own.span as range (subtype = own.mood);
create table own.things (
  k own.mood, n int, tag int not null,
  feel own.mood, dfeel own.dmood, pair own.pair, span own.span, feels own.mood[],
  dfeels own.dmood[], note text,
  primary key (k, n));
create table own.by_dmood (d own.dmood primary key, tag int not null, pair own.pair, note text);
create table own.by_pair (p own.pair primary key, tag int not null, feel own.mood);
create table own.by_span (s own.span primary key, tag int not null, feel own.mood);
"""

# For each of the owner's types (and an array of the enum): casts to text (implicit, so
# that operator resolution could be tempted), json and jsonb, and operators = and <> in
# the owner's schema; each records who ran it.
HOSTILE_CASTS = """
do $do$
declare
  t text;
  target text;
begin
  foreach t in array array['own.mood', 'own.dmood', 'own.pair', 'own.span', 'own.mood[]'] loop
    foreach target in array array['text', 'json', 'jsonb'] loop
      execute format($f$create function own.%s(v %s) returns %s language plpgsql as $b$
        begin perform public.mark(%L); return %L; end $b$$f$,
        'to_' || target || '_' || md5(t), t, target, t || ' as ' || target,
        case target when 'text' then 'HIJACKED' else '"HIJACKED"' end);
      execute format('create cast (%s as %s) with function own.%s(%s)%s', t, target,
                     'to_' || target || '_' || md5(t), t,
                     case when target = 'text' and t not like '%[]' then ' as implicit'
                          else '' end);
    end loop;
    execute format($f$create function own.%s(a %s, b %s) returns boolean language plpgsql as $b$
      begin perform public.mark(%L); return false; end $b$$f$, 'eq_' || md5(t), t, t, t || ' =');
    execute format('create operator own.= (leftarg = %s, rightarg = %s, function = own.%s)',
                   t, t, 'eq_' || md5(t));
    execute format('create operator own.<> (leftarg = %s, rightarg = %s, function = own.%s)',
                   t, t, 'eq_' || md5(t));
  end loop;
end
$do$;
"""

TRACK_THEM = """
select audit.track('own.things', 'thing', status_columns => '{feel}', label_column => 'dfeel');
select audit.track('own.by_dmood', 'dmood', label_column => 'pair');
select audit.track('own.by_pair', 'pair', label_column => 'feel', status_columns => '{feel}');
select audit.track('own.by_span', 'span', label_column => 's');
"""

ODD = 'it\'s "odd", (really)\\'


@pytest.mark.parametrize(
    "casts_first", [False, True], ids=["casts-after-track", "casts-before-track"]
)
def test_casts_and_operators_of_the_owner_s_types_never_run_as_audit_owner(
    owner, conn, casts_first
):
    url, _ = owner
    as_owner(url, HOSTILE_TYPES, *([HOSTILE_CASTS] if casts_first else []))
    with conn.transaction():
        conn.execute(TRACK_THEM)
    if not casts_first:
        as_owner(url, HOSTILE_CASTS)
    as_owner(
        url,
        # things: single and bulk insert, update (status, key), delete
        "insert into own.things values ('calm', 1, 1, 'calm', 'calm', '(1,calm)', '[calm,tense]',"
        " '{calm,tense}', '{tense}', 'a')",
        "update own.things set feel = 'tense', pair = '(2,tense)', span = '[tense,tense]',"
        " feels = '{tense}', dfeels = '{calm}' where tag = 1",
        "update own.things set k = 'tense' where tag = 1",
        "insert into own.things select 'calm', i, i, 'calm', 'tense', row(i, 'calm')::own.pair,"
        " '[calm,calm]', '{calm}', null, 'b' from generate_series(2, 3) i",
        "update own.things set note = 'c', feels = '{tense,calm}', dfeel = 'calm' where tag >= 2",
        "update own.things set k = 'tense', feel = 'tense' where tag >= 2",
        "delete from own.things where tag = 1",
        "delete from own.things",
        # a domain over the enum as the key, a composite as the label
        "insert into own.by_dmood values ('calm', 1, '(7,calm)', 'a')",
        "update own.by_dmood set d = 'tense', pair = '(8,tense)' where tag = 1",
        "insert into own.by_dmood values ('calm', 2, null, 'b'),"
        " ('it''s \"odd\", (really)\\', 3, '(9,calm)', 'c')",
        "update own.by_dmood set note = 'x' where tag = 1",
        "update own.by_dmood set note = 'd'",
        "delete from own.by_dmood where tag = 1",
        "delete from own.by_dmood",
        # a composite and a range as the key
        "insert into own.by_pair values ('(1,calm)', 1, 'calm')",
        "update own.by_pair set feel = 'tense' where tag = 1",
        "insert into own.by_pair values ('(2,calm)', 2, 'calm'), ('(3,calm)', 3, null)",
        "update own.by_pair set p = row((p).a + 10, 'tense')::own.pair, feel = 'tense'",
        "delete from own.by_pair",
        "insert into own.by_span values ('[calm,calm]', 1, 'calm')",
        "update own.by_span set s = '[calm,tense]' where tag = 1",
        "insert into own.by_span values ('[tense,tense]', 2, 'calm'), ('empty', 3, 'calm')",
        "update own.by_span set feel = 'tense'",
        "delete from own.by_span",
    )
    assert [who for who, _ in ran_as(conn) if who == "audit_owner"] == []
    assert (
        "HIJACKED"
        not in conn.execute(
            "select string_agg(concat_ws(' ', resource_id, resource_label, changes), ' ')"
            " from audit.action_log"
        ).fetchone()[0]
    )
    assert "HIJACKED" not in (
        conn.execute(
            "select string_agg(concat_ws(' ', resource_ids, items), ' ')"
            " from audit.action_item_chunk"
        ).fetchone()[0]
        or ""
    )

    things = actions(conn, resource_type="thing")
    assert [a["action"] for a in things] == [
        "Thing created",
        "Thing status change",
        "Thing updated",
        "Batch thing creation",
        "Bulk thing update",
        "Bulk thing status update",
        "Thing deleted",
        "Batch thing deletion",
    ]
    created = things[0]
    assert (created["resource_id"], created["resource_label"]) == ("(calm,1)", "calm")
    # values of the owner's types are logged as their text (what psql shows)
    assert created["changes"] == {
        "k": "calm",
        "n": 1,
        "tag": 1,
        "feel": "calm",
        "dfeel": "calm",
        "pair": "(1,calm)",
        "span": "[calm,tense]",
        "feels": "{calm,tense}",
        "dfeels": "{tense}",
        "note": "a",
    }
    assert things[1]["changes"] == {
        "feel": {"old": "calm", "new": "tense"},
        "pair": {"old": "(1,calm)", "new": "(2,tense)"},
        "span": {"old": "[calm,tense]", "new": "[tense,tense]"},
        "feels": {"old": "{calm,tense}", "new": "{tense}"},
        "dfeels": {"old": "{tense}", "new": "{calm}"},
    }
    assert things[2]["changes"] == {"k": {"old": "calm", "new": "tense"}}
    bulk = items(conn, things[4]["id"])
    assert sorted((i["resource_id"], i["new"]["feels"]) for i in bulk) == [
        ("(calm,2)", "{tense,calm}"),
        ("(calm,3)", "{tense,calm}"),
    ]
    moved = items(conn, things[5]["id"])
    assert sorted((i["resource_id"], i["old"]["k"], i["new"]["k"]) for i in moved) == [
        ("(tense,2)", "calm", "tense"),
        ("(tense,3)", "calm", "tense"),
    ]
    assert [i["resource_id"] for i in items(conn, things[7]["id"])] == ["(tense,2)", "(tense,3)"]

    dmoods = actions(conn, resource_type="dmood")
    assert [(a["action"], a["resource_id"], a["resource_label"]) for a in dmoods] == [
        ("Dmood created", "calm", "(7,calm)"),
        ("Dmood updated", "tense", "(8,tense)"),
        ("Batch dmood creation", None, None),
        ("Dmood updated", "tense", "(8,tense)"),
        ("Bulk dmood note update", None, None),
        ("Dmood deleted", "tense", "(8,tense)"),
        ("Batch dmood deletion", None, None),
    ]
    assert sorted((i["resource_id"], i["new"]["pair"]) for i in items(conn, dmoods[2]["id"])) == [
        ("calm", None),
        (ODD, "(9,calm)"),
    ]

    pairs = actions(conn, resource_type="pair")
    assert [(a["action"], a["resource_id"], a["resource_label"]) for a in pairs] == [
        ("Pair created", "(1,calm)", "calm"),
        ("Pair status change", "(1,calm)", "tense"),
        ("Batch pair creation", None, None),
        ("Bulk pair status update", None, None),
        ("Batch pair deletion", None, None),
    ]
    assert sorted(i["resource_id"] for i in items(conn, pairs[3]["id"])) == [
        "(11,tense)",
        "(12,tense)",
        "(13,tense)",
    ]

    spans = actions(conn, resource_type="span")
    assert [(a["action"], a["resource_id"], a["resource_label"]) for a in spans] == [
        ("Span created", "[calm,calm]", "[calm,calm]"),
        ("Span updated", "[calm,tense]", "[calm,tense]"),
        ("Batch span creation", None, None),
        ("Bulk span feel update", None, None),
        ("Batch span deletion", None, None),
    ]
    assert sorted(i["resource_id"] for i in items(conn, spans[4]["id"])) == [
        "[calm,tense]",
        "[tense,tense]",
        "empty",
    ]
