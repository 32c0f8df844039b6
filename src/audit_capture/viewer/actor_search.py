"""Finding an actor by what an admin remembers: a few letters of a name, or an id.

``find_actors(conn, text, limit)`` searches EVERY actor of the log, not a first page of
them: actors with an id (admins, clients, system actors that set one), and actors known
by their name alone (system actors without an id, and the database roles of direct
changes, whose actor_name is the role). It matches, case-insensitively:

* a prefix of the id ("a-12" finds "a-1234"), or
* a prefix of any word of the actor's current name ("mar" and "smi" and "maria sm" find
  "Maria Smith"; a word starts the name or follows a character that is no letter or digit).

How it stays fast at ten million actions without an index of its own: the distinct
actors are walked by a *skip scan* (a recursive query that jumps from one distinct
actor_id to the next on action_log_actor_idx, and from one distinct name of the rows
without id to the next on action_log_actor_name_idx: one index probe per actor, never one
per row), and each actor's newest row gives its current name and type (one more probe).
The cost grows with the number of distinct actors, not with the log: ~2,000 actors cost a
few thousand index probes. ``MAX_SCANNED`` bounds each walk; past it, the search says so
(``ActorMatches.complete`` is false) rather than running without limit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import psycopg

from audit_capture.enums import ActorType
from audit_capture.viewer.errors import BadRequest, translate_errors

QUERY_MIN_LENGTH, QUERY_MAX_LENGTH = 1, 100
DEFAULT_LIMIT, MAX_LIMIT = 20, 50
MAX_SCANNED = 50_000

# rank: 0 the id or the whole name is the text, 1 the name starts with it, 2 the id does,
# 3 a later word of the name does
SEARCH = """
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
),
actors(key, actor_id, actor_name, actor_type, source, no_context) as (
  select 'id:' || ids.actor_id, ids.actor_id, newest.actor_name, newest.actor_type,
         newest.source, false
  from ids
  cross join lateral (
    select l.actor_name, l.actor_type, l.source from audit.action_log l
    where l.actor_id = ids.actor_id order by l.occurred_at desc, l.id desc limit 1
  ) newest
  where ids.actor_id is not null
  union all
  select 'name:' || names.actor_name, null, names.actor_name, newest.actor_type,
         newest.source, newest.source is null
  from names
  cross join lateral (
    select l.actor_type, l.source from audit.action_log l
    where l.actor_id is null and l.actor_name = names.actor_name
    order by l.occurred_at desc, l.id desc limit 1
  ) newest
  where names.actor_name is not null
),
ranked as (
  select *, case
      when lower(actor_id) = lower(%(text)s) or lower(actor_name) = lower(%(text)s) then 0
      when actor_name ilike %(prefix)s escape '\\' then 1
      when actor_id ilike %(prefix)s escape '\\' then 2
      else 3
    end as rank
  from actors
  where actor_id ilike %(prefix)s escape '\\' or actor_name ~* %(word)s
)
select key, actor_id, actor_name, actor_type, no_context, rank,
       (select greatest(max(n), 0) from ids) >= %(max)s
       or (select greatest(max(n), 0) from names) >= %(max)s as cut
from ranked
order by rank, lower(coalesce(actor_name, actor_id)), key
limit %(limit)s
"""

# one actor's current name and type, for the filter sentence (one index probe)
DESCRIBE_BY_ID = """
select actor_name, actor_type, source from audit.action_log
where actor_id = %(key)s order by occurred_at desc, id desc limit 1
"""
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


def _like_prefix(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text) + "%"


def _word_prefix(text: str) -> str:
    """A regular expression (PostgreSQL ARE) for ``text`` at the start of a word: every
    character that is no letter or digit is escaped (a backslash before any other
    character is that character)."""
    escaped = "".join(c if c.isalnum() else "\\" + c for c in text)
    return "(^|[^[:alnum:]])" + escaped


def find_actors(conn: psycopg.Connection, text: str, limit: int = DEFAULT_LIMIT) -> ActorMatches:
    """The actors whose id or a word of whose name starts with ``text`` (already checked
    by ``search_text``), best first: exact, name prefix, id prefix, later word."""
    params = {
        "text": text,
        "prefix": _like_prefix(text),
        "word": _word_prefix(text),
        "limit": limit + 1,
        "max": MAX_SCANNED,
    }
    with translate_errors(), conn.transaction():
        rows = conn.execute(SEARCH, params).fetchall()
    actors = tuple(
        Actor(key, actor_id, name, actor_type, bool(no_context), rank == 0)
        for key, actor_id, name, actor_type, no_context, rank, _cut in rows[:limit]
    )
    complete = not (rows and rows[0][6])
    return ActorMatches(text, actors, more=len(rows) > limit, complete=complete)


def describe(conn: psycopg.Connection, key: str) -> Actor | None:
    """The actor of an ``actor`` filter value ("id:7"), with its current name and type;
    None when the log has no such actor (or the value is not one)."""
    kind, sep, value = key.partition(":")
    if not sep or kind not in ("id", "name") or not value:
        return None
    query = DESCRIBE_BY_ID if kind == "id" else DESCRIBE_BY_NAME
    with translate_errors(), conn.transaction():
        row = conn.execute(query, {"key": value}).fetchone()
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
