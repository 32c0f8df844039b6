"""Windows of time for the text-search index, as its time column names them.

The text-search index (``action_log_text_time_idx``, triggers/13_viewer_indexes.sql)
holds, beside each action's words, the day and the month it happened in, as numbers
(``audit.time_buckets``): the day as twice the days since 2000-01-01 (UTC), an even
number, the month as twice the months since January 2000 plus one, an odd number (so
that no day is ever taken for a month, whatever the year). A search asks for "these words, on these
days or in these months" (``TIME_BUCKETS && array[...]``), and the index decodes only
those days' entries instead of every match of the words.

``buckets(low, high)`` names every day from ``low`` to ``high`` with as few numbers as it
can: whole months as one number, the days of a month only partly inside one by one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from psycopg import sql

#: The index's time column, character for character (the planner matches expressions).
TIME_BUCKETS = sql.SQL("audit.time_buckets(occurred_at)")

EPOCH = date(2000, 1, 1)


def day_number(day: date) -> int:
    """``audit.time_buckets``' number of a (UTC) day (even)."""
    return 2 * (day - EPOCH).days


def month_number(day: date) -> int:
    """``audit.time_buckets``' number of the month of a (UTC) day (odd)."""
    return 2 * ((day.year - EPOCH.year) * 12 + day.month - 1) + 1


def utc_day(moment: datetime) -> date:
    """The UTC day of a moment (the time column counts days in UTC)."""
    return moment.astimezone(UTC).date()


def day_start(day: date) -> datetime:
    """The first moment of a UTC day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month_end(day: date) -> date:
    first_of_next = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first_of_next - timedelta(days=1)


def buckets(low: date, high: date) -> list[int]:
    """The numbers naming every day from ``low`` to ``high`` (both included): a month
    wholly inside as its month number, the days of a month partly inside as day numbers.
    At most 62 day numbers and one number per month between."""
    if high < low:
        return []
    numbers: list[int] = []
    start = low
    while start <= high:
        month_first, month_last = start.replace(day=1), _month_end(start)
        end = min(month_last, high)
        if start == month_first and end == month_last:
            numbers.append(month_number(start))
        else:
            numbers.extend(
                day_number(start + timedelta(days=i)) for i in range((end - start).days + 1)
            )
        start = end + timedelta(days=1)
    return numbers
