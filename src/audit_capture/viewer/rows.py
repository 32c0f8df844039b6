"""The rows the viewer reads from ``audit.action_log``, and the SQL every page read shares.

``LogRow`` is a line of the Single Actions list, ``Action`` every column of one action.
Every page read orders rows newest first by (occurred_at DESC, id DESC), the order of the
log's time index and of each composite index (column, occurred_at DESC, id DESC), and
starts after a keyset position (``keyset_condition``), never at an OFFSET.

An actor filter (``actor=id:X``) without a source filter reads one branch per source
(``actor_branches``): action_log_actor_source_idx keys each actor's rows by (source,
time), so only an actor AND a source are in page order in it; the branches' ordered
reads are merged in page order (``merged``, a Merge Append). A page's keys alone
(index-only, a page at most per actor and source) are read in two parts for any
number of actors and sources (``actor_rows``, ``gather``).

Statements are not prepared (``prepare=False``): a generic plan, chosen once for all
values, is exactly what fails on a skewed log (a rare actor planned like a common one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from audit_capture.viewer import cursor as cursors
from audit_capture.viewer.filters import (
    ACTOR_PARAM,
    DATABASE_SOURCE,
    FILTER_PARAMS,
    FILTERS,
    SOURCE_CHOICES,
    SOURCE_PARAM,
    ActiveFilter,
    Filters,
    ParseContext,
)

LOG = sql.Identifier("audit", "action_log")
#: What the log holds in place of a value of a redacted column (triggers write it).
REDACTED = "[redacted]"


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


def one_row(cur: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The one row of a statement that always returns one (an aggregate, a select of
    values, EXPLAIN)."""
    row = cur.fetchone()
    if row is None:  # cannot happen: named rather than a TypeError on None
        raise psycopg.InterfaceError("the statement returned no row")
    return tuple(row)


def column_list(names: tuple[str, ...]) -> sql.Composable:
    """The columns ``names``, quoted, comma-separated."""
    return sql.SQL(", ").join(map(sql.Identifier, names))


def order_by(direction: str) -> sql.Composable:
    """The page order: newest first for ``next``, oldest first for ``prev``."""
    return sql.SQL("occurred_at desc, id desc" if direction == "next" else "occurred_at, id")


def keyset_condition(
    position: tuple[datetime, int] | None, direction: str
) -> tuple[sql.Composable, dict]:
    """The rows past ``position`` in ``direction``, as a bound condition; ``true`` for
    the first page."""
    if position is None:
        return sql.SQL("true"), {}
    op = "<" if direction == "next" else ">"
    condition = sql.SQL("(occurred_at, id) {} ({}, {})").format(
        sql.SQL(op), sql.Placeholder("k_at"), sql.Placeholder("k_id")
    )
    return condition, {"k_at": position[0], "k_id": position[1]}


def planned_rows(
    cur: psycopg.Cursor[LogRow],
    filters: Filters,
    keyset: sql.Composable,
    keyset_params: dict,
    direction: str,
    limit: int,
) -> list[LogRow]:
    """A page's rows on the planner's own plan: every filter in one WHERE, in page order."""
    where, params = filters.where()
    query = sql.SQL(
        "select {cols} from {log} where {where} and {keyset} order by {order} limit {limit}"
    ).format(
        cols=column_list(LIST_COLUMNS),
        log=LOG,
        where=where,
        keyset=keyset,
        order=order_by(direction),
        limit=sql.Literal(limit),
    )
    return cur.execute(query, {**params, **keyset_params}, prepare=False).fetchall()


def _with(filters: Filters, *replacing: ActiveFilter) -> Filters:
    """``filters`` with the filters of ``replacing`` in place of those of their
    parameters (added where absent), in FILTERS order."""
    params = {a.param for a in replacing}
    active = [a for a in filters.active if a.param not in params] + list(replacing)
    return Filters(tuple(sorted(active, key=lambda a: FILTER_PARAMS.index(a.param))))


def _source_literal(value: str) -> ActiveFilter:
    """The source filter of one value, its condition a literal of the closed vocabulary
    (``source = 'web'``, ``source is null``), so that branches composed into ONE
    statement (``merged``) add no parameter of their own."""
    source_def = next(f for f in FILTERS if f.param == SOURCE_PARAM)
    context = ParseContext(tz=ZoneInfo("UTC"))  # a source's condition has no time in it
    source = source_def.parse(source_def, value, context)
    if source.params:  # source = %(f_source)s: the value itself, quoted
        (bound,) = source.params.values()
        source = replace(
            source, condition=sql.SQL("source = {}").format(sql.Literal(bound)), params={}
        )
    return source


