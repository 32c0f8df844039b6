-- Privileges. Applications get the context and event functions and nothing else; the
-- log is written only by the SECURITY DEFINER functions (as audit_owner).

revoke all on all tables in schema audit from public;
revoke all on all sequences in schema audit from public;
revoke all on all functions in schema audit from public;
grant usage on schema audit to public;

-- any application role: state its context, record events
grant execute on function
  audit.set_context(text, text, text, text, text, jsonb),
  audit.current_context(),
  audit.log_action(text, text, text, text, text, jsonb, jsonb, integer),
  audit.action_types(), audit.actor_types(), audit.sources(),
  audit.reject_value(text, text, text[]), audit.check_context_object(jsonb),
  audit.value_limits(), audit.check_length(text, text),
  -- the ALTER TABLE event trigger runs as whoever altered the table; regenerating a
  -- tracked table's capture function from the catalog is harmless for anyone, and the
  -- trigger helpers run with the caller's own rights (SECURITY INVOKER)
  audit.generate_capture(regclass), audit.adopt_capture_function(regclass),
  audit.restored_capture_function(regclass),
  audit.stamp_triggers(regclass),
  audit.follow_column_renames(regclass), audit.may_change_audit_triggers(),
  -- ... and the key-change trigger's WHEN clause compares keys as capture does
  audit.compare_sql(oid, text, text), audit.rendered_sql(oid, text),
  audit.value_rendering(oid), audit.base_type(oid), audit.has_equality(oid),
  -- creating a partition of a tracked table clones its key-change row trigger, which
  -- takes EXECUTE on the function from the partition's creator
  audit.capture_key_change(),
  -- which tracked table a table is logged as (its own, a partition's or a child's)
  audit.tracked_root(regclass),
  -- a partition or inheritance child of a tracked table, created, attached or
  -- inherited by its owner, gets its audit triggers through the event trigger, as
  -- that owner: the helpers that install those fixed triggers, and the capture
  -- functions they call (which log only for their own triggers on a tracked table or
  -- member: see audit.is_capture_trigger(), audit.capture_truncate())
  audit.capture_members(regclass), audit.capture_gaps(regclass),
  audit.make_member_triggers(regclass), audit.make_truncate_triggers(regclass),
  audit.make_key_change_trigger(regclass), audit.primary_key_columns(oid),
  audit.trigger_fingerprint(oid),
  audit.capture(), audit.capture_truncate()
  to public;

-- readers (the viewer): the log, its items and the registry, nothing else
grant select on audit.action_log, audit.action_item_chunk, audit.tracked_table, audit.tracked_tables
  to audit_reader;
grant execute on function audit.action_items(bigint), audit.action_items(bigint, integer, integer)
  to audit_reader;
-- ... and what audit.history() (SECURITY INVOKER: the reader's rights, 20_history.sql)
-- calls: the ids of an older UPDATE chunk, read as the chunks' index by resource is
-- defined, and where an upgraded install's legacy chunks are
grant execute on function audit.item_ids(text), audit.legacy_chunk_bound() to audit_reader;
-- ... and what audit-capture status compares (a monitoring login granted audit_reader)
grant execute on function audit.function_fingerprint(oid), audit.capture_sql(regclass)
  to audit_reader;

-- admins (the DBA): everything a reader may (00_roles.sql) and public may (the trigger
-- functions, whose EXECUTE CREATE TRIGGER needs, among them), plus tracking tables
grant select, insert, update, delete on audit.tracked_table to audit_admin;
grant execute on function
  audit.track(regclass, text, text, text[], text[], text[], jsonb, text, text),
  audit.untrack(regclass),
  audit.drop_triggers(regclass),
  audit.drop_generated_capture(regclass),
  -- which function the capture triggers call is audit.track()'s choice: a table's
  -- owner calling this with its own function would switch capture off
  audit.make_capture_triggers(regclass, regproc)
  to audit_admin;
