"""An actor's pages on action_log_actor_source_idx (actor_id, source, occurred_at desc,
id desc): an actor alone is read per source and merged in page order, an actor with a
source is one seek. Against a real PostgreSQL: every page equals plain SQL's
``order by occurred_at desc, id desc``, forward and back across the sources, with other
filters; the plans read the actor index in order and sort no more than a page; hostile
actor values; exports, every row in order, each batch along the actor index; the actor's
newest row for the directory, the options and the filter sentence."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from audit_capture.enums import Source
from audit_capture.viewer import recent
from audit_capture.viewer.actor_search import describe, load_directory
from audit_capture.viewer.export import export_csv, export_json
from audit_capture.viewer.filters import SOURCE_CHOICES, parse_filters
from audit_capture.viewer.options import load_options
from audit_capture.viewer.pages import fetch_rows, list_page
from audit_capture.viewer.rows import actor_branches

UTC = ZoneInfo("UTC")
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
# the sources of the mixed actor, in the order its rows take them (None: no context)
MIXED_SOURCES = ["web", "api", None, "ai", "mobile", "web", None, "api"]
BUSY_ROWS = 10_000  # the busy actor's rows, 2,000 per source value
# an actor id a hostile URL may hold: quotes, LIKE's wildcards, a backslash, non-Latin
HOSTILE = "o'brien%_\\ü—李\"; drop table audit.action_log; --"


def insert(conn, rows: list[dict]) -> None:
    """Actions straight into the log (as the superuser: an actor without source too)."""
    defaults = {
        "action_type": "update",
        "resource_type": "client",
        "resource_label": "Ann Lee",
        "actor_type": "admin",
        "db_user": "crm_app",
        "transaction_id": 1,
    }
    for row in rows:
        values = {**defaults, **row}
        conn.execute(
            sql.SQL("insert into audit.action_log ({}) values ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, values)),
                sql.SQL(", ").join(sql.Placeholder() * len(values)),
            ),
            list(values.values()),
        )


@pytest.fixture
def actor_log(conn):
    """``mixed``: 64 actions over all four sources and none, interleaved, two at each
    instant (so pages meet inside a tie and across sources), half "Client updated"
    (update), half "Campaign sent" (send), over eight days; ``busy``: 10,000 actions,
    2,000 per source value; ``gone``: 30 old actions (web and none); 3,000 actions of
    others; the hostile actor: 6 actions (web and none). Analyzed."""
    mixed = []
    for i in range(64):
        update = i % 2 == 0
        mixed.append(
            {
                "occurred_at": T0 - timedelta(hours=6 * (i // 2)),
                "action": "Client updated" if update else "Campaign sent",
                "action_type": "update" if update else "send",
                "actor_id": "mixed",
                "actor_name": "Mia Mixed",
                "source": MIXED_SOURCES[(i * 3) % len(MIXED_SOURCES)],
            }
        )
    insert(conn, mixed)
    insert(
        conn,
        [
            {
                "occurred_at": T0 - timedelta(days=800, hours=i),
                "action": "Client updated",
                "actor_id": "gone",
                "actor_name": "Gus Gone",
                "source": "web" if i % 3 else None,
            }
            for i in range(30)
        ]
        + [
            {
                "occurred_at": T0 - timedelta(minutes=7 * i),
                "action": "Client updated",
                "actor_id": HOSTILE,
                "actor_name": "Odd Name",
                "source": "web" if i % 2 else None,
            }
            for i in range(6)
        ],
    )
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " actor_id, actor_name, actor_type, db_user, transaction_id, source)"
        " select %(t0)s - g * interval '37 seconds', 'Client updated', 'update', 'client',"
        " 'busy', 'Bea Busy', 'admin', 'crm_app', 1,"
        " (array['web', 'api', 'ai', 'mobile', null])[1 + g %% 5]"
        " from generate_series(1, %(busy)s) g"
        " union all"
        " select %(t0)s - g * interval '11 seconds', 'Client updated', 'update', 'client',"
        " 'other-' || g %% 30, 'Olga Other', 'admin', 'crm_app', 1, 'web'"
        " from generate_series(1, 3000) g",
        {"t0": T0, "busy": BUSY_ROWS},
    )
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()


def plain_ids(conn, where: str, params=(), direction: str = "next") -> list[int]:
    order = "occurred_at desc, id desc" if direction == "next" else "occurred_at, id"
    return [
        r[0]
        for r in conn.execute(
            f"select id from audit.action_log where {where} order by {order}", params
        )
    ]


def ids(page) -> list[int]:
    return [r.id for r in page.rows]


# plain SQL of each filter set, beside the mixed actor
FILTER_CASES = [
    ({}, "true"),
    ({"action_type": "send"}, "action_type = 'send'"),
    ({"q": "campaign"}, "action = 'Campaign sent'"),
    (
        {"from": "2025-03-04", "to": "2025-03-08"},
        "occurred_at >= '2025-03-04' and occurred_at < '2025-03-09'",
    ),
    (
        {"q": "client", "to": "2025-03-07"},
        "action = 'Client updated' and occurred_at < '2025-03-08'",
    ),
]


@pytest.mark.parametrize(("extra", "where"), FILTER_CASES)
def test_an_actor_s_pages_are_plain_sql_s_across_its_sources(conn, actor_log, extra, where):
    filters = parse_filters({"actor": "id:mixed", **extra}, UTC)
    expected = plain_ids(conn, f"actor_id = 'mixed' and {where}")
    assert len(expected) >= 16 and len(set(expected)) == len(expected)
    first = list_page(conn, filters, size=10)
    assert ids(first) == expected[:10] and first.prev_cursor is None
    second = list_page(conn, filters, cursor=first.next_cursor, size=10)
    assert ids(second) == expected[10:20]
    third = list_page(conn, filters, cursor=second.next_cursor, size=10)
    assert ids(third) == expected[20:30]
    back = list_page(conn, filters, cursor=third.prev_cursor, direction="prev", size=10)
    assert ids(back) == expected[10:20]
    assert back.next_cursor == second.next_cursor
    # every row at once, and the count
    whole = list_page(conn, filters, size=200)
    assert ids(whole) == expected and whole.next_cursor is None
    assert whole.count.how == "exact" and whole.count.value == len(expected)


@pytest.mark.parametrize(("extra", "where"), FILTER_CASES[:3])
def test_an_actor_one_row_at_a_time_both_ways(conn, actor_log, extra, where):
    # a limit of 1: every step crosses from one source's branch to another's
    filters = parse_filters({"actor": "id:mixed", **extra}, UTC)
    expected = plain_ids(conn, f"actor_id = 'mixed' and {where}")
    walked, position = [], None
    while rows := fetch_rows(conn, filters, position, "next", 1):
        (row,) = rows
        walked.append(row.id)
        position = (row.occurred_at, row.id)
    assert walked == expected
    back = []
    while rows := fetch_rows(conn, filters, position, "prev", 1):
        (row,) = rows
        back.append(row.id)
        position = (row.occurred_at, row.id)
    assert back == expected[-2::-1]


def test_a_busy_actor_pages_deep_and_back(conn, actor_log):
    filters = parse_filters({"actor": "id:busy"}, UTC)
    expected = plain_ids(conn, "actor_id = 'busy'")
    assert len(expected) == BUSY_ROWS
    page = list_page(conn, filters, size=200)
    seen = ids(page)
    for _ in range(4):
        page = list_page(conn, filters, cursor=page.next_cursor, size=200)
        seen += ids(page)
    assert seen == expected[:1000]
    back = list_page(conn, filters, cursor=page.prev_cursor, direction="prev", size=200)
    assert ids(back) == expected[600:800]
    assert page.count.how == "estimate"  # past 1,000 and above the check: the estimate


@pytest.mark.parametrize(
    "args",
    [
        {"actor": "id:gone", "source": "mobile"},
        {"actor": "id:gone", "source": "api"},
        {"actor": "id:other-3", "source": "database"},
        {"actor": "id:other-3", "source": "ai", "q": "client"},
        {"actor": "id:nobody"},
        {"actor": "id:nobody", "q": "client"},
    ],
)
def test_an_actor_with_a_source_never_used_is_an_empty_page(conn, actor_log, args):
    page = list_page(conn, parse_filters(args, UTC))
    assert page.rows == [] and page.next_cursor is None and page.prev_cursor is None
    assert page.count.how == "exact" and page.count.value == 0


def test_an_actor_with_a_source_pages_that_source_only(conn, actor_log):
    for source in SOURCE_CHOICES:
        where = "source is null" if source == "database" else f"source = '{source}'"
        expected = plain_ids(conn, f"actor_id = 'busy' and {where}")
        filters = parse_filters({"actor": "id:busy", "source": source}, UTC)
        first = list_page(conn, filters, size=50)
        second = list_page(conn, filters, cursor=first.next_cursor, size=50)
        assert ids(first) + ids(second) == expected[:100], source
        back = list_page(conn, filters, cursor=second.prev_cursor, direction="prev", size=50)
        assert ids(back) == expected[:50]


def test_a_departed_actor_s_old_rows(conn, actor_log):
    expected = plain_ids(conn, "actor_id = 'gone'")
    page = list_page(conn, parse_filters({"actor": "id:gone"}, UTC), size=200)
    assert ids(page) == expected and len(expected) == 30
    page = list_page(conn, parse_filters({"actor": "id:gone", "q": "client"}, UTC), size=10)
    assert ids(page) == expected[:10]


def test_the_branches_are_every_source_value_once():
    # the vocabulary of audit.sources() (a test of the enums checks it against the SQL),
    # and no source: the branches cover every row of the actor, each row once
    assert [m.value for m in Source] + ["database"] == SOURCE_CHOICES
    branches = actor_branches(parse_filters({"actor": "id:7", "q": "x"}, UTC))
    assert [b.get("source").value for b in branches] == SOURCE_CHOICES
    assert all(b.get("q") and b.get("actor") for b in branches)
    only = parse_filters({"actor": "id:7", "source": "api"}, UTC)
    assert actor_branches(only) == [only]
    assert actor_branches(parse_filters({"actor": "name:postgres"}, UTC)) is None
    assert actor_branches(parse_filters({"source": "api"}, UTC)) is None


def _plan(conn, query, params, enable_sort="on") -> dict:
    conn.execute("set local enable_seqscan = off")  # the small test log: as a big one
    conn.execute(sql.SQL("set local enable_sort = {}").format(sql.Literal(enable_sort)))
    if isinstance(query, str):
        query = sql.SQL(query)
    found = conn.execute(
        sql.SQL("explain (analyze, format json) {}").format(query), params
    ).fetchone()[0]
    conn.rollback()
    return (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


# a partition's index is named after the partition and the log's index it belongs to
# (audit.action_log_p2026_12_actor_source_idx for action_log_actor_source_idx)
PARTITION_PREFIX = re.compile(r"^action_log_(?:p\d{4}_\d{2}|default|legacy)_")


def log_index(node: dict) -> str:
    """The log's index a plan node scans, whichever partition's copy it reads."""
    return PARTITION_PREFIX.sub("action_log_", node["Index Name"])


def data_partition(conn, actor: str) -> str:
    """The partition holding the actor's rows (the test log's are all in one month:
    the default partition, months before the install's)."""
    (relation,) = conn.execute(
        "select distinct tableoid::regclass::text from audit.action_log where actor_id = %s",
        (actor,),
    ).fetchone()
    return relation.removeprefix("audit.")