def actor_branches(filters: Filters) -> list[Filters] | None:
    """The reads of an actor filter, each in page order on an actor index: for an actor
    with an id, action_log_actor_source_idx (actor_id, source, occurred_at desc, id
    desc), one branch per source (with a source filter of one value, the filters
    themselves; of several, one per value; without, one per value of
    ``SOURCE_CHOICES``: the vocabulary of audit.sources() and ``database``, a row
    without source); for an actor known by name, one branch along
    action_log_actor_name_idx (actor_name, occurred_at desc, id desc). Several actors
    (``actor=id:7&actor=id:8``): each actor's branches. None for filters without
    ``actor=id:`` and with at most one actor (one read in page order, on another
    index, or the name index).

    The branches' matches are disjoint and together exactly the filters' matches (every
    row has one of the sources or none: the log's CHECK; a row has one actor), so the
    first ``limit`` rows of their merge in page order are the page. Each branch's source
    condition is a literal of the closed vocabulary, and each actor's condition its own
    parameters (``ActiveFilter.pieces``), so that branches composed into ONE statement
    (``merged``) share the filters' parameters without a clash. Read each branch in
    ``branch_order``."""
    actor = filters.get(ACTOR_PARAM)
    if actor is None or (not actor.several and not actor.value.startswith("id:")):
        return None
    if not actor.several and (source := filters.get(SOURCE_PARAM)) and not source.several:
        return [filters]
    source = filters.get(SOURCE_PARAM)
    sources = [_source_literal(v) for v in (source.values if source else SOURCE_CHOICES)]
    branches = []
    for one in actor.pieces or (actor,):
        if not one.value.startswith("id:"):
            branches.append(_with(filters, one))  # by name: the name index, any source
        elif source is not None and not source.several:
            branches.append(_with(filters, one))
        else:
            branches += [_with(filters, one, s) for s in sources]
    return branches


def _by_id(branch: Filters) -> bool:
    actor = branch.get(ACTOR_PARAM)
    return actor is not None and actor.value.startswith("id:")


def actor_order(direction: str) -> sql.Composable:
    """The page order of one of ``actor_branches``: ``order_by`` led by source, which
    is one value in a branch (so the order is the same), and the index's second key.
    For ``source is null`` (``database``) it is what makes the index's order usable:
    PostgreSQL takes ``source = 'web'`` as a constant that leaves (occurred_at, id) in
    order, but not ``source is null``, and would sort every one of the actor's rows
    without source (a system actor's hundreds of thousands)."""
    return sql.SQL(
        "source, occurred_at desc, id desc"
        if direction == "next"
        else "source desc, occurred_at, id"
    )


def branch_order(branch: Filters, direction: str) -> sql.Composable:
    """The order a branch of ``actor_branches`` is read in: ``actor_order`` for an actor
    with an id (its source fixed), the page order for an actor known by name (the name
    index's own order, whatever the source)."""
    return actor_order(direction) if _by_id(branch) else order_by(direction)


def merged(
    branches: Sequence[sql.Composable],
    columns: sql.Composable,
    order: sql.Composable,
    limit: int,
) -> sql.Composed:
    """``select columns`` of the rows of the ``branches`` (each a complete SELECT of
    rows of the log in ``order``, each perhaps with its own LIMIT), merged in ``order``:
    ``select columns from ((b1) union all (b2) ...) action_log order by order limit``.
    The planner merges the branches' ordered outputs (Merge Append: nothing sorted,
    nothing read past the rows taken). The merged rows are named ``action_log``, so
    ``columns`` and ``order`` may name the log's columns as a query of the log does."""
    return sql.SQL("select {} from ({}) action_log order by {} limit {}").format(
        columns,
        sql.SQL(" union all ").join(sql.SQL("({})").format(b) for b in branches),
        order,
        sql.Literal(limit),
    )


#: the parameters of ``gathered`` branches: every actor id of the filter, and every
#: source value of the gathered part
EACH_ACTOR = "f_actor_each"
EACH_SOURCE = "f_source_each"


@dataclass(frozen=True)
class _Part:
    """A part of an actor's statement: ``branch``, read for each of ``ids`` (its actor
    condition ``actor_id = each_actor.actor_id``) and each of ``sources`` (``source =
    each_source.source``), LATERAL; empty lists where the branch's own condition
    stands."""

    branch: Filters
    ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


