"""Text search, steered: the newest page of matches without fetching every match.

The full-text index finds every match at once, but the page wants only the newest 50,
and gathering every match of the words (a 332,000-entry posting list for "smith" at
10M: 32 ms) and fetching them from the table to sort them is the cost. So, by the
planner's estimate of how deep the page's rows lie: within ``TEXT_WINDOW`` rows of the
top (a common word, or prefixes), a walk of the newest candidates tests a cheap sieve
first (the lower-cased text holds each word: ``filters.TEXT_LOWER``) and to_tsvector only
on the rows that pass it; deeper, whole words are asked of the index for the newest days
first (its second column holds each action's day and month: ``time_window``), days
further back until a page is found. Prefixes beside whole words ("mari* smith") search
the whole words that way and test the prefixes on the rows found; prefixes alone past
the walk keep the planner's own plan (the index gathers every word a prefix starts
before anything else: 150 ms and more for ``mar*`` at 10M).

On the log partitioned by month, the walk reads the newest two months first
(``recent``), an actor with few rows is walked and counted in one statement, and a
busy actor's probe is the newest days of the index rather than a walk of its branches
in every month (``_walk``, ``_probe_in_days``).

``text_rows`` is the entry point (``pages.fetch_rows`` calls it for a ``q`` filter).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from audit_capture.viewer.filters import TEXT_LOWER, TEXT_PARAM, Filters, text_match
from audit_capture.viewer.planner import estimate, estimate_within, log_size, planner_settings
from audit_capture.viewer.recent import (
    ANY_TIME,
    before,
    recent_floor,
    recent_months_start,
    recent_span,
    since,
)
from audit_capture.viewer.rows import (
    LIST_COLUMNS,
    LOG,
    LogRow,
    actor_branches,
    actor_rows,
    column_list,
    keyset_condition,
    one_row,
    order_by,
    planned_rows,
)
from audit_capture.viewer.time_window import TIME_BUCKETS, buckets, day_start, utc_day

TEXT_WINDOW = 40_000  # most rows of the (sieved) time walk tried before the full-text index
# the most rows the first window of days spans, however rare the planner believes the
# search: it believes an actor's text search rare (an actor outside its statistics), and
# a window over most of the log gathers the words' matches of all of it
TEXT_FIRST_WINDOW = 1_000_000
TEXT_WINDOW_TRIES = 3  # the try at which the windows give way to the rest of the log
TEXT_FEW_MATCHES = 3_000  # estimated matches few enough to fetch and sort them all (an
# absent word is estimated at ~2,800 at 10M: the rarest common word's frequency, halved)
# a prefix the planner expects in more rows is never asked of the index (_index_terms)
PREFIX_GATHER_LIMIT = 20_000
TEXT_PROBE_WALK = 5_000  # the short walk tried before the full-text index (~4 ms at 10M)


def split_text(filters: Filters) -> tuple[Filters, Filters]:
    """(the filters without the text search, the text search alone)."""
    rest = tuple(a for a in filters.active if a.param != TEXT_PARAM)
    text = tuple(a for a in filters.active if a.param == TEXT_PARAM)
    return Filters(rest), Filters(text)


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


def _term_estimate(conn: psycopg.Connection, text: Filters, term: str) -> float:
    """The planner's estimate of the rows one term of the search matches ("'mar':*")."""
    (active,) = text.active
    alone = replace(active, condition=text_match("t_term"), params={"t_term": term})
    return estimate(conn, Filters((alone,)))


