-- Put a benchmark table back to its shape's seed rows without firing any trigger
-- (superuser only: session_replication_role = replica skips the audit triggers, the
-- classic reference's and TRUNCATE's too). A seed has its tables' columns in their
-- order (tests/test_bench_write.py checks it). Run inside one transaction; VACUUM
-- ANALYZE follows, outside it.
set local session_replication_role = replica;
truncate {table};
insert into {table} select * from {seed};
alter table {table} alter column id restart with {next_id};
