-- The items of the many-row actions that fill_log.sql wrote (ids above {after_id}), in
-- the storage format of audit.action_item_chunk (triggers/02_action_log.sql): chunks of
-- up to 1,000 items. An INSERT's or DELETE's chunk holds the rows, [row, ...], their ids
-- in resource_ids; an UPDATE's holds [resource_id, old, new] triples of its changed
-- column, and (revision 0004 on: bench/fill_log.py renders {update_ids} as "k.ids", else
-- "null") their ids in resource_ids too. A chunk carries its action's occurred_at (from
-- revision 0003 on, the partition key: its action's month; bench/fill_log.py renders
-- {time_column} and {time_value} as "occurred_at, " and "l.occurred_at, " there, as
-- nothing before).
--
-- The items' ids are spread over the 200,000 ids of fill_log.sql's single-row actions
-- (distinct within an action: 104729 is prime to 200,000), so a row's history mixes
-- single-row and many-row actions, about as many of each at 10 million actions.
insert into audit.action_item_chunk
  (action_id, {time_column}first_item, item_count, resource_type, operation, changed_columns,
   resource_ids, items)
select l.id, {time_value}c.first_item, c.item_count, l.resource_type, l.operation,
       case when l.operation = 'UPDATE' then '{status}'::text[] end,
       case when l.operation = 'UPDATE' then {update_ids} else k.ids end,
       k.items
from audit.action_log l
cross join lateral (
  select f as first_item, least(1000, l.row_count - f + 1) as item_count
  from generate_series(1, l.row_count, 1000) f
) c
cross join lateral (
  select array_agg(r.rid order by r.i) as ids,
         '[' || string_agg(
                  case l.operation
                    when 'UPDATE' then format('["%s",{"status":"open"},{"status":"closed"}]', r.rid)
                    else format('{"id":%s,"status":"open"}', r.rid)
                  end, ',' order by r.i) || ']' as items
  from (select i, ((l.id * 7919 + i * 104729) % 200000)::text as rid
        from generate_series(c.first_item, c.first_item + c.item_count - 1) i) r
) k
where l.id > {after_id} and l.row_count > 1 and l.operation in ('INSERT', 'UPDATE', 'DELETE');
