"""The viewer's reads: pages of the log, one action, its items, and exports.

Every read is shaped so that it stays fast at ten million actions (see the measurements
in bench/viewer_speed.py and the indexes of triggers/13_viewer_indexes.sql):

* **Keyset pages, never OFFSET.** Rows come newest first, ordered by
  (occurred_at DESC, id DESC), the order of the log's time index and of each
  composite index (column, occurred_at DESC, id DESC). A page is "the ``size`` rows
  after this cursor" plus one more to learn whether another page follows. A ``prev``
  page runs the reversed order from its cursor and is flipped back.
* **No full count.** ``count_text`` is exact only when it is cheap: a small first page,
  or a probe capped at 1,001 rows when the planner expects few; otherwise it is the
  planner's estimate ("about 1.2 million actions").
* **Text search is steered.** The full-text index finds every match at once, but the
  page wants only the newest 50, and fetching every match from the table to sort them
  is the cost (8,000 matches: 60 ms at 10M). So, by the planner's estimate of how deep
  the page's rows lie: within ``TEXT_WINDOW`` rows of the top (a common word, or
  prefixes), a walk of the newest candidates tests a cheap sieve first (the lower-cased
  text holds each word: ``filters.TEXT_LOWER``) and to_tsvector only on the rows that
  pass it; deeper, whole words are taken from the full-text index ANDed with a recent
  window of time (a second bitmap on the time index) that grows until it holds a page,
  and, when the matches are few, all of them in a MATERIALIZED CTE, sorted. Prefixes
  past the walk keep the planner's own plan (the index gathers every word a prefix
  starts before anything else: 150 ms and more for ``mar*`` at 10M).
* **Rare combinations of low-cardinality filters are probed.** Two common values that
  rarely or never occur together (mobile + system) would make the planner walk the whole
  time index for a page it cannot fill. So low-cardinality filters (without an actor or
  a text search) first count their matches on the small action_log_kind_idx alone,
  index-only and capped at ``KIND_PROBE_LIMIT`` + 1 entries: none is an empty page at
  once; a few are fetched through that index and sorted; more take the time walk, which
  then finds a page within a few thousand rows. An actor with a source (a busy admin +
  a source they never use) takes the page's ids from action_log_actor_idx alone, which
  INCLUDEs source, and then those rows by id.
* **A timeout is the backstop.** The viewer's connection has a ``statement_timeout``;
  a cancelled query becomes ``TooBroad`` (a page asking to narrow the filter).
* Statements are not prepared (``prepare=False``): a generic plan, chosen once for all
  values, is exactly what fails on a skewed log (a rare actor planned like a common one).

Functions take an open psycopg connection and run inside ``conn.transaction()``, so
they work in autocommit mode and in a caller's transaction alike (a failure rolls back
only its own savepoint).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from audit_capture.enums import ActionType, ActorType, Source
from audit_capture.viewer import cursor as cursors
from audit_capture.viewer.filters import (
    DEFAULT_SIZE,
    DIRECTIONS,
    MAX_SIZE,
    MIN_SIZE,
    TEXT_LOWER,
    BadRequest,
    Filters,
    TooBroad,
    text_match,
)
from audit_capture.viewer.present import REDACTED

LOG = sql.Identifier("audit", "action_log")
TEXT_PARAM = "q"
TEXT_WINDOW = 40_000  # most rows of the (sieved) time walk tried before the full-text index
TEXT_WINDOW_TRIES = 3  # time windows over the full-text index before all its matches
TEXT_FEW_MATCHES = 3_000  # estimated matches few enough to fetch and sort them all (an
# absent word is estimated at ~2,800 at 10M: the rarest common word's frequency, halved)
TEXT_PROBE_WALK = 5_000  # the short walk tried before the full-text index (~4 ms at 10M)
# a time window's bitmap costs ~0.15 µs a row, fetching one match ~5 µs: wider than this
# many rows per match of the words, fetch all matches instead
TEXT_WINDOW_ROWS_PER_MATCH = 30
EXACT_COUNT_LIMIT = 1_000


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn a statement_timeout cancellation into TooBroad."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        raise TooBroad() from exc


# -- rows --------------------------------------------------------------------------------


@dataclass
class LogRow:
    """One line of the Single Actions table."""

    id: int
    occurred_at: datetime
    action: str
    action_type: str
    resource_type: str | None
    resource_id: str | None
    resource_label: str | None
    row_count: int
    actor_id: str | None
    actor_name: str | None
    actor_type: str
    source: str | None

    @property
    def cursor(self) -> str:
        return cursors.encode(self.occurred_at, self.id)


@dataclass
class Action(LogRow):
    """Every column of one action (audit.action_log)."""

    changes: Any
    db_user: str
    transaction_id: int
    request_id: str | None
    context: Any
    table_name: str | None
    operation: str | None
    application_name: str | None
    client_addr: Any


LIST_COLUMNS = tuple(f.name for f in fields(LogRow))
ACTION_COLUMNS = tuple(f.name for f in fields(Action))


def _columns(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


@dataclass
class Page:
    """One page of the log, newest first. Cursors are None where there is no page."""

    rows: list[LogRow]
    next_cursor: str | None
    prev_cursor: str | None
    count_text: str


# -- the page query ------------------------------------------------------------------------


def _order(direction: str) -> sql.Composable:
    return sql.SQL("occurred_at desc, id desc" if direction == "next" else "occurred_at, id")


def _keyset(position: tuple[datetime, int] | None, direction: str) -> tuple[sql.Composable, dict]:
    if position is None:
        return sql.SQL("true"), {}
    op = "<" if direction == "next" else ">"
    condition = sql.SQL("(occurred_at, id) {} ({}, {})").format(
        sql.SQL(op), sql.Placeholder("k_at"), sql.Placeholder("k_id")
    )
    return condition, {"k_at": position[0], "k_id": position[1]}


def _split_text(filters: Filters) -> tuple[Filters, Filters]:
    """(the filters without the text search, the text search alone)."""
    rest = tuple(a for a in filters.active if a.param != TEXT_PARAM)
    text = tuple(a for a in filters.active if a.param == TEXT_PARAM)
    return Filters(rest), Filters(text)


def _log_size(conn: psycopg.Connection) -> float:
    """The planner's count of the log's rows (pg_class.reltuples: no scan)."""
    return conn.execute(
        "select greatest(reltuples, 1) from pg_catalog.pg_class"
        " where oid = 'audit.action_log'::regclass"
    ).fetchone()[0]


def _walk_window(words: float, limit: int, total: float) -> int:
    """How many of the newest candidate rows to walk for a text search, or 0 to let the
    full-text index answer.

    The planner's estimate of the rows the words match (EXPLAIN over the GIN index's
    statistics, no execution: ``words``), against the log's size ``total``, says how far down
    the time index the page's rows should lie: ``limit * total / words``. When twice
    that is within ``TEXT_WINDOW`` rows the (sieved) walk wins; beyond it the index does.
    The window, a cap on the walk and not its cost, leaves room for a wrong estimate
    (a prefix's often is). Deeper, a short walk of ``TEXT_PROBE_WALK`` rows still goes
    first: the planner multiplies the words' frequencies as if they were independent,
    and words that come together ("lawruler login": 167,000 matches at 10M, estimated
    15,000) fill a page near the top. Not when the words are rare (the index answers
    those at once).
    """
    expected = limit * total / max(words, 1.0)
    # the sieved walk: ~0.75 µs a row at 10M (time index, heap, sieve), against ~20 ms
    # for the full-text index to intersect two words of 3% each
    if 2 * expected <= TEXT_WINDOW:
        return int(min(4 * expected + limit, TEXT_WINDOW))
    return 0 if words <= TEXT_FEW_MATCHES else TEXT_PROBE_WALK


def _whole_words(text: Filters) -> Filters | None:
    """The text search with its prefix terms left out ("mari* smith": "smith"), when it
    holds both prefixes and whole words; None otherwise. Its rows are a superset of the
    search's: every match of all the terms matches the whole words."""
    (active,) = text.active
    (value,) = active.params.values()
    terms = value.split(" & ")  # as text_query() writes it: 'mari':* & 'smith'
    words = [term for term in terms if not term.endswith(":*")]
    if not words or len(words) == len(terms):
        return None
    # its own parameter name: the whole search is tested beside it (_text_windows)
    return Filters(
        (replace(active, condition=text_match("t_words"), params={"t_words": " & ".join(words)}),)
    )


def _has_prefix(text: Filters) -> bool:
    """Whether the text search holds a prefix term (word*)."""
    return any(":*" in str(value) for a in text.active for value in a.params.values())


_LEXEME = re.compile(r"'([^']*)'(?::\*)?")


def _sieve(conn: psycopg.Connection, text: Filters) -> tuple[sql.Composable, dict]:
    """A cheap necessary condition of the text search for the walk: the lower-cased
    text (``TEXT_LOWER``) holds every word of the query (LIKE '%word%'), tested before
    the exact match so that to_tsvector runs on the few rows that pass.

    Only when PostgreSQL's tsquery is exactly the words as ``text_query`` wrote them
    (one lexeme per word, as typed); otherwise ``true`` (no sieve: the exact test
    alone). One round trip, no table read."""
    (value,) = text.active[0].params.values()
    built = conn.execute(
        "select pg_catalog.to_tsquery('simple', %s)::text", (value,), prepare=False
    ).fetchone()[0]
    if built != value:
        return sql.SQL("true"), {}
    patterns = [
        "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for word in _LEXEME.findall(value)
    ]
    return sql.SQL("{} like all({})").format(TEXT_LOWER, sql.Placeholder("t_sieve")), {
        "t_sieve": patterns
    }


def _text_test(conn: psycopg.Connection, text: Filters) -> tuple[sql.Composable, dict]:
    """The text search as a test of rows already fetched (the walk's window, the time
    windows' rows): the sieve first, to_tsvector only on the rows that pass it."""
    (sieve, sieve_params), (match, match_params) = _sieve(conn, text), text.where()
    return sql.SQL("{} and {}").format(sieve, match), {**sieve_params, **match_params}


def _time_bound(
    conn: psycopg.Connection, position: tuple[datetime, int] | None, direction: str, rows: int
) -> datetime | None:
    """A time about ``rows`` rows past the page's start in ``direction``: the
    occurred_at of the row ``rows`` ids away (ids grow with time, so id distance is a
    cheap measure of rows, read on the primary key). None when the log ends first.
    Only a guess of the window's size: the window itself is a range of occurred_at,
    so the page is exact whatever the ids say."""
    if direction == "next":
        query = sql.SQL(
            "select occurred_at from {log} where id <= coalesce({anchor},"
            " (select max(id) from {log})) - {rows} order by id desc limit 1"
        )
    else:
        query = sql.SQL(
            "select occurred_at from {log} where id >= coalesce({anchor},"
            " (select max(id) from {log})) + {rows} order by id limit 1"
        )
    found = conn.execute(
        query.format(log=LOG, anchor=sql.Placeholder("anchor"), rows=sql.Placeholder("rows")),
        {"anchor": position[1] if position else None, "rows": rows},
        prepare=False,
    ).fetchone()
    return found[0] if found else None


def _text_windows(
    conn: psycopg.Connection,
    cur: psycopg.Cursor,
    filters: Filters,
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
    total: float,
    words: float,
    recheck: Filters | None = None,
) -> list[LogRow]:
    """Up to ``limit`` rows of a text search (whole words) from the full-text index,
    ANDed with a recent window of time that grows until it holds a page.

    The index finds every match of the words at once, but fetching every match from
    the table to sort them by time is the cost (8,000 rows: 60 ms at 10M). A window
    ``occurred_at >= T`` (the time index as a second bitmap, ANDed with the words'
    bitmap) fetches only the matches of the window. T comes from ``_time_bound``: the
    window starts at twice the rows the page should span (the planner's estimate of all
    the filters' matches), and a window that holds too few grows by the density it
    found. Exact: a match outside the window is older than T, and every row of the
    window is T or newer. When the words alone match few rows (``words``, the
    estimate, at most ``TEXT_FEW_MATCHES``), when a window holds none, or at the
    ``TEXT_WINDOW_TRIES``th try, the whole index answers (a MATERIALIZED CTE: left
    alone, the planner walks the time index and runs to_tsvector on every row it
    passes: 400 ms for a word pair in 0.09% of 10M).

    ``recheck``: the whole filters, when ``filters`` search only part of the text (the
    whole words of "mari* smith"): the index and the windows work on ``filters``, and
    ``recheck``'s text search is tested on the rows they bring (its sieve first), sizing
    the windows by its estimate. At 10M, "mari* smith" then takes ~85 ms, most of it the
    index gathering the 281,000 rows of "smith" (a bitmap of every word "mari" starts
    took 185 ms), and "mar* zzz" 2 ms instead of 67.
    """
    where, params = filters.where()
    keyset, keyset_params = _keyset(position, direction)
    outer, outer_params = (
        _text_test(conn, _split_text(recheck)[1]) if recheck is not None else (sql.SQL("true"), {})
    )
    size: float | None = 2 * limit * total / max(estimate(conn, recheck or filters), 1.0)
    if words <= TEXT_FEW_MATCHES or size > TEXT_WINDOW_ROWS_PER_MATCH * words:
        # few matches of the words (each one fetched from the table before any other
        # filter can be tested), or a window so wide that its bitmap would cost more
        # than fetching them all (the other filters leave few): all of them
        size = None
    for tries in itertools.count(1):
        bound = None if size is None else _time_bound(conn, position, direction, int(size))
        window = (
            sql.SQL("true")
            if bound is None
            else sql.SQL(
                "occurred_at >= {}" if direction == "next" else "occurred_at <= {}"
            ).format(sql.Placeholder("w_at"))
        )
        query = sql.SQL(
            "with hits as materialized (select {cols} from {log}"
            " where {where} and {keyset} and {window})"
            " select {cols} from hits where {outer} order by {order} limit {limit}"
        ).format(
            cols=_columns(LIST_COLUMNS),
            log=LOG,
            where=where,
            keyset=keyset,
            window=window,
            outer=outer,
            order=_order(direction),
            limit=sql.Literal(limit),
        )
        rows = cur.execute(
            query, {**params, **keyset_params, **outer_params, "w_at": bound}, prepare=False
        ).fetchall()
        if bound is None or len(rows) >= limit:
            return rows
        # too few in the window: grow it by the density found; none found (rarer near
        # the top than the estimate said) or the last try: the whole index
        if not rows or tries + 1 >= TEXT_WINDOW_TRIES:
            size = None
        else:
            size *= max(2.0, 2.0 * limit / len(rows))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _planner(conn: psycopg.Connection, **settings: str) -> Iterator[None]:
    """Planner settings for the statements of the block only: set local, then put back
    (a SET LOCAL would outlive the block in a caller's transaction)."""
    names = list(settings)
    previous = conn.execute(
        sql.SQL("select {}").format(
            sql.SQL(", ").join(
                sql.SQL(
                    "pg_catalog.current_setting({}), pg_catalog.set_config({}, {}, true)"
                ).format(sql.Literal(name), sql.Literal(name), sql.Literal(value))
                for name, value in settings.items()
            )
        )
    ).fetchone()[0::2]
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            conn.execute(
                sql.SQL("select {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("pg_catalog.set_config({}, {}, true)").format(
                            sql.Literal(name), sql.Literal(old)
                        )
                        for name, old in zip(names, previous)
                    )
                )
            )


