-- Put a benchmark table back to the seed rows without firing any trigger (superuser
-- only: session_replication_role = replica skips the audit triggers, TRUNCATE's too).
-- Run inside one transaction; VACUUM ANALYZE follows, outside it.
set local session_replication_role = replica;
truncate {table};
insert into {table} (id, name, email, phone, status, condition, notes, owner_id, created_at, updated_at)
select id, name, email, phone, status, condition, notes, owner_id, created_at, updated_at
from {seed};
alter table {table} alter column id restart with {next_id};
