-- Revision 0002 replaces two viewer indexes (triggers/13_viewer_indexes.sql says why):
-- the text search index gains the action's day and month, the actor index takes source
-- as a key. The state files create the new ones; the old ones go. Both are usually done
-- already, without blocking writes, by upgrade_concurrently/0002.sql; on a caller's
-- connection in a transaction, they are done here, under the table's lock.
set local role audit_owner;
drop index if exists audit.action_log_text_idx;
drop index if exists audit.action_log_actor_idx;
reset role;
