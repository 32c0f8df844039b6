-- Removes audit_capture from this database: the triggers of every tracked table, the
-- functions, the registry and the log. The roles stay (they are cluster-wide).

do $$
declare
  target regclass;
begin
  for target in select relation from audit.tracked_table loop
    perform audit.drop_triggers(target);
  end loop;
end
$$;

drop function if exists
  audit.track(regclass, text, text, text[], text[], text[], jsonb, text, text),
  audit.untrack(regclass),
  audit.drop_triggers(regclass),
  audit.trigger_fingerprint(oid),
  audit.function_fingerprint(oid),
  audit.action_items(bigint),
  audit.log_action(text, text, text, text, text, jsonb, jsonb, integer),
  audit.capture(), audit.capture_key_change(), audit.capture_truncate(),
  audit.merge_action_types(text, text),
  audit.label_override(jsonb, text, jsonb, text[]),
  audit.default_label(audit.tracked_table, text, integer, text[]),
  audit.key_expression(text[], text),
  audit.primary_key_columns(oid),
  audit.set_context(text, text, text, text, text, jsonb),
  audit.current_context(),
  audit.reject_value(text, text, text[]);
drop view if exists audit.tracked_tables;
drop table if exists audit.tracked_table, audit.action_item, audit.action_log,
  audit.pending_key_change;
drop function if exists audit.refuse_change();
drop type if exists audit.context;
drop domain if exists audit.action_type, audit.actor_type, audit.source;
drop function if exists audit.action_types(), audit.actor_types(), audit.sources();
-- the schema itself stays: the Alembic version table lives in it
