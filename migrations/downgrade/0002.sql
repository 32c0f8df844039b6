-- Back to revision 0001: its state files have just created its viewer indexes again;
-- the ones revision 0002 made, and their function, go. The indexes are usually done
-- already, without blocking writes, by downgrade_concurrently/0002.sql.
set local role audit_owner;
drop index if exists audit.action_log_text_time_idx;
drop index if exists audit.action_log_actor_source_idx;
drop function if exists audit.time_buckets(timestamptz);
reset role;
