"""Finding an actor by what an admin remembers: a few letters of a name, or an id.

``find_actors(conn, text, limit)`` searches EVERY actor of the log, not a first page of
them: actors with an id (admins, clients, system actors that set one), and actors known
by their name alone (system actors without an id, and the database roles of direct
changes, whose actor_name is the role). It matches, case-insensitively:

* a prefix of the id ("a-12" finds "a-1234"), or
* a prefix of any word of the actor's current name ("mar" and "smi" and "maria sm" find
  "Maria Smith"; a word starts the name or follows a character that is no letter or digit).

How it stays fast at ten million actions without an index of its own: the actors are
few (thousands) where the rows are many, so the viewer reads them all at once into a
``Directory`` and searches that in Python (~1 ms for 5,000 actors). The read is a *skip
scan*: a recursive query that jumps from one distinct actor_id to the next on
action_log_actor_source_idx (actor_id, source, occurred_at desc, id desc), and from one
distinct name of the rows without id to the next on action_log_actor_name_idx (one
index probe per actor, never one per row), and each actor's newest row gives its
current name and type. That index orders an actor's rows by source first, so the newest
row is one probe per source value (``NEWEST_BY_ID``: the four of audit.sources() and a
``source is null`` branch), the newest of those five taken; a single probe "order by
occurred_at desc limit 1" would read and sort every row of the actor (4.6 s for the
directory of a 1M fill, 60 ms this way: see ``load_directory``). Too slow for every
keystroke all the same, and doing the match in the SQL does not make it cheaper (the
walk is the cost). So ``DirectoryCache`` keeps one directory per viewer for a minute;
a search is then a Python loop. ``MAX_SCANNED`` bounds each walk; past it, the search
says so (``ActorMatches.complete`` is false).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Protocol

import psycopg

from audit_capture.enums import ActorType, Source
from audit_capture.viewer.errors import BadRequest, translate_errors
from audit_capture.viewer.kept import Kept
from audit_capture.viewer.recent import recent_months_start

QUERY_MIN_LENGTH, QUERY_MAX_LENGTH = 1, 100
DEFAULT_LIMIT, MAX_LIMIT = 20, 50
MAX_SCANNED = 50_000

#: The newest row of the actor whose id is ``{actor}`` (an SQL expression): one probe of
#: action_log_actor_source_idx per source value (%(sources)s: the vocabulary of
#: audit.sources(), from ``Source``), and one for the rows without source, ordered by
#: the index's keys (source first: PostgreSQL takes ``source is null`` for no constant,
#: and "order by occurred_at" alone would sort every such row of the actor); the newest
#: of the five. ``is not distinct from`` would take no index at all.
NEWEST_BY_ID = """
select n.actor_name, n.actor_type, n.source from (
  select b.* from unnest(%(sources)s::text[]) s(source)
  cross join lateral (
    select l.actor_name, l.actor_type, l.source, l.occurred_at, l.id from audit.action_log l
    where l.actor_id = {actor} and l.source = s.source{since}
    order by l.occurred_at desc, l.id desc limit 1
  ) b
  union all
  (select l.actor_name, l.actor_type, l.source, l.occurred_at, l.id from audit.action_log l
   where l.actor_id = {actor} and l.source is null{since}
   order by l.source, l.occurred_at desc, l.id desc limit 1)
) n order by n.occurred_at desc, n.id desc limit 1
"""
SOURCES = [m.value for m in Source]

# every actor: key, id, current name and type, whether its newest row had no context
DIRECTORY = """
with recursive ids(actor_id, n) as (
  (select actor_id, 1 from audit.action_log where actor_id is not null
   order by actor_id limit 1)
  union all
  select (select l.actor_id from audit.action_log l
          where l.actor_id > ids.actor_id order by l.actor_id limit 1), ids.n + 1
  from ids where ids.actor_id is not null and ids.n < %(max)s
),
names(actor_name, n) as (
  (select actor_name, 1 from audit.action_log where actor_id is null and actor_name is not null
   order by actor_name limit 1)
  union all
  select (select l.actor_name from audit.action_log l
          where l.actor_id is null and l.actor_name > names.actor_name
          order by l.actor_name limit 1), names.n + 1
  from names where names.actor_name is not null and names.n < %(max)s
)
select 'id:' || ids.actor_id, ids.actor_id, newest.actor_name, newest.actor_type, false, ids.n
from ids
cross join lateral ({newest}) newest
where ids.actor_id is not null
union all
select 'name:' || names.actor_name, null, names.actor_name, newest.actor_type,
       newest.source is null, names.n
