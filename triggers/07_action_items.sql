-- Reading an action's items: the contract, whatever the storage.

create or replace function audit.action_items(action_id bigint)
returns table (item_no integer, resource_type text, resource_id text, old jsonb, new jsonb)
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select i.item_no, i.resource_type, i.resource_id, i.old, i.new
  from audit.action_item i
  where i.action_id = action_items.action_id
  order by i.item_no
$$;
comment on function audit.action_items(bigint) is
  'The rows an action affected, one per row: resource_id, old (null for a create) and new (null for a delete). Redacted columns read "[redacted]".';
