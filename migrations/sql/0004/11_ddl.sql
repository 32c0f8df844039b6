-- Keeping capture in step with the tables: event triggers, installed by 99_stamp.sql
-- when a superuser installs the schema (only a superuser can create event triggers).
--
-- After every ALTER TABLE on a tracked table (add, drop, rename a column, change a type,
-- rename the table), its generated capture function is written again in the same
-- statement, so capture keeps working with nothing to reinstall. Dropping a tracked
-- table removes it from the registry.

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
