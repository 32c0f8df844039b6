"""Counting without counting: how many actions a filter matches, as far as it is cheap.

The whole table is never counted. The rule (what an admin reads, ``present.count_text``):

1. **Up to 1,000: exact, always.** A probe counts the filter's matches, capped:
   ``select count(*) from (select 1 from log where <the page's filter> limit 1001)``.
   It takes the indexes the page takes, never a sequential scan (index-only on the
   actor, time and kind indexes; the text index), and stops at 1,001 rows however
   common the filter is (EXPLAIN ANALYZE at 1M actions, busy machine: 0.02-1.7 ms,
   text searches 0.02-100 ms, see rules 3 and 4). 1,000 or fewer: that
   is the count ("679 actions"), whatever the planner believes.
2. **Past 1,000: the planner's estimate E, checked where checking is cheap.** When
   the probe reached 1,001, EXPLAIN (nothing runs) gives E. If 3E is at most
   ``CHECK_LIMIT`` (10,000), a second capped count goes up to 3E: every match
   counted is the exact count ("2,345 actions"); more than 3E means E was more than
   3x too low, so only what is known is said ("more than 6,300 actions"; E of 333 or
   less: "more than 1,000 actions"). The planner's guess for an actor outside its
   most-common list, or for rows written since the last ANALYZE, is the usual
   culprit. A larger E is shown rounded to two significant figures ("about 45,000
   actions", "about 1.2 million actions"): it comes from the statistics of common
   values, and the count has proved the truth above 1,000. Not caught: an estimate
   above 3,333 that is more than 3x off either way (a burst of 1,500 rows in a
   narrow date range that the histogram smooths to 6,000).
3. **Broad text searches: the estimate alone.** A text search the planner expects in
   more than ``TEXT_COUNT_LIMIT`` (30,000) rows is not counted: the full-text index
   gathers every match before the first one comes out, so even 1,001 of them cost as
   much as all (at 1M actions: ``smith`` 7-16 ms, ``mar*`` 32-71 ms; ten times that
   at 10M). Its estimate comes from the words' statistics, which put a common word
   close and several words too low (as if independent) rather than too high.
4. **Slow to count: a lower bound.** The probe runs under a local statement_timeout
   of ``COUNT_PROBE_MS`` (10 ms, 5 for a text search; never above the viewer's own):
   a filter whose matches are slow to find (common words with another filter: the text index still
   gathers them all; a busy actor with an action type they rarely do: the bitmaps of
   the actor's and the type's entries, ANDed, 28 ms at 1M) is cancelled and shows
   "at least N actions", N the rows the page itself already found. The page pays at
   most 10 ms (twice that when the second count of rule 2 is cancelled too).

Filters made of low-cardinality columns only are counted by the kind probe, which the
page runs anyway (exact up to ``KIND_PROBE_LIMIT``, the same 1,000; past it, rule 2
applies to the kind probe's count). A first page that holds every match is counted by
``pages.list_page`` itself. The result is numbers (``Count``); the words are
``present.count_text``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from audit_capture.viewer.filters import TEXT_PARAM, Filters
from audit_capture.viewer.kind_probe import KIND_PARAMS, KIND_PROBE_LIMIT, kind_probe
from audit_capture.viewer.planner import estimate
from audit_capture.viewer.rows import LOG, one_row
from audit_capture.viewer.text_search import capped_count_query

EXACT_COUNT_LIMIT = 1_000  # every count up to this is exact
CHECK_LIMIT = 10_000  # the most rows counted to check a low estimate
TEXT_COUNT_LIMIT = 30_000  # a text search expected in more rows is not counted
COUNT_PROBE_MS = 10  # the most a capped count may cost (a local statement_timeout)
# a text search's count gets half: its page has already paid the search itself, and a
# count of a common pair of words to 1,001 takes more than 10 ms at 10M anyway (heap
# fetches), where a rare search is counted in well under 5 ms
TEXT_COUNT_SHARE = 0.5

# For the capped count: lower this transaction's statement_timeout to the cap (never
# raise it), and turn sequential scans and JIT off (``capped_count``), in one round
# trip; the old values are returned, to be put back by RESTORE_SETTINGS (SET LOCAL
# outlives a released savepoint).
PROBE_SETTINGS = """
select old_timeout, old_seqscan, old_jit,
  set_config('statement_timeout',
    case when old_timeout::interval = '0'::interval
              or old_timeout::interval > %(cap)s::text::interval
         then %(cap)s::text else old_timeout end, true),
  set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)
