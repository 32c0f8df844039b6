"""The kind probe: rare combinations of the low-cardinality filters, counted first.

Two common values that rarely or never occur together (mobile + system) would make the
planner walk the whole time index for a page it cannot fill. So low-cardinality filters
(action type, actor type, source, resource; without an actor or a text search) first
count their matches on the small action_log_kind_idx alone, index-only and capped at
``KIND_PROBE_LIMIT`` + 1 entries: none is an empty page at once; a few are fetched
through that index and sorted (``rare_rows``); more take the time walk, which then finds
a page within a few thousand rows.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from audit_capture.enums import ActionType, ActorType, Source
from audit_capture.viewer.filters import ACTOR_PARAM, DATABASE_SOURCE, TEXT_PARAM, Filters
from audit_capture.viewer.planner import planner_settings
from audit_capture.viewer.rows import (
    LIST_COLUMNS,
    LOG,
    LogRow,
    column_list,
    keyset_condition,
    one_row,
    order_by,
)

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


def _kind_branches(filters: Filters) -> list[sql.Composable]:
    """The low-cardinality filters as quals on the leading columns of
    action_log_kind_idx: every key column up to the last filtered one gets a condition
    (an unfiltered one: any value of its vocabulary), so each branch is a few exact
    descents into the index. An unfiltered source before a filtered resource_type
    needs two branches (a value, or null), and so does a source filter of several
    values among which ``database``. A filter of several values is ``column =
    any(values)``: one descent per value. [] when no such filter is set."""
    kind = {KIND_PARAMS[a.param]: a for a in filters.active if a.param in KIND_PARAMS}
    if not kind:
        return []
    last = max(KIND_COLUMNS.index(column) for column in kind)
    branches: list[list[sql.Composable]] = [[]]
    for column in KIND_COLUMNS[: last + 1]:
        if column in kind:
            given = kind[column]
            if column == "source" and given.several and DATABASE_SOURCE in given.values:
                # web or api or none: two exact descents each, not an OR the index
                # cannot descend by (the values are the closed vocabulary's: literals)
                others = [v for v in given.values if v != DATABASE_SOURCE]
                named = sql.SQL("source = any({}::text[])").format(sql.Literal(others))
                branches = [b + [named] for b in branches] + [
                    b + [sql.SQL("source is null")] for b in branches
                ]
            else:
                branches = [b + [given.condition] for b in branches]
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
    with planner_settings(conn, enable_seqscan="off", enable_bitmapscan="off", jit="off"):
        return one_row(conn.execute(probe, params, prepare=False))[0]


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


def rare_rows(
    conn: psycopg.Connection,
    filters: Filters,
    position: tuple[datetime, int] | None,
    direction: str,
    limit: int,
) -> list[LogRow]:
    """Up to ``limit`` rows after ``position`` of filters whose probe found few matches
    (at most ``KIND_PROBE_LIMIT``): all of them through action_log_kind_idx, then sorted
    (the time walk would pass nearly every row of the log to find them)."""
    keyset, keyset_params = keyset_condition(position, direction)
    where, params = filters.where()
    query = sql.SQL(
        "with hits as materialized (select {cols} from {log}"
        " where ({branches}) and {where} and {keyset})"
        " select {cols} from hits order by {order} limit {limit}"
    ).format(
        cols=column_list(LIST_COLUMNS),
        log=LOG,
        branches=sql.SQL(" or ").join(_probed(filters)),
        where=where,
        keyset=keyset,
        order=order_by(direction),
        limit=sql.Literal(limit),
    )
    cur = conn.cursor(row_factory=class_row(LogRow))
    with planner_settings(conn, enable_seqscan="off", enable_indexscan="off", jit="off"):
        return cur.execute(query, {**params, **keyset_params}, prepare=False).fetchall()