from names
cross join lateral (
  select l.actor_type, l.source from audit.action_log l
  where l.actor_id is null and l.actor_name = names.actor_name
  order by l.occurred_at desc, l.id desc limit 1
) newest
where names.actor_name is not null
""".format(newest=NEWEST_BY_ID.format(actor="ids.actor_id", since=""))

# one actor's current name and type, for the filter sentence (a few index probes)
DESCRIBE_BY_ID = NEWEST_BY_ID.format(actor="%(key)s", since="")
#: ... among its rows since %(since)s only. On a log partitioned by month, a probe of the
#: whole log reads each month's partition, and where a month's statistics make the
#: planner walk its time index instead of the actor index, every row of that month
#: (86 ms for the busiest admin at 10M over 41 partitions): the last two months first
#: (1 ms), the whole log only for an actor with no recent row.
DESCRIBE_RECENT_BY_ID = NEWEST_BY_ID.format(
    actor="%(key)s", since=" and l.occurred_at >= %(since)s"
)
#: ... of every actor whose id is in %(keys)s at once (several actors in the ``actor``
#: filter): the same probes, LATERAL, planned once however many actors (on a log
#: partitioned by month each statement is planned on every month it reads: one
#: statement per actor made ten departed actors ten plannings of 41 months)
DESCRIBE_MANY_BY_ID = """
select k.actor_id, d.actor_name, d.actor_type, d.source
from unnest(%(keys)s::text[]) k(actor_id)
cross join lateral ({newest}) d
"""
DESCRIBE_MANY_RECENT_BY_ID = DESCRIBE_MANY_BY_ID.format(
    newest=NEWEST_BY_ID.format(actor="k.actor_id", since=" and l.occurred_at >= %(since)s")
)
DESCRIBE_MANY_BY_ID = DESCRIBE_MANY_BY_ID.format(
    newest=NEWEST_BY_ID.format(actor="k.actor_id", since="")
)
DESCRIBE_BY_NAME = """
select actor_name, actor_type, source from audit.action_log
where actor_id is null and actor_name = %(key)s order by occurred_at desc, id desc limit 1
"""


@dataclass(frozen=True)
class Actor:
    """One actor: ``key`` is the value of the ``actor`` filter ("id:7", "name:postgres")."""

    key: str
    actor_id: str | None
    name: str | None
    actor_type: str | None
    database_role: bool = False  # a role making direct changes (its newest row had no context)
    exact: bool = False  # its id or whole name is the searched text

    @property
    def shown(self) -> str:
        """The name an admin knows it by (its id when it has no name)."""
        return self.name or self.actor_id or self.key

    @property
    def kind(self) -> str:
        """ "Admin", "Client", "System", or "Database role"."""
        if self.database_role:
            return "Database role"
        try:
            return ActorType(self.actor_type).label if self.actor_type else "Unknown"
        except ValueError:
            return str(self.actor_type)

    def as_json(self) -> dict[str, object]:
        return {
            "actor": self.key,
            "id": self.actor_id,
            "name": self.name,
            "type": self.actor_type,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class ActorMatches:
    text: str
    actors: tuple[Actor, ...]
    more: bool  # more actors match than the limit
    complete: bool = True  # every actor was searched (false: a walk reached MAX_SCANNED)

    def chosen(self) -> Actor | None:
        """The one actor this text names: the only match, or the only exact match."""
        if len(self.actors) == 1 and not self.more:
            return self.actors[0]
        exact = [a for a in self.actors if a.exact]
        return exact[0] if len(exact) == 1 else None


def search_text(raw: str | None, param: str = "q") -> str:
    """The searched text, trimmed, its inner spaces collapsed; BadRequest naming ``param``
    when it is missing, too long, or holds a control character (or nothing to match)."""
    if raw is None or not raw.strip():
        raise BadRequest(
            f"{param} is empty; type at least {QUERY_MIN_LENGTH} letter or digit "
            "of an actor's name or id"
        )
    if len(raw) > QUERY_MAX_LENGTH:
        raise BadRequest(
            f"{param} is {len(raw)} characters long; expected 1 to {QUERY_MAX_LENGTH} characters"
        )
    odd = next((c for c in raw if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")), None)
    if odd is not None:
        raise BadRequest(
            f"{param} holds the control character U+{ord(odd):04X}; "
            "type letters, digits, spaces or punctuation"
        )
    return " ".join(raw.split())


def result_limit(raw: str | None) -> int:
    """``limit``: 1..MAX_LIMIT, default DEFAULT_LIMIT."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit is {raw!r}; expected a number from 1 to {MAX_LIMIT}")
    return int(raw)