from (select pg_catalog.current_setting('statement_timeout') as old_timeout,
             pg_catalog.current_setting('enable_seqscan') as old_seqscan,
             pg_catalog.current_setting('jit') as old_jit) s
"""
RESTORE_SETTINGS = """
select set_config('statement_timeout', %s, true), set_config('enable_seqscan', %s, true),
       set_config('jit', %s, true)
"""


@dataclass(frozen=True)
class Count:
    """How many actions a filter matches, as far as it was cheap to know.

    ``how``: "exact" (``value`` is the count), "estimate" (the planner's, above
    ``CHECK_LIMIT`` / 3 and the count above 1,000), "more_than" (more than ``value``:
    counted that far, and the planner's estimate was far lower) or "at_least"
    (``value`` or more: the count was too slow; 0 when not even a row was found).
    """

    value: float
    how: Literal["exact", "estimate", "more_than", "at_least"]


def capped_count(conn: psycopg.Connection, filters: Filters, limit: int) -> int | None:
    """The filter's matches counted up to ``limit`` + 1 (so any result up to ``limit``
    is exact), within ``COUNT_PROBE_MS``; None when the timeout cancelled it.

    Never by a sequential scan: without the page's ORDER BY, the planner would read the
    table for a common value (a busy actor: 1,001 of its rows in 7 ms at 1M actions,
    where its index-only scan takes 0.3 ms), and walk all of it for a combination it
    thinks common but is rare (a busy actor with a source they never use: 700 ms,
    where action_log_actor_source_idx, actor and source its keys, takes one seek).
    JIT, which the disabled scan's cost would set off, is off too. Settings, count
    and restore are three round trips in a savepoint: a cancelled count rolls the
    settings back with it."""
    if filters.get(TEXT_PARAM):
        # prefixes, and the words beside them: text_search says why
        query = capped_count_query(conn, filters, limit, TEXT_COUNT_LIMIT)
        if query is None:
            return None
        capped, params = query
    else:
        where, params = filters.where()
        capped = sql.SQL("select count(*) from (select 1 from {} where {} limit {}) p").format(
            LOG, where, sql.Literal(limit + 1)
        )
    try:
        with conn.transaction():
            cap = COUNT_PROBE_MS * (TEXT_COUNT_SHARE if filters.get(TEXT_PARAM) else 1)
            previous = one_row(conn.execute(PROBE_SETTINGS, {"cap": f"{cap:g}ms"}))[:3]
            counted = one_row(conn.execute(capped, params, prepare=False))[0]
            conn.execute(RESTORE_SETTINGS, previous)
    except psycopg.errors.QueryCanceled:
        return None
    return int(counted)


def count_actions(
    conn: psycopg.Connection, filters: Filters, seen: int = 0, *, probe: int | None = None
) -> Count:
    """The count of the actions ``filters`` match, by the rule of the module doc: exact
    up to 1,000; above, exact or "more than N" where a low estimate is cheap to check,
    else the planner's estimate (and for a broad text search, the estimate alone);
    "at least ``seen``" (the rows the page found) when counting was slow.

    ``probe``: the kind probe's count, when the caller has it already (filters of
    low-cardinality columns only); it stands for the first capped count.
    """
    expected = None
    if filters and all(a.param in KIND_PARAMS for a in filters.active):
        counted = kind_probe(conn, filters) if probe is None else probe
        limit = KIND_PROBE_LIMIT
    else:
        if filters.get(TEXT_PARAM):
            expected = estimate(conn, filters)
            if expected > TEXT_COUNT_LIMIT:
                return Count(expected, "estimate")
        counted = capped_count(conn, filters, EXACT_COUNT_LIMIT)
        limit = EXACT_COUNT_LIMIT
    if counted is None:
        return Count(seen, "at_least")
    if counted <= limit:
        return Count(counted, "exact")
    if expected is None:
        expected = estimate(conn, filters)
    check = int(3 * expected)
    if check > CHECK_LIMIT:
        return Count(expected, "estimate")
    if check <= limit:
        return Count(limit, "more_than")
    counted = capped_count(conn, filters, check)
    if counted is None:
        return Count(limit, "more_than")
    if counted <= check:
        return Count(counted, "exact")
    return Count(check, "more_than")
