-- The canonical rows, untracked: every reset copies them into both benchmark tables.
-- Statuses never include 'closed' (the bulk UPDATE sets it on every row); notes are
-- about 95 characters and differ from row to row.
create table {seed} as
select i::bigint                                                      as id,
       'Client ' || i                                                 as name,
       'client' || i || '@example.com'                                as email,
       '+1-555-' || lpad((i % 10000)::text, 4, '0')                   as phone,
       (array['new', 'active', 'pending', 'retained', 'lost'])[1 + i % 5] as status,
       (array['stable', 'critical', 'improving', 'unknown'])[1 + i % 4]   as condition,
       md5(i::text) || ' ' || md5((i * 31)::text) || ' called back, wants a follow-up' as notes,
       (1 + i % 500)::bigint                                          as owner_id,
       timestamptz '2024-01-01' + (i % 1000) * interval '1 hour'      as created_at,
       timestamptz '2024-06-01' + (i % 100) * interval '1 hour'       as updated_at
from generate_series(1, {rows}) as i;