# -- rare combinations of the low-cardinality filters ------------------------------------

#: The key columns of action_log_kind_idx (triggers/13_viewer_indexes.sql), in order,
#: and the closed vocabularies of the first three (resource_type, last, is open).
KIND_COLUMNS = ("actor_type", "action_type", "source", "resource_type")
KIND_PARAMS = {
    "actor_type": "actor_type",
    "action_type": "action_type",
    "source": "source",
    "resource": "resource_type",
}
_VOCABULARY = {
    "actor_type": [m.value for m in ActorType],
    "action_type": [m.value for m in ActionType],
    "source": [m.value for m in Source],
}
KIND_PROBE_LIMIT = 1_000  # more matches than this: the time walk finds a page at once
ACTOR_PARAM = "actor"
#: the filters action_log_actor_idx answers alone (its keys, and source INCLUDEd)
ACTOR_SOURCE_PARAMS = ("actor", "source", "from", "to")


def _kind_branches(filters: Filters) -> list[sql.Composable]:
    """The low-cardinality filters as quals on the leading columns of
    action_log_kind_idx: every key column up to the last filtered one gets a condition
    (an unfiltered one: any value of its vocabulary), so each branch is a few exact
    descents into the index. An unfiltered source before a filtered resource_type
    needs two branches (a value, or null). [] when no such filter is set."""
    kind = {KIND_PARAMS[a.param]: a for a in filters.active if a.param in KIND_PARAMS}
    if not kind:
        return []
    last = max(KIND_COLUMNS.index(column) for column in kind)
    branches: list[list[sql.Composable]] = [[]]
    for column in KIND_COLUMNS[: last + 1]:
        if column in kind:
            branches = [b + [kind[column].condition] for b in branches]
            continue
        any_value = sql.SQL("{} = any({}::text[])").format(
            sql.Identifier(column), sql.Literal(_VOCABULARY[column])
        )
        if column == "source":  # null: a direct database change
            branches = [b + [any_value] for b in branches] + [
                b + [sql.SQL("source is null")] for b in branches
            ]
        else:
            branches = [b + [any_value] for b in branches]
    return [sql.SQL("({})").format(sql.SQL(" and ").join(b)) for b in branches]


