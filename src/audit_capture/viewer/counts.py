"""Counting without counting: how many actions a filter matches, as far as it is cheap.

The whole table is never counted. The count is exact only when it is cheap: a small
first page, the kind probe's count of a rare combination, or a probe capped at 1,001
rows when the planner expects few; otherwise it is the planner's estimate. The result is
numbers (``Count``); the words ("about 1.2 million actions") are ``present.count_text``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from audit_capture.viewer.filters import Filters
from audit_capture.viewer.kind_probe import KIND_PARAMS, KIND_PROBE_LIMIT, kind_probe
from audit_capture.viewer.planner import estimate
from audit_capture.viewer.rows import LOG, one_row

EXACT_COUNT_LIMIT = 1_000  # the most rows an exact count probe counts
COUNT_PROBE_MS = 20  # the most an exact count may cost

# lower this transaction's statement_timeout to the cap (never raise it); the old value
# is returned, to be put back (SET LOCAL outlives a released savepoint)
PROBE_TIMEOUT = """
select old, set_config('statement_timeout',
  case when old::interval = '0'::interval or old::interval > %(cap)s::text::interval
       then %(cap)s::text else old end, true)
from (select pg_catalog.current_setting('statement_timeout') as old) s
"""


@dataclass(frozen=True)
class Count:
    """How many actions a filter matches, as far as it was cheap to know.

    ``how``: "exact" (``value`` is the count), "estimate" (the planner's) or "at_least"
    (``value`` or more; 0 when not even the page's rows were found before the cap).
    """

    value: float
    how: Literal["exact", "estimate", "at_least"]


def count_actions(
    conn: psycopg.Connection, filters: Filters, seen: int = 0, *, probe: int | None = None
) -> Count:
    """The count of the actions ``filters`` match: exact when few, else an estimate or
    a lower bound.

    The planner estimates first (cheap). Only when it expects at most 1,000 rows does a
    probe count them, capped at 1,001 rows and at ``COUNT_PROBE_MS`` (a local
    statement_timeout): a filter whose rows are rare but spread over the whole log would
    otherwise walk far more than its page did. Past the cap: the estimate, or at least
    the ``seen`` rows the page already found. The whole table is never counted.
    Low-cardinality filters alone are counted by the kind probe first (exact up to
    ``KIND_PROBE_LIMIT``; ``probe``: its count, when the caller has it already).
    """
    if filters and all(a.param in KIND_PARAMS for a in filters.active):
        # low-cardinality filters only: the probe counts a rare combination exactly
        # (the planner, multiplying their frequencies, may guess thousands for none)
        found = kind_probe(conn, filters) if probe is None else probe
        if found is not None and found <= KIND_PROBE_LIMIT:
            return Count(found, "exact")
    expected = estimate(conn, filters)
    if expected > EXACT_COUNT_LIMIT:
        return Count(expected, "estimate")
    where, params = filters.where()
    capped = sql.SQL("select count(*) from (select 1 from {} where {} limit {}) p").format(
        LOG, where, sql.Literal(EXACT_COUNT_LIMIT + 1)
    )
    try:
        with conn.transaction():
            previous = one_row(conn.execute(PROBE_TIMEOUT, {"cap": f"{COUNT_PROBE_MS}ms"}))[0]
            counted = one_row(conn.execute(capped, params, prepare=False))[0]
            conn.execute("select set_config('statement_timeout', %s, true)", (previous,))
    except psycopg.errors.QueryCanceled:
        return Count(seen, "at_least")
    if counted <= EXACT_COUNT_LIMIT:
        return Count(counted, "exact")
    return Count(EXACT_COUNT_LIMIT, "at_least")
