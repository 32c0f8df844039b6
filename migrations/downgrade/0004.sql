-- Revision 0004 back to 0003: the seal chain goes (17_seal.sql), with the stream's marks
-- (18_stream.sql), restore (19_restore.sql), a record's history (20_history.sql) and audit.is_audit_server()
-- (16_replication.sql). Revision 0003's state
-- files have just run (audit.log_action() and audit.drop_retired_partitions() without
-- the chain again). The chain's blocks go with it: a database downgraded and upgraded
-- again starts a new chain, and heads saved before no longer verify.
set local role audit_owner;

drop function if exists audit.seal(integer);
drop function if exists audit.verify_chain(text[], integer);
drop function if exists audit.chain_head();
drop function if exists audit.seal_retention(regclass);
drop function if exists audit.append_block(audit.seal_block);
drop function if exists audit.lock_chain();
drop function if exists audit.block_hash(bytea, audit.seal_block);
drop function if exists audit.block_content(audit.seal_block);
drop function if exists audit.action_digests(bigint, bigint, integer);
drop table if exists audit.seal_block, audit.seal_mark;
drop function if exists audit.stream_mark();
drop function if exists audit.restore(bigint, integer, boolean, boolean);
drop function if exists audit.restore_rows(regclass, text, jsonb);
drop function if exists audit.restore_item(regclass, text, text, jsonb, jsonb, text, boolean);
drop function if exists audit.restore_values(regclass, jsonb, text);
drop function if exists audit.restore_search_path();
drop function if exists audit.restore_key_condition(regclass);
drop function if exists audit.restore_later_actions(bigint, timestamptz, text, text[]);
drop function if exists audit.is_audit_server();
drop function if exists audit.history(regclass, text, timestamptz, bigint, integer);
drop function if exists audit.history(text, text, timestamptz, bigint, integer);
drop index if exists audit.action_item_chunk_resource_idx;
drop index if exists audit.action_log_resource_idx;
drop index if exists audit.action_log_truncate_idx;
drop function if exists audit.item_ids(text);
-- Revision 0003's audit.action_items() reads a chunk with resource_ids as rows: the
-- UPDATE chunks written since 0004 (triples, their ids in resource_ids too) lose their
-- ids again, which their items hold. The one change to committed chunks the log allows,
-- and only here: the append-only triggers of each partition are off for this UPDATE
-- (in this transaction, under its lock: no other write sees them off).
do $$
declare
  part regclass;
begin
  for part in select r.relid from pg_catalog.pg_partition_tree('audit.action_item_chunk') r where r.isleaf loop
    execute format('alter table %s disable trigger action_item_chunk_append_only', part);
  end loop;
  update audit.action_item_chunk set resource_ids = null
  where operation = 'UPDATE' and resource_ids is not null;
  for part in select r.relid from pg_catalog.pg_partition_tree('audit.action_item_chunk') r where r.isleaf loop
    execute format('alter table %s enable trigger action_item_chunk_append_only', part);
  end loop;
end
$$;
revoke execute on function audit.key_sql(regclass, text), audit.loggable_json(json) from audit_admin;

reset role;
