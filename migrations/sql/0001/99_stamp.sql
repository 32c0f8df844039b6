-- Last: stamps every function of the schema with its fingerprint, as the last line of its
-- COMMENT, so that `audit-capture status` can tell a function edited by hand; then
-- creates the event triggers whose functions 11_ddl.sql defines. They are made here, as
-- the installing role: creating an event trigger needs a superuser, not audit_owner.

do $$
declare
  fn record;
begin
  for fn in
    select p.oid, p.oid::regprocedure as signature,
           regexp_replace(coalesce(obj_description(p.oid, 'pg_proc'), ''),
                          '\n?audit_capture sha256:[0-9a-f]*$', '') as doc
    from pg_proc p
    where p.pronamespace = 'audit'::regnamespace
  loop
    execute format('comment on function %s is %L', fn.signature,
                   fn.doc || E'\naudit_capture sha256:' || audit.function_fingerprint(fn.oid));
  end loop;
end
$$;

reset role;

do $$
begin
  if not (select rolsuper from pg_roles where rolname = current_user) then
    raise notice 'audit_capture: installed without event triggers (they need a superuser); tracked tables use the generic capture function';
    return;
  end if;
  if not exists (select from pg_event_trigger where evtname = 'audit_capture_alter_table') then
    create event trigger audit_capture_alter_table on ddl_command_end
      when tag in ('ALTER TABLE') execute function audit.on_alter_table();
    comment on event trigger audit_capture_alter_table is
      'audit_capture: rewrites the capture function of a tracked table after ALTER TABLE.';
  end if;
  if not exists (select from pg_event_trigger where evtname = 'audit_capture_create_table') then
    create event trigger audit_capture_create_table on ddl_command_end
      when tag in ('CREATE TABLE') execute function audit.on_alter_table();
    comment on event trigger audit_capture_create_table is
      'audit_capture: gives a new partition or inheritance child of a tracked table its audit triggers.';
  end if;
  if not exists (select from pg_event_trigger where evtname = 'audit_capture_triggers') then
    create event trigger audit_capture_triggers on ddl_command_end
      when tag in ('CREATE TRIGGER', 'ALTER TRIGGER') execute function audit.on_trigger_change();
    comment on event trigger audit_capture_triggers is
      'audit_capture: refuses renaming or replacing the audit triggers of a tracked table.';
  end if;
  if not exists (select from pg_event_trigger where evtname = 'audit_capture_drop') then
    create event trigger audit_capture_drop on sql_drop execute function audit.on_drop();
    comment on event trigger audit_capture_drop is
      'audit_capture: forgets dropped tracked tables.';
  end if;
end
$$;
