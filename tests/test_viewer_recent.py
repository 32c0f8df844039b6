"""The newest two months first (``viewer.recent``): an actor's page and a text search's
walk read the last two months' partitions before the older ones, and the page is the
same rows in the same order as one read of the whole log would give."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from audit_capture.viewer import recent, text_search
from audit_capture.viewer.filters import parse_filters
from audit_capture.viewer.pages import list_page

SIZE = 25


def months_back(moment: datetime, months: int) -> datetime:
    """The first moment of the month ``months`` before ``moment``'s (UTC)."""
    index = moment.year * 12 + moment.month - 1 - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def put(conn, actor: str, when: list[datetime], label: str = "Ann Lee", source="web") -> None:
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " resource_label, actor_id, actor_name, actor_type, db_user, transaction_id, source)"
        " select w, 'Client updated', 'update', 'client', %s, %s, 'Name ' || %s, 'admin',"
        " 'crm_app', 1, %s from unnest(%s::timestamptz[]) w",
        (label, actor, actor, source, when),
    )


@pytest.fixture
def split_log(conn):
    """Month partitions from five months back to this one, and these actors (rows an
    hour apart, newest first from the given start):

    * ``busy``: 80 actions in the recent months (from the start of last month on), 80
      four months back; every fourth recent one and every other old one about "Maria
      Smith", the rest about "Ann Lee";
    * ``few``: 10 recent actions, 100 old ones, all about "Maria Smith";
    * ``gone``: 40 old actions only ("Maria Smith");
    * ``quiet``: 3 recent actions, 60 old ones, only the old ones about "Maria Smith".

    Returns the start of the recent months."""
    now = datetime.now(UTC)
    since = recent.recent_months_start(now)
    old = months_back(now, 4) + timedelta(days=3)
    conn.execute(
        "select audit.prepare_partitions(%s, %s)", (months_back(now, 5).date(), since.date())
    )

    def hours(start: datetime, count: int) -> list[datetime]:
        return [start + timedelta(hours=i) for i in range(count)]

    recent_busy = hours(since + timedelta(hours=1), 80)
    put(conn, "busy", recent_busy[0::4], "Maria Smith")
    put(conn, "busy", [t for i, t in enumerate(recent_busy) if i % 4], "Ann Lee")
    put(conn, "busy", hours(old, 80)[0::2], "Maria Smith", source="api")
    put(conn, "busy", hours(old, 80)[1::2], "Ann Lee", source=None)
    put(conn, "few", hours(since + timedelta(minutes=30), 10), "Maria Smith", source="mobile")
    put(conn, "few", hours(old, 100), "Maria Smith")
    put(conn, "gone", hours(old - timedelta(days=1), 40), "Maria Smith")
    put(conn, "quiet", hours(since + timedelta(minutes=10), 3), "Ann Lee")
    put(conn, "quiet", hours(old, 60), "Maria Smith")
    conn.commit()
    leaves = [
        r[0]
        for r in conn.execute(
            "select relid::regclass::text from pg_partition_tree('audit.action_log') where isleaf"
        )
    ]
    conn.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(map(sql.SQL, leaves))))
    conn.commit()
    return since


def expected_ids(conn, where: str) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            f"select id from audit.action_log where {where} order by occurred_at desc, id desc"
        )
    ]


def every_page(conn, args: dict) -> list[list[int]]:
    filters = parse_filters(args, UTC)
    pages, cursor = [], None
    while True:
        page = list_page(conn, filters, cursor=cursor, size=SIZE)
        pages.append([r.id for r in page.rows])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def flat(pages: list[list[int]]) -> list[int]:
    return [i for p in pages for i in p]


class Statements:
    """The statements run against the log while it is installed, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[sql.Composable | str, object]] = []

    def reading_the_log(self, conn) -> list[tuple[str, object]]:
        found = []
        for query, params in self.seen:
            text = query if isinstance(query, str) else query.as_string(conn)
            if '"audit"."action_log"' in text and not text.lstrip().startswith("explain"):
                found.append((text, params))
        return found


@pytest.fixture
def statements(monkeypatch):
    seen = Statements()
    original = psycopg.Cursor.execute

    def execute(self, query, params=None, **kwargs):
        seen.seen.append((query, params))
        return original(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    return seen


def relations_read(conn, query: str, params) -> set[str]:
    """The partitions a statement's plan reads."""
    plan = conn.execute(sql.SQL("explain (format json) " + query), params).fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found: set[str] = set()

    def walk(node):
        if "Relation Name" in node:
            found.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def recent_partitions(conn, since: datetime) -> set[str]:
    """The recent months' partitions, the months ahead and the default partition."""
    return {
        r[0].removeprefix("audit.")
        for r in conn.execute(
            "select action_partition::text from audit.log_partitions"
            " where kind = 'default' or to_at > %s",
            (since,),
        )
    }