def _index_terms(conn: psycopg.Connection, text: Filters) -> Filters | None:
    """What of a search the index should gather: its whole words and the prefixes the
    planner expects in at most ``PREFIX_GATHER_LIMIT`` rows (a search of whole words
    only is ``text`` itself, with no estimate read).

    The index gathers every word a prefix starts before the first match comes out, and
    a statement_timeout does not interrupt that: ``mar*`` is over a million entries
    (150-350 ms at 10M), ``zeb*`` 2,300. So "mari* smith" asks the index for "smith"
    and tests "mari*" on its rows, and "zeb* smi*" asks for "zeb*" alone. Returns
    ``text`` itself when every term is cheap, the cheap terms as a search of their own
    (its own parameter name; its rows are a superset of the search's) when only some
    are, and None when none is (the planner's own plan: such prefixes are common, and
    the walk of the newest rows finds them)."""
    (active,) = text.active
    terms = _tsquery(text).split(" & ")  # as text_query() writes it: 'mari':* & 'smith'
    cheap = [
        term
        for term in terms
        if not term.endswith(":*") or _term_estimate(conn, text, term) <= PREFIX_GATHER_LIMIT
    ]
    if not cheap:
        return None
    if len(cheap) == len(terms):
        return text
    return Filters(
        (replace(active, condition=text_match("t_words"), params={"t_words": " & ".join(cheap)}),)
    )


def _tsquery(text: Filters) -> str:
    """The tsquery of the text search alone (``text_query``'s, the q filter's one
    parameter)."""
    (value,) = text.active[0].params.values()
    return str(value)


_LEXEME = re.compile(r"'([^']*)'(?::\*)?")


def _sieve(conn: psycopg.Connection, text: Filters) -> tuple[sql.Composable, dict]:
    """A cheap necessary condition of the text search for the walk: the lower-cased
    text (``TEXT_LOWER``) holds every word of the query (LIKE '%word%'), tested before
    the exact match so that to_tsvector runs on the few rows that pass.

    Only when PostgreSQL's tsquery is exactly the words as ``text_query`` wrote them
    (one lexeme per word, as typed); otherwise ``true`` (no sieve: the exact test
    alone). One round trip, no table read."""
    value = _tsquery(text)
    built = one_row(
        conn.execute("select pg_catalog.to_tsquery('simple', %s)::text", (value,), prepare=False)
    )[0]
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
    conn: psycopg.Connection, anchor: int, direction: str, rows: int
) -> datetime | None:
    """A time about ``rows`` rows past the page's start (the action ``anchor``) in
    ``direction``: the occurred_at of the row ``rows`` ids away (ids grow with time, so
    id distance is a cheap measure of rows, read on the primary key). None when the log
    ends first. Only a guess of the window's size: the window itself is a set of whole
    days, so the page is exact whatever the ids say."""
    if direction == "next":
        query = sql.SQL(
            "select occurred_at from {log} where id <= {edge} and {span} order by id desc limit 1"
        )
    else:
        query = sql.SQL(
            "select occurred_at from {log} where id >= {edge} and {span} order by id limit 1"
        )
    edge = anchor - rows if direction == "next" else anchor + rows
    # in the newest two months first (``recent``: only their partitions planned), as a
    # guess is enough; in the whole log when the edge lies before them
    for span, params in (since(recent_months_start()), ANY_TIME):
        found = conn.execute(
            query.format(log=LOG, edge=sql.Placeholder("edge"), span=span),
            {"edge": edge, **params},
            prepare=False,
        ).fetchone()
        if found:
            return found[0]
    return None


def _page_start(
    conn: psycopg.Connection, position: tuple[datetime, int] | None
) -> tuple[datetime, int] | None:
    """Where the page starts: the cursor's time and id, or for the first page the newest
    time and the highest id (None: an empty log), read together: in the newest two
    months (``recent``; their two partitions planned and read, not every month's),
    in the whole log when they hold no action."""
    if position is not None:
        return position
    newest_sql = sql.SQL("select max(occurred_at), max(id) from {} where {}")
    for span, params in (since(recent_months_start()), ANY_TIME):
        newest = one_row(conn.execute(newest_sql.format(LOG, span), params, prepare=False))
        if newest[0] is not None:
            return newest[0], newest[1]
    return None


