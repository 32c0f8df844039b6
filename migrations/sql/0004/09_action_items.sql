-- Reading an action's items: the contract, whatever the storage (see 02_action_log.sql).

-- A chunk carries its action's occurred_at, so its action's time finds its partition:
-- the action is looked up first, and the chunks are read in its month's partition only.
-- Chunks written before the log was partitioned (an install upgraded from revision
-- 0002) carry '-infinity' in the legacy partition: an action older than that
-- partition's bound looks there too.
create or replace function audit.legacy_chunk_bound() returns timestamptz
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(
    (select (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz
     from pg_class c
     where c.oid = to_regclass('audit.action_item_chunk_legacy') and c.relispartition),
    '-infinity')
$$;
comment on function audit.legacy_chunk_bound() is
  'Internal: the upper bound of the legacy chunk partition (an install upgraded from an unpartitioned log: its older chunks carry occurred_at ''-infinity''); ''-infinity'' when there is none.';

create or replace function audit.action_items(action_id bigint, first_item integer, max_items integer)
returns table (item_no integer, resource_type text, resource_id text, old jsonb, new jsonb)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  l          audit.action_log;
  last_item  bigint := action_items.first_item::bigint + action_items.max_items - 1;
  older      timestamptz;  -- where its chunks written before partitioning would be
begin
  select * into l from audit.action_log a where a.id = action_items.action_id;
  if not found then
    -- no such action, or the one audit.finish_statement() is writing in this statement
    -- (it reads the items first): its chunks carry this statement's time
    l.id := action_items.action_id;
    l.occurred_at := pg_catalog.statement_timestamp();
  end if;
  older := case when l.occurred_at < audit.legacy_chunk_bound() then '-infinity'::timestamptz
                else l.occurred_at end;
  if l.row_count = 1 and l.operation in ('INSERT', 'UPDATE', 'DELETE')
     and not exists (select from audit.action_item_chunk c
                     where c.action_id = l.id and c.occurred_at in (l.occurred_at, older)) then
    -- a single-row action stores no item: its one item is its changes
    return query
    select 1, l.resource_type, l.resource_id,
           case l.operation
             when 'DELETE' then l.changes
             when 'UPDATE' then (select jsonb_object_agg(x.key, x.value -> 'old') from jsonb_each(l.changes) x)
           end,
           case l.operation
             when 'INSERT' then l.changes
             when 'UPDATE' then (select jsonb_object_agg(x.key, x.value -> 'new') from jsonb_each(l.changes) x)
           end
    where 1 between action_items.first_item and last_item;
    return;
  end if;
  -- a many-row action (or a batch): its chunks, in order. An UPDATE's chunk holds
  -- [resource_id, old, new] triples (and, from revision 0004 on, their ids in
  -- resource_ids too); a bulk INSERT's or DELETE's the rows alone, their ids in
  -- resource_ids. A chunk without resource_ids holds triples, whatever its operation.
  return query
  select c.first_item + (e.i - 1)::integer, c.resource_type,
         case when c.resource_ids is null or c.operation = 'UPDATE' then e.item ->> 0 else c.resource_ids[e.i] end,
         case when c.operation = 'INSERT' then null
              when c.resource_ids is null or c.operation = 'UPDATE' then e.item -> 1 else e.item end,
         case when c.operation = 'DELETE' then null
              when c.resource_ids is null or c.operation = 'UPDATE' then e.item -> 2 else e.item end
  from audit.action_item_chunk c
  cross join lateral jsonb_array_elements(c.items::jsonb) with ordinality as e(item, i)
  where c.action_id = l.id
    and c.occurred_at in (l.occurred_at, older)
    and c.first_item <= last_item
    and c.first_item + c.item_count - 1 >= action_items.first_item
    and c.first_item + (e.i - 1) between action_items.first_item and last_item
  order by 1;
end
$$;
comment on function audit.action_items(bigint, integer, integer) is
  'A window of audit.action_items(action_id): max_items items from item_no first_item on. Only the chunks that overlap it are read, so paging through a big action is cheap.';

create or replace function audit.action_items(action_id bigint)
returns table (item_no integer, resource_type text, resource_id text, old jsonb, new jsonb)
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select * from audit.action_items(action_id, 1, 2147483647)
$$;
comment on function audit.action_items(bigint) is
  'The rows an action affected, one per row, in order: item_no, resource_type, resource_id, old (null for a create) and new (null for a delete). An update''s old and new hold its changed columns. Redacted columns read "[redacted]".';

-- The resource ids of a chunk written as [resource_id, old, new] triples, in item order:
-- the ids of an UPDATE chunk written before revision 0004, which has no resource_ids (the
-- chunks' index by resource reads them, 20_history.sql).
-- A SQL-standard body: parsed once, here, so no search_path is ever consulted.
create or replace function audit.item_ids(items text) returns text[]
language sql immutable parallel safe
return array(select e.item ->> 0
             from pg_catalog.json_array_elements(items::json) with ordinality e(item, i)
             order by e.i);
comment on function audit.item_ids(text) is
  'Internal: the resource ids of the items of a chunk written as [resource_id, old, new] triples (audit.action_item_chunk.items whose resource_ids is null), in item order.';