# -- recent_months_start, recent_floor -------------------------------------------------


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 12, 3, 0, 47, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
        (datetime(2026, 1, 15, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC)),
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        (datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        # 00:30 on March 1st in UTC+2 is still February in UTC: the months are UTC's
        (
            datetime(2026, 3, 1, 0, 30, tzinfo=UTC) - timedelta(hours=2),
            datetime(2026, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_the_recent_months_start_on_the_first_of_last_month_in_utc(now, start):
    assert recent.recent_months_start(now) == start


def test_only_a_next_page_within_the_recent_months_reads_them_first():
    since = recent.recent_months_start()
    assert recent.recent_floor(None, "next") == since
    assert recent.recent_floor((since + timedelta(days=3), 9), "next") == since
    assert recent.recent_floor((since, 9), "next") == since
    # a page older than the recent months has none of them to read; a prev page reads
    # oldest first
    assert recent.recent_floor((since - timedelta(seconds=1), 9), "next") is None
    assert recent.recent_floor((since + timedelta(days=3), 9), "prev") is None


# -- an actor's pages ---------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["busy", "few", "gone", "quiet"])
@pytest.mark.parametrize("extra", [{}, {"source": "web"}, {"action_type": "update"}])
def test_an_actor_across_the_recent_and_older_months_is_every_row_in_order(
    conn, split_log, actor, extra
):
    pages = every_page(conn, {"actor": f"id:{actor}", **extra})
    where = f"actor_id = '{actor}'" + (" and source = 'web'" if "source" in extra else "")
    expected = expected_ids(conn, where)
    assert flat(pages) == expected
    assert all(len(p) == SIZE for p in pages[:-1])


def test_a_page_of_few_recent_rows_ends_with_the_newest_older_ones(conn, split_log):
    (page,) = every_page(conn, {"actor": "id:few"})[:1]
    expected = expected_ids(conn, "actor_id = 'few'")
    # its 10 recent rows, then the 15 newest of the old ones, with nothing in between
    assert page == expected[:SIZE]
    times = dict(
        conn.execute(
            "select id, occurred_at from audit.action_log where id = any(%s)", (page,)
        ).fetchall()
    )
    assert sum(times[i] >= split_log for i in page) == 10


def test_an_actor_page_the_recent_months_fill_reads_only_their_partitions(
    conn, split_log, statements
):
    page = list_page(conn, parse_filters({"actor": "id:busy"}, UTC), size=SIZE)
    assert [r.id for r in page.rows] == expected_ids(conn, "actor_id = 'busy'")[:SIZE]
    reads = [s for s in statements.reading_the_log(conn) if "count(" not in s[0]]
    statements.seen.clear()
    # the page's keys, then its rows by key (pages.ROWS_BY_KEY): the older months were
    # never asked
    assert len(reads) == 2 and "occurred_at = any(" in reads[1][0]
    for read in reads:
        assert relations_read(conn, *read) <= recent_partitions(conn, split_log)


def test_an_actor_without_recent_rows_reads_the_older_months_after_the_recent_ones(
    conn, split_log, statements
):
    page = list_page(conn, parse_filters({"actor": "id:gone"}, UTC), size=SIZE)
    assert [r.id for r in page.rows] == expected_ids(conn, "actor_id = 'gone'")[:SIZE]
    reads = [s for s in statements.reading_the_log(conn) if "count(" not in s[0]]
    statements.seen.clear()
    # the recent months' keys (none), the older months' keys, the rows by key
    assert len(reads) == 3 and "occurred_at = any(" in reads[2][0]
    first, second, rows = (relations_read(conn, *read) for read in reads)
    # the rows by key: in their own months alone
    assert rows == {
        r[0].removeprefix("audit.")
        for r in conn.execute(
            "select distinct tableoid::regclass::text from audit.action_log where id = any(%s)",
            ([r.id for r in page.rows],),
        )
    }
    assert first <= recent_partitions(conn, split_log)
    assert not second & (recent_partitions(conn, split_log) - {"action_log_default"})


# -- a text search's walk ----------------------------------------------------------------


def no_windows(*args, **kwargs):
    raise AssertionError("the walk should have found the page")


@pytest.fixture
def walk_only(monkeypatch):
    """The walk of the newest candidates, as deep as it likes, and never the windows."""
    monkeypatch.setattr(text_search, "TEXT_WINDOW", 10**6)
    monkeypatch.setattr(text_search, "_text_windows", no_windows)


def test_a_walk_the_recent_months_answer_reads_only_them(conn, split_log, walk_only, statements):
    page = list_page(conn, parse_filters({"q": "ann lee"}, UTC), size=SIZE)
    assert [r.id for r in page.rows] == expected_ids(conn, "resource_label = 'Ann Lee'")[:SIZE]
    reads = [s for s in statements.reading_the_log(conn) if "like all" in s[0]]
    statements.seen.clear()
    assert len(reads) == 1
    assert relations_read(conn, *reads[0]) <= recent_partitions(conn, split_log)


@pytest.mark.parametrize(
    ("args", "where"),
    [
        # 3 recent matches of 63 (the quiet actor's name)
        ({"q": "quiet"}, "actor_id = 'quiet'"),
        # 20 recent matches from the web (busy), the page wants 26
        (
            {"q": "maria smith", "source": "web"},
            "resource_label = 'Maria Smith' and source = 'web'",
        ),
        # the first page in the recent months alone (30 matches)
        ({"q": "maria smith"}, "resource_label = 'Maria Smith'"),
    ],
)
def test_a_walk_goes_on_into_the_older_months_when_the_recent_ones_hold_few_candidates(
    conn, split_log, monkeypatch, args, where
):
    # the recent months hold fewer candidates than the walk's window: the walk goes on
    # into the older months for the first page (the windows of days never come)
    expected = expected_ids(conn, where)
    with monkeypatch.context() as patch:
        patch.setattr(text_search, "TEXT_WINDOW", 10**6)
        patch.setattr(text_search, "_text_windows", no_windows)
        page = list_page(conn, parse_filters(args, UTC), size=SIZE)
    assert [r.id for r in page.rows] == expected[:SIZE]
    # every page: the same rows in the same order as one read of the whole log
    pages = every_page(conn, args)
    assert flat(pages) == expected
    assert all(len(p) == SIZE for p in pages[:-1])


def test_a_walk_of_full_recent_months_leaves_a_miss_to_the_windows(
    conn, split_log, monkeypatch, statements
):
    # a window of 20 candidates: the busy actor's recent months hold 80, so the walk of
    # their newest 20 (5 matches, the page wants 26) was the whole walk, and the
    # windows of days find the page
    monkeypatch.setattr(text_search, "_walk_window", lambda words, limit, total: 20)
    called = []
    real = text_search._text_windows

    def text_windows(*args, **kwargs):
        called.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(text_search, "_text_windows", text_windows)
    filters = parse_filters({"actor": "id:busy", "q": "maria smith"}, UTC)
    page = list_page(conn, filters, size=SIZE)
    expected = expected_ids(conn, "actor_id = 'busy' and resource_label = 'Maria Smith'")
    assert [r.id for r in page.rows] == expected[:SIZE]
    assert called
    walks = [s for s in statements.reading_the_log(conn) if "like all" in s[0]]
    statements.seen.clear()
    assert len(walks) == 1
    assert relations_read(conn, *walks[0]) <= recent_partitions(conn, split_log)


@pytest.mark.parametrize("actor", ["few", "gone", "quiet"])
def test_an_actor_with_few_rows_is_walked_and_counted_in_one_statement(
    conn, split_log, walk_only, statements, actor
):
    # a window wider than the actor's rows: one statement walks them all and says how
    # many it walked; fewer than the window, its matches are all there are
    page = list_page(
        conn, parse_filters({"actor": f"id:{actor}", "q": "maria smith"}, UTC), size=200
    )
    expected = expected_ids(conn, f"actor_id = '{actor}' and resource_label = 'Maria Smith'")
    assert [r.id for r in page.rows] == expected and page.next_cursor is None
    walks = [s for s in statements.reading_the_log(conn) if "like all" in s[0]]
    statements.seen.clear()
    assert len(walks) == 1 and "walked" in walks[0][0]


def test_a_counted_walk_that_filled_its_window_is_no_proof_of_the_end(conn, split_log, monkeypatch):
    # a window of 60 over the 110 rows of ``few`` (at most twice the window: counted):
    # its 60 newest hold 60 matches, the page wants 101; the walk filled its window, so
    # it proves nothing about the rest, and the windows of days find the page
    monkeypatch.setattr(text_search, "_walk_window", lambda words, limit, total: 60)
    page = list_page(conn, parse_filters({"actor": "id:few", "q": "maria smith"}, UTC), size=100)
    expected = expected_ids(conn, "actor_id = 'few' and resource_label = 'Maria Smith'")
    assert [r.id for r in page.rows] == expected[:100] and page.next_cursor is not None


def test_a_busy_actors_probe_is_the_newest_days_of_the_text_index(conn, split_log, monkeypatch):
    # a probe (rare words, in the planner's eyes) of an actor with more rows than twice
    # the probe: the first window of days stands for it, sized to hold the probe's rows
    monkeypatch.setattr(text_search, "TEXT_WINDOW", 0)
    monkeypatch.setattr(text_search, "TEXT_FEW_MATCHES", -1)
    monkeypatch.setattr(text_search, "TEXT_PROBE_WALK", 40)

    def no_walk(*args, **kwargs):
        raise AssertionError("a busy actor's probe walked its branches")

    monkeypatch.setattr(text_search, "_walk", no_walk)
    firsts = []
    real = text_search._text_windows

    def text_windows(*args, first=None, **kwargs):
        firsts.append(first)
        return real(*args, first=first, **kwargs)

    monkeypatch.setattr(text_search, "_text_windows", text_windows)
    pages = every_page(conn, {"actor": "id:busy", "q": "maria smith"})
    assert flat(pages) == expected_ids(conn, "actor_id = 'busy' and resource_label = 'Maria Smith'")
    assert firsts and all(f is not None and f > 0 for f in firsts)
    # an actor of fewer rows is walked (and counted), not probed in days
    monkeypatch.setattr(text_search, "_walk", lambda *args, **kwargs: None)
    firsts.clear()
    every_page(conn, {"actor": "id:gone", "q": "maria smith"})
    assert firsts and all(f is None for f in firsts)


# -- the months ahead ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "end"),
    [
        (datetime(2026, 1, 31, 23, 59, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        (datetime(2026, 2, 28, 12, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        # a moment of another zone is taken in UTC
        (
            datetime(2026, 6, 30, 23, 30, tzinfo=UTC) + timedelta(hours=1),
            datetime(2026, 8, 1, tzinfo=UTC),
        ),
    ],
)
def test_the_recent_months_end_where_this_month_does(now, end):
    assert recent.recent_months_end(now) == end


def month_partitions(conn, start: datetime, end: datetime) -> set[str]:
    """The month partitions of [start, end)."""
    return {
        r[0].removeprefix("audit.")
        for r in conn.execute(
            "select action_partition::text from audit.log_partitions"
            " where kind <> 'default' and from_at >= %s and to_at <= %s",
            (start, end),
        )
    }


def test_the_recent_read_leaves_out_the_months_ahead_when_they_hold_nothing(
    conn, split_log, statements
):
    """The months ahead (made before they start) and the default partition are not
    planned: the recent read is last month's and this month's partitions alone."""
    end = recent.recent_months_end()
    conn.execute(
        "select audit.prepare_partitions(%s, %s)", (end.date(), months_back(end, -1).date())
    )
    conn.commit()
    ahead = month_partitions(conn, end, datetime(9999, 1, 1, tzinfo=UTC))
    assert ahead  # months ahead, to be left out
    page = list_page(conn, parse_filters({"actor": "id:busy"}, UTC), size=SIZE)
    assert [r.id for r in page.rows] == expected_ids(conn, "actor_id = 'busy'")[:SIZE]
    (keys, _rows) = [s for s in statements.reading_the_log(conn) if "count(" not in s[0]]
    statements.seen.clear()
    read = relations_read(conn, *keys)
    assert read <= month_partitions(conn, split_log, end), read
    assert not read & ahead


def test_a_row_dated_in_a_month_ahead_opens_the_recent_read_and_comes_first(
    conn, split_log, statements
):
    """A server clock set back leaves rows dated later than this month: the probe of
    the months ahead finds one, and the page starts with it, as one read of the whole
    log would."""
    end = recent.recent_months_end()
    conn.execute("select audit.prepare_partitions(%s, %s)", (end.date(), end.date()))
    put(conn, "busy", [end + timedelta(days=2)], "Maria Smith")
    conn.commit()
    for args, where in (
        ({"actor": "id:busy"}, "actor_id = 'busy'"),
        (
            {"actor": "id:busy", "q": "maria"},
            "actor_id = 'busy' and resource_label = 'Maria Smith'",
        ),
    ):
        page = list_page(conn, parse_filters(args, UTC), size=SIZE)
        expected = expected_ids(conn, where)
        assert [r.id for r in page.rows] == expected[:SIZE]
        assert page.rows[0].occurred_at == end + timedelta(days=2)
    statements.seen.clear()