class _DaysBack:
    """The windows of a text search, one after the other: sets of whole UTC days
    starting at the page's day, each further back than the last (forward, for
    ``prev``), never a day twice, and at last the rest of the log.

    ``edge`` is the first day the next window may take. ``take(rows)`` gives the next
    window reaching about ``rows`` rows past the page's start (``_time_bound``), at
    least one day; ``rest()`` every day past the windows taken."""

    def __init__(
        self, conn: psycopg.Connection, position: tuple[datetime, int] | None, direction: str
    ):
        self.conn, self.direction = conn, direction
        self.start = _page_start(conn, position)
        self.edge = None if self.start is None else utc_day(self.start[0])

    @property
    def empty(self) -> bool:
        return self.edge is None

    def take(self, rows: float) -> tuple[sql.Composable, dict] | None:
        """The next window, or None when the log ends within ``rows`` (take ``rest()``)."""
        assert self.edge is not None
        assert self.start is not None
        bound = _time_bound(self.conn, self.start[1], self.direction, int(rows))
        if bound is None:
            return None
        if self.direction == "next":
            low, high = min(utc_day(bound), self.edge), self.edge
            self.edge = low - timedelta(days=1)
        else:
            low, high = self.edge, max(utc_day(bound), self.edge)
            self.edge = high + timedelta(days=1)
        # the days' numbers find the window in the text index; the same days as a range
        # of occurred_at let the planner skip the months (partitions) outside it
        condition = sql.SQL(
            "{} && {}::integer[] and occurred_at >= {} and occurred_at < {}"
        ).format(
            TIME_BUCKETS,
            sql.Placeholder("w_days"),
            sql.Placeholder("w_from"),
            sql.Placeholder("w_to"),
        )
        return condition, {
            "w_days": buckets(low, high),
            "w_from": day_start(low),
            "w_to": day_start(high + timedelta(days=1)),
        }

    def rest(self) -> tuple[sql.Composable, dict]:
        """Every day past the windows taken: older (newer, for ``prev``) actions."""
        assert self.edge is not None
        if self.direction == "next":
            condition = sql.SQL("occurred_at < {}").format(sql.Placeholder("w_edge"))
            return condition, {"w_edge": day_start(self.edge + timedelta(days=1))}
        condition = sql.SQL("occurred_at >= {}").format(sql.Placeholder("w_edge"))
        return condition, {"w_edge": day_start(self.edge)}


def _window_rows(
    cur: psycopg.Cursor[LogRow],
    filters: Filters,
    window: sql.Composable,
    window_params: dict,
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
    recheck: tuple[sql.Composable, dict],
) -> list[LogRow]:
    """Up to ``limit`` rows of ``filters`` inside ``window``, in page order: the index
    gathers the window's matches (a MATERIALIZED CTE: left alone, the planner may walk
    the time index and run to_tsvector on every row it passes, 400 ms for a word pair in
    0.09% of 10M), ``recheck`` tests them, and they are sorted."""
    where, params = filters.where()
    keyset, keyset_params = keyset_condition(position, direction)
    outer, outer_params = recheck
    query = sql.SQL(
        "with hits as materialized (select {cols} from {log}"
        " where {where} and {keyset} and {window})"
        " select {cols} from hits where {outer} order by {order} limit {limit}"
    ).format(
        cols=column_list(LIST_COLUMNS),
        log=LOG,
        where=where,
        keyset=keyset,
        window=window,
        outer=outer,
        order=order_by(direction),
        limit=sql.Literal(limit),
    )
    return cur.execute(
        query, {**params, **keyset_params, **outer_params, **window_params}, prepare=False
    ).fetchall()


