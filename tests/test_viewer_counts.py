"""The viewer's counts (audit_capture.viewer.counts, present.count_text) against a real
PostgreSQL whose planner statistics mislead: exact up to 1,000 under every filter,
honest above (an exact count, "more than N", or an estimate within 3x of the truth),
a lower bound when counting is too slow, and the words of each case."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from audit_capture.viewer import counts
from audit_capture.viewer import cursor as cursors
from audit_capture.viewer.counts import Count, count_actions
from audit_capture.viewer.filters import parse_filters
from audit_capture.viewer.pages import list_page
from audit_capture.viewer.present import count_text

UTC = ZoneInfo("UTC")
DAY0 = datetime(2025, 3, 2, tzinfo=UTC)
#: subset sizes: actor a<k>, all on day SUBSET_DAY[k], labelled tag<k>, source api
SIZES = (1, 999, 1000, 1001, 4000)
SUBSET_DAY = {k: 2 + i for i, k in enumerate(SIZES)}
SUBSET_DAY[0] = 2 + len(SIZES)  # a day with no action at all
BUSY = 6000  # actor "busy", days 0 and 1, source web


@pytest.fixture(autouse=True)
def unhurried(monkeypatch):
    """Counts get all the time they need (a loaded machine must not turn a count into
    "at least N"); the one test of the timeout makes its count wait on a lock."""
    monkeypatch.setattr(counts, "COUNT_PROBE_MS", 60_000)


def fill(conn: psycopg.Connection, n: int, start: datetime, span: timedelta, **values) -> None:
    """Insert ``n`` actions (as the superuser) spread evenly over ``span`` from ``start``."""
    row = {
        "action": "Client updated",
        "action_type": "update",
        "resource_type": "client",
        "actor_type": "admin",
        "db_user": "crm_app",
        "transaction_id": 1,
        "source": "web",
        **values,
    }
    conn.execute(
        sql.SQL(
            "insert into audit.action_log (occurred_at, {cols})"
            " select %(start)s + (g - 1) * %(step)s::interval, {vals}"
            " from generate_series(1, %(n)s) g"
        ).format(
            cols=sql.SQL(", ").join(map(sql.Identifier, row)),
            vals=sql.SQL(", ").join(sql.Placeholder(name) for name in row),
        ),
        {**row, "start": start, "step": span / n, "n": n},
    )


def analyze(conn: psycopg.Connection) -> None:
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()


@pytest.fixture
def skewed(conn):
    """A log whose statistics mislead: actor_id and occurred_at keep a statistics target
    of 1 (one most common value, a histogram of two bounds), so every actor but the
    busiest is estimated at the average of the others (~1,500) and every day at
    ~1,600 however many rows it really holds."""
    fill(conn, BUSY, DAY0, timedelta(days=2), actor_id="busy", resource_label="other")
    for k in SIZES:
        day = DAY0 + timedelta(days=SUBSET_DAY[k])
        fill(
            conn,
            k,
            day + timedelta(hours=1),
            timedelta(hours=20),
            actor_id=f"a{k}",
            actor_name=f"Actor {k}",
            resource_label=f"tag{k}",
            source="api",
        )
    # the last action, a day after the empty one: the histogram spans every day
    fill(conn, 1, DAY0 + timedelta(days=SUBSET_DAY[0] + 1), timedelta(hours=1), actor_id="busy")
    conn.execute("alter table audit.action_log alter column actor_id set statistics 1")
    conn.execute("alter table audit.action_log alter column occurred_at set statistics 1")
    analyze(conn)
    return conn


def shape(name: str, k: int) -> dict[str, str]:
    """The URL arguments of filter shape ``name`` that select subset ``k`` alone."""
    day = (DAY0 + timedelta(days=SUBSET_DAY[k])).date().isoformat()
    return {
        "actor": {"actor": f"id:a{k}"},
        "date range": {"from": day, "to": day},
        "text": {"q": f"tag{k}"},
        "combined": {"actor": f"id:a{k}", "source": "api", "from": day, "to": day, "q": f"tag{k}"},
    }[name]


SHAPES = ("actor", "date range", "text", "combined")


def counted(conn, args: dict[str, str], seen: int = 0) -> Count:
    return count_actions(conn, parse_filters(args, UTC), seen=seen)


def honest(count: Count, truth: int) -> bool:
    """True when ``count`` says nothing false about ``truth``: exact is exact, a lower
    bound is below it, an estimate is within 3x of it (and only above 1,000)."""
    if count.how == "exact":
        return count.value == truth
    if count.how == "more_than":
        return count.value < truth
    if count.how == "at_least":
        return count.value <= truth
    return truth > 1000 and truth / 3 <= count.value <= truth * 3


@pytest.mark.parametrize("name", SHAPES)
def test_counts_up_to_1000_are_exact_under_every_filter(skewed, name):
    # the planner estimates the actors a<k> and each day at ~1,500: the old count
    # said "about 1,500 actions" for 0, 1, 999 and 1,000 rows alike
    for k, words in (
        (0, "No actions"),
        (1, "1 action"),
        (999, "999 actions"),
        (1000, "1,000 actions"),
    ):
        count = counted(skewed, shape(name, k))
        assert count == Count(k, "exact"), (name, k, count)
        assert count_text(count) == words


@pytest.mark.parametrize("name", SHAPES)
def test_counts_above_1000_are_never_a_wrong_number(skewed, name):
    for k in (1001, 4000):
        count = counted(skewed, shape(name, k))
        assert honest(count, k), (name, k, count)
        assert count.how != "at_least"  # counting them is cheap
        text = count_text(count)
        assert text == f"{k:,} actions" or text.startswith(("about ", "more than ")), text


def test_a_later_page_counts_exactly(skewed):
    filters = parse_filters({"actor": "id:a999"}, UTC)
    first = list_page(skewed, filters, size=50)
    second = list_page(skewed, filters, cursor=first.next_cursor, size=50)
    assert len(second.rows) == 50
    assert count_text(first.count) == count_text(second.count) == "999 actions"
    # a cursor past the subset's last row: no row, still the true total
    past = list_page(skewed, filters, cursor=cursors.encode(DAY0, 1), size=50)
    assert past.rows == [] and count_text(past.count) == "999 actions"


def test_an_actor_written_after_analyze_is_not_shown_as_the_planner_guesses(skewed):
    # 12,000 rows of an actor the statistics never saw: the planner guesses the average
    # of the other actors (~3,000 once scaled to the grown table), 4x too few
    fill(skewed, 12_000, DAY0 + timedelta(days=1), timedelta(hours=12), actor_id="late")
    skewed.commit()
    count = counted(skewed, {"actor": "id:late"})
    assert honest(count, 12_000), count
    assert (
        count.how == "more_than" and count_text(count) == f"more than {int(count.value):,} actions"
    )


def test_an_estimate_below_1000_for_more_is_more_than_1000(conn):
    # statistics of 300 actors with 3 actions each (and a busy one): any other actor is
    # estimated at ~3; 2,000 actions of a new one, written after ANALYZE
    fill(conn, 3000, DAY0, timedelta(days=2), actor_id="busy")
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, actor_type, db_user,"
        " transaction_id, actor_id) select %s + g * interval '1 minute', 'Client updated',"
        " 'update', 'admin', 'crm_app', 1, 'c' || (g %% 300) from generate_series(1, 900) g",
        (DAY0,),
    )
    analyze(conn)
    fill(conn, 2000, DAY0 + timedelta(days=3), timedelta(hours=12), actor_id="surge")
    conn.commit()
    count = counted(conn, {"actor": "id:surge"})
    assert count == Count(1000, "more_than")
    assert count_text(count) == "more than 1,000 actions"
    # the 3-action actors are exact, as they are estimated
    assert count_text(counted(conn, {"actor": "id:c7"})) == "3 actions"


def test_an_estimate_of_the_whole_log_is_rounded_to_two_figures(skewed):
    # 13,002 actions (6,001 on the web): the count passes 1,000, and the planner's
    # estimate, 3x of which is beyond the 10,000 worth checking, is shown rounded
    count = counted(skewed, {"source": "web"})
    assert count.how == "estimate" and count_text(count) == "about 6,000 actions"
    everything = list_page(skewed, parse_filters({}, UTC), size=50)
    assert everything.count.how == "estimate"
    assert count_text(everything.count) == "about 13,000 actions"


def log_seq_scans(conn) -> int:
    """Sequential scans of the log (and its partitions) in this transaction so far."""
    return conn.execute(
        "select coalesce(sum(seq_scan), 0) from pg_stat_xact_user_tables where relid in"
        " (select inhrelid from pg_inherits where inhparent = 'audit.action_log'::regclass"
        " union all select 'audit.action_log'::regclass)"
    ).fetchone()[0]


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"actor": "id:busy"},  # 6,000 of 13,002: the planner would read the table
        {"actor": "id:busy", "source": "mobile"},  # a source they never use
        {"from": "2025-03-02", "to": "2025-03-09"},
    ],
)
def test_counts_take_the_indexes_never_a_sequential_scan(skewed, args):
    settings = "select current_setting('enable_seqscan'), current_setting('jit'),"
    settings += " current_setting('statement_timeout')"
    outside = skewed.execute(settings).fetchone()
    before = log_seq_scans(skewed)
    count = counted(skewed, args)
    assert log_seq_scans(skewed) == before, count
    assert count.how != "at_least"
    # the caller's transaction keeps its own settings
    assert skewed.execute(settings).fetchone() == outside


def test_a_broad_text_search_shows_its_estimate_uncounted(skewed, monkeypatch):
    # the full-text index gathers every match before the first: a text search expected
    # in more than TEXT_COUNT_LIMIT rows is not counted (here the limit is lowered to
    # 2,000 and tag4000 is estimated at ~4,000); below the limit, it is counted
    monkeypatch.setattr(counts, "TEXT_COUNT_LIMIT", 2000)
    count = counted(skewed, {"q": "tag4000"})
    assert count.how == "estimate" and honest(count, 4000)
    assert count_text(counted(skewed, {"q": "tag999"})) == "999 actions"


def test_a_count_too_slow_is_a_lower_bound_and_keeps_the_viewers_timeout(
    skewed, db_url, monkeypatch
):
    monkeypatch.setattr(counts, "COUNT_PROBE_MS", 10)
    skewed.execute("set statement_timeout = '3s'")  # the viewer's own, never raised
    skewed.commit()
    with psycopg.connect(db_url) as locker:
        # the count now waits on a lock until its own short timeout cancels it
        locker.execute("lock table audit.action_log in access exclusive mode")
        count = counted(skewed, {"actor": "id:a999"}, seen=51)
        assert count == Count(51, "at_least") and count_text(count) == "at least 51 actions"
        assert skewed.execute("show statement_timeout").fetchone() == ("3s",)
        locker.rollback()
    skewed.rollback()
    assert count_text(counted(skewed, {"actor": "id:a999"})) == "999 actions"


def test_a_hostile_filter_counts_as_typed(skewed):
    # a text search holding SQL, quotes and a prefix: bound values, counted like any other
    fill(skewed, 3, DAY0, timedelta(hours=1), resource_label="o'brien; drop table x")
    skewed.commit()
    assert count_text(counted(skewed, {"q": "o'brien; drop"})) == "3 actions"
    assert count_text(counted(skewed, {"q": "tag99*"})) == "999 actions"
    assert count_text(counted(skewed, {"actor": "id:a1' or '1'='1"})) == "No actions"


@pytest.mark.parametrize(
    "count, words",
    [
        (Count(0, "exact"), "No actions"),
        (Count(1, "exact"), "1 action"),
        (Count(679, "exact"), "679 actions"),
        (Count(4000, "exact"), "4,000 actions"),
        (Count(1001, "estimate"), "about 1,000 actions"),
        (Count(2149, "estimate"), "about 2,100 actions"),
        (Count(45_678, "estimate"), "about 46,000 actions"),
        (Count(999_999, "estimate"), "about 1 million actions"),
        (Count(1_234_567, "estimate"), "about 1.2 million actions"),
        (Count(12_345_678, "estimate"), "about 12 million actions"),
        (Count(2_345_678_901, "estimate"), "about 2.3 billion actions"),
        (Count(1000, "more_than"), "more than 1,000 actions"),
        (Count(6300, "more_than"), "more than 6,300 actions"),
        (Count(51, "at_least"), "at least 51 actions"),
        (Count(1, "at_least"), "at least 1 action"),
        (Count(0, "at_least"), "Many actions"),
    ],
)
def test_count_text_words_each_case(count, words):
    assert count_text(count) == words


def test_a_text_search_s_count_gets_half_the_time(conn):
    """The page of a text search has paid the search already: its count is cancelled
    at half of COUNT_PROBE_MS (5 ms), any other count at all of it."""

    caps = []

    class Recording:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def execute(self, query, params=None, **kwargs):
            if isinstance(params, dict) and "cap" in params:
                caps.append(params["cap"])
            return self.real.execute(query, params, **kwargs)

    recording = Recording(conn)
    counts.capped_count(recording, parse_filters({"q": "alice"}, ZoneInfo("UTC")), 1000)
    counts.capped_count(recording, parse_filters({"source": "web"}, ZoneInfo("UTC")), 1000)
    assert caps == [f"{counts.COUNT_PROBE_MS / 2:g}ms", f"{counts.COUNT_PROBE_MS:g}ms"]
