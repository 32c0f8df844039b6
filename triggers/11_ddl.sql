-- Keeping capture in step with the tables: event triggers, installed by 99_stamp.sql
-- when a superuser installs the schema (only a superuser can create event triggers).
--
-- After every ALTER TABLE on a tracked table (add, drop, rename a column, change a type,
-- rename the table), its generated capture function is written again in the same
-- statement, so capture keeps working with nothing to reinstall. Dropping a tracked
-- table removes it from the registry. Switching off, dropping, renaming or replacing
-- its audit triggers is refused to anyone but a superuser or a member of audit_admin.
-- A partition or inheritance child that joins a tracked table (CREATE TABLE ...
-- PARTITION OF, ATTACH PARTITION, CREATE TABLE ... INHERITS, ALTER TABLE ... INHERIT)
-- gets its audit triggers in the same statement. One that leaves it (DETACH
-- PARTITION, NO INHERIT) is a table of its own again, no longer captured: its audit
-- triggers stay but log nothing (audit.is_capture_trigger()), and its owner may drop
-- them.

-- Anyone else, a table's owner included, is refused by the event triggers below: an
-- application that owns its tables (common with migration tools) cannot silence its own
-- audit. The role is the SET ROLE role, else the login role (see audit.current_context()).
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
       and audit.tracked_root(target) is not null
       and not audit.may_change_audit_triggers() then
      raise exception 'the audit triggers of % would be switched off: only a superuser or a member of audit_admin may switch them off or alter the table while they are', target
        using errcode = 'insufficient_privilege',
              hint = 'A DBA switches them on again (ALTER TABLE ... ENABLE TRIGGER), or runs audit-capture untrack to stop auditing the table.';
    end if;
    -- a new partition or child of a tracked table (the command names it, or names the
    -- tracked table for ATTACH PARTITION), and the members it brings along: their
    -- audit triggers, where they lack them
    if audit.tracked_root(target) is not null then
      perform audit.make_member_triggers(g.relation)
      from (select distinct m.relation from audit.capture_gaps() m
            where m.tracked = audit.tracked_root(target) and m.relation <> m.tracked) g;
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
  'Event trigger (ddl_command_end, ALTER TABLE and CREATE TABLE): rewrites the capture function of an altered tracked table; gives a new partition or child its audit triggers.';

-- CREATE TRIGGER and ALTER TRIGGER on a tracked table or member, by a role that may not
-- change its audit triggers: refused when the statement renames an audit trigger,
-- replaces one (CREATE OR REPLACE TRIGGER) with anything but what audit.track()
-- installs, or attaches an audit function under another name. The table's own
-- triggers (any other name, any other function) are its owner's business.
create or replace function audit.on_trigger_change() returns event_trigger
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  g record;
begin
  for g in
    select t.tgrelid::regclass as rel, t.tgname, t.tgfoid::regprocedure as fn,
           p.pronamespace = 'audit'::regnamespace as audit_function
    from pg_event_trigger_ddl_commands() c
    join pg_trigger t on t.oid = c.objid
    join pg_proc p on p.oid = t.tgfoid
    where c.classid = 'pg_trigger'::regclass
  loop
    continue when audit.tracked_root(g.rel) is null or audit.may_change_audit_triggers();
    if tg_tag = 'ALTER TRIGGER' and (g.tgname like 'audit\_capture\_%' or g.audit_function) then
      raise exception 'cannot alter or rename the audit trigger % of %: only a superuser or a member of audit_admin may', g.tgname, g.rel
        using errcode = 'insufficient_privilege',
              hint = 'To stop auditing the table, a DBA runs audit-capture untrack.';
    end if;
    if g.tgname like 'audit\_capture\_%'
       and exists (select from audit.capture_gaps(g.rel) x where x.trigger_name = g.tgname) then
      raise exception 'cannot replace the audit trigger % of %: only a superuser or a member of audit_admin may', g.tgname, g.rel
        using errcode = 'insufficient_privilege',
              hint = 'The audit triggers are made by audit.track(); a DBA runs audit-capture track again to remake them.';
    end if;
    if g.audit_function and g.tgname not like 'audit\_capture\_%' then
      raise exception 'cannot attach % to % as trigger %: audit triggers are made by audit.track()', g.fn, g.rel, g.tgname
        using errcode = 'insufficient_privilege';
    end if;
  end loop;
end
$$;
comment on function audit.on_trigger_change() is
  'Event trigger (ddl_command_end, CREATE TRIGGER and ALTER TRIGGER): refuses renaming or replacing the audit triggers of a tracked table or member.';

create or replace function audit.on_drop() returns event_trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  dropped oid;
begin
  -- DROP TRIGGER on an audit trigger (not the table's own DROP TABLE, which takes its
  -- triggers with it): refused unless the role may
  -- (nor of a table that is no longer captured: a detached partition, a former child)
  if exists (select from pg_event_trigger_dropped_objects() d
             where d.object_type = 'trigger' and d.address_names[3] like 'audit\_capture\_%'
               and not exists (select from pg_event_trigger_dropped_objects() t
                               where t.object_type = 'table'
                                 and t.address_names = d.address_names[1:2])
               and audit.tracked_root(to_regclass(format('%I.%I', d.address_names[1], d.address_names[2]))) is not null)
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
