-- A record's history: every action that touched one row of a tracked table, single-row
-- and many-row alike, newest first, each with what it changed on that row
-- (audit.history(), the viewer's "History of Client Maria Lopez #35").
--
-- Where the actions are found:
--   - a single-row action (and an application event about the row, and a batch that so
--     far holds one row) names it in audit.action_log.resource_id;
--   - a many-row action (a bulk statement, a batch) names its rows in its chunks
--     (audit.action_item_chunk): resource_ids, or, in the chunks whose resource_ids is
--     null (the [resource_id, old, new] triples of an UPDATE written before revision
--     0004), the first element of each item: audit.item_ids() (09_action_items.sql) reads them;
--   - a TRUNCATE of the row's table names no row: it touched every row the table held,
--     so it belongs to the history of a row that was in the log before it (its oldest
--     action is older than the TRUNCATE); one that came before the row existed does not.
--
-- Security. SECURITY INVOKER, like the other readers: it reads audit.action_log,
-- audit.action_item_chunk and audit.tracked_table with the caller's own rights
-- (audit_reader's), compares text with text and parses JSON text with pg_catalog's
-- functions only. No code a table's owner wrote runs in it, and nothing runs as
-- audit_owner. EXECUTE is audit_reader's (and so audit_admin's).

-- The ways in: three indexes, each read by one seek per month's partition, each written
-- by the statement that writes the action or the chunk (an entry of the partition's own
-- index: nothing else is written, no trigger).
--
-- They compare ids byte by byte (collate "C": equality is the same in every
-- deterministic collation, and a locale's comparison would cost every entry written a
-- strcoll() call or more); the queries ask with the same collation, or the planner
-- cannot use them.
--
-- Single-row actions: a btree in page order. Its entries are a per-action cost of every
-- single-row write (bench/write_overhead.py, docs/performance.md); the actions of many
-- rows and the events naming none take no entry.
create index if not exists action_log_resource_idx on audit.action_log (resource_type collate "C", resource_id collate "C", occurred_at desc, id desc) where resource_id is not null;
comment on index audit.action_log_resource_idx is
  'History of a row (audit.history()): the actions naming it, in page order.';

-- The TRUNCATEs, which name no row: a few entries in all, and an index of their own (in
-- the one above, a condition "resource_id is null" was estimated as common as the
-- log's many-row actions, and a plan kept for the session walked the time index).
create index if not exists action_log_truncate_idx on audit.action_log (resource_type collate "C", occurred_at desc, id desc) where operation = 'TRUNCATE';
comment on index audit.action_log_truncate_idx is
  'History of a row (audit.history()): the TRUNCATEs of each resource type, in page order.';

-- Many-row actions: a GIN index over each chunk's ids. A chunk written since revision
-- 0004 has them in resource_ids (the capture queries write them with the items, in the
-- same INSERT ... SELECT), and coalesce() takes them as they are: no parse. An UPDATE
-- chunk written before has none (chunks are append-only: they cannot be filled in), and
-- its ids are read out of its items (audit.item_ids()) when the index is built, once.
-- Both sides of coalesce() are what audit.history() must write, character for
-- character, for the planner to use the index. The resource type is not in it (a GIN
-- index holds the array's elements only): a chunk of another type with the same id is
-- fetched and left out by its resource_type, a column of the row itself.
-- fastupdate = off: a chunk's 1,000 ids go straight into the index, in the statement
-- that writes the chunk. A pending list (the GIN default, and the text index's
-- 256 kB in 13_viewer_indexes.sql) only moves that work: to the write that fills the
-- list, or to autovacuum, and every history query reads the list whole meanwhile.
-- Measured (backend CPU time of a 100,000-row UPDATE of a 10-column table, median of 5,
-- the pending list cleaned within the measurement): no index 0.71 s, fastupdate off
-- 0.83 s, a 256 kB list 0.92 s, a 4 MB one 1.00 s; its DELETE 0.32, 0.52, 0.54, 0.64 s.
create index if not exists action_item_chunk_resource_idx on audit.action_item_chunk using gin (coalesce(resource_ids, audit.item_ids(items)) collate "C") with (fastupdate = off);
comment on index audit.action_item_chunk_resource_idx is
  'History of a row (audit.history()): the chunks holding each resource id (resource_ids, or the ids of an older UPDATE chunk''s items).';

-- How a page is read: a few small statements rather than one query. A query naming the
-- partitioned log without a constant month is planned for each of its partitions (one
-- query joining the log five times took 30 ms to plan over 36 months); these are
-- planned once per session, generic (plan_cache_mode below), and stay good for any
-- value because each reads one index, seeking its leading columns: the page's newest actions naming
-- the row, every chunk holding it (before the page's bound), the TRUNCATEs since its
-- oldest action; then, in one statement, the page's actions by their key (id,
-- occurred_at: one partition each, pruned when the plan runs) and their chunks holding
-- the row by theirs (LATERAL ... LIMIT 1: a nested loop whatever the estimates). A plan
-- kept for the session locks every partition it names at each run, so that is one
-- statement for the page, not one per action. Only the chunks of the page's actions
-- are parsed, as json (the element is taken without building the others).
create or replace function audit.history(
  resource_type text, resource_id text,
  before_occurred_at timestamptz default null, before_id bigint default null,
  page_size integer default 50
) returns table (action_id bigint, occurred_at timestamptz, action text, action_type text,
                 actor_id text, actor_name text, actor_type text, source text,
                 row_count integer, operation text, items jsonb)
language plpgsql stable
set search_path = pg_catalog, pg_temp
-- the statements' plans made once per session for any row (see above), from the first
-- call: a plan made for the values is planned over every partition at each call (80 ms
-- at 36 months, 2 cores), and PL/pgSQL makes five of those before it tries a generic one
set plan_cache_mode = force_generic_plan
as $$
declare
  -- the keyset: strictly before (at, id); no bound on the first page
  at_bound   timestamptz := coalesce(history.before_occurred_at, 'infinity'::timestamptz);
  id_bound   bigint := case when history.before_occurred_at is null then 9223372036854775807
                            else coalesce(history.before_id, 9223372036854775807) end;
  rtype      text := history.resource_type;
  rid        text := history.resource_id;
  legacy     timestamptz := audit.legacy_chunk_bound();
  -- the chunks holding the row: their action (id, time), key (first_item) and the
  -- row's places in them (item_no - first_item + 1)
  hit_ids    bigint[];
  hit_ats    timestamptz[];
  hit_chunk_ats timestamptz[];
  hit_firsts integer[];
  hit_pos    integer[];
  first_at   timestamptz;
  page_ids   bigint[];
  page_ats   timestamptz[];
begin
  if history.page_size is null or history.page_size not between 1 and 1000 then
    raise exception 'audit.history(): page_size is %; expected 1 to 1000', coalesce(history.page_size::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  if rtype is null or rid is null then
    raise exception 'audit.history(): resource_type and resource_id are required (resource_type %, resource_id %)',
        coalesce(quote_literal(rtype), 'null'), coalesce(quote_literal(rid), 'null')
      using errcode = 'null_value_not_allowed';
  end if;
  -- a type that a tracked table has, or that the log names rows of (a table untracked since)
  if not exists (select from audit.tracked_table t where t.resource_type = rtype)
     and not exists (select from audit.action_log a
                     where a.resource_type = rtype collate "C" and a.resource_id is not null) then
    raise exception 'audit.history(): unknown resource type %: no tracked table has it and the log names no row of it', quote_literal(rtype)
      using errcode = 'invalid_parameter_value',
            hint = coalesce('The tracked resource types: '
                            || (select string_agg(distinct t.resource_type, ', ' order by t.resource_type) from audit.tracked_table t)
                            || '. For a table, pass it as a regclass: audit.history(''clients''::regclass, ''35'').',
                            'No table is tracked.');
  end if;

  -- the chunks holding the row (action_item_chunk_resource_idx: only this id's
  -- entries), up to the page's bound, newest first. A chunk carries its action's time
  -- ...
  select coalesce(array_agg(h.action_id order by h.occurred_at desc, h.action_id desc, h.first_item, h.pos), '{}'),
         coalesce(array_agg(h.occurred_at order by h.occurred_at desc, h.action_id desc, h.first_item, h.pos), '{}'),
         coalesce(array_agg(h.first_item order by h.occurred_at desc, h.action_id desc, h.first_item, h.pos), '{}'),
         coalesce(array_agg(h.pos order by h.occurred_at desc, h.action_id desc, h.first_item, h.pos), '{}')
  into hit_ids, hit_ats, hit_firsts, hit_pos
  from (select c.action_id, c.occurred_at, c.first_item, p.pos
        from audit.action_item_chunk c
        cross join lateral unnest(array_positions(coalesce(c.resource_ids, audit.item_ids(c.items)), rid)) p(pos)
        where coalesce(c.resource_ids, audit.item_ids(c.items)) collate "C" @> array[rid]
          and c.resource_type = rtype
          and c.occurred_at <= at_bound and c.occurred_at > '-infinity'::timestamptz) h;
  hit_chunk_ats := hit_ats;
  -- ... but '-infinity' in the legacy partition of an upgraded install (older than the
  -- legacy bound): their actions are found by id in the legacy months, and take their
  -- places by their time
  if legacy > '-infinity'::timestamptz then
    select coalesce(array_agg(h.action_id order by h.at desc, h.action_id desc, h.first_item, h.pos), '{}'),
           coalesce(array_agg(h.at order by h.at desc, h.action_id desc, h.first_item, h.pos), '{}'),
           coalesce(array_agg(h.chunk_at order by h.at desc, h.action_id desc, h.first_item, h.pos), '{}'),
           coalesce(array_agg(h.first_item order by h.at desc, h.action_id desc, h.first_item, h.pos), '{}'),
           coalesce(array_agg(h.pos order by h.at desc, h.action_id desc, h.first_item, h.pos), '{}')
    into hit_ids, hit_ats, hit_chunk_ats, hit_firsts, hit_pos
    from (select u.action_id, u.at, u.chunk_at, u.first_item, u.pos
          from unnest(hit_ids, hit_ats, hit_chunk_ats, hit_firsts, hit_pos) u(action_id, at, chunk_at, first_item, pos)
          union all
          select c.action_id, a.occurred_at, c.occurred_at, c.first_item, p.pos
          from audit.action_item_chunk c
          cross join lateral unnest(array_positions(coalesce(c.resource_ids, audit.item_ids(c.items)), rid)) p(pos)
          join audit.action_log a on a.id = c.action_id and a.occurred_at < legacy
          where coalesce(c.resource_ids, audit.item_ids(c.items)) collate "C" @> array[rid]
            and c.resource_type = rtype
            and c.occurred_at = '-infinity'::timestamptz and a.occurred_at <= at_bound) h;
  end if;

  -- the row's oldest action: a TRUNCATE after it touched the row (the oldest chunk
  -- before the bound is the oldest of all, if there is one: a TRUNCATE newer than the
  -- bound is no page's concern)
  first_at := least(
    (select a.occurred_at from audit.action_log a
     where a.resource_type = rtype collate "C" and a.resource_id = rid collate "C"
     order by a.occurred_at, a.id limit 1),
    hit_ats[cardinality(hit_ats)]);

  -- the page: the newest of the actions naming the row (action_log_resource_idx, in
  -- page order: the page at most), the chunks' actions and the TRUNCATEs since
  select coalesce(array_agg(x.id order by x.at desc, x.id desc), '{}'),
         coalesce(array_agg(x.at order by x.at desc, x.id desc), '{}')
  into page_ids, page_ats
  from (select u.id, u.at
        from (select n.id, n.occurred_at as at
              from (select a.id, a.occurred_at from audit.action_log a
                    where a.resource_type = rtype collate "C" and a.resource_id = rid collate "C"
                      and (a.occurred_at, a.id) < (at_bound, id_bound)
                    order by a.occurred_at desc, a.id desc
                    limit history.page_size) n
              union
              select h.id, h.at from unnest(hit_ids, hit_ats) h(id, at)
              where (h.at, h.id) < (at_bound, id_bound)
              union
              select t.id, t.occurred_at
              from (select a.id, a.occurred_at from audit.action_log a
                    where a.resource_type = rtype collate "C" and a.operation = 'TRUNCATE'
                      and a.occurred_at > first_at
                      and (a.occurred_at, a.id) < (at_bound, id_bound)
                    order by a.occurred_at desc, a.id desc
                    limit history.page_size) t) u
        order by u.at desc, u.id desc
        limit history.page_size) x;

  -- each action of the page by its key, each chunk holding the row by its key (LATERAL
  -- ... LIMIT 1: a nested loop whatever the estimates, each lookup pruned to one month)
  return query
  select l.id, l.occurred_at, l.action::text, l.action_type::text,
         l.actor_id, l.actor_name, l.actor_type::text, l.source::text,
         l.row_count::integer, l.operation::text,
         coalesce(
           -- the row's items in the action's chunks (usually one; a batch may hold two)
           (select jsonb_agg(jsonb_build_object(
                     'item_no', k.first_item + h.pos - 1,
                     'old', case when k.chunk_operation = 'INSERT' then null
                                 when k.triple then (k.item -> 1)::jsonb else k.item::jsonb end,
                     'new', case when k.chunk_operation = 'DELETE' then null
                                 when k.triple then (k.item -> 2)::jsonb else k.item::jsonb end)
                   order by k.first_item + h.pos - 1)
            from unnest(hit_ids, hit_chunk_ats, hit_firsts, hit_pos) h(id, chunk_at, first_item, pos)
            cross join lateral (
              select c.first_item, c.operation as chunk_operation,
                     c.resource_ids is null or c.operation = 'UPDATE' as triple,
                     c.items::json -> (h.pos - 1) as item
              from audit.action_item_chunk c
              where c.action_id = h.id and c.first_item = h.first_item and c.occurred_at = h.chunk_at
              limit 1) k
            where h.id = l.id),
           -- a single-row action stores no item: its one item is its changes (as
           -- audit.action_items() gives it)
           case when l.row_count = 1 and l.operation in ('INSERT', 'UPDATE', 'DELETE') then
             jsonb_build_array(jsonb_build_object(
               'item_no', 1,
               'old', case l.operation
                        when 'DELETE' then l.changes
                        when 'UPDATE' then (select jsonb_object_agg(x.key, x.value -> 'old') from jsonb_each(l.changes) x)
                      end,
               'new', case l.operation
                        when 'INSERT' then l.changes
                        when 'UPDATE' then (select jsonb_object_agg(x.key, x.value -> 'new') from jsonb_each(l.changes) x)
                      end))
           end,
           -- a TRUNCATE (its rows were not logged), an application event
           '[]'::jsonb)
  from unnest(page_ids, page_ats) with ordinality p(id, at, n)
  cross join lateral (
    select a.* from audit.action_log a where a.id = p.id and a.occurred_at = p.at limit 1) l
  order by p.n;
end
$$;
comment on function audit.history(text, text, timestamptz, bigint, integer) is
  'A record''s history: every action that touched the row (resource_type, resource_id as logged), single-row and many-row (bulk statements, audit.batch) alike, and the TRUNCATEs of its table since its oldest action; newest first by (occurred_at, action_id), at most page_size (1 to 1000) per page, strictly before (before_occurred_at, before_id) when given. items: that row''s items in the action, [{"item_no", "old", "new"}] as audit.action_items() gives them ([] for a TRUNCATE or an event). SECURITY INVOKER: reads with the caller''s rights (audit_reader).';

create or replace function audit.history(
  tracked regclass, resource_id text,
  before_occurred_at timestamptz default null, before_id bigint default null,
  page_size integer default 50
) returns table (action_id bigint, occurred_at timestamptz, action text, action_type text,
                 actor_id text, actor_name text, actor_type text, source text,
                 row_count integer, operation text, items jsonb)
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  rtype text;
begin
  -- a partition or inheritance child of a tracked table is logged as that table
  select t.resource_type into rtype
  from audit.tracked_table t where t.relation = audit.tracked_root(history.tracked);
  if rtype is null then
    raise exception 'audit.history(): % is not tracked', history.tracked
      using errcode = 'invalid_parameter_value',
            hint = 'Track it with audit.track(), or give the resource type its actions were logged with: audit.history(''client'', ''35'').';
  end if;
  return query
  select * from audit.history(rtype, history.resource_id, history.before_occurred_at,
                              history.before_id, history.page_size);
end
$$;
comment on function audit.history(regclass, text, timestamptz, bigint, integer) is
  'audit.history(resource_type, ...) of a tracked table''s rows: the table''s resource type (a partition''s or inheritance child''s is its tracked table''s). Raises when the table is not tracked.';

revoke all on function
  audit.history(text, text, timestamptz, bigint, integer),
  audit.history(regclass, text, timestamptz, bigint, integer)
  from public;
-- (audit_admin is granted audit_reader: 00_roles.sql)
grant execute on function
  audit.history(text, text, timestamptz, bigint, integer),
  audit.history(regclass, text, timestamptz, bigint, integer)
  to audit_reader;