READS_LOG = re.compile(r'from "?audit"?\."?action_log', re.IGNORECASE)


def plans_of(conn, monkeypatch, read) -> list[dict]:
    """The plans (EXPLAIN ANALYZE) of the statements ``read()`` runs that read the log,
    each under the enable_sort it ran with (``rows`` turns it off for some reads)."""
    seen = []
    original = psycopg.Cursor.execute

    later_rows = recent.LATER_ROWS.as_string(conn)  # the recent span's probe of months ahead

    def execute(self, query, params=None, **kwargs):
        text = query if isinstance(query, str) else query.as_string(self.connection)
        if READS_LOG.search(text) and text != later_rows:
            setting = original(self.connection.cursor(), "show enable_sort").fetchone()[0]
            seen.append((query, params, setting))
        return original(self, query, params, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", execute)
        read()
    conn.rollback()
    assert seen
    return [_plan(conn, query, params, setting) for query, params, setting in seen]


@pytest.mark.parametrize(
    "extra",
    [{}, {"source": "database"}, {"source": "web"}, {"source": "mobile"}, {"to": "2025-03-09"}],
)
@pytest.mark.parametrize("direction", ["next", "prev"])
def test_an_actor_page_reads_the_actor_index_in_order_and_sorts_no_more_than_a_page(
    conn, actor_log, extra, direction, monkeypatch
):
    filters = parse_filters({"actor": "id:busy", **extra}, UTC)
    middle = conn.execute(
        "select occurred_at, id from audit.action_log where actor_id = 'busy'"
        " order by occurred_at desc, id desc offset 4000 limit 1"
    ).fetchone()
    for position in (None, tuple(middle)):
        if position is None and direction == "prev":
            continue
        plans = plans_of(
            conn, monkeypatch, lambda p=position: fetch_rows(conn, filters, p, direction, 51)
        )
        nodes = [node for plan in plans for node in _nodes(plan)]
        # the actor index, once per part (the sources with a value, LATERAL, and the
        # rows without; or the one source filtered), and the page's rows by key
        # (in the partition holding the rows, by the read that found them: the planner
        # may read an empty month's partition through any index, and the newest two
        # months' read finds none of this old log's rows)
        home = data_partition(conn, "busy")
        indexes = [
            log_index(n)
            for plan in plans
            if plan["Actual Rows"]
            for n in _nodes(plan)
            if n.get("Index Name", "").startswith(home + "_")
        ]
        assert set(indexes) == {"action_log_actor_source_idx", "action_log_pkey"}, indexes
        parts = 1 if "source" in extra else 2
        assert indexes.count("action_log_actor_source_idx") == parts
        # no read returns more than a page, nothing sorts more than a page per source
        # (index entries), no scan passes rows it does not return
        for node in nodes:
            if "Scan" in node["Node Type"] or node["Node Type"] == "Limit":
                assert node["Actual Rows"] <= 51, node
            assert node["Actual Rows"] * node["Actual Loops"] <= 51 * len(SOURCE_CHOICES), node
            assert node.get("Rows Removed by Filter", 0) == 0, node


def test_with_other_filters_each_branch_reads_the_actor_index_in_order(
    conn, actor_log, monkeypatch
):
    filters = parse_filters({"actor": "id:busy", "action_type": "update"}, UTC)
    plans = plans_of(conn, monkeypatch, lambda: fetch_rows(conn, filters, None, "next", 51))
    nodes = [node for plan in plans for node in _nodes(plan)]
    home = data_partition(conn, "busy")
    indexes = [
        log_index(n)
        for plan in plans
        if plan["Actual Rows"]  # the read that found the rows (see above)
        for n in _nodes(plan)
        if n.get("Index Name", "").startswith(home + "_")
    ]
    assert indexes == ["action_log_actor_source_idx"] * len(SOURCE_CHOICES)
    for node in nodes:
        assert node["Actual Rows"] <= 51, node
    assert (
        list_page(conn, filters, size=60).rows
        == list_page(conn, parse_filters({"actor": "id:busy"}, UTC), size=60).rows
    )


def test_hostile_actor_values_are_values(conn, actor_log):
    expected = plain_ids(conn, "actor_id = %s", (HOSTILE,))
    assert len(expected) == 6
    filters = parse_filters({"actor": "id:" + HOSTILE}, UTC)
    assert ids(list_page(conn, filters, size=10)) == expected
    assert ids(list_page(conn, parse_filters({"actor": "id:" + HOSTILE, "q": "client"}, UTC))) == (
        expected
    )
    assert ids(
        list_page(conn, parse_filters({"actor": "id:" + HOSTILE, "source": "database"}, UTC))
    ) == plain_ids(conn, "actor_id = %s and source is null", (HOSTILE,))
    # LIKE's wildcards and a prefix match nothing: the actor is compared whole
    for value in ("%", "o'brien%", "o'brien%_", "_", "\\", "o'brien%_\\ü"):
        assert list_page(conn, parse_filters({"actor": "id:" + value}, UTC)).rows == []
    csv_ids = [
        int(line.split(b",")[0]) for line in b"".join(export_csv(conn, filters)).splitlines()[1:]
    ]
    assert csv_ids == expected
    assert describe(conn, "id:" + HOSTILE).name == "Odd Name"


@pytest.mark.parametrize("export", [export_csv, export_json])
def test_an_actor_s_export_is_every_row_in_order(conn, actor_log, export, monkeypatch):
    from audit_capture.viewer import export as export_module

    monkeypatch.setattr(export_module, "ITERSIZE", 700)  # several batches, across sources
    for args, where in (
        ({"actor": "id:busy"}, "actor_id = 'busy'"),
        ({"actor": "id:busy", "source": "database"}, "actor_id = 'busy' and source is null"),
        (
            {"actor": "id:mixed", "action_type": "send"},
            "actor_id = 'mixed' and action_type = 'send'",
        ),
        ({"actor": "id:gone"}, "actor_id = 'gone'"),
        ({"actor": "id:nobody"}, "false"),
    ):
        data = b"".join(export(conn, parse_filters(args, UTC)))
        if export is export_json:
            got = [row["id"] for row in json.loads(data)]
        else:
            got = [int(line.split(b",")[0]) for line in data.splitlines()[1:]]
        assert got == plain_ids(conn, where), args


def test_an_actor_s_export_batches_read_the_actor_index_in_order(conn, actor_log):
    from audit_capture.viewer.export import _batch

    # As in any real log, most direct database changes are other actors': otherwise
    # PostgreSQL 18's skip scan of action_log_kind_idx (actor_type, action_type, source,
    # ...) finds "source is null" in ~2,000 rows, nearly all the busy actor's, and the
    # planner rightly sorts those instead of reading the actor's index in order.
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " actor_type, actor_id, actor_name, db_user, transaction_id)"
        " select %s - make_interval(secs => g), 'Client updated', 'update', 'client',"
        " 'system', 'nightly-' || g %% 50, 'Nightly job', 'crm_app', 1"
        " from generate_series(1, 30000) g",
        (T0,),
    )
    conn.execute("analyze audit.action_log")
    conn.commit()
    middle = conn.execute(
        "select occurred_at, id from audit.action_log where actor_id = 'busy'"
        " order by occurred_at desc, id desc offset 5000 limit 1"
    ).fetchone()
    for args in ({"actor": "id:busy"}, {"actor": "id:busy", "source": "database"}):
        filters = parse_filters(args, UTC)
        for after in (None, tuple(middle)):
            plan = _plan(conn, *_batch(filters, sql.SQL("action_log.id"), after))
            nodes = list(_nodes(plan))
            home = data_partition(conn, "busy")
            assert {
                log_index(n) for n in nodes if n.get("Index Name", "").startswith(home + "_")
            } == {"action_log_actor_source_idx"}
            assert not [n for n in nodes if n["Node Type"] == "Seq Scan"]
            for node in _nodes(plan):  # a batch's rows at most: nothing sorts them all
                assert node["Actual Rows"] <= 2_000, node


