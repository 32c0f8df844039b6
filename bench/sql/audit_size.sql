-- On-disk size of every table of schema audit, with its TOAST table and indexes.
select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
from pg_class c
where c.relnamespace = 'audit'::regnamespace and c.relkind = 'r';