def _text_windows(
    conn: psycopg.Connection,
    cur: psycopg.Cursor[LogRow],
    filters: Filters,
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
    total: float,
    recheck: Filters | None = None,
    first: float | None = None,
) -> list[LogRow]:
    """Up to ``limit`` rows of a text search (whole words) from the full-text index, the
    newest days first.

    The index holds each action's day and month beside its words
    (``audit.time_buckets``; ``time_window`` says how they are numbered), so "these
    words on these days" is one index scan that decodes only those days' entries: at
    10M, "maria smith" over the last 9 days takes 3 ms where all its matches took 32 ms
    just to gather. The first window (``_DaysBack``) starts at the page's day and reaches
    back about twice the rows the page should span (the planner's estimate of all the
    filters' matches), in whole days; when it holds too few, the next window takes the
    days before it (the rows found so far are all newer than the next window's), grown
    by the density found, and at the ``TEXT_WINDOW_TRIES``th window, or when the log
    ends, the rest of the log (every older match, the words alone). Exact: a window is a
    set of whole days, and each one's rows are older than the previous one's (newer,
    for ``prev``).

    ``recheck``: the whole filters, when ``filters`` search only part of the text (the
    whole words of "mari* smith"): the windows work on ``filters``, and ``recheck``'s text
    search is tested on the rows they bring (its sieve first), sizing the windows by its
    estimate ("mar* zzz": 2 ms instead of 67 at 10M).

    ``first``: at most this many rows in the first window (``_probe_in_days``).
    """
    test = (
        _text_test(conn, split_text(recheck)[1]) if recheck is not None else (sql.SQL("true"), {})
    )
    days = _DaysBack(conn, position, direction)
    if days.empty:
        return []
    planned = min(
        2 * limit * total / max(estimate(conn, recheck or filters), 1.0), TEXT_FIRST_WINDOW
    )
    # the probe's days go first when they are fewer, then the windows as planned
    sizes = [first, planned] if first is not None and first < planned else [planned]
    windows_left = TEXT_WINDOW_TRIES - 2 + len(sizes)  # windows before the rest of the log
    found: list[LogRow] = []
    size = planned
    while True:
        # too few so far: the next window reaches further by the density found so far
        size = sizes.pop(0) if sizes else size * max(2.0, 2.0 * limit / max(len(found), 1))
        window = None if windows_left <= 0 or size >= total else days.take(size)
        if window is None:
            # the rest of the log: every match of the words older (newer) than the windows
            condition, params = days.rest()
            return found + _window_rows(
                cur, filters, condition, params, position, direction, limit - len(found), test
            )
        windows_left -= 1
        condition, params = window
        found += _window_rows(
            cur, filters, condition, params, position, direction, limit - len(found), test
        )
        if len(found) >= limit:
            return found


def _newest_candidates(
    rest: Filters,
    keyset: sql.Composable,
    keyset_params: dict,
    direction: str,
    window: int,
    *,
    gather: bool = False,
) -> tuple[sql.Composed, dict]:
    """The statement of the newest ``window`` rows of the other filters, in page order,
    for the walk. An actor with an id is read along action_log_actor_source_idx, one
    branch per source merged in page order (``rows.actor_branches``): ordered by time
    alone, PostgreSQL would sort every one of a busy actor's rows. ``gather``: the
    branches in two parts (``rows.actor_rows``), for a walk that reads every candidate
    anyway (``_counted_walk``)."""
    branches = actor_branches(rest)
    if branches is None:
        where, params = rest.where()
        return sql.SQL(
            "select {cols} from {log} where {where} and {keyset} order by {order} limit {window}"
        ).format(
            cols=column_list(LIST_COLUMNS),
            log=LOG,
            where=where,
            keyset=keyset,
            order=order_by(direction),
            window=sql.Literal(window),
        ), {**params, **keyset_params}
    return actor_rows(
        branches, column_list(LIST_COLUMNS), keyset, keyset_params, direction, window, gather=gather
    )