# -- the actor's newest row: the directory, the options, the filter sentence ---------------


@pytest.fixture
def renamed(conn, actor_log):
    """The busy actor renamed in its newest row, which has no source (a direct change
    with the actor set), and a newer row in every source of the mixed actor but one."""
    insert(
        conn,
        [
            {
                "occurred_at": T0 + timedelta(hours=1),
                "action": "Client updated",
                "actor_id": "busy",
                "actor_name": "Bea Renamed",
                "actor_type": "system",
                "source": None,
            },
            {
                "occurred_at": T0 + timedelta(hours=2),
                "action": "Client updated",
                "actor_id": "mixed",
                "actor_name": "Mia Newest",
                "source": "ai",
            },
            {
                "occurred_at": T0 + timedelta(hours=1, minutes=59),
                "action": "Client updated",
                "actor_id": "mixed",
                "actor_name": "Mia Older",
                "source": "mobile",
            },
        ],
    )
    conn.commit()


def test_each_actor_s_newest_row_names_it_whatever_its_source(conn, renamed):
    directory = {a.key: a for a in load_directory(conn).actors}
    assert directory["id:busy"].name == "Bea Renamed"
    assert directory["id:busy"].actor_type == "system"
    assert directory["id:mixed"].name == "Mia Newest"
    assert directory["id:gone"].name == "Gus Gone"
    assert directory["id:" + HOSTILE].name == "Odd Name"
    assert describe(conn, "id:busy").name == "Bea Renamed"
    assert describe(conn, "id:mixed").name == "Mia Newest"
    assert describe(conn, "id:nobody") is None
    options = load_options(conn)
    assert ("id:busy", "Bea Renamed", "system") in options.actors
    assert ("id:mixed", "Mia Newest", "admin") in options.actors
    sentence = parse_filters({"actor": "id:busy"}, UTC, options=options).sentence()
    assert sentence == "Actor is Bea Renamed"


