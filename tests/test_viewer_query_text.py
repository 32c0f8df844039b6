"""The viewer's text search strategies against a real PostgreSQL: the sieved walk of the
newest rows and the time windows over the full-text index must give exactly the
matches, newest first in (occurred_at desc, id desc) order, page after page, forward and
back, whatever the ids say about time.

Which strategy runs depends on the planner's estimates over a big log, so each test
pins the choice (``TEXT_WINDOW``, ``TEXT_FEW_MATCHES`` and the estimate the query layer
reads) and checks every page against a plain query of the same words."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from psycopg import sql

from audit_capture.viewer import counts, text_search
from audit_capture.viewer.counts import Count
from audit_capture.viewer.filters import (
    TEXT_DOCUMENT,
    ActiveFilter,
    Filters,
    parse_filters,
    text_query,
)
from audit_capture.viewer.pages import list_page

UTC = ZoneInfo("UTC")
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
FILLER = 20_000
STEP = timedelta(minutes=30)  # between filler rows: 20,000 of them span 14 months
SIZE = 10
#: depths (0: the newest filler row) of the filler rows labelled "Maria Smith": three at
#: the top, then a gap, then groups ever older, the last in the oldest tenth of the log
MATCH_DEPTHS = (
    [10, 20, 30]
    + list(range(1500, 2000, 100))
    + list(range(5000, 6000, 100))
    + list(range(19000, 20000, 100))
)


def put(conn, occurred_at, resource_label, actor_name="Alice Admin", source="web") -> int:
    return conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " resource_label, actor_id, actor_name, actor_type, db_user, transaction_id, source)"
        " values (%s, 'Client updated', 'update', 'client', %s, '7', %s, 'admin',"
        " 'crm_app', 1, %s) returning id",
        (occurred_at, resource_label, actor_name, source),
    ).fetchone()[0]


@pytest.fixture
def text_log(conn):
    """20,000 filler actions STEP apart (ids growing with time), "Maria Smith" at
    MATCH_DEPTHS, decoys that hold the words inside longer ones ("Smithson Mariano",
    "Amaria Blacksmith"), and rows whose ids disagree with their time: the newest
    action has the lowest id, an old one the highest, three share one instant."""
    newest = put(conn, T0 + timedelta(hours=1), "Maria Smith", source="api")
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " resource_label, actor_id, actor_name, actor_type, db_user, transaction_id, source)"
        " select %(t0)s - (%(n)s + 1 - g) * %(step)s, 'Client updated', 'update',"
        " 'client', case when %(n)s - g = any(%(depths)s) then 'Maria Smith'"
        "                when g %% 97 = 0 then 'Smithson Mariano'"
        "                when g %% 89 = 0 then 'Amaria Blacksmith' else 'Ann Lee' end,"
        " '7', 'Alice Admin', 'admin', 'crm_app', 1, case when g %% 3 = 0 then 'api' else 'web' end"
        " from generate_series(1, %(n)s) g",
        {"t0": T0, "n": FILLER, "depths": MATCH_DEPTHS, "step": STEP},
    )
    same = [
        put(conn, T0 - 7000.5 * STEP, label, source="api")
        for label in ("maria smith", "Smith, Maria", "MARIA-SMITH")
    ]
    oldest_time_highest_id = put(conn, T0 - 10000.5 * STEP, "x", actor_name="MARIA SMITH")
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()
    return {"newest": newest, "same": same, "late": oldest_time_highest_id}


def expected_ids(conn, args) -> list[int]:
    """Every match of ``args``, newest first: one plain query, no strategy."""
    where, params = parse_filters(args, UTC).where()
    return [
        r[0]
        for r in conn.execute(
            sql.SQL(
                "select id from audit.action_log where {} order by occurred_at desc, id desc"
            ).format(where),
            params,
        )
    ]


def every_page(conn, args, size: int = SIZE) -> list[list[int]]:
    """The ids of every page forward, then checks each page again going back."""
    filters = parse_filters(args, UTC)
    pages, page = [], list_page(conn, filters, size=size)
    assert page.prev_cursor is None
    while True:
        pages.append([r.id for r in page.rows])
        if page.next_cursor is None:
            break
        page = list_page(conn, filters, cursor=page.next_cursor, size=size)
    for number in range(len(pages) - 2, -1, -1):
        page = list_page(conn, filters, cursor=page.prev_cursor, direction="prev", size=size)
        assert [r.id for r in page.rows] == pages[number], (args, number)
    assert page.prev_cursor is None
    return pages


def flat(pages):
    return [i for p in pages for i in p]


@pytest.fixture
def pinned_estimate(monkeypatch):
    """The planner's estimate of a text search's matches, pinned to 440: the first
    window is then 2 * 11 * 20,004 / 440 = ~1,000 rows, holding four of the matches."""
    real = text_search.estimate

    def estimate(conn, filters):
        return 440.0 if filters.get("q") else real(conn, filters)

    monkeypatch.setattr(text_search, "estimate", estimate)


@pytest.fixture
def windows(monkeypatch):
    """Per call of ``_text_windows``, the windows it asked the index for: the days of
    each (``audit.time_buckets`` numbers), or "rest" for the rest of the log."""
    seen: list[list] = []
    real_windows, real_rows = text_search._text_windows, text_search._window_rows

    def text_windows(*args, **kwargs):
        seen.append([])
        return real_windows(*args, **kwargs)

    def window_rows(cur, filters, window, window_params, *args, **kwargs):
        seen[-1].append(window_params.get("w_days", "rest"))
        return real_rows(cur, filters, window, window_params, *args, **kwargs)

    monkeypatch.setattr(text_search, "_text_windows", text_windows)
    monkeypatch.setattr(text_search, "_window_rows", window_rows)
    return seen


@pytest.mark.parametrize(
    "args",
    [
        {"q": "maria smith"},
        {"q": "Smith"},
        {"q": "MARIA"},
        {"q": "maria smith", "source": "api"},
    ],
)
def test_time_windows_over_the_full_text_index_give_every_match_in_order(
    conn, text_log, monkeypatch, pinned_estimate, windows, args
):
    monkeypatch.setattr(text_search, "TEXT_WINDOW", 0)  # never the walk
    monkeypatch.setattr(text_search, "TEXT_PROBE_WALK", 0)
    pages = every_page(conn, args)
    assert flat(pages) == expected_ids(conn, args)
    assert all(len(p) == SIZE for p in pages[:-1])
    if "source" not in args:
        assert pages[0][0] == text_log["newest"]  # the newest action, with the lowest id
        assert len(pages) >= 4
        # the first page took a second window of older days (four matches in the
        # first), never a day twice; a later page reached the matches older than any
        # window: the rest of the log
        first, second = windows[0][:2]
        assert first != "rest" and second != "rest" and not set(first) & set(second)
        assert any(w and w[-1] == "rest" for w in windows)
        # windows of more than two months name whole months (odd numbers)
        assert any(n % 2 for w in windows for days in w if days != "rest" for n in days)


@pytest.mark.parametrize(
    "args",
    [
        {"q": "maria smith"},
        {"q": "mar* smi*"},  # also the decoys: Mariano, Smithson
        {"q": "SMITH mar*"},
        {"q": "smith"},
        {"q": "amaria"},
        {"q": "mar* smi*", "source": "api"},
    ],
)
def test_the_sieved_walk_gives_every_match_in_order(
    conn, text_log, monkeypatch, pinned_estimate, args
):
    # the walk of ~2,000 rows first, whatever the estimate; past it, the index
    monkeypatch.setattr(text_search, "TEXT_WINDOW", 10**9)
    pages = every_page(conn, args)
    expected = expected_ids(conn, args)
    assert flat(pages) == expected and expected
    assert all(len(p) == SIZE for p in pages[:-1])


@pytest.mark.parametrize(
    "args",
    [
        {"q": "smith mari*"},  # the windows over "smith" (Smithson and Blacksmith are not it)
        {"q": "alice smi*"},  # "alice" is on every row: the prefix keeps about one in forty
        {"q": "SMI* maria"},
        {"q": "smith mari*", "source": "api"},
    ],
)
def test_prefixes_beside_whole_words_take_windows_over_the_whole_words(
    conn, text_log, monkeypatch, pinned_estimate, windows, args
):
    monkeypatch.setattr(text_search, "TEXT_WINDOW", 0)  # never the walk
    monkeypatch.setattr(text_search, "TEXT_PROBE_WALK", 0)
    pages = every_page(conn, args)
    expected = expected_ids(conn, args)
    assert flat(pages) == expected and expected
    assert all(len(p) == SIZE for p in pages[:-1])
    # pages came through windows of days
    assert all(windows) and any(w[0] != "rest" for w in windows)


def test_a_prefix_beside_a_word_that_never_comes_with_it_finds_nothing(conn, text_log, windows):
    assert expected_ids(conn, {"q": "smith zeb*"}) == []
    assert every_page(conn, {"q": "smith zeb*"}) == [[]]
    assert windows  # through the windows over "smith", not a bitmap of every zeb* word


@pytest.fixture
def common_prefixes(monkeypatch):
    """The planner's estimate of each term alone: prefixes of 3 letters or fewer are
    common (1,000,000 rows), longer ones rare (100), whatever this small log holds."""

    def term_estimate(conn, text, term):
        return 1e6 if term.endswith(":*") and len(term.split("'")[1]) <= 3 else 100.0

    monkeypatch.setattr(text_search, "_term_estimate", term_estimate)


def test_the_index_gathers_whole_words_and_rare_prefixes_only(conn, common_prefixes):
    def index_terms(q):
        text = parse_filters({"q": q}, UTC)
        found = text_search._index_terms(conn, text)
        return found if found is None or found is text else found.active[0].params

    assert index_terms("mar* Smith") == {"t_words": "'smith'"}
    assert index_terms("a* b c*") == {"t_words": "'b'"}
    assert index_terms("zebr* smi*") == {"t_words": "'zebr':*"}
    assert index_terms("mar* smi*") is None  # common prefixes only: the planner's own plan
    text = parse_filters({"q": "maria zebr*"}, UTC)
    assert text_search._index_terms(conn, text) is text  # every term cheap: as it is


@pytest.mark.parametrize(
    "args",
    [
        {"q": "smith mar*"},
        {"q": "maria smi*"},
        {"q": "smit* mar*"},  # a rare prefix beside a common one
        {"q": "mar* smi*"},
        {"q": "smith mar*", "source": "api"},
    ],
)
def test_searches_with_common_prefixes_give_every_match_in_order(
    conn, text_log, monkeypatch, common_prefixes, args
):
    monkeypatch.setattr(text_search, "TEXT_WINDOW", 0)  # never the walk
    monkeypatch.setattr(text_search, "TEXT_PROBE_WALK", 0)
    pages = every_page(conn, args)
    expected = expected_ids(conn, args)
    assert flat(pages) == expected and expected
    assert all(len(p) == SIZE for p in pages[:-1])


def test_the_decoys_match_prefixes_but_not_whole_words(conn, text_log):
    whole = set(expected_ids(conn, {"q": "maria smith"}))
    prefix = set(expected_ids(conn, {"q": "mar* smi*"}))
    assert len(whole) == len(MATCH_DEPTHS) + 5  # the newest, 3 at one instant, the late one
    assert whole < prefix  # Smithson Mariano
    assert not whole & set(expected_ids(conn, {"q": "amaria"}))


def test_the_default_strategies_give_every_match_in_order(conn, text_log):
    for args, size in (
        ({"q": "maria smith"}, SIZE),
        ({"q": "mar* smi*"}, SIZE),
        ({"q": "mari* smith"}, SIZE),
        # nearly every row matches: pages of 10 would be 4,000 page reads, and pages of
        # 200 cross the same kinds of boundaries
        ({"q": "ann lee"}, 200),
        ({"q": "zebra"}, SIZE),
        ({"q": "smith zeb*"}, SIZE),
    ):
        assert flat(every_page(conn, args, size)) == expected_ids(conn, args), args


def test_the_sieve_holds_only_the_words_postgresql_searches(conn):
    text = parse_filters({"q": "Maria smi*"}, UTC)
    sieve, params = text_search._sieve(conn, text)
    assert params == {"t_sieve": ["%maria%", "%smi%"]}
    assert "like all" in sieve.as_string(conn)
    # a tsquery PostgreSQL would build otherwise (here: lower-cased) gets no sieve
    odd = Filters((ActiveFilter("q", "x", "Text", "x", params={"f_q": "'Maria'"}),))
    assert text_search._sieve(conn, odd) == (sql.SQL("true"), {})
    assert text_query("Maria smi*") == "'maria' & 'smi':*"


def test_the_sieve_is_a_necessary_condition_of_the_match(conn, text_log):
    """On every row, a match of the words implies that the sieve passes."""
    for q in ("maria smith", "mar* smi*", "amaria", "smith"):
        text = parse_filters({"q": q}, UTC)
        sieve, sieve_params = text_search._sieve(conn, text)
        where, params = text.where()
        missed = conn.execute(
            sql.SQL("select count(*) from audit.action_log where {} and not ({})").format(
                where, sieve
            ),
            {**params, **sieve_params},
        ).fetchone()[0]
        assert missed == 0, q
    # and the document the sieve reads is the one the index reads
    assert "coalesce(resource_label, '')" in TEXT_DOCUMENT.as_string(conn)


@pytest.mark.parametrize("q", ["maria smith", "smith mari*", "SMI* maria", "mar* smi*", "zebra"])
def test_a_text_search_with_fewer_than_a_thousand_matches_is_counted_exactly(
    conn, text_log, monkeypatch, q
):
    """Prefixes beside whole words are counted on the whole words' rows (the prefixes
    tested on them): the count is the same as the plain one."""
    monkeypatch.setattr(counts, "COUNT_PROBE_MS", 60_000)  # behaviour, not the machine's speed
    page = list_page(conn, parse_filters({"q": q}, UTC), size=SIZE)
    assert page.count == Count(len(expected_ids(conn, {"q": q})), "exact")


def test_the_count_of_a_search_with_common_prefixes_reads_its_cheap_terms_or_nothing(
    conn, text_log, monkeypatch, common_prefixes
):
    statement, params = text_search.capped_count_query(
        conn, parse_filters({"q": "smith mar*"}, UTC), 1000, 30_000
    )
    assert "materialized" in statement.as_string(conn) and params["t_words"] == "'smith'"
    plain, _ = text_search.capped_count_query(
        conn, parse_filters({"q": "smith maria"}, UTC), 1000, 30_000
    )
    assert "materialized" not in plain.as_string(conn)
    # common prefixes only: not counted at all, the page says "at least" what it found
    common = parse_filters({"q": "mar* smi*"}, UTC)
    assert text_search.capped_count_query(conn, common, 1000, 30_000) is None
    # beside whole words the planner expects in more rows than counting may gather: neither
    too_many = parse_filters({"q": "smith mar*"}, UTC)
    assert text_search.capped_count_query(conn, too_many, 1000, 1) is None
    monkeypatch.setattr(counts, "COUNT_PROBE_MS", 60_000)
    page = list_page(conn, parse_filters({"q": "mar* smi*"}, UTC), size=SIZE)
    assert page.count == Count(SIZE + 1, "at_least")
    counted = list_page(conn, parse_filters({"q": "smith mar*"}, UTC), size=SIZE)
    assert counted.count == Count(len(expected_ids(conn, {"q": "smith mar*"})), "exact")
