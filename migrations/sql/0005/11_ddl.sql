-- Keeping capture in step with the tables: event triggers, installed by 99_stamp.sql
-- when a superuser installs the schema (only a superuser can create event triggers).
--
-- After every ALTER TABLE on a tracked table (add, drop, rename a column, change a type,
-- rename the table), its generated capture function is written again in the same
-- statement, so capture keeps working with nothing to reinstall. Dropping a tracked
-- table removes it from the registry. Switching off or dropping its audit triggers is
-- refused to anyone but a superuser or a member of audit_admin.

-- Whether the role running the statement may switch off or drop a tracked table's audit
-- triggers: a superuser or a member of audit_admin, the DBA who tracks tables. Anyone
-- else, a table's owner included, is refused by the event triggers below: an
-- application that owns its tables (common with migration tools) cannot silence its
-- own audit. The role is the SET ROLE role, else the login role (inside a SECURITY
-- DEFINER function current_user is the function's owner).
create or replace function audit.may_change_audit_triggers() returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(bool_or(r.rolsuper or pg_has_role(r.oid, 'audit_admin', 'MEMBER')), false)
  from pg_roles r
  where r.rolname = coalesce(nullif(current_setting('role'), 'none'), session_user)
$$;
comment on function audit.may_change_audit_triggers() is
  'Internal: true when the role running the statement is a superuser or a member of audit_admin (who may disable or drop audit triggers).';

-- Runs as the role that altered the table: remaking the key-change trigger needs the
-- table owner's rights; the function itself is rewritten by audit.generate_capture()
-- as audit_owner.
create or replace function audit.on_alter_table() returns event_trigger
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  target regclass;
begin
  for target in
    select distinct c.objid::regclass
    from pg_event_trigger_ddl_commands() c
    -- the table itself, or one of its columns (RENAME COLUMN names the column)
    where c.classid = 'pg_class'::regclass
  loop
    -- DISABLE TRIGGER (or ENABLE REPLICA TRIGGER, which fires only under replication)
    -- on an audit trigger: refused unless the role may (the statement is rolled back).
    -- The state is what is checked, so an ALTER TABLE by such a role is also refused
    -- while a DBA has left the triggers off; the message says how to go on.
    if exists (select from pg_trigger g
               where g.tgrelid = target and g.tgname like 'audit\_capture\_%'
                 and g.tgenabled in ('D', 'R'))
       and not audit.may_change_audit_triggers() then
      raise exception 'the audit triggers of % would be switched off: only a superuser or a member of audit_admin may switch them off or alter the table while they are', target
        using errcode = 'insufficient_privilege',
              hint = 'A DBA switches them on again (ALTER TABLE ... ENABLE TRIGGER), or runs audit-capture untrack to stop auditing the table.';
    end if;
    -- settings first (a renamed status or redacted column keeps its role), then the
    -- function from them: false for a table that is not tracked; true when its primary
    -- key changed
    perform audit.follow_column_renames(target);
    if audit.generate_capture(target) then
      perform audit.make_key_change_trigger(target);
    end if;
    -- a table restored from a dump: its triggers move to the function just written.
    -- That takes EXECUTE on it (audit_admin): for another owner, a warning, and the
    -- ALTER TABLE goes on (`audit-capture status` reports the triggers as stale)
    begin
      perform audit.adopt_capture_function(target);
    exception when insufficient_privilege then
      raise warning 'the audit triggers of % still call the capture function of the table it was restored from', target
        using hint = 'Run audit-capture migrate repair (as a superuser) to move them.';
    end;
  end loop;
end
$$;
comment on function audit.on_alter_table() is
  'Event trigger (ddl_command_end, ALTER TABLE): rewrites the capture function of an altered tracked table.';

create or replace function audit.on_drop() returns event_trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  dropped oid;
begin
  -- DROP TRIGGER on an audit trigger (not the table's own DROP TABLE, which takes its
  -- triggers with it): refused unless the role may
  if exists (select from pg_event_trigger_dropped_objects() d
             where d.object_type = 'trigger' and d.address_names[3] like 'audit\_capture\_%'
               and not exists (select from pg_event_trigger_dropped_objects() t
                               where t.object_type = 'table'
                                 and t.address_names = d.address_names[1:2]))
     and not audit.may_change_audit_triggers() then
    raise exception 'cannot drop the audit triggers of a tracked table: only a superuser or a member of audit_admin may'
      using errcode = 'insufficient_privilege',
            hint = 'To stop auditing the table, a DBA runs audit-capture untrack.';
  end if;
  for dropped in
    select d.objid from pg_event_trigger_dropped_objects() d
    where d.classid = 'pg_class'::regclass and d.objsubid = 0
  loop
    delete from audit.tracked_table where relation::oid = dropped;
    perform audit.drop_generated_capture(dropped::regclass);
  end loop;
end
$$;
comment on function audit.on_drop() is
  'Event trigger (sql_drop): forgets a dropped tracked table and drops its capture function.';
