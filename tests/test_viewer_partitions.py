"""The viewer's reads on a log partitioned by month (revision 0003): what the planner
knows comes from the partitions, and a text search's windows of days read only the
months they cover."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from psycopg import sql

from audit_capture.viewer import options, planner, text_search
from audit_capture.viewer.filters import parse_filters
from audit_capture.viewer.options import load_options
from audit_capture.viewer.pages import list_page

UTC = ZoneInfo("UTC")
MONTHS = (date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1))


def analyze_partitions(conn) -> None:
    """ANALYZE each partition, as autovacuum does (it never analyzes their parent)."""
    leaves = [
        r[0]
        for r in conn.execute(
            "select relid::regclass::text from pg_partition_tree('audit.action_log') where isleaf"
        )
    ]
    conn.commit()
    conn.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(map(sql.SQL, leaves))))
    conn.commit()


def put_many(conn, count: int, start: datetime, step: timedelta, **values) -> None:
    """``count`` actions from ``start`` on, ``step`` apart."""
    row = {
        "action": "Client updated",
        "action_type": "update",
        "resource_type": "client",
        "resource_label": "Ann Lee",
        "actor_id": "7",
        "actor_name": "Alice Admin",
        "actor_type": "admin",
        "source": "web",
        "db_user": "crm_app",
        "transaction_id": 1,
    }
    row.update(values)
    conn.execute(
        sql.SQL(
            "insert into audit.action_log (occurred_at, {columns})"
            " select %(start)s + (g - 1) * %(step)s, {values} from generate_series(1, %(n)s) g"
        ).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, row)),
            values=sql.SQL(", ").join(sql.Literal(v) for v in row.values()),
        ),
        {"start": start, "step": step, "n": count},
    )


@pytest.fixture
def three_months(conn):
    """January to March 2025, each a partition pair, 600 actions a month (one "Maria
    Smith" a day), the partitions analyzed."""
    conn.execute("select audit.prepare_partitions(%s, %s)", (MONTHS[0], MONTHS[-1]))
    for first in MONTHS:
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        put_many(conn, 600, start, timedelta(hours=1))
        put_many(
            conn, 25, start + timedelta(minutes=30), timedelta(days=1), actor_name="Maria Smith"
        )
    analyze_partitions(conn)


def scanned_relations(conn, query: sql.Composable, params: dict) -> set[str]:
    """The tables a plan reads."""
    plan = conn.execute(sql.SQL("explain (format json) {}").format(query), params).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    found: set[str] = set()

    def walk(node):
        if "Relation Name" in node:
            found.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def test_a_text_window_reads_only_the_months_of_its_days(conn, three_months):
    position = conn.execute(
        "select occurred_at, id from audit.action_log where occurred_at = %s and action = %s",
        (datetime(2025, 2, 10, 12, tzinfo=UTC), "Client updated"),
    ).fetchone()
    days = text_search._DaysBack(conn, position, "next")
    window = days.take(300)  # ~12 days back: late January to February 10th
    assert window is not None
    condition, params = window
    query = sql.SQL("select id from audit.action_log where {}").format(condition)
    assert scanned_relations(conn, query, params) == {
        "action_log_p2025_01",
        "action_log_p2025_02",
    }
    # ... and it holds exactly the rows of those days
    found = {r[0] for r in conn.execute(query, params)}
    low, high = min(params["w_days"]), params["w_to"]
    assert found and all(
        day < high
        for (day,) in conn.execute(
            "select occurred_at from audit.action_log where id = any(%s)", (list(found),)
        )
    )
    assert low  # the day numbers were given too


def test_a_text_search_over_three_months_gives_every_match_in_order(conn, three_months):
    filters = parse_filters({"q": "maria smith"}, UTC)
    expected = [
        r[0]
        for r in conn.execute(
            "select id from audit.action_log where actor_name = 'Maria Smith'"
            " order by occurred_at desc, id desc"
        )
    ]
    seen, cursor = [], None
    while True:
        page = list_page(conn, filters, cursor=cursor, size=20)
        seen += [r.id for r in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected and len(expected) == 75


def test_the_log_size_is_the_partitions_rows(conn, three_months):
    # the parent has no rows of its own and autovacuum never analyzes it
    assert planner.log_size(conn) == pytest.approx(3 * 625, rel=0.01)


def test_the_options_read_event_types_from_the_partitions_statistics(
    conn, three_months, monkeypatch
):
    # a "send" event in January, far older than the newest rows the options read
    put_many(
        conn,
        200,
        datetime(2025, 1, 3, tzinfo=UTC),
        timedelta(minutes=1),
        action="Batch email sent",
        action_type="send",
    )
    analyze_partitions(conn)
    monkeypatch.setattr(options, "RECENT_ROWS", 5)
    conn.execute("set role audit_reader")
    try:
        offered = {value for value, _label in load_options(conn).action_types}
    finally:
        conn.rollback()
        conn.execute("reset role")
    assert "send" in offered


def test_a_text_search_is_estimated_in_one_partition_and_scaled(conn, three_months, monkeypatch):
    # each partition's estimate of a text search costs ~0.3 ms: the biggest partition
    # alone is asked, and its count scaled by the log's size
    asked = []
    original = planner._explain_rows

    def explain_rows(connection, query, params):
        asked.append(query.as_string(connection))
        return original(connection, query, params)

    monkeypatch.setattr(planner, "_explain_rows", explain_rows)
    text = parse_filters({"q": "updated"}, UTC)  # every action: "Client updated"
    scaled = planner.estimate(conn, text)
    assert len(asked) == 1 and '"audit"."action_log_p2025_' in asked[0], asked
    where, params = text.where()
    whole = original(
        conn,
        sql.SQL("explain (format json) select 1 from audit.action_log where {}").format(where),
        params,
    )
    assert scaled == pytest.approx(whole, rel=0.2) and whole > 1000  # the months are alike
    # with an actor or a time range, the months differ: the whole log is asked
    for args in ({"q": "maria", "actor": "id:7"}, {"q": "maria", "from": "2025-02-01"}):
        asked.clear()
        planner.estimate(conn, parse_filters(args, UTC))
        assert len(asked) == 1 and '"audit"."action_log" ' in asked[0], asked
