-- Removes audit_capture from this database: the triggers of every tracked table, the
-- event triggers, the functions, the registry and the log. The schema stays (the
-- Alembic version table lives in it) and so do the roles (they are cluster-wide).

do $$
declare
  target regclass;
begin
  drop event trigger if exists audit_capture_alter_table;
  drop event trigger if exists audit_capture_drop;
  drop event trigger if exists audit_capture_create_table;
  drop event trigger if exists audit_capture_triggers;
  for target in select relation from audit.tracked_table loop
    perform audit.drop_triggers(target);
  end loop;
end
$$;

-- functions that return a table's row type (audit.current_settings()) go before the
-- tables; the others after them (the tables' own triggers call some)
do $$
declare
  fn regprocedure;
begin
  for fn in select p.oid::regprocedure from pg_proc p
            join pg_class c on c.reltype = p.prorettype
            where p.pronamespace = 'audit'::regnamespace and c.relnamespace = 'audit'::regnamespace loop
    execute format('drop function %s', fn);
  end loop;
end
$$;

drop view if exists audit.tracked_tables;
drop table if exists audit.tracked_table, audit.action_item_chunk, audit.action_log,
  audit.pending_key_change, audit.pending_truncate,
  audit.batch_action;

-- every function of the schema, the generated capture functions included
do $$
declare
  fn regprocedure;
begin
  for fn in select p.oid::regprocedure from pg_proc p where p.pronamespace = 'audit'::regnamespace loop
    execute format('drop function %s', fn);
  end loop;
end
$$;

drop type if exists audit.context;
drop domain if exists audit.action_type, audit.actor_type, audit.source, audit.operation,
  audit.label, audit.row_count;
