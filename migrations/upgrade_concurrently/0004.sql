-- Revision 0004, before its transaction: the indexes by resource of a record's history
-- (triggers/20_history.sql) built CONCURRENTLY, so that audited writes go on meanwhile.
-- Built in the migration's transaction, an index holds a SHARE lock on the log for the
-- whole build, which blocks every INSERT, UPDATE and DELETE of every tracked table.
-- The log is partitioned by month (revision 0003), and CREATE INDEX CONCURRENTLY cannot
-- build a partitioned table's index: each statement below is run on every partition of
-- its table, one at a time, as <partition>_<suffix> (sqlfiles.run_concurrently; in the
-- --sql script, psql's \gexec). The state file's `create index if not exists` on the
-- parent then finds them (valid, of the same definition) and attaches them: no build
-- under the transaction's lock. Each statement runs on its own, in autocommit, as
-- audit_owner, and an index of the same name left INVALID by a failed build is dropped
-- before it is built again (migrations/README.md). On a caller's connection already in a
-- transaction, this file is skipped and the state files build them, under the lock
-- (with a warning).

-- What the chunks' index computes for a chunk written before this revision: the
-- definition of triggers/09_action_items.sql (which runs again in the transaction,
-- comments and grants it).
create or replace function audit.item_ids(items text) returns text[]
language sql immutable parallel safe
return array(select e.item ->> 0
             from pg_catalog.json_array_elements(items::json) with ordinality e(item, i)
             order by e.i);

-- The indexes, character for character those of triggers/20_history.sql. The GIN one
-- reads the ids out of every UPDATE chunk written before this revision (once).
create index concurrently if not exists action_log_resource_idx on audit.action_log (resource_type collate "C", resource_id collate "C", occurred_at desc, id desc) where resource_id is not null;

create index concurrently if not exists action_log_truncate_idx on audit.action_log (resource_type collate "C", occurred_at desc, id desc) where operation = 'TRUNCATE';

create index concurrently if not exists action_item_chunk_resource_idx on audit.action_item_chunk using gin (coalesce(resource_ids, audit.item_ids(items)) collate "C") with (fastupdate = off);