def _walk(
    conn: psycopg.Connection,
    cur: psycopg.Cursor[LogRow],
    rest: Filters,
    text: Filters,
    position: tuple[datetime, int] | None,
    direction: str,
    window: int,
    limit: int,
) -> list[LogRow] | None:
    """The page from a walk of the newest ``window`` candidates (the rows of the other
    filters), or None when the walk did not find it.

    When the planner expects at most twice the window of candidates (an actor with few
    rows), every one is walked and counted in the same statement: fewer than the window
    walked means the rows found are all there are. Otherwise the walk reads the newest
    two months first (``recent``: a month's partition is planned and opened only when
    read), and goes on into the older months only when the planner expects fewer than
    the window's candidates in the newest two (a quiet log; a filter of old rows):
    else the walk of them was the whole walk."""
    keyset, keyset_params = keyset_condition(position, direction)
    test, test_params = _text_test(conn, text)
    if rest and estimate(conn, rest) <= 2 * window:
        # every candidate is read: in two parts (each planned on every month), each
        # actor and source in index order (``pages.actor_page`` says why not sorted)
        candidates, rest_params = _newest_candidates(
            rest, keyset, keyset_params, direction, window, gather=True
        )
        with planner_settings(conn, enable_sort="off"):
            rows, walked = _counted_walk(
                conn, candidates, {**rest_params, **test_params}, test, direction, limit
            )
        return rows if len(rows) >= limit or walked < window else None

    def walk(span: sql.Composable, span_params: dict, limit: int) -> list[LogRow]:
        within = sql.SQL("{} and {}").format(keyset, span)
        candidates, rest_params = _newest_candidates(rest, within, keyset_params, direction, window)
        query = sql.SQL(
            "select {cols} from ({candidates}) w where {test} order by {order} limit {limit}"
        ).format(
            cols=column_list(LIST_COLUMNS),
            candidates=candidates,
            test=test,
            order=order_by(direction),
            limit=sql.Literal(limit),
        )
        params = {**rest_params, **span_params, **test_params}
        return cur.execute(query, params, prepare=False).fetchall()

    floor = recent_floor(position, direction)
    if floor is None:
        rows = walk(*ANY_TIME, limit)
        return rows if len(rows) >= limit else None
    recent = recent_span(conn, floor)
    rows = walk(*recent, limit)
    if len(rows) < limit and estimate_within(conn, rest, recent) < window:
        rows += walk(*before(floor), limit - len(rows))
    return rows if len(rows) >= limit else None


def _counted_walk(
    conn: psycopg.Connection,
    candidates: sql.Composable,
    params: dict,
    test: sql.Composable,
    direction: str,
    limit: int,
) -> tuple[list[LogRow], int]:
    """The rows of ``candidates`` (all of them walked) that pass ``test``, up to
    ``limit`` in page order, and how many candidates there were: one statement (an
    actor's read is planned on every month)."""
    query = sql.SQL(
        "with walk as materialized ({candidates})"
        " select {cols}, n.walked from (select count(*) as walked from walk) n"
        " left join lateral (select {cols} from walk where {test} order by {order}"
        " limit {limit}) r on true order by {order}"
    ).format(
        candidates=candidates,
        cols=column_list(LIST_COLUMNS),
        test=test,
        order=order_by(direction),
        limit=sql.Literal(limit),
    )
    found = conn.execute(query, params, prepare=False).fetchall()
    walked = found[0][-1]
    return [LogRow(*row[:-1]) for row in found if row[0] is not None], walked


def _probe_in_days(
    conn: psycopg.Connection, rest: Filters, index: Filters | None, window: int, total: float
) -> float | None:
    """The rows of the log the first window of days spans when it takes the place of
    the probe walk (``_walk_window``), or None to walk.

    A probe of a busy actor (more candidates than twice the window) walks its branches
    in every month they are read in (``rows.actor_branches``): 15-25 ms at 10M for
    ``TEXT_PROBE_WALK`` rows, most of it planning and opening them. The newest days
    that hold the actor's probe rows (the probe's share of the actor's rows, of the
    whole log) are the same test at the text index's cost, when the index answers the
    search (``index``); and the windows after it are the ones the walk would have
    fallen back to."""
    if window != TEXT_PROBE_WALK or index is None or actor_branches(rest) is None:
        return None
    candidates = estimate(conn, rest)
    if candidates <= 2 * window:
        return None
    return window * total / candidates


