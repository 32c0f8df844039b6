-- Removes audit_capture from this database: the audit triggers of every table, the
-- event triggers, the functions, the registry and the log. The schema stays (the
-- Alembic version table lives in it) and so do the roles (they are cluster-wide).

do $$
begin
  drop event trigger if exists audit_capture_alter_table;
  drop event trigger if exists audit_capture_drop;
  drop event trigger if exists audit_capture_create_table;
  drop event trigger if exists audit_capture_triggers;
  -- every table's audit triggers: the tracked tables', and those a partition detached
  -- from a tracked table (or a child disinherited) kept when it became a table of its own
  perform audit.drop_triggers(t.tgrelid)
  from (select distinct tgrelid from pg_trigger
        where tgname like 'audit\_capture\_%' and not tgisinternal and tgparentid = 0) t;
end
$$;

-- every function of the schema, the generated capture functions included, before the
-- tables (some return a table's row type), but audit.refuse_change(): the tables' own
-- triggers call it, so it goes after them
do $$
declare
  fn regprocedure;
begin
  for fn in select p.oid::regprocedure from pg_proc p
            where p.pronamespace = 'audit'::regnamespace and p.proname <> 'refuse_change' loop
    execute format('drop function %s', fn);
  end loop;
end
$$;

drop view if exists audit.tracked_tables, audit.log_partitions;
-- (the log's partitions go with their partitioned parents)
drop table if exists audit.tracked_table, audit.action_item_chunk, audit.action_log,
  audit.pending_key_change, audit.pending_truncate,
  audit.batch_action, audit.seal_block, audit.seal_mark;
drop function if exists audit.refuse_change();

drop type if exists audit.context;
drop domain if exists audit.action_type, audit.actor_type, audit.source, audit.operation,
  audit.label, audit.row_count;
