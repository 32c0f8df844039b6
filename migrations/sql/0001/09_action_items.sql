-- Reading an action's items: the contract, whatever the storage (see 02_action_log.sql).

create or replace function audit.action_items(action_id bigint)
returns table (item_no integer, resource_type text, resource_id text, old jsonb, new jsonb)
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  -- a many-row action (or a batch): its chunks, in order
  select c.first_item + (e.i - 1)::integer, c.resource_type, e.item ->> 0,
         case when c.operation <> 'INSERT' then e.item -> 1 end,
         case when c.operation <> 'DELETE' then e.item -> 2 end
  from audit.action_item_chunk c
  cross join lateral jsonb_array_elements(c.items::jsonb) with ordinality as e(item, i)
  where c.action_id = action_items.action_id
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
  order by 1
$$;
comment on function audit.action_items(bigint) is
  'The rows an action affected, one per row, in order: item_no, resource_type, resource_id, old (null for a create) and new (null for a delete). An update''s old and new hold its changed columns. Redacted columns read "[redacted]".';
