-- The items of the many-row actions that fill_log.sql wrote (ids above {after_id}), in
-- the storage format of audit.action_item_chunk (triggers/02_action_log.sql): chunks of
-- up to 1,000 items, each chunk one JSON text array of [resource_id, old, new]. An
-- INSERT's old and a DELETE's new are null; an UPDATE holds its changed column only. A
-- chunk carries its action's occurred_at (from revision 0003 on, the partition key: its
-- action's month; bench/fill_log.py renders {time_column} and {time_value} as
-- "occurred_at, " and "l.occurred_at, " there, as nothing before).
insert into audit.action_item_chunk
  (action_id, {time_column}first_item, item_count, resource_type, operation, changed_columns,
   items)
select l.id, {time_value}c.first_item, c.item_count, l.resource_type, l.operation,
       case when l.operation = 'UPDATE' then '{status}'::text[] end,
       (select '[' || string_agg(
                 case l.operation
                   when 'INSERT' then format('["%s",null,{"id":%s,"status":"open"}]', i, i)
                   when 'DELETE' then format('["%s",{"id":%s,"status":"open"},null]', i, i)
                   else format('["%s",{"status":"open"},{"status":"closed"}]', i)
                 end, ',' order by i) || ']'
        from generate_series(c.first_item, c.first_item + c.item_count - 1) i)
from audit.action_log l
cross join lateral (
  select f as first_item, least(1000, l.row_count - f + 1) as item_count
  from generate_series(1, l.row_count, 1000) f
) c
where l.id > {after_id} and l.row_count > 1 and l.operation in ('INSERT', 'UPDATE', 'DELETE');
