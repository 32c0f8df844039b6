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
--     0004), the first element of each item: audit.item_ids() reads them;
--   - a TRUNCATE of the row's table names no row: it touched every row the table held,
--     so it belongs to the history of a row that was in the log before it (its oldest
--     action is older than the TRUNCATE); one that came before the row existed does not.
--
-- Security. SECURITY INVOKER, like the other readers: it reads audit.action_log,
-- audit.action_item_chunk and audit.tracked_table with the caller's own rights
-- (audit_reader's), compares text with text and parses JSON text with pg_catalog's
-- functions only. No code a table's owner wrote runs in it, and nothing runs as
-- audit_owner. EXECUTE is audit_reader's (and so audit_admin's).

-- The resource ids of a chunk written as [resource_id, old, new] triples, in item order.
-- A SQL-standard body: parsed once, here, so no search_path is ever consulted.
create or replace function audit.item_ids(items text) returns text[]
language sql immutable parallel safe
return array(select e.item ->> 0
             from pg_catalog.json_array_elements(items::json) with ordinality e(item, i)
             order by e.i);
comment on function audit.item_ids(text) is
  'Internal: the resource ids of the items of a chunk written as [resource_id, old, new] triples (audit.action_item_chunk.items whose resource_ids is null), in item order.';

create or replace function audit.history(
  resource_type text, resource_id text,
  before_occurred_at timestamptz default null, before_id bigint default null,
  page_size integer default 50
) returns table (action_id bigint, occurred_at timestamptz, action text, action_type text,
                 actor_id text, actor_name text, actor_type text, source text,
                 row_count integer, operation text, items jsonb)
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  -- the keyset: strictly before (at, id); no bound on the first page
  at_bound  timestamptz := coalesce(history.before_occurred_at, 'infinity'::timestamptz);
  id_bound  bigint := case when history.before_occurred_at is null then 9223372036854775807
                           else coalesce(history.before_id, 9223372036854775807) end;
  rtype     text := history.resource_type;
  rid       text := history.resource_id;
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
                     where a.resource_type = rtype and a.resource_id is not null) then
    raise exception 'audit.history(): unknown resource type %: no tracked table has it and the log names no row of it', quote_literal(rtype)
      using errcode = 'invalid_parameter_value',
            hint = coalesce('The tracked resource types: '
                            || (select string_agg(distinct t.resource_type, ', ' order by t.resource_type) from audit.tracked_table t)
                            || '. For a table, pass it as a regclass: audit.history(''clients''::regclass, ''35'').',
                            'No table is tracked.');
  end if;

  return query
  with
  -- the actions naming the row (newest first: the page at most)
  named as (
    select a.id as hit_id, a.occurred_at as hit_at
    from audit.action_log a
    where a.resource_type = rtype and a.resource_id = rid
      and (a.occurred_at, a.id) < (at_bound, id_bound)
    order by a.occurred_at desc, a.id desc
    limit history.page_size),
  -- the chunks holding the row, every one of them (the oldest decides which TRUNCATEs
  -- count). A chunk carries its action's time, but '-infinity' in the legacy partition
  -- of an upgraded install: those are matched to their action by id.
  chunk_hits as (
    select c.action_id as chunk_action, c.occurred_at as chunk_at, c.first_item,
           c.operation as chunk_operation, c.resource_ids, c.items as chunk_items,
           p.pos
    from audit.action_item_chunk c
    cross join lateral unnest(array_positions(coalesce(c.resource_ids, audit.item_ids(c.items)), rid)) p(pos)
    where c.resource_type = rtype
      and coalesce(c.resource_ids, audit.item_ids(c.items)) @> array[rid]),
  chunk_actions as (
    select distinct a.id as hit_id, a.occurred_at as hit_at
    from chunk_hits h
    join audit.action_log a on a.id = h.chunk_action and a.occurred_at = h.chunk_at
    union
    select a.id, a.occurred_at
    from chunk_hits h
    join audit.action_log a on a.id = h.chunk_action
    where h.chunk_at = '-infinity'::timestamptz),
  -- the row's oldest action: a TRUNCATE after it touched the row
  oldest as (
    select least((select min(n.occurred_at) from audit.action_log n
                  where n.resource_type = rtype and n.resource_id = rid),
                 (select min(ca.hit_at) from chunk_actions ca)) as first_at),
  truncated as (
    select a.id as hit_id, a.occurred_at as hit_at
    from audit.action_log a, oldest o
    where a.resource_type = rtype and a.operation = 'TRUNCATE' and a.resource_id is null
      and a.occurred_at > o.first_at
      and (a.occurred_at, a.id) < (at_bound, id_bound)
    order by a.occurred_at desc, a.id desc
    limit history.page_size),
  page as (
    select x.hit_id, x.hit_at
    from (select n.hit_id, n.hit_at from named n
          union
          select ca.hit_id, ca.hit_at from chunk_actions ca
          where (ca.hit_at, ca.hit_id) < (at_bound, id_bound)
          union
          select t.hit_id, t.hit_at from truncated t) x
    order by x.hit_at desc, x.hit_id desc
    limit history.page_size)
  select a.id, a.occurred_at, a.action::text, a.action_type::text,
         a.actor_id, a.actor_name, a.actor_type::text, a.source::text,
         a.row_count::integer, a.operation::text,
         coalesce(
           -- the row's items in the action's chunks (usually one; a batch may hold two)
           (select jsonb_agg(jsonb_build_object('item_no', i.item_no, 'old', i.old_row, 'new', i.new_row)
                             order by i.item_no)
            from (select h.first_item + h.pos - 1 as item_no,
                         case when h.chunk_operation = 'INSERT' then null
                              when h.resource_ids is null or h.chunk_operation = 'UPDATE'
                                then (h.chunk_items::json -> (h.pos - 1) -> 1)::jsonb
                              else (h.chunk_items::json -> (h.pos - 1))::jsonb end as old_row,
                         case when h.chunk_operation = 'DELETE' then null
                              when h.resource_ids is null or h.chunk_operation = 'UPDATE'
                                then (h.chunk_items::json -> (h.pos - 1) -> 2)::jsonb
                              else (h.chunk_items::json -> (h.pos - 1))::jsonb end as new_row
                  from chunk_hits h
                  where h.chunk_action = a.id
                    and (h.chunk_at = a.occurred_at or h.chunk_at = '-infinity'::timestamptz)) i),
           -- a single-row action stores no item: its one item is its changes (as
           -- audit.action_items() gives it)
           case when a.row_count = 1 and a.operation in ('INSERT', 'UPDATE', 'DELETE') then
             jsonb_build_array(jsonb_build_object(
               'item_no', 1,
               'old', case a.operation
                        when 'DELETE' then a.changes
                        when 'UPDATE' then (select jsonb_object_agg(x.key, x.value -> 'old') from jsonb_each(a.changes) x)
                      end,
               'new', case a.operation
                        when 'INSERT' then a.changes
                        when 'UPDATE' then (select jsonb_object_agg(x.key, x.value -> 'new') from jsonb_each(a.changes) x)
                      end))
           end,
           -- a TRUNCATE (its rows were not logged), an application event
           '[]'::jsonb)
  from page p
  join audit.action_log a on a.id = p.hit_id and a.occurred_at = p.hit_at
  order by a.occurred_at desc, a.id desc;
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
  audit.item_ids(text),
  audit.history(text, text, timestamptz, bigint, integer),
  audit.history(regclass, text, timestamptz, bigint, integer)
  from public;
-- (audit_admin is granted audit_reader: 00_roles.sql)
grant execute on function
  audit.item_ids(text),
  audit.history(text, text, timestamptz, bigint, integer),
  audit.history(regclass, text, timestamptz, bigint, integer)
  to audit_reader;