def _kind_probe(conn: psycopg.Connection, filters: Filters, branches: list[sql.Composable]) -> int:
    """How many rows (at most KIND_PROBE_LIMIT + 1) the low-cardinality filters match,
    counted on action_log_kind_idx alone (an index-only scan: a few descents, and at
    most KIND_PROBE_LIMIT + 1 entries read however common the combination is). The
    planner, which multiplies the filters' frequencies as if independent, would walk
    the table instead, so the other scans are priced out here (and JIT, which their
    disabled cost would set off). The time walk, left open, prices far above it."""
    params: dict = {}
    for a in filters.active:
        if a.param in KIND_PARAMS:
            params.update(a.params)
    probe = sql.SQL("select count(*) from ({} limit {}) p").format(
        sql.SQL(" union all ").join(
            sql.SQL("select 1 from {} where {}").format(LOG, b) for b in branches
        ),
        sql.Literal(KIND_PROBE_LIMIT + 1),
    )
    with _planner(conn, enable_seqscan="off", enable_bitmapscan="off", jit="off"):
        return conn.execute(probe, params, prepare=False).fetchone()[0]


def _probed(filters: Filters) -> list[sql.Composable]:
    """The kind index branches of filters that the probe steers (low-cardinality
    filters, perhaps with dates, but no actor and no text search); [] for others."""
    if any(a.param in (ACTOR_PARAM, TEXT_PARAM) for a in filters.active):
        return []
    return _kind_branches(filters)


