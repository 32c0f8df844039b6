-- Reading an action's items: the contract, whatever the storage (see 02_action_log.sql).

-- One stored item's value lists as objects. For an UPDATE only the changed columns are
-- kept: the others are null on both sides, and a changed column never is.
create or replace function audit.item_objects(
  operation text, columns text[], old_values jsonb, new_values jsonb,
  out old jsonb, out new jsonb
)
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case when operation <> 'INSERT' then
           coalesce(jsonb_object_agg(columns[i], old_values -> (i - 1)) filter (where keep), '{}') end,
         case when operation <> 'DELETE' then
           coalesce(jsonb_object_agg(columns[i], new_values -> (i - 1)) filter (where keep), '{}') end
  from generate_series(1, cardinality(columns)) i
  cross join lateral (
    select operation <> 'UPDATE'
           or jsonb_typeof(old_values -> (i - 1)) <> 'null'
           or jsonb_typeof(new_values -> (i - 1)) <> 'null' as keep) k
$$;
comment on function audit.item_objects(text, text[], jsonb, jsonb) is
  'Internal: turns a stored item''s value lists into old and new objects.';

create or replace function audit.action_items(action_id bigint)
returns table (item_no integer, resource_type text, resource_id text, old jsonb, new jsonb)
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  -- a many-row action (or a batch): its chunks, in order
  select c.first_item + (e.i - 1)::integer, c.resource_type, e.item ->> 0, o.old, o.new
  from audit.action_item_chunk c
  cross join lateral jsonb_array_elements(c.items::jsonb) with ordinality as e(item, i)
  cross join lateral audit.item_objects(c.operation, c.columns, e.item -> 1, e.item -> 2) o
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
