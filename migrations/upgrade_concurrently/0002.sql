-- Revision 0002, before its transaction: the two new viewer indexes are built, and the
-- two old ones dropped, CONCURRENTLY, so that audited writes go on meanwhile. Built in
-- the migration's transaction, an index holds a SHARE lock on audit.action_log for the
-- whole build, which blocks every INSERT, UPDATE and DELETE of every tracked table
-- (measured at 10 million actions: ~70 s for the GIN index, ~25 s for the btree).
-- Each statement runs on its own, in autocommit, as audit_owner, and an index of the
-- same name left INVALID by a failed build is dropped before it is built again
-- (migrations/README.md). The transactional part then finds the work done: the state
-- files' `create index if not exists` and upgrade/0002.sql's `drop index if exists` do
-- nothing. On a caller's connection already in a transaction, this file is skipped and
-- they do it all, under the lock (with a warning).

-- The text index's second column: the definition of triggers/13_viewer_indexes.sql
-- (which runs again in the transaction, and comments it).
create or replace function audit.time_buckets(occurred_at timestamptz) returns integer[]
language sql immutable parallel safe
return array[
  2 * ((occurred_at at time zone 'UTC')::date - date '2000-01-01'),
  2 * ((extract(year from occurred_at at time zone 'UTC')::integer - 2000) * 12
       + extract(month from occurred_at at time zone 'UTC')::integer - 1) + 1
];

-- The new indexes, character for character those of triggers/13_viewer_indexes.sql.
create index concurrently if not exists action_log_text_time_idx on audit.action_log using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, '')), audit.time_buckets(occurred_at));

create index concurrently if not exists action_log_actor_source_idx on audit.action_log (actor_id, source, occurred_at desc, id desc) where actor_id is not null;

-- The ones they replace (a plain DROP INDEX takes an ACCESS EXCLUSIVE lock on the log,
-- which waits for every running query on it and blocks reads and writes behind it).
drop index concurrently if exists audit.action_log_text_idx;

drop index concurrently if exists audit.action_log_actor_idx;