def kind_probe(conn: psycopg.Connection, filters: Filters) -> int | None:
    """The probe's count for filters it steers (see ``_kind_probe``), else None."""
    branches = _probed(filters)
    return _kind_probe(conn, filters, branches) if branches else None


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
    keyset, keyset_params = _keyset(position, direction)
    cur = conn.cursor(row_factory=class_row(LogRow))
    actor = filters.get(ACTOR_PARAM)
    branches = _probed(filters)
    if branches:
        found = _kind_probe(conn, filters, branches) if probe is None else probe
        if found == 0:
            return []
        if found <= KIND_PROBE_LIMIT:
            # a rare combination: its few rows through action_log_kind_idx, then sorted
            # (the time walk would pass nearly every row of the log to find them)
            where, params = filters.where()
            query = sql.SQL(
                "with hits as materialized (select {cols} from {log}"
                " where ({branches}) and {where} and {keyset})"
                " select {cols} from hits order by {order} limit {limit}"
            ).format(
                cols=_columns(LIST_COLUMNS),
                log=LOG,
                branches=sql.SQL(" or ").join(branches),
                where=where,
                keyset=keyset,
                order=_order(direction),
                limit=sql.Literal(limit),
            )
            with _planner(conn, enable_seqscan="off", enable_indexscan="off", jit="off"):
                return cur.execute(query, {**params, **keyset_params}, prepare=False).fetchall()
        # common: the time walk below finds a page's rows within a few thousand entries
    if (
        actor is not None
        and actor.value.startswith("id:")
        and filters.get("source")
        and all(a.param in ACTOR_SOURCE_PARAMS for a in filters.active)
    ):
        # an actor and a source: the page's ids from action_log_actor_idx alone (it
        # INCLUDEs source: an index-only scan tests it without a heap fetch for each of
        # the actor's rows, which a source they never use would take), then those rows
        where, params = filters.where()
        query = sql.SQL(
            "select {cols} from {log} where id = any(array(select id from {log}"
            " where {where} and {keyset} order by {order} limit {limit}))"
            " order by {order}"
        ).format(
            cols=_columns(LIST_COLUMNS),
            log=LOG,
            where=where,
            keyset=keyset,
            order=_order(direction),
            limit=sql.Literal(limit),
        )
        return cur.execute(query, {**params, **keyset_params}, prepare=False).fetchall()
    if filters.get(TEXT_PARAM):
        return _text_rows(conn, cur, filters, position, direction, limit)
    return _planned_rows(cur, filters, keyset, keyset_params, direction, limit)


