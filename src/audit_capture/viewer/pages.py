"""Pages of the log: the Single Actions list, one keyset page at a time.

Every read is shaped so that it stays fast at ten million actions (see the measurements
in bench/viewer_speed.py and the indexes of triggers/13_viewer_indexes.sql):

* **Keyset pages, never OFFSET.** Rows come newest first (``rows.order_by``). A page is
  "the ``size`` rows after this cursor" plus one more to learn whether another page
  follows. A ``prev`` page runs the reversed order from its cursor and is flipped back.
* **No full count**: up to 1,001 matches are counted, past that the planner estimates
  (``counts``).
* **Text search is steered** (``text_search``).
* **Rare combinations of low-cardinality filters are probed** (``kind_probe``).
* **An actor is read per source** (``rows.actor_branches``). action_log_actor_source_idx
  (actor_id, source, occurred_at desc, id desc) holds an actor's rows in page order
  for each source: an actor with a source is one seek (a busy admin with a source they
  never use finds none at once), an actor alone is one seek per source value (web,
  api, ai, mobile, none), the branches' ordered reads merged in page order in the same
  statement (Merge Append; nothing sorted but a branch's own ``limit`` rows). Filters
  the index answers alone (actor, source, dates) take the page's keys from it alone
  (index-only, so no plan walks the time index instead: ``actor_page``), in two
  statement parts for any number of actors and sources (each part planned on every
  month it may read), then those rows by key, in their own months only.
  A text search of an actor walks the same merged branches (``text_search``).
* **The newest two months first** (``recent``). On the log partitioned by month, a
  statement is planned and opened on every month it may read: an actor's page reads the
  last two months (their partitions only, not the empty months made ahead) and the
  older ones only for the rows those lack.
* **No JIT** (``db.configure_session``): a read of every month can be costed high
  enough for PostgreSQL to compile it before its first row.
* **A timeout is the backstop.** The viewer's connection has a ``statement_timeout``;
  a cancelled query becomes ``TooBroad`` (a page asking to narrow the filter).

``list_page`` takes an open psycopg connection and runs inside ``conn.transaction()``, so
it works in autocommit mode and in a caller's transaction alike (a failure rolls back
only its own savepoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from audit_capture.viewer import cursor as cursors
from audit_capture.viewer.counts import Count, count_actions
from audit_capture.viewer.errors import BadRequest, translate_errors
from audit_capture.viewer.filters import (
    ACTOR_PARAM,
    DEFAULT_SIZE,
    DIRECTIONS,
    MAX_SIZE,
    MIN_SIZE,
    TEXT_PARAM,
    Filters,
)
from audit_capture.viewer.kind_probe import KIND_PROBE_LIMIT, kind_probe, rare_rows
from audit_capture.viewer.planner import estimates_kept, planner_settings
from audit_capture.viewer.recent import newest_first
from audit_capture.viewer.rows import (
    LIST_COLUMNS,
    LOG,
    LogRow,
    actor_branches,
    actor_rows,
    column_list,
    keyset_condition,
    order_by,
    planned_rows,
)
from audit_capture.viewer.text_search import text_rows

#: the filters action_log_actor_source_idx answers alone (its keys)
ACTOR_SOURCE_PARAMS = (ACTOR_PARAM, "source", "from", "to")


@dataclass
class Page:
    """One page of the log, newest first. Cursors are None where there is no page;
    ``count``: how many actions the filter matches, as far as it was cheap to know."""

    rows: list[LogRow]
    next_cursor: str | None
    prev_cursor: str | None
    count: Count


def fetch_rows(
    conn: psycopg.Connection,
    filters: Filters,
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
    *,
    probe: int | None = None,
) -> list[LogRow]:
    """Up to ``limit`` rows after ``position`` in ``direction`` order (see module doc).
    ``probe``: ``kind_probe(conn, filters)``, when the caller has it already."""
    keyset, keyset_params = keyset_condition(position, direction)
    cur = conn.cursor(row_factory=class_row(LogRow))
    if probe is None:
        probe = kind_probe(conn, filters)
    if probe is not None:  # low-cardinality filters, probed on action_log_kind_idx
        if probe == 0:
            return []
        if probe <= KIND_PROBE_LIMIT:
            # a rare combination: its few rows through action_log_kind_idx, then sorted
            # (the time walk would pass nearly every row of the log to find them)
            return rare_rows(conn, filters, position, direction, limit)
        # common: the time walk below finds a page's rows within a few thousand entries
    branches = actor_branches(filters)
    if filters.get(TEXT_PARAM):
        # an actor among the other filters: text_search reads its rows per source too
        return text_rows(conn, cur, filters, position, direction, limit)
    if branches is not None:

        def read(span: sql.Composable, span_params: dict, limit: int) -> list[LogRow]:
            within = sql.SQL("{} and {}").format(keyset, span)
            params = {**keyset_params, **span_params}
            return actor_page(cur, branches, within, params, direction, limit)

        # bounded reads (index seeks, each branch its own limit): the newest months first
        return newest_first(conn, read, position, direction, limit)
    return planned_rows(cur, filters, keyset, keyset_params, direction, limit)


#: A page's rows by their keys: ``occurred_at = any(...)`` lets the planner leave out
#: every month that holds none of them (a statement over the whole log is planned on
#: each of its months: 5-7 ms at 41)
ROWS_BY_KEY = (
    "select {cols} from {log} where occurred_at = any(%(page_at)s) and id = any(%(page_ids)s)"
    " order by {order}"
)


def actor_page(
    cur: psycopg.Cursor[LogRow],
    branches: list[Filters],
    within: sql.Composable,
    params: dict,
    direction: str,
    limit: int,
) -> list[LogRow]:
    """Up to ``limit`` rows of an actor with an id ``within`` a condition (the keyset and
    a span of time: ``recent``) and its ``params``: each branch's (``rows.actor_branches``)
    first ``limit`` rows along action_log_actor_source_idx, merged in page order.

    When the index answers every filter alone, the branches read the page's keys
    (index-only, ``gather``: two statement parts for any number of actors and
    sources), then its rows by key (``ROWS_BY_KEY``): the planner then never prefers a
    walk of the time index for a combination it thinks common (a busy admin and a
    source they never use: every row of the log passed for none), and the rows are
    looked up in their own months alone. With other filters, a branch each: gathered,
    each actor's part would read a page of heap matches per source, where the merge
    reads a page in all."""
    if all(a.param in ACTOR_SOURCE_PARAMS for a in branches[0].active):
        keys_query, keys_params = actor_rows(
            branches, sql.SQL("occurred_at, id"), within, params, direction, limit, gather=True
        )
        # each actor's part is planned for any id (LATERAL), on the column's average
        # rows per actor: few, so a busy admin's months would be read whole and sorted
        # where the index gives them in order (4,218 rows read for 26 kept, 15 ms)
        with planner_settings(cur.connection, enable_sort="off"):
            keys = cur.connection.execute(keys_query, keys_params, prepare=False).fetchall()
        if not keys:
            return []
        query = sql.SQL(ROWS_BY_KEY).format(
            cols=column_list(LIST_COLUMNS), log=LOG, order=order_by(direction)
        )
        page_keys = {"page_at": [at for at, _ in keys], "page_ids": [i for _, i in keys]}
        return cur.execute(query, page_keys, prepare=False).fetchall()
    query, query_params = actor_rows(
        branches, column_list(LIST_COLUMNS), within, params, direction, limit
    )
    return cur.execute(query, query_params, prepare=False).fetchall()


def list_page(
    conn: psycopg.Connection,
    filters: Filters,
    cursor: str | None = None,
    direction: str = "next",
    size: int = DEFAULT_SIZE,
) -> Page:
    """The page of ``size`` rows after ``cursor`` (older rows for ``next``, newer for
    ``prev``); the first page when ``cursor`` is None. BadRequest for a bad cursor,
    direction or size; TooBroad when the statement_timeout cancels the query.

    A ``prev`` page that reaches the newest row is the first page itself (full, with no
    previous page), so going back always ends where the user started.
    """
    if direction not in DIRECTIONS:
        raise BadRequest(f"_dir is {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise BadRequest(f"_size is {size!r}; expected a number from {MIN_SIZE} to {MAX_SIZE}")
    position = cursors.decode(cursor) if cursor else None
    if position is None:
        direction = "next"
    with translate_errors(), conn.transaction(), estimates_kept():
        probe = kind_probe(conn, filters)
        fetched = fetch_rows(conn, filters, position, direction, size + 1, probe=probe)
        more = len(fetched) > size
        rows = fetched[:size]
        next_cursor: str | None
        prev_cursor: str | None
        if direction == "prev":
            if not more:
                return list_page(conn, filters, None, "next", size)
            rows.reverse()
            next_cursor, prev_cursor = rows[-1].cursor, rows[0].cursor
        else:
            next_cursor = rows[-1].cursor if more and rows else None
            prev_cursor = rows[0].cursor if position is not None and rows else None
        if position is None and not more:
            count = Count(len(rows), "exact")
        else:
            count = count_actions(conn, filters, seen=len(fetched), probe=probe)
    return Page(rows, next_cursor, prev_cursor, count)
