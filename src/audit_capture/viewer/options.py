"""What the filter controls offer: action types, actors, sources and resources.

``load_options(conn)`` must stay cheap on a log of ten million actions, so it never
scans the log:

* action types, actor types and sources are the fixed vocabularies (audit_capture.enums);
  the event types (login, logout, export, send) are offered when the planner's
  statistics or the newest rows show them;
* actors come from a *skip scan* of the actor indexes of triggers/13_viewer_indexes.sql:
  a recursive query that jumps from one distinct actor_id to the next (one index probe
  per actor, not one per row), capped at ``MAX_ACTORS``; then each actor's newest row
  gives its current name and type;
* resources are the registry (audit.tracked_table, with its plural labels) plus the
  resource types of events, found in the planner's statistics (pg_stats, which a
  reader may see for the columns it may read) and in the newest rows.

Even bounded, they are the same for every page and every user of one viewer, so each
viewer keeps them in an ``OptionsCache`` for ``options_cache_seconds`` (a setting, 60 by
default): a new actor or resource type appears in the controls within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from audit_capture.enums import ActionType, ActorType
from audit_capture.viewer.errors import translate_errors
from audit_capture.viewer.filters import (
    SOURCE_CHOICES,
    FilterOptions,
    resource_plural,
    source_label,
)

MAX_ACTORS = 500
RECENT_ROWS = 10_000
TABLE_CHANGE_TYPES = (
    ActionType.CREATE,
    ActionType.UPDATE,
    ActionType.DELETE,
    ActionType.STATUS_CHANGE,
    ActionType.IMPORT,
)


# distinct actor ids, one index probe each (action_log_actor_idx), newest row of each
ACTORS_BY_ID = """
with recursive ids(actor_id, n) as (
  (select actor_id, 1 from audit.action_log where actor_id is not null
   order by actor_id limit 1)
  union all
  select (select l.actor_id from audit.action_log l
          where l.actor_id > ids.actor_id order by l.actor_id limit 1), ids.n + 1
  from ids where ids.actor_id is not null and ids.n < %(max)s
)
select 'id:' || ids.actor_id, coalesce(newest.actor_name, ids.actor_id), newest.actor_type
from ids
cross join lateral (
  select l.actor_name, l.actor_type from audit.action_log l
  where l.actor_id = ids.actor_id order by l.occurred_at desc, l.id desc limit 1
) newest
where ids.actor_id is not null
"""

# actors without id (database roles), through action_log_actor_name_idx
ACTORS_BY_NAME = """
with recursive names(actor_name, n) as (
  (select actor_name, 1 from audit.action_log where actor_id is null and actor_name is not null
   order by actor_name limit 1)
  union all
  select (select l.actor_name from audit.action_log l
          where l.actor_id is null and l.actor_name > names.actor_name
          order by l.actor_name limit 1), names.n + 1
  from names where names.actor_name is not null and names.n < %(max)s
)
select 'name:' || names.actor_name, names.actor_name, newest.actor_type
from names
cross join lateral (
  select l.actor_type from audit.action_log l
  where l.actor_id is null and l.actor_name = names.actor_name
  order by l.occurred_at desc, l.id desc limit 1
) newest
where names.actor_name is not null
"""

# values of a column seen in the planner's statistics or in the newest rows
SEEN_VALUES = """
select v from (
  select unnest(most_common_vals::text::text[]) as v
  from pg_catalog.pg_stats
  where schemaname = 'audit' and tablename = 'action_log' and attname = %(column)s
  union
  select {column}::text from (
    select {column} from audit.action_log order by occurred_at desc, id desc limit %(recent)s
  ) recent
) seen where v is not null
"""


def _seen(conn: psycopg.Connection, column: str) -> set[str]:
    query = sql.SQL(SEEN_VALUES).format(column=sql.Identifier(column))
    return {row[0] for row in conn.execute(query, {"column": column, "recent": RECENT_ROWS})}


def load_options(conn: psycopg.Connection) -> FilterOptions:
    """The choices of every filter control, read in a few bounded queries."""
    with translate_errors(), conn.transaction():
        seen_types = _seen(conn, "action_type")
        action_types = [(t.value, t.label) for t in TABLE_CHANGE_TYPES]
        action_types += [
            (t.value, t.label)
            for t in ActionType
            if t not in TABLE_CHANGE_TYPES and t.value in seen_types
        ]

        actors = [tuple(r) for r in conn.execute(ACTORS_BY_ID, {"max": MAX_ACTORS})]
        actors += [tuple(r) for r in conn.execute(ACTORS_BY_NAME, {"max": MAX_ACTORS})]
        actors.sort(key=lambda a: (a[1].casefold(), a[0]))

        registry: dict[str, str] = dict(
            conn.execute(
                "select resource_type, min(label_plural) from audit.tracked_table group by 1"
            ).fetchall()
        )
        for resource_type in _seen(conn, "resource_type") - set(registry):
            registry[resource_type] = resource_plural(resource_type)
        resources = sorted(registry.items(), key=lambda r: r[1].casefold())

    return FilterOptions(
        action_types=action_types,
        actors=actors,
        actor_types=[(t.value, t.label) for t in ActorType],
        sources=[(s, source_label(s)) for s in SOURCE_CHOICES],
        resources=resources,
    )


class OptionsCache:
    """The filter options of one viewer, read again once older than ``lifetime`` seconds
    (0: read for every page). Thread-safe: one thread reads them while the others wait
    for its result; a read that fails is not kept (the next page tries again).
    ``clock`` (seconds, monotonic) is injectable for tests."""

    def __init__(self, lifetime: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._options: FilterOptions | None = None
        self._read_at = 0.0

    def get(self, read: Callable[[], FilterOptions], *, refresh: bool = False) -> FilterOptions:
        """The cached options, or ``read()``'s when there are none, they are too old, or
        ``refresh`` asks for the log's own."""
        with self._lock:
            now = self.clock()
            if refresh or self._options is None or now - self._read_at >= self.lifetime:
                self._options = read()
                self._read_at = now
            return self._options

    def clear(self) -> None:
        with self._lock:
            self._options = None
