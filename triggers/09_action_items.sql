-- Reading an action's items: the contract, whatever the storage (see 02_action_log.sql).

create or replace function audit.action_items(action_id bigint, first_item integer, max_items integer)
returns table (item_no integer, resource_type text, resource_id text, old jsonb, new jsonb)
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select * from (
    -- a many-row action (or a batch): its chunks, in order. A chunk holds [resource_id,
    -- old, new] triples, or (resource_ids set: bulk INSERT, DELETE) the rows alone.
    select c.first_item + (e.i - 1)::integer as item_no, c.resource_type,
           case when c.resource_ids is null then e.item ->> 0 else c.resource_ids[e.i] end,
           case when c.operation = 'INSERT' then null
                when c.resource_ids is null then e.item -> 1 else e.item end,
           case when c.operation = 'DELETE' then null
                when c.resource_ids is null then e.item -> 2 else e.item end
    from audit.action_item_chunk c
    cross join lateral jsonb_array_elements(c.items::jsonb) with ordinality as e(item, i)
    where c.action_id = action_items.action_id
      and c.first_item <= action_items.first_item::bigint + action_items.max_items - 1
      and c.first_item + c.item_count - 1 >= action_items.first_item
    union all
    -- a single-row action stores no item: its one item is its changes
    select 1, l.resource_type, l.resource_id,
           case l.operation
             when 'DELETE' then l.changes
             when 'UPDATE' then (select jsonb_object_agg(key, value -> 'old') from jsonb_each(l.changes))
           end,
           case l.operation
             when 'INSERT' then l.changes
             when 'UPDATE' then (select jsonb_object_agg(key, value -> 'new') from jsonb_each(l.changes))
           end
    from audit.action_log l
    where l.id = action_items.action_id and l.row_count = 1
      and l.operation in ('INSERT', 'UPDATE', 'DELETE')
      and not exists (select from audit.action_item_chunk c where c.action_id = l.id)
  ) items
  where items.item_no between action_items.first_item
                          and action_items.first_item::bigint + action_items.max_items - 1
  order by items.item_no
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