def _distinct(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _gathered(branches: Sequence[Filters]) -> list[_Part]:
    """The branches of actors with an id gathered into two parts at most: the rows
    with a source value (``source = each_source.source`` for each value, LATERAL, one
    probe of action_log_actor_source_idx per actor and value) and the rows without
    (``database``: ``source is null``, which no parameter can stand for); each part's
    actor condition ``actor_id = each_actor.actor_id`` for each id, LATERAL. The
    branches of ``actor_branches`` are every actor with every source, so a part stands
    for exactly its branches. A part of one actor and one source is that branch
    itself, and a branch by name stands for itself."""
    groups: dict[bool, list[Filters]] = {}
    parts: list[_Part] = []
    for branch in branches:
        source = branch.get(SOURCE_PARAM)
        if _by_id(branch) and source is not None:
            groups.setdefault(source.value == DATABASE_SOURCE, []).append(branch)
        else:
            parts.append(_Part(branch))
    for group in groups.values():
        actors = [a for b in group if (a := b.get(ACTOR_PARAM))]
        sources = [s for b in group if (s := b.get(SOURCE_PARAM))]
        ids = _distinct([a.value.removeprefix("id:") for a in actors])
        values = _distinct([s.value for s in sources])
        assert len(ids) * len(values) == len(group), "a part stands for its branches"
        replacing = []
        if len(ids) > 1:
            each = sql.SQL("actor_id = each_actor.actor_id")
            replacing.append(replace(actors[0], condition=each, params={}))
        if len(values) > 1:
            each = sql.SQL("source = each_source.source")
            replacing.append(replace(sources[0], condition=each, params={}))
        parts.append(
            _Part(
                _with(group[0], *replacing),
                ids if len(ids) > 1 else (),
                values if len(values) > 1 else (),
            )
        )
    return parts


def _each(name: str, param: str, select: sql.Composable) -> sql.Composable:
    """``select`` for each value of the array parameter ``param``, LATERAL: ``select``
    names the value ``each_actor.actor_id`` or ``each_source.source`` (``name``)."""
    column = {"each_actor": "actor_id", "each_source": "source"}[name]
    return sql.SQL("select b.* from unnest({}::text[]) {}({}) cross join lateral ({}) b").format(
        sql.Placeholder(param), sql.Identifier(name), sql.Identifier(column), select
    )


def actor_rows(
    branches: Sequence[Filters],
    columns: sql.Composable,
    keyset: sql.Composable,
    keyset_params: dict,
    direction: str,
    limit: int,
    *,
    gather: bool = False,
) -> tuple[sql.Composed, dict]:
    """The statement of the first ``limit`` rows (``columns``) after the keyset of an
    actor's ``actor_branches``, each branch read in ``branch_order`` with its own
    LIMIT, merged in page order (``merged``), and its parameters.

    ``gather`` (a page's keys, index-only: ``limit`` is at most 201 entries; or every
    candidate of an actor with few rows, ``text_search._walk``'s counted walk): the
    branches of actors with an id are read in two statement parts at most
    (``_gathered``): for each id and each source value, LATERAL, that actor's
    ``limit`` rows of the source along action_log_actor_source_idx, in its order; and
    the same for the rows without source. The merge then sorts at most actors x
    sources x ``limit`` rows. On a log partitioned by month every part is planned on
    every month it may read (~0.1 ms a part and month at 41 months: five parts, one per
    source, took 13-19 ms to plan where two take 4-7), so several actors and sources
    cost what one actor and source do. Not for the text search's walk of a busy
    actor, whose ``limit`` is thousands of rows of which it reads only what the page
    needs (each actor's and source's would be read whole before the merge)."""
    params = dict(keyset_params)
    selects = []
    parts = _gathered(branches) if gather else [_Part(branch) for branch in branches]
    for part in parts:
        where, branch_params = part.branch.where()
        params.update(branch_params)  # the same names and values in every branch
        select: sql.Composable = sql.SQL(
            "select {cols} from {log} where {where} and {keyset} order by {order} limit {limit}"
        ).format(
            cols=columns,
            log=LOG,
            where=where,
            keyset=keyset,
            order=branch_order(part.branch, direction),
            limit=sql.Literal(limit),
        )
        if part.sources:
            params[EACH_SOURCE] = list(part.sources)  # one part has several values
            select = _each("each_source", EACH_SOURCE, select)
        if part.ids:
            params[EACH_ACTOR] = list(part.ids)  # the same ids in every gathered part
            select = _each("each_actor", EACH_ACTOR, select)
        selects.append(select)
    return merged(selects, columns, order_by(direction), limit), params
