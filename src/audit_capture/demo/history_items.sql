-- The items of the generated history's bulk actions (audit-capture demo --history N), in
-- the format the capture writes them (see audit.action_item_chunk's comments): one chunk
-- per action (the history's bulk actions cover at most 100 rows), an UPDATE's items as
-- [resource_id, old, new] triples of its changed column, an INSERT's new rows and a
-- DELETE's old rows with their ids in resource_ids. An action's rows have consecutive
-- ids, from a first one drawn from the action's id. Parameters: after (the log's last
-- id before the history), clients, cases, first_names, last_names.
insert into audit.action_item_chunk (
  action_id, occurred_at, first_item, item_count, resource_type, operation, changed_columns,
  items, resource_ids)
select l.id, l.occurred_at, 1, l.row_count, l.resource_type, l.operation,
       case when l.operation = 'UPDATE' then array[column_name] end,
       rows.items::text,
       case when l.operation <> 'UPDATE' then rows.ids end
from audit.action_log l
cross join lateral (
  select case when l.action like '%%condition%%' then 'condition' else 'status' end
           as column_name,
         -- json, as the items are: built into them as text, not printed from a jsonb
         to_json(l.occurred_at) as stamp,
         -- the first row: a range that existed by then, the same for every item
         1 + mod(l.id * 7919, greatest(case l.resource_type when 'client' then %(clients)s
                                                          else %(cases)s end - 301, 1))
           as first_id
) a
cross join lateral (
  select json_agg(
           case
             when l.operation = 'UPDATE' and a.column_name = 'status' then
               json_build_array(
                 (a.first_id + k)::text,
                 json_build_object('status', 'open'),
                 json_build_object('status', (array['in_review', 'closed', 'settled'])
                                             [1 + mod(l.id, 3)]))
             when l.operation = 'UPDATE' then
               json_build_array(
                 (a.first_id + k)::text,
                 json_build_object('condition', (array['awaiting records', 'medical review',
                                                       'urgent'])[1 + mod(a.first_id + k, 3)]),
                 json_build_object('condition', 'ready to file'))
             when l.resource_type = 'client' then
               json_build_object(
                 'id', a.first_id + k, 'ssn', '[redacted]', 'name', person.name,
                 'email', case when l.action_type = 'import' then 'lead' || (a.first_id + k)
                                                                  || '@leads.example.com'
                               else lower(replace(person.name, ' ', '.')) || (a.first_id + k)
                                    || '@example.com' end,
                 'notes', null,
                 'phone', '555-' || lpad(mod((a.first_id + k) * 7919, 10000)::text, 4, '0'),
                 'status', case when l.action_type = 'import' then 'new' else 'contacted' end,
                 'created_at', a.stamp, 'updated_at', a.stamp, 'campaign_id', null)
             else
               json_build_object(
                 'id', a.first_id + k, 'client_id', 1 + mod((a.first_id + k) * 7, %(clients)s),
                 'title', 'Case ' || (a.first_id + k) || '-'
                          || (100 + mod((a.first_id + k) * 37, 900)),
                 'status', 'closed', 'condition', 'ready to file',
                 'document_url', 'https://docs.example.com/' || (a.first_id + k),
                 'created_at', a.stamp, 'updated_at', a.stamp)
           end) as items,
         array_agg((a.first_id + k)::text) as ids
  -- no ORDER BY in the aggregates (in PostgreSQL 15 each would sort its action's rows
  -- apart): they read generate_series' k in its order, items and ids alike
  from generate_series(0, l.row_count - 1) as k
  cross join lateral (
    select case a.first_id + k when 17 then 'Dana Whitfield' when 23 then 'Omar Haddad'
             else (%(first_names)s::text[])[1 + mod(a.first_id + k, 20)] || ' '
                  || (%(last_names)s::text[])[1 + mod((a.first_id + k) / 20, 20)] end as name
  ) person
) rows
where l.id > %(after)s and l.row_count > 1