def _planned_rows(
    cur: psycopg.Cursor,
    filters: Filters,
    keyset: sql.Composable,
    keyset_params: dict,
    direction: str,
    limit: int,
) -> list[LogRow]:
    """``fetch_rows`` on the planner's own plan: every filter in one WHERE, in page order."""
    where, params = filters.where()
    query = sql.SQL(
        "select {cols} from {log} where {where} and {keyset} order by {order} limit {limit}"
    ).format(
        cols=_columns(LIST_COLUMNS),
        log=LOG,
        where=where,
        keyset=keyset,
        order=_order(direction),
        limit=sql.Literal(limit),
    )
    return cur.execute(query, {**params, **keyset_params}, prepare=False).fetchall()


def _text_rows(
    conn: psycopg.Connection,
    cur: psycopg.Cursor,
    filters: Filters,
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
) -> list[LogRow]:
    """``fetch_rows`` for a text search: the sieved walk when the page's rows should lie
    near the top, else the full-text index (in time windows for whole words)."""
    keyset, keyset_params = _keyset(position, direction)
    rest, text = _split_text(filters)
    total = _log_size(conn)
    words = estimate(conn, text)
    window = _walk_window(words, limit, total)
    if window:
        # a common word: walk the newest candidates (time or composite index) through a
        # bounded window; on those rows, the sieve first, then the words themselves
        rest_where, rest_params = rest.where()
        test, test_params = _text_test(conn, text)
        query = sql.SQL(
            "select {cols} from (select {cols} from {log} where {rest} and {keyset}"
            " order by {order} limit {window}) w"
            " where {test} order by {order} limit {limit}"
        ).format(
            cols=_columns(LIST_COLUMNS),
            log=LOG,
            rest=rest_where,
            keyset=keyset,
            order=_order(direction),
            window=sql.Literal(window),
            test=test,
            limit=sql.Literal(limit),
        )
        rows = cur.execute(
            query, {**rest_params, **test_params, **keyset_params}, prepare=False
        ).fetchall()
        if len(rows) >= limit:
            return rows
        # the window held too few (chance, or the other filters thin the candidates)
    if not _has_prefix(text):
        return _text_windows(conn, cur, filters, position, direction, limit, total, words)
    whole = _whole_words(text)
    if whole is not None:
        # prefixes beside whole words ("mari* smith"): the index gathers the whole
        # words alone, in time windows, and the prefixes are tested on their rows
        narrowed = Filters(rest.active + whole.active)
        return _text_windows(
            conn,
            cur,
            narrowed,
            position,
            direction,
            limit,
            total,
            estimate(conn, whole),
            recheck=filters,
        )
    # prefixes only, with few matches near the top: the planner's own plan. The
    # full-text index gathers every word a prefix starts into a bitmap before anything
    # else (mar*: a million entries, 150 to 350 ms at 10M), so neither the windows nor
    # gathering every match (over 5 s for "mar* smi*") are better
    return _planned_rows(cur, filters, keyset, keyset_params, direction, limit)


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
    with translate_errors(), conn.transaction():
        probe = kind_probe(conn, filters)
        fetched = fetch_rows(conn, filters, position, direction, size + 1, probe=probe)
        more = len(fetched) > size
        rows = fetched[:size]
        if direction == "prev":
            if not more:
                return list_page(conn, filters, None, "next", size)
            rows.reverse()
            next_cursor, prev_cursor = rows[-1].cursor, rows[0].cursor
        else:
            next_cursor = rows[-1].cursor if more and rows else None
            prev_cursor = rows[0].cursor if position is not None and rows else None
        if position is None and not more:
            count = _count_words(len(rows))
        else:
            count = count_text(conn, filters, seen=len(rows), probe=probe)
    return Page(rows, next_cursor, prev_cursor, count)


