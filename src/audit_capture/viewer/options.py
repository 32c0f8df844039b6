"""What the filter controls offer: action types, actors, sources and resources.

``load_options(conn)`` must stay cheap on a log of ten million actions, so it never
scans the log:

* action types, actor types and sources are the fixed vocabularies (audit_capture.enums);
  the event types (login, logout, export, send) are offered when the planner's
  statistics or the newest rows show them;
* actors (only the names the filter sentence falls back on: the page names its actor
  with ``actor_search.describe``, and an admin finds one with ``actor_search``) are the
  actor directory's walk (``actor_search.load_directory``: a skip scan of the actor
  indexes, each actor's newest row giving its current name and type), capped at
  ``MAX_ACTORS`` ids and ``MAX_ACTORS`` names;
* resources are the registry (audit.tracked_table, with its plural labels) plus the
  resource types of events, found in the planner's statistics of the log's partitions
  (pg_stats, which a reader may see for the columns it may read) and in the newest rows.

Even bounded, they are the same for every page and every user of one viewer, so each
viewer keeps them in an ``OptionsCache`` for ``options_cache_seconds`` (a setting, 60 by
default): a new actor or resource type appears in the controls within that time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from audit_capture.enums import ActionType, ActorType
from audit_capture.viewer.actor_search import load_directory
from audit_capture.viewer.errors import translate_errors
from audit_capture.viewer.filters import (
    SOURCE_CHOICES,
    FilterOptions,
    resource_plural,
    source_label,
)
from audit_capture.viewer.kept import Kept

MAX_ACTORS = 500
RECENT_ROWS = 10_000
TABLE_CHANGE_TYPES = (
    ActionType.CREATE,
    ActionType.UPDATE,
    ActionType.DELETE,
    ActionType.STATUS_CHANGE,
    ActionType.IMPORT,
)


# values of a column seen in the planner's statistics or in the newest rows
SEEN_VALUES = """
select v from (
  select unnest(most_common_vals::text::text[]) as v
  from pg_catalog.pg_stats
  where schemaname = 'audit' and attname = %(column)s
    -- the log's partitions (autovacuum analyzes each, never their parent), or the log
    and tablename in (
      select c.relname
      from pg_catalog.pg_partition_tree('audit.action_log'::regclass) t
      join pg_catalog.pg_class c on c.oid = t.relid)
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

        directory = load_directory(conn, max_scanned=MAX_ACTORS)
        actors = [(a.key, a.shown, a.actor_type or "") for a in directory.actors]
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


class OptionsCache(Kept[FilterOptions]):
    """The filter options of one viewer (``kept.Kept``), read again once older than
    ``lifetime`` seconds (0: read for every page); past it, with a background reader, the
    pages get the old options at once while one thread reads new ones (30-50 ms at ten
    million actions, which one page a minute paid on top of its own)."""

    def __init__(self, lifetime: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(lifetime, clock=clock, name="audit-viewer-options")