@dataclass(frozen=True)
class Directory:
    """Every actor of the log, as read at one moment (``load_directory``)."""

    actors: tuple[Actor, ...]
    complete: bool = True  # false: a walk stopped at MAX_SCANNED actors

    @cached_property
    def _folded(self) -> list[tuple[str, str, Actor]]:
        """Each actor's id and name case-folded once, not at every keystroke."""
        return [((a.actor_id or "").casefold(), (a.name or "").casefold(), a) for a in self.actors]

    def find(self, text: str, limit: int = DEFAULT_LIMIT) -> ActorMatches:
        """The actors whose id or a word of whose name starts with ``text`` (checked by
        ``search_text``), case-insensitively, best first: an exact id or whole name, then
        the name's start, the id's start, a later word of the name."""
        folded = text.casefold()
        # a word starts the name or follows a character that is no letter or digit
        word = re.compile(r"(?<![^\W_])" + re.escape(folded))
        ranked = []
        for ident, name, actor in self._folded:
            if folded in (ident, name):
                rank = 0
            elif name.startswith(folded):
                rank = 1
            elif ident.startswith(folded):
                rank = 2
            elif folded in name and word.search(name):  # the substring test: a cheap sieve
                rank = 3
            else:
                continue
            ranked.append((rank, actor.shown.casefold(), actor.key, actor))
        ranked.sort(key=lambda r: r[:3])
        return ActorMatches(
            text,
            tuple(replace(a, exact=rank == 0) for rank, _, _, a in ranked[:limit]),
            more=len(ranked) > limit,
            complete=self.complete,
        )


def load_directory(conn: psycopg.Connection, max_scanned: int = MAX_SCANNED) -> Directory:
    """Every actor, by a skip scan of the actor indexes (one walk of the distinct actors,
    each walk stopping at ``max_scanned``: at 1M actions and 2,000 actors, ~40,500
    shared buffers, 60 ms by EXPLAIN ANALYZE on a loaded machine)."""
    with translate_errors(), conn.transaction():
        rows = conn.execute(DIRECTORY, {"max": max_scanned, "sources": SOURCES}).fetchall()
    actors = tuple(
        Actor(key, actor_id, name, actor_type, bool(no_context))
        for key, actor_id, name, actor_type, no_context, _n in rows
    )
    return Directory(actors, complete=not any(n >= max_scanned for *_, n in rows))


def find_actors(conn: psycopg.Connection, text: str, limit: int = DEFAULT_LIMIT) -> ActorMatches:
    """``load_directory(conn).find(text, limit)``: a fresh read, no cache."""
    return load_directory(conn).find(text, limit)