# -- counting without counting ---------------------------------------------------------------


def _count_words(n: int) -> str:
    return "No actions" if n == 0 else f"{n:,} action" + ("" if n == 1 else "s")


def about(n: float) -> str:
    """A rounded count for people: "about 1.2 million actions", "about 45,000 actions"."""
    if n >= 1_000_000:
        return f"about {n / 1_000_000:.1f} million actions".replace(".0 million", " million")
    digits = len(str(int(n))) - 2
    rounded = int(round(n, -digits)) if digits > 0 else int(n)
    return f"about {rounded:,} actions"


def estimate(conn: psycopg.Connection, filters: Filters) -> float:
    """The planner's estimate of the rows matching ``filters`` (EXPLAIN, nothing runs)."""
    where, params = filters.where()
    query = sql.SQL("explain (format json) select 1 from {} where {}").format(LOG, where)
    plan = conn.execute(query, params, prepare=False).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


COUNT_PROBE_MS = 20  # the most an exact count may cost

# lower this transaction's statement_timeout to the cap (never raise it); the old value
# is returned, to be put back (SET LOCAL outlives a released savepoint)
PROBE_TIMEOUT = """
select old, set_config('statement_timeout',
  case when old::interval = '0'::interval or old::interval > %(cap)s::text::interval
       then %(cap)s::text else old end, true)
from (select pg_catalog.current_setting('statement_timeout') as old) s
"""