def test_the_newest_row_is_one_probe_per_source(conn, renamed, monkeypatch):
    # each probe reads one entry of the actor index: none reads or sorts the actor's
    # 10,000 rows (the null branch orders by the index's keys, source first)
    # (the busy actor has no row in the last two months: after the recent months' probe,
    # the whole log's)
    recent, plan = plans_of(conn, monkeypatch, lambda: describe(conn, "id:busy"))
    assert all(n["Actual Rows"] == 0 for n in _nodes(recent) if "Relation Name" in n)
    nodes = list(_nodes(plan))
    home = data_partition(conn, "busy")
    scans = [n for n in nodes if n.get("Relation Name") == home]
    assert {log_index(n) for n in scans} == {"action_log_actor_source_idx"}
    assert sum(n["Actual Loops"] for n in scans) == len(SOURCE_CHOICES)
    for node in nodes:
        assert node["Actual Rows"] <= len(SOURCE_CHOICES), node


def test_an_actor_with_a_recent_row_is_named_from_the_recent_months_alone(
    conn, renamed, monkeypatch
):
    # on a log partitioned by month, the newest row is looked for in the last two months
    # first: one statement, reading no older month's partition
    now = datetime.now(UTC)
    insert(
        conn,
        [
            {
                "occurred_at": now,
                "action": "Client updated",
                "actor_id": "busy",
                "actor_name": "Bea Today",
                "source": "api",
            }
        ],
    )
    conn.commit()
    (plan,) = plans_of(conn, monkeypatch, lambda: describe(conn, "id:busy"))
    read = {n["Relation Name"] for n in _nodes(plan) if "Relation Name" in n}
    since = recent.recent_months_start(now)
    months = {
        r[0]
        for r in conn.execute(
            "select action_partition::text from audit.log_partitions"
            " where kind = 'default' or to_at > %s",
            (since,),
        )
    }
    assert read and read <= {m.removeprefix("audit.") for m in months}, read
    assert describe(conn, "id:busy").name == "Bea Today"
    # an actor without a recent row: the whole log
    assert describe(conn, "id:gone").name == "Gus Gone"


