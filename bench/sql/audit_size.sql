-- On-disk size of every table of one schema (audit, or the classic reference's
-- classic_audit), with its TOAST table and indexes.
select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
from pg_class c
where c.relnamespace = %(schema)s::regnamespace and c.relkind = 'r';