class DirectoryCache:
    """The directory of one viewer, kept ``ttl`` seconds (``kept.Kept``): the walk of
    every actor costs one to a few hundred milliseconds at ten million actions, a search
    in it ~1 ms, and an admin types a name letter by letter. An actor seen for the first
    time is found once the directory is read again (at most ``ttl`` seconds later). With
    a ``background`` reader (its own connection), a directory past its ``ttl`` is read
    again in a thread while the searches go on in the old one (~80 ms at 10M: a
    keystroke once a minute paid it)."""

    def __init__(self, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._kept: Kept[Directory] = Kept(ttl, clock=clock, name="audit-viewer-actors")

    def get(
        self, conn: psycopg.Connection, background: Callable[[], Directory] | None = None
    ) -> Directory:
        return self._kept.get(lambda: load_directory(conn), background=background)


def describe(conn: psycopg.Connection, key: str) -> Actor | None:
    """The actor of an ``actor`` filter value ("id:7"), with its current name and type;
    None when the log has no such actor (or the value is not one: the form's hidden
    field sends it unchecked, and a NUL, which no text in PostgreSQL holds, would fail
    the query)."""
    kind, sep, value = key.partition(":")
    if not sep or kind not in ("id", "name") or not value or "\x00" in value:
        return None
    params = {"key": value, "sources": SOURCES, "since": recent_months_start()}
    with translate_errors(), conn.transaction():
        row = None
        if kind == "id":
            row = conn.execute(DESCRIBE_RECENT_BY_ID, params).fetchone()
        if row is None:
            query = DESCRIBE_BY_ID if kind == "id" else DESCRIBE_BY_NAME
            row = conn.execute(query, params).fetchone()
    if row is None:
        return None
    name, actor_type, source = row
    return Actor(
        key,
        value if kind == "id" else None,
        name,
        actor_type,
        database_role=kind == "name" and source is None,
    )


def describe_many(conn: psycopg.Connection, keys: list[str]) -> list[Actor | None]:
    """``describe`` of each of ``keys``, in their order: the actors with an id in two
    statements at most (the recent months for all, then the whole log for those not
    found there), an actor by name with ``describe``."""
    ids = [
        value
        for kind, sep, value in (key.partition(":") for key in keys)
        if sep and kind == "id" and value and "\x00" not in value
    ]
    found: dict[str, tuple] = {}
    if ids:
        params = {"keys": ids, "sources": SOURCES, "since": recent_months_start()}
        with translate_errors(), conn.transaction():
            for query in (DESCRIBE_MANY_RECENT_BY_ID, DESCRIBE_MANY_BY_ID):
                missing = [i for i in ids if i not in found]
                if not missing:
                    break
                rows = conn.execute(query, {**params, "keys": missing}).fetchall()
                found.update({row[0]: row[1:] for row in rows})
    described: list[Actor | None] = []
    for key in keys:
        kind, _, value = key.partition(":")
        if kind != "id":
            described.append(describe(conn, key))
        elif value in found:
            name, actor_type, _source = found[value]
            described.append(Actor(key, value, name, actor_type))
        else:
            described.append(None)
    return described


class ActorColumns(Protocol):
    """The actor's columns of a row of the log (a ``rows.LogRow``)."""

    actor_id: str | None
    actor_name: str | None
    actor_type: str
    source: str | None


def newest_on_page(keys: list[str], rows: Iterable[ActorColumns]) -> dict[str, Actor]:
    """Each actor of ``keys`` with a row among ``rows``, described by its first one.

    For the first page of a filter by those actors alone, an actor's first row on it
    is its newest row, the one ``describe`` reads (the page order is its order): the
    sentence of a departed admin's page costs no second read of every month."""
    wanted = set(keys)
    found: dict[str, Actor] = {}
    for row in rows:
        key = f"id:{row.actor_id}" if row.actor_id is not None else f"name:{row.actor_name}"
        if key in wanted and key not in found:
            found[key] = Actor(
                key,
                row.actor_id,
                row.actor_name,
                row.actor_type,
                database_role=row.actor_id is None and row.source is None,
            )
    return found