def count_text(
    conn: psycopg.Connection, filters: Filters, seen: int = 0, *, probe: int | None = None
) -> str:
    """ "12 actions" (exact, when few), "about 1.2 million actions", or "50+ actions".

    The planner estimates first (cheap). Only when it expects at most 1,000 rows does a
    probe count them, capped at 1,001 rows and at ``COUNT_PROBE_MS`` (a local
    statement_timeout): a filter whose rows are rare but spread over the whole log would
    otherwise walk far more than its page did. Past the cap: the estimate, or "N+
    actions" from the ``seen`` rows the page already found. The whole table is never
    counted. Low-cardinality filters alone are counted by the kind probe first (exact up
    to ``KIND_PROBE_LIMIT``; ``probe``: its count, when the caller has it already).
    """
    if filters and all(a.param in KIND_PARAMS for a in filters.active):
        # low-cardinality filters only: the probe counts a rare combination exactly
        # (the planner, multiplying their frequencies, may guess thousands for none)
        found = kind_probe(conn, filters) if probe is None else probe
        if found <= KIND_PROBE_LIMIT:
            return _count_words(found)
    expected = estimate(conn, filters)
    if expected > EXACT_COUNT_LIMIT:
        return about(expected)
    where, params = filters.where()
    probe = sql.SQL("select count(*) from (select 1 from {} where {} limit {}) p").format(
        LOG, where, sql.Literal(EXACT_COUNT_LIMIT + 1)
    )
    try:
        with conn.transaction():
            previous = conn.execute(PROBE_TIMEOUT, {"cap": f"{COUNT_PROBE_MS}ms"}).fetchone()[0]
            found = conn.execute(probe, params, prepare=False).fetchone()[0]
            conn.execute("select set_config('statement_timeout', %s, true)", (previous,))
    except psycopg.errors.QueryCanceled:
        return f"{seen:,}+ actions" if seen else "Many actions"
    if found <= EXACT_COUNT_LIMIT:
        return _count_words(found)
    return f"{EXACT_COUNT_LIMIT:,}+ actions"


# -- one action --------------------------------------------------------------------------------

MAX_ID = 2**63 - 1