def test_a_walk_that_passed_every_row_of_an_actor_is_the_whole_answer(conn, actor_log, monkeypatch):
    """The walk of the newest candidates read all of a departed actor's 30 rows: the
    rows it found are all there are, and no window of the full-text index follows."""
    from audit_capture.viewer import text_search

    monkeypatch.setattr(text_search, "TEXT_WINDOW", 10**6)  # the walk, as deep as it likes

    def no_windows(*args, **kwargs):
        raise AssertionError("the walk had passed every candidate")

    monkeypatch.setattr(text_search, "_text_windows", no_windows)
    expected = plain_ids(conn, "actor_id = 'gone'")
    page = list_page(conn, parse_filters({"actor": "id:gone", "q": "client"}, UTC), size=50)
    assert ids(page) == expected and page.next_cursor is None


# -- several values (issue 16): the same indexes, one branch per actor and source --------


@pytest.mark.parametrize(
    ("args", "loops"),
    [
        # two actors: the sources with a value in one part, read for each actor and
        # value (LATERAL), and the rows without source in another, for each actor
        ([("actor", "id:busy"), ("actor", "id:mixed")], [2 * (len(SOURCE_CHOICES) - 1), 2]),
        # one actor, two sources, one of them none: a branch each
        ([("actor", "id:busy"), ("source", "web"), ("source", "database")], [1, 1]),
        ([("actor", "id:busy"), ("source", "web"), ("source", "api")], [2]),
        # one source: a part for each actor
        ([("actor", "id:busy"), ("actor", "id:mixed"), ("source", "api")], [2]),
    ],
)
@pytest.mark.parametrize("direction", ["next", "prev"])
def test_several_actors_and_sources_read_the_actor_index_in_order(
    conn, actor_log, args, loops, direction, monkeypatch
):
    """Two parts at most along action_log_actor_source_idx (``rows.actor_rows``,
    gathered), each read in order once per actor and source: no read returns more than
    a page, nothing sorts more than a page per actor and source, and the page is plain
    SQL's."""
    from werkzeug.datastructures import MultiDict

    filters = parse_filters(MultiDict(args), UTC)
    actors = [v.removeprefix("id:") for k, v in args if k == "actor"]
    sources = [v for k, v in args if k == "source"]
    where = "actor_id = any(%(actors)s)"
    if sources:
        where += " and (source = any(%(named)s)" + (
            " or source is null)" if "database" in sources else ")"
        )
    params = {"actors": actors, "named": [s for s in sources if s != "database"]}
    expected = plain_ids(conn, where, params)
    middle = conn.execute(
        f"select occurred_at, id from audit.action_log where {where}"
        " order by occurred_at desc, id desc offset 2000 limit 1",
        params,
    ).fetchone()
    for position in (None, tuple(middle)):
        if position is None and direction == "prev":
            continue
        plans = plans_of(
            conn, monkeypatch, lambda p=position: fetch_rows(conn, filters, p, direction, 51)
        )
        home = data_partition(conn, "busy")
        indexes = [
            log_index(n)
            for plan in plans
            if plan["Actual Rows"]
            for n in _nodes(plan)
            if n.get("Index Name", "").startswith(home + "_")
        ]
        assert set(indexes) == {"action_log_actor_source_idx", "action_log_pkey"}, indexes
        assert indexes.count("action_log_actor_source_idx") == len(loops)
        read = sorted(
            node["Actual Loops"]
            for plan in plans
            if plan["Actual Rows"]
            for node in _nodes(plan)
            if node.get("Index Name", "").startswith(home + "_actor_source")
        )
        assert read == sorted(loops), read
        for plan in plans:
            for node in _nodes(plan):
                # a read: a page at most each time; in all, a page per actor and source
                if "Scan" in node["Node Type"] or node["Node Type"] == "Limit":
                    assert node["Actual Rows"] <= 51, node
                assert node["Actual Rows"] * node["Actual Loops"] <= 51 * sum(loops), node
                assert node.get("Rows Removed by Filter", 0) == 0, node
    first = list_page(conn, filters, size=50)
    second = list_page(conn, filters, cursor=first.next_cursor, size=50)
    assert ids(first) + ids(second) == expected[:100]


def test_several_sources_are_probed_on_the_kind_index_alone(conn, actor_log, monkeypatch):
    """web or database (none) with an actor type: a descent per value on
    action_log_kind_idx, index-only, as one value is."""
    from werkzeug.datastructures import MultiDict

    from audit_capture.viewer.kind_probe import kind_probe

    conn.execute("set enable_bitmapscan = off")  # as the probe runs (planner_settings)
    conn.commit()
    for args in (
        [("source", "web"), ("source", "database"), ("actor_type", "admin")],
        [("action_type", "update"), ("action_type", "send"), ("source", "api")],
        [("source", "web"), ("actor_type", "admin")],  # one value: the same plan
    ):
        filters = parse_filters(MultiDict(args), UTC)
        plans = plans_of(conn, monkeypatch, lambda f=filters: kind_probe(conn, f))
        scans = [n for plan in plans for n in _nodes(plan) if "Index Name" in n]
        assert scans and {log_index(n) for n in scans} == {"action_log_kind_idx"}, scans
        assert {n["Node Type"] for n in scans} == {"Index Only Scan"}
