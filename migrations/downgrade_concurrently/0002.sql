-- Revision 0002 back to 0001, before the transaction: 0001's viewer indexes are built
-- again, and 0002's dropped, CONCURRENTLY, so that audited writes go on meanwhile
-- (upgrade_concurrently/0002.sql says why). The transactional part then finds the work
-- done: 0001's state files' `create index if not exists` and downgrade/0002.sql's
-- `drop index if exists` do nothing, and downgrade/0002.sql drops audit.time_buckets.

-- 0001's indexes, character for character those of migrations/sql/0001/13_viewer_indexes.sql.
create index concurrently if not exists action_log_text_idx on audit.action_log using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, '')));

create index concurrently if not exists action_log_actor_idx on audit.action_log (actor_id, occurred_at desc, id desc) include (source) where actor_id is not null;

drop index concurrently if exists audit.action_log_text_time_idx;

drop index concurrently if exists audit.action_log_actor_source_idx;