def parse_action_id(value: object) -> int:
    """An action id from a URL: a positive bigint, or BadRequest."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 0 < int(text) <= MAX_ID:
        raise BadRequest(f"the action id is {text[:30]!r}; expected a positive whole number")
    return int(text)


def get_action(conn: psycopg.Connection, action_id: int | str) -> Action | None:
    """Every column of one action, or None when there is no such action."""
    action_id = parse_action_id(action_id)
    query = sql.SQL("select {} from {} where id = %s").format(_columns(ACTION_COLUMNS), LOG)
    with translate_errors(), conn.transaction():
        cur = conn.cursor(row_factory=class_row(Action))
        return cur.execute(query, (action_id,)).fetchone()


def _is_diff(changes: Any) -> bool:
    return (
        isinstance(changes, dict)
        and bool(changes)
        and all(isinstance(v, dict) and set(v) == {"old", "new"} for v in changes.values())
    )


def change_rows(action: Action) -> list[tuple[str, object, object]]:
    """What changed, as (column, old, new) rows for the detail table.

    A single-row update: its changed columns, old and new. A create: the new row
    (old None). A delete: the old row (new None). Events, bulk summaries and batches:
    their ``changes`` keys, with old None. Redacted values stay "[redacted]".
    """
    changes = action.changes
    if not isinstance(changes, dict):
        return [] if changes is None else [("value", None, changes)]
    single = action.row_count == 1 and action.operation is not None
    if single and action.operation == "UPDATE" and _is_diff(changes):
        return [(col, v["old"], v["new"]) for col, v in changes.items()]
    if single and action.operation == "DELETE":
        return [(col, value, None) for col, value in changes.items()]
    return [(col, None, value) for col, value in changes.items()]


# -- an action's items -------------------------------------------------------------------------


@dataclass
class Item:
    """One row an action affected (audit.action_items)."""

    item_no: int
    resource_type: str | None
    resource_id: str | None
    old: Any
    new: Any
    label: str | None = None  # the row's label column, when the item holds it (items_page)

    def change_rows(self) -> list[tuple[str, object, object]]:
        """(column, old, new) over the columns in old or new."""
        old, new = self.old or {}, self.new or {}
        columns = list(dict.fromkeys([*old, *new]))
        return [
            (
                c,
                old.get(c) if self.old is not None else None,
                new.get(c) if self.new is not None else None,
            )
            for c in columns
        ]


@dataclass
class ItemsPage:
    """A window of an action's items; ``next_after``/``prev_after`` are the ``after``
    values of the neighbouring windows (None where there is none)."""

    items: list[Item]
    next_after: int | None
    prev_after: int | None


def _label_columns(conn: psycopg.Connection) -> dict[str, str]:
    """The label column of each tracked resource type (audit.tracked_table.label_column)."""
    return dict(
        conn.execute(
            "select resource_type, min(label_column) from audit.tracked_table"
            " where label_column is not null group by resource_type"
        ).fetchall()
    )


def item_label(item: Item, column: str | None) -> str | None:
    """What names the item's row, as the list names a single-row action: the value of
    its table's label column in the row the item holds (a created or deleted row; an
    update's item holds it only when it changed). None when absent, redacted or not a
    plain value."""
    row = item.new if item.new is not None else item.old
    if column is None or not isinstance(row, dict):
        return None
    value = row.get(column)
    if value is None or isinstance(value, (dict, list, bool)) or value == REDACTED:
        return None
    return str(value)


def items_page(
    conn: psycopg.Connection, action_id: int | str, after: int = 0, size: int = 50
) -> ItemsPage:
    """Items ``after + 1`` .. ``after + size`` of an action, through
    audit.action_items(action_id, first_item, max_items), which reads only the chunks
    that overlap the window."""
    action_id = parse_action_id(action_id)
    if not isinstance(after, int) or not 0 <= after < 2**31 - MAX_SIZE - 1:
        raise BadRequest(f"the item position is {after!r}; expected a whole number from 0")
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise BadRequest(f"the item page size is {size!r}; expected 1 to {MAX_SIZE}")
    with translate_errors(), conn.transaction():
        cur = conn.cursor(row_factory=class_row(Item))
        items = cur.execute(
            "select item_no, resource_type, resource_id, old, new"
            " from audit.action_items(%s, %s, %s)",
            (action_id, after + 1, size + 1),
        ).fetchall()
        if items:
            columns = _label_columns(conn)
            for item in items:
                item.label = item_label(item, columns.get(item.resource_type))
    more = len(items) > size
    return ItemsPage(
        items[:size], after + size if more else None, max(after - size, 0) if after > 0 else None
    )


# -- exports (in their own module; named here as the contract has it) --------------------------

from audit_capture.viewer.export import EXPORT_COLUMNS, export_csv, export_json  # noqa: E402,F401