def text_rows(
    conn: psycopg.Connection,
    cur: psycopg.Cursor[LogRow],
    filters: Filters,
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
) -> list[LogRow]:
    """``fetch_rows`` for a text search: the sieved walk when the page's rows should lie
    near the top, else the full-text index (in time windows for whole words)."""
    keyset, keyset_params = keyset_condition(position, direction)
    rest, text = split_text(filters)
    total = log_size(conn)
    words = estimate(conn, text)
    window = _walk_window(words, limit, total)
    index = _index_terms(conn, text)
    first = _probe_in_days(conn, rest, index, window, total)
    if window and first is None:
        # a common word: walk the newest candidates (time or composite index) through a
        # bounded window; on those rows, the sieve first, then the words themselves
        rows = _walk(conn, cur, rest, text, position, direction, window, limit)
        if rows is not None:
            return rows
        # the window held too few (chance, or the other filters thin the candidates)
    if index is text:
        return _text_windows(conn, cur, filters, position, direction, limit, total, first=first)
    if index is not None:
        # prefixes beside whole words or rare prefixes ("mari* smith", "zeb* smi*"): the
        # index gathers the cheap terms alone, in windows of days, and the whole search
        # is tested on their rows
        narrowed = Filters(rest.active + index.active)
        return _text_windows(
            conn, cur, narrowed, position, direction, limit, total, recheck=filters, first=first
        )
    # common prefixes only, with few matches near the top: the planner's own plan. The
    # full-text index gathers every word a prefix starts into a bitmap before anything
    # else (mar*: a million entries, 150 to 350 ms at 10M), so neither the windows nor
    # gathering every match (over 5 s for "mar* smi*") are better
    return planned_rows(cur, filters, keyset, keyset_params, direction, limit)


def capped_count_query(
    conn: psycopg.Connection, filters: Filters, limit: int, gather_limit: float
) -> tuple[sql.Composed, dict] | None:
    """The statement counting a text search's matches up to ``limit`` + 1 (``counts``
    runs it under its timeout), or None when no statement can be stopped in time.

    The index gathers every word a prefix starts before the first match, and a
    statement_timeout does not interrupt that (a 10 ms count of "lawr* logi*" ran 85 ms
    at 10M); nor the gathering of one common word (a count of "mari* smith" over the
    334,000 rows of "smith" ran 30-50 ms). So a search holding common prefixes is
    counted on its cheap terms (``_index_terms``: whole words, rare prefixes), the whole
    search tested on their rows, when the planner expects those in at most
    ``gather_limit`` rows; otherwise (common prefixes only, or beside common words) it
    is not counted (None)."""
    rest, text = split_text(filters)
    index = _index_terms(conn, text)
    if index is None:
        return None
    if index is text:
        where, params = filters.where()
        return sql.SQL("select count(*) from (select 1 from {} where {} limit {}) p").format(
            LOG, where, sql.Literal(limit + 1)
        ), params
    narrowed = Filters(rest.active + index.active)
    if estimate(conn, narrowed) > gather_limit:
        return None
    where, params = narrowed.where()
    match, match_params = text.where()
    # MATERIALIZED: left alone, the planner hands the prefixes to the index as well
    return sql.SQL(
        "with hits as materialized (select action, actor_name, resource_label from {}"
        " where {}) select count(*) from (select 1 from hits where {} limit {}) p"
    ).format(LOG, where, match, sql.Literal(limit + 1)), {**params, **match_params}
