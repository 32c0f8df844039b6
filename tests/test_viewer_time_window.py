"""The viewer's numbering of days and months must be audit.time_buckets' (the text-search
index's time column), and a window's numbers must name exactly its days."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from audit_capture.viewer.time_window import (
    buckets,
    day_number,
    day_start,
    month_number,
    utc_day,
)

MOMENTS = [
    datetime(2000, 1, 1, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),  # before the epoch: negative days
    datetime(1, 1, 1, 12, tzinfo=UTC),  # the first year: far below every month number
    datetime(2024, 2, 29, 12, tzinfo=UTC),
    datetime(2026, 12, 2, 23, 59, 59, 999999, tzinfo=UTC),
    # 00:30 on the 3rd in Paris is still the 2nd in UTC: days are UTC days
    datetime(2026, 12, 3, 0, 30, tzinfo=ZoneInfo("Europe/Paris")),
    datetime(2026, 12, 31, 22, 0, tzinfo=ZoneInfo("America/New_York")),  # 2027 in UTC
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_the_viewer_numbers_days_and_months_as_the_index_does(conn, moment):
    (numbers,) = conn.execute("select audit.time_buckets(%s)", (moment,)).fetchone()
    day = utc_day(moment)
    assert numbers == [day_number(day), month_number(day)]
    assert day_start(day) <= moment < day_start(day + timedelta(days=1))


def days_named(numbers: list[int], around: date) -> set[date]:
    """Every day the numbers name (month numbers expanded), near ``around``."""
    named = set()
    for offset in range(-800, 800):
        day = around + timedelta(days=offset)
        if day_number(day) in numbers or month_number(day) in numbers:
            named.add(day)
    return named


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (date(2026, 11, 20), date(2026, 12, 2)),  # across a month's end: days only
        (date(2026, 12, 2), date(2026, 12, 2)),  # one day
        (date(2026, 1, 1), date(2026, 1, 31)),  # exactly a month: one number
        (date(2025, 2, 15), date(2026, 12, 2)),  # partial, whole months, partial
        (date(2024, 2, 1), date(2024, 3, 1)),  # a leap February whole, then a day
    ],
)
def test_a_window_names_exactly_its_days_with_few_numbers(low, high):
    numbers = buckets(low, high)
    wanted = {low + timedelta(days=i) for i in range((high - low).days + 1)}
    assert days_named(numbers, low) == wanted
    assert len(numbers) == len(set(numbers))
    months_inside = sum(1 for n in numbers if n % 2)
    assert len(numbers) - months_inside <= 62  # the partial months' days at most


def test_no_day_is_ever_a_month():
    """A window of days must never bring back a month's actions (the windows of a page
    follow each other: one month's rows twice would repeat rows on the page)."""
    for day in (date(1, 1, 1), date(1999, 12, 31), date(2000, 1, 1), date(9999, 12, 31)):
        assert day_number(day) % 2 == 0 and month_number(day) % 2 == 1


def test_an_empty_window_names_nothing():
    assert buckets(date(2026, 12, 2), date(2026, 12, 1)) == []


def test_the_index_answers_a_window_of_days(conn):
    """The condition the text search writes is one the planner gives the index."""
    conn.execute("set local enable_seqscan = off")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "explain select id from audit.action_log where"
            " to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' '"
            " || coalesce(resource_label, '')) @@ to_tsquery('simple', 'maria')"
            " and audit.time_buckets(occurred_at) && %s::integer[]",
            (buckets(date(2026, 11, 1), date(2026, 12, 2)),),
        )
    )
    # (each month's partition has its copy: action_log_p2026_12_text_time_idx)
    assert re.search(r"action_log_\w*text_time_idx", plan), plan
    # the window is a condition of the index scan (a second scan key), not a filter
    # applied to every match afterwards
    index_condition = plan.split("Index Cond:", 1)[1].splitlines()[0]
    assert "&&" in index_condition and "@@" in index_condition
