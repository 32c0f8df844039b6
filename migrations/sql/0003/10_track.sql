-- Tracking: audit.track() declares how a table is logged and installs its triggers;
-- audit.untrack() removes them. Both are idempotent.
--
-- They run with the CALLER's privileges (SECURITY INVOKER), unlike the rest of the
-- schema: creating a trigger needs the TRIGGER privilege on the table, which is the
-- table owner's to give, not audit_owner's. The caller also needs audit_admin (or
-- superuser) to change audit.tracked_table.

create or replace function audit.function_fingerprint(fn oid) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select encode(sha256(convert_to(
           concat_ws(E'\n', p.prosrc, p.prosecdef::text, array_to_string(p.proconfig, ','),
                     pg_get_function_identity_arguments(p.oid)), 'UTF8')), 'hex')
  from pg_proc p where p.oid = fn
$$;
comment on function audit.function_fingerprint(oid) is
  'sha256 of a function''s body, security and settings; stamped at install time as the "audit_capture sha256:" line of its COMMENT, with which `audit-capture status` compares it to find a function changed by hand.';

create or replace function audit.trigger_fingerprint(trigger_oid oid) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  -- the table's name is left out on purpose: renaming a tracked table is fine
  select encode(sha256(convert_to(
           replace(pg_get_triggerdef(t.oid), ' ON ' || t.tgrelid::regclass::text || ' ', ' ON '),
           'UTF8')), 'hex')
  from pg_trigger t where t.oid = trigger_oid
$$;
comment on function audit.trigger_fingerprint(oid) is
  'sha256 of a trigger''s definition (less its table''s name); compared with the "audit_capture sha256:" line of its COMMENT (see audit.function_fingerprint()).';

create or replace function audit.make_key_change_trigger(target regclass) returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  key_changed text;
begin
  -- the tracked table's key (an inheritance child has no primary key of its own),
  -- compared as capture compares them (audit.compare_sql()): a key of the owner's type
  -- whose cast to text is implicit would make = ambiguous
  select string_agg(audit.compare_sql(a.atttypid, format('old.%I', c), format('new.%I', c)), ' or ')
  into key_changed
  from unnest(audit.primary_key_columns(coalesce(audit.tracked_root(target), target))) c
  join pg_attribute a on a.attrelid = target and a.attname = c;
  execute format('create or replace trigger audit_capture_key_change after update on %s
                    for each row when (%s) execute function audit.capture_key_change()',
                 target, key_changed);
  perform audit.stamp_triggers(target);
end
$$;
comment on function audit.make_key_change_trigger(regclass) is
  'Internal: (re)creates the row trigger that notes primary-key changes of a tracked table (audit.capture_key_change()); its WHEN clause names the key columns, so it is remade when the key changes.';

create or replace function audit.rule_columns(rules jsonb) returns text[]
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(array_agg(distinct c), '{}')
  from jsonb_array_elements(rules) r,
  lateral (
    select jsonb_object_keys(case jsonb_typeof(r -> 'when') when 'object' then r -> 'when' else '{}' end)
    union all
    select jsonb_array_elements_text(case jsonb_typeof(r -> 'changed')
                                       when 'array' then r -> 'changed'
                                       when 'string' then jsonb_build_array(r -> 'changed')
                                       else '[]' end)
    union all
    select m[1] from regexp_matches(coalesce(r ->> 'label', ''), '\{([A-Za-z_][A-Za-z0-9_]*)\}', 'g') m
  ) named(c)
$$;
comment on function audit.rule_columns(jsonb) is
  'Internal: the column names the label rules refer to (when, changed, {column} placeholders).';

create or replace function audit.rename_in_rules(rules jsonb, old_name text, new_name text)
returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(jsonb_agg(
    r
    || case when jsonb_typeof(r -> 'when') = 'object' then jsonb_build_object('when', (
         select jsonb_object_agg(case when k = old_name then new_name else k end, v)
         from jsonb_each(r -> 'when') w(k, v))) else '{}' end
    || case jsonb_typeof(r -> 'changed')
         when 'array' then jsonb_build_object('changed', (
           select coalesce(jsonb_agg(case when c = old_name then new_name else c end order by i), '[]')
           from jsonb_array_elements_text(r -> 'changed') with ordinality ch(c, i)))
         when 'string' then jsonb_build_object('changed',
           case when r ->> 'changed' = old_name then new_name else r ->> 'changed' end)
         else '{}' end
    || case when r ? 'label' then jsonb_build_object('label',
         replace(r ->> 'label', '{' || old_name || '}', '{' || new_name || '}')) else '{}' end
    order by i), '[]')
  from jsonb_array_elements(rules) with ordinality e(r, i)
$$;
comment on function audit.rename_in_rules(jsonb, text, text) is
  'Internal: label rules with a renamed column''s old name replaced by its new one.';

-- A column is found by its attribute number in setting_columns (the numbers are taken
-- again). Capture reads the settings through this (audit.capture_query(),
-- audit.finish_statement()), so a renamed redacted column stays redacted in both capture
-- modes, even before the registry itself is updated (audit.follow_column_renames()).
create or replace function audit.current_settings(target regclass)
returns audit.tracked_table
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  reg      audit.tracked_table;
  old_name text;
  number   integer;
  new_name name;
begin
  select * into reg from audit.tracked_table where relation = target;
  if not found then
    return null;
  end if;
  for old_name, number in select key, value::integer from jsonb_each_text(reg.setting_columns) loop
    select a.attname into new_name from pg_attribute a
    where a.attrelid = target and a.attnum = number and not a.attisdropped;
    if new_name is null then  -- dropped
      reg.label_column := nullif(reg.label_column, old_name);
      reg.status_columns := array_remove(reg.status_columns, old_name);
      reg.ignored_columns := array_remove(reg.ignored_columns, old_name);
      reg.redacted_columns := array_remove(reg.redacted_columns, old_name);
    elsif new_name <> old_name then
      reg.label_column := case when reg.label_column = old_name then new_name else reg.label_column end;
      reg.status_columns := array_replace(reg.status_columns, old_name, new_name);
      reg.ignored_columns := array_replace(reg.ignored_columns, old_name, new_name);
      reg.redacted_columns := array_replace(reg.redacted_columns, old_name, new_name);
      reg.labels := audit.rename_in_rules(reg.labels, old_name, new_name);
    end if;
  end loop;
  select coalesce(jsonb_object_agg(a.attname, a.attnum), '{}') into reg.setting_columns
  from pg_attribute a
  where a.attrelid = target and a.attnum > 0 and not a.attisdropped
    and (a.attname = reg.label_column or a.attname = any (reg.status_columns)
         or a.attname = any (reg.ignored_columns) or a.attname = any (reg.redacted_columns)
         or a.attname = any (audit.rule_columns(reg.labels)));
  return reg;
end
$$;
comment on function audit.current_settings(regclass) is
  'A tracked table''s settings with the columns renamed since they were written under their new names (dropped ones left out); null when not tracked.';

-- Called by audit.track(), by the ALTER TABLE event trigger before the capture function
-- is rewritten, and at every install. SECURITY DEFINER: whoever altered the table may
-- not write the registry, and this writes only what the catalog says.
create or replace function audit.follow_column_renames(target regclass) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  reg audit.tracked_table := audit.current_settings(target);
begin
  update audit.tracked_table t set
    label_column = reg.label_column, status_columns = reg.status_columns,
    ignored_columns = reg.ignored_columns, redacted_columns = reg.redacted_columns,
    labels = reg.labels, setting_columns = reg.setting_columns
  where t.relation = target
    and (t.label_column, t.status_columns, t.ignored_columns, t.redacted_columns, t.labels,
         t.setting_columns)
        is distinct from (reg.label_column, reg.status_columns, reg.ignored_columns,
                          reg.redacted_columns, reg.labels, reg.setting_columns);
end
$$;
comment on function audit.follow_column_renames(regclass) is
  'Internal: writes audit.current_settings() into the registry (columns renamed or dropped since the settings were written).';

create or replace function audit.make_capture_triggers(target regclass, capture regproc)
returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('create or replace trigger audit_capture_insert after insert on %s
                    referencing new table as audit_new_rows
                    for each statement execute function %s()', target, capture);
  execute format('create or replace trigger audit_capture_update after update on %s
                    referencing old table as audit_old_rows new table as audit_new_rows
                    for each statement execute function %s()', target, capture);
  execute format('create or replace trigger audit_capture_delete after delete on %s
                    referencing old table as audit_old_rows
                    for each statement execute function %s()', target, capture);
end
$$;
comment on function audit.make_capture_triggers(regclass, regproc) is
  'Internal: (re)creates the INSERT, UPDATE and DELETE statement triggers of a tracked table, calling the given capture function (audit.capture_<oid>() in the fast mode, audit.capture() in the generic one).';

create or replace function audit.restored_capture_function(target regclass) returns oid
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select p.oid
  from pg_trigger t join pg_proc p on p.oid = t.tgfoid
  where t.tgrelid = target and t.tgname = 'audit_capture_insert'
    and p.pronamespace = 'audit'::regnamespace and p.proname ~ '^capture_[0-9]+$'
    and p.proname <> 'capture_' || target::oid
$$;
comment on function audit.restored_capture_function(regclass) is
  'Internal: the capture function, written for another oid, that a restored table''s triggers still call (see audit.adopt_capture_function()); null when none.';

-- A table restored by pg_dump into another database has a new oid, but its triggers
-- still call the generated function named for its old one, restored with them: ALTER
-- TABLE would write audit.capture_<new oid>() and leave the triggers on the stale
-- copy, whose column list no longer matches (an UPDATE after a dropped column failed).
-- Called after generate_capture() (11_ddl.sql, 98_regenerate.sql): points the triggers
-- at the function named for the table's oid and drops the stale one once unused.
-- Runs as the caller: recreating triggers takes the table owner's rights.
create or replace function audit.adopt_capture_function(target regclass) returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  own   text := format('audit.%I', 'capture_' || target::oid);
  stale oid := audit.restored_capture_function(target);
begin
  if stale is null or to_regprocedure(own || '()') is null then
    return;
  end if;
  perform audit.make_capture_triggers(target, own::regproc);
  perform audit.stamp_triggers(target);
  if not exists (select from pg_trigger where tgfoid = stale) then
    -- drop_generated_capture() names the function by the oid it was written for: the
    -- digits after 'capture_'
    perform audit.drop_generated_capture(
      substr((select proname from pg_proc where oid = stale), length('capture_') + 1)::oid::regclass);
  end if;
end
$$;
comment on function audit.adopt_capture_function(regclass) is
  'Internal: moves a restored table''s capture triggers from the function named for its old oid to audit.capture_<oid>().';

create or replace function audit.stamp_triggers(target regclass) returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  t record;
begin
  for t in select oid, tgname from pg_trigger
           where tgrelid = target and tgname like 'audit\_capture\_%' and not tgisinternal loop
    execute format('comment on trigger %I on %s is %L', t.tgname, target,
      'audit_capture: logs changes of this table to audit.action_log. Remove with audit.untrack().'
      || E'\naudit_capture sha256:' || audit.trigger_fingerprint(t.oid));
  end loop;
end
$$;
comment on function audit.stamp_triggers(regclass) is
  'Internal: writes each audit trigger''s fingerprint into its COMMENT, for `audit-capture status`.';

-- Partitions and children alike (pg_inherits holds both): each is captured as part of
-- the tracked table (audit.tracked_root()). A statement that names a member fires only
-- the member's statement triggers, and one that names the tracked table only the
-- tracked table's, so each carries its own and every statement is logged once.
create or replace function audit.capture_members(target regclass) returns setof regclass
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  with recursive down(rel, depth) as (
    select i.inhrelid, 1 from pg_inherits i where i.inhparent = target
    union all
    select i.inhrelid, down.depth + 1 from pg_inherits i join down on i.inhparent = down.rel
    where down.depth < 64)
  select distinct rel::regclass from down
$$;
comment on function audit.capture_members(regclass) is
  'Internal: the partitions (at any depth) and inheritance children of a table.';

-- One row per audit trigger that is wrong (see the COMMENT). Read by `audit-capture
-- status` and by the event triggers of 11_ddl.sql (which refuse to leave a gap).
create or replace function audit.capture_gaps(target regclass default null)
returns table (relation regclass, tracked regclass, trigger_name text, problem text)
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  with recursive members(rel, root, depth) as (
    select t.relation::oid, t.relation, 0 from audit.tracked_table t
    where target is null or t.relation = audit.tracked_root(target)
    union all
    select i.inhrelid, m.root, m.depth + 1
    from pg_inherits i join members m on i.inhparent = m.rel
    where m.depth < 64),
  expected(name, tgtype, old_table, new_table) as (values
    ('audit_capture_insert', 4, null, 'audit_new_rows'),
    ('audit_capture_update', 16, 'audit_old_rows', 'audit_new_rows'),
    ('audit_capture_delete', 8, 'audit_old_rows', null),
    ('audit_capture_truncate', 34, null, null),          -- BEFORE TRUNCATE
    ('audit_capture_truncate_end', 32, null, null),      -- AFTER TRUNCATE
    ('audit_capture_key_change', 17, null, null)),       -- AFTER UPDATE FOR EACH ROW
  checked as (
    select m.rel, m.root, e.name, c.relkind, g.oid as trigger_oid, g.tgenabled, g.tgfoid,
           case
             when e.name = 'audit_capture_truncate' then 'audit.capture_truncate()'::regprocedure
             when e.name = 'audit_capture_truncate_end' then 'audit.capture_truncate()'::regprocedure
             when e.name = 'audit_capture_key_change' then 'audit.capture_key_change()'::regprocedure
             when m.depth = 0 then coalesce(to_regprocedure(format('audit.%I()', 'capture_' || m.rel)),
                                            'audit.capture()'::regprocedure)
             else 'audit.capture()'::regprocedure
           end::oid as expected_function,
           g.tgtype = e.tgtype and g.tgnargs = 0 and cardinality(g.tgattr::int2[]) = 0
             and g.tgoldtable is not distinct from e.old_table
             and g.tgnewtable is not distinct from e.new_table
             and (e.name = 'audit_capture_key_change' or g.tgqual is null) as same_definition
    from members m
    join pg_class c on c.oid = m.rel
    cross join expected e
    left join pg_trigger g on g.tgrelid = m.rel and g.tgname = e.name
    where target is null or m.rel = target::oid)
  select distinct rel::regclass, root, name, case
      when relkind not in ('r', 'p') then 'not captured: only tables can carry capture triggers'
      when trigger_oid is null then 'missing'
      when tgenabled = 'D' then 'disabled'
      when tgenabled = 'R' then 'fires only under replication (ENABLE REPLICA)'
      when tgfoid <> expected_function
        then format('calls %s instead of %s', tgfoid::regprocedure, expected_function::regprocedure)
      when not same_definition then 'changed: not the trigger audit.track() installs'
    end
  from checked
  where relkind not in ('r', 'p') or trigger_oid is null or tgenabled in ('D', 'R')
     or tgfoid <> expected_function or not same_definition
$$;
comment on function audit.capture_gaps(regclass) is
  'What is wrong with the audit triggers of the tracked tables and their partitions and inheritance children (or of one table): missing, disabled, replica-only, calling another function, changed. No row: nothing escapes capture.';

-- For a DBA to read or diff (`audit-capture status --show-sql TABLE`); the queries are
-- those audit.capture() (the generic mode; a member's in both modes) writes out at every
-- statement, as it would now. SECURITY DEFINER: those are written from the registry, as
-- audit.capture() writes them.
create or replace function audit.capture_sql(target regclass) returns text
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  tracked   regclass := audit.tracked_root(target);
  relations regclass[] := array[target] || array(select m from audit.capture_members(target) m order by m::text);
  result    text;
  rel       regclass;
  fn        regprocedure;
begin
  if tracked is null then
    raise exception '% is not tracked (nor a partition or inheritance child of a tracked table)', target
      using errcode = 'undefined_object';
  end if;
  result := format(E'-- audit_capture: the SQL that captures %s, as the database holds it%s\n',
                   audit.comment_text(target::text), case when tracked = target then ''
                     else format(' (logged as %s)', audit.comment_text(tracked::text)) end);
  foreach rel in array relations loop
    result := result || format(E'\n-- triggers on %s\n', audit.comment_text(rel::text))
      || coalesce((select string_agg(pg_get_triggerdef(t.oid) || E';\n', '' order by t.tgname)
                   from pg_trigger t join pg_proc p on p.oid = t.tgfoid
                   where t.tgrelid = rel and not t.tgisinternal
                     and (t.tgname like 'audit\_capture\_%' or p.pronamespace = 'audit'::regnamespace)),
                  E'-- (none)\n');
  end loop;
  for fn in select f from (select distinct t.tgfoid::regprocedure as f
                            from pg_trigger t join pg_proc p on p.oid = t.tgfoid
                            where t.tgrelid = any (relations) and not t.tgisinternal
                              and (t.tgname like 'audit\_capture\_%' or p.pronamespace = 'audit'::regnamespace)) used
            order by f::text loop
    result := result || format(E'\n-- function %s\n%s;\n', audit.comment_text(fn::text), pg_get_functiondef(fn));
    continue when fn <> 'audit.capture()'::regprocedure;
    for rel in select t.tgrelid::regclass from pg_trigger t
               where t.tgfoid = fn and t.tgname = 'audit_capture_insert' and t.tgrelid = any (relations)
               order by t.tgrelid::regclass::text loop
      result := result || format(E'\n-- the queries audit.capture() writes out at every statement on %s, as it would now\n'
                                 || E'-- ($1: the action''s id, $2: the number of items it holds already, $3: the action''s occurred_at)\n',
                                 audit.comment_text(rel::text))
        || (select string_agg(format(E'-- %s\n%s;\n', v.title, audit.capture_query(rel, v.op, v.variant, '$1', '$2', '$3')), '' order by v.i)
            from (values (1, 'INSERT', 'one', 'INSERT, one row'), (2, 'INSERT', 'many', 'INSERT, many rows'),
                         (3, 'UPDATE', 'one', 'UPDATE, one row'), (4, 'UPDATE', 'many', 'UPDATE, many rows'),
                         (5, 'UPDATE', 'moved', 'UPDATE, many rows, primary keys changed'),
                         (6, 'DELETE', 'one', 'DELETE, one row'), (7, 'DELETE', 'many', 'DELETE, many rows'))
                 v(i, op, variant, title));
    end loop;
  end loop;
  return result;
end
$$;
comment on function audit.capture_sql(regclass) is
  'The SQL that captures a tracked table (or a partition or inheritance child of one) as the database holds it: its audit triggers and its members'', the functions they call, the queries audit.capture() writes out. Read by audit-capture status --show-sql.';

-- (a line break in a name would end the comment line)
create or replace function audit.comment_text(name text) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case when name ~ '[[:cntrl:]]' then to_json(name)::text else name end
$$;
comment on function audit.comment_text(text) is
  'Internal: a name as a SQL comment line may show it (a JSON string when it holds a control character).';

create or replace function audit.make_truncate_triggers(target regclass) returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('create or replace trigger audit_capture_truncate before truncate on %s
                    for each statement execute function audit.capture_truncate()', target);
  execute format('create or replace trigger audit_capture_truncate_end after truncate on %s
                    for each statement execute function audit.capture_truncate()', target);
end
$$;
comment on function audit.make_truncate_triggers(regclass) is
  'Internal: (re)creates the TRUNCATE triggers of a tracked table or of one of its members (see audit.capture_truncate()).';

-- The triggers: INSERT, UPDATE and DELETE statement triggers calling audit.capture()
-- (the generic function: it writes its SQL for the member's own columns at every
-- statement), the TRUNCATE triggers, and for an inheritance child the key-change row
-- trigger (a partition has the tracked table's own, cloned by PostgreSQL). Does nothing
-- when the member's triggers are right already, or for a table that is not a member.
-- Runs with the caller's rights (the member's owner: audit.track(), or the event trigger
-- of 11_ddl.sql); it installs only these fixed triggers, so anyone may call it.
create or replace function audit.make_member_triggers(target regclass) returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  rel pg_class;
begin
  select * into rel from pg_class where oid = target;
  if rel.relkind not in ('r', 'p')
     or audit.tracked_root(target) is null
     or audit.tracked_root(target) = target
     or not exists (select from audit.capture_gaps(target)) then
    return;
  end if;
  -- (audit.make_capture_triggers()'s three, written again: that one takes any function
  -- and is audit_admin's only, see 12_privileges.sql)
  execute format('create or replace trigger audit_capture_insert after insert on %s
                    referencing new table as audit_new_rows
                    for each statement execute function audit.capture()', target);
  execute format('create or replace trigger audit_capture_update after update on %s
                    referencing old table as audit_old_rows new table as audit_new_rows
                    for each statement execute function audit.capture()', target);
  execute format('create or replace trigger audit_capture_delete after delete on %s
                    referencing old table as audit_old_rows
                    for each statement execute function audit.capture()', target);
  perform audit.make_truncate_triggers(target);
  if not rel.relispartition then
    perform audit.make_key_change_trigger(target);
  end if;
  perform audit.stamp_triggers(target);
end
$$;
comment on function audit.make_member_triggers(regclass) is
  'Internal: gives a partition or inheritance child of a tracked table the audit triggers that log its statements as the tracked table''s.';

create or replace function audit.track(
  target            regclass,
  resource_type     text,
  label_column      text default null,
  status_columns    text[] default '{}',
  ignored_columns   text[] default '{}',
  redacted_columns  text[] default '{}',
  labels            jsonb default '[]',
  label             text default null,
  label_plural      text default null
) returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  rel          pg_class;
  pk_columns   text[];
  missing      text;
  rule         jsonb;
  display      text;
  capture      text;
begin
  select * into rel from pg_class where oid = target;
  if rel.relkind not in ('r', 'p') then
    raise exception 'cannot track %: it is not a table (only tables and partitioned tables can be tracked)', target
      using errcode = 'wrong_object_type';
  end if;
  -- a partition or child is captured as part of its tracked table, never on its own
  if audit.tracked_root(target) is distinct from target and audit.tracked_root(target) is not null then
    raise exception 'cannot track %: it is a partition or inheritance child of %, which is tracked (its changes are logged as that table''s)',
      target, audit.tracked_root(target)
      using errcode = 'invalid_parameter_value';
  end if;
  select string_agg(m::text, ', ') into missing
  from audit.capture_members(target) m join audit.tracked_table t on t.relation = m;
  if missing is not null then
    raise exception 'cannot track %: its partition or inheritance child % is tracked on its own', target, missing
      using errcode = 'invalid_parameter_value',
            hint = 'Untrack it first: tracking the parent captures its partitions and children as part of it.';
  end if;
  if rel.relnamespace = 'audit'::regnamespace then
    raise exception 'cannot track %: the audit schema''s own tables are not tracked', target
      using errcode = 'invalid_parameter_value';
  end if;
  pk_columns := audit.primary_key_columns(target);
  if pk_columns is null then
    raise exception 'cannot track %: it has no primary key', target
      using errcode = 'invalid_table_definition',
            hint = 'audit_capture identifies each affected row by its primary key; add one first.';
  end if;
  if resource_type is null or resource_type !~ '^[a-z][a-z0-9_]*$' then
    raise exception 'cannot track %: resource_type is %; expected lowercase letters, digits and underscores, such as client or case_task',
      target, coalesce(quote_literal(resource_type), 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  -- every action of the table carries them, and the log indexes them: a 3 KB word
  -- would fail every later write of the table
  perform audit.check_length('resource_type', resource_type);
  if length(label) > 100 or length(label_plural) > 100 then
    raise exception 'cannot track %: label and label_plural are words such as Client, Clients: at most 100 characters each', target
      using errcode = 'string_data_right_truncation';
  end if;

  -- every named column must exist now
  select string_agg(format('%s (%s)', quote_ident(c.name), c.setting), ', ') into missing
  from (select label_column as name, 'label_column' as setting where label_column is not null
        union all select unnest(status_columns), 'status_columns'
        union all select unnest(ignored_columns), 'ignored_columns'
        union all select unnest(redacted_columns), 'redacted_columns') c
  where not exists (select from pg_attribute a
                    where a.attrelid = target and a.attname = c.name
                      and a.attnum > 0 and not a.attisdropped);
  if missing is not null then
    raise exception 'cannot track %: no such column: %', target, missing
      using errcode = 'undefined_column';
  end if;

  -- a redacted value is never stored in clear: not as the label, not as the key
  if label_column = any (redacted_columns) then
    raise exception 'cannot track %: label_column % is also a redacted column', target, quote_ident(label_column)
      using errcode = 'invalid_parameter_value',
            hint = 'The label column''s value is stored in clear as resource_label; choose another label column, or none.';
  end if;
  select string_agg(quote_ident(c), ', ') into missing
  from unnest(pk_columns) c where c = any (redacted_columns);
  if missing is not null then
    raise exception 'cannot track %: redacted column % is part of the primary key', target, missing
      using errcode = 'invalid_parameter_value',
            hint = 'The primary key is stored in clear as resource_id (it names the row in the log); redact other columns, or give the table a surrogate key.';
  end if;

  -- label rules: [{"on": ..., "when": {...}, "changed": [...], "label": ..., "action_type": ...}]
  if labels is null or jsonb_typeof(labels) <> 'array' then
    raise exception 'cannot track %: labels must be a JSON array of rules', target
      using errcode = 'invalid_parameter_value';
  end if;
  for rule in select value from jsonb_array_elements(labels) loop
    if jsonb_typeof(rule) <> 'object' or jsonb_typeof(rule -> 'label') is distinct from 'string' then
      raise exception 'cannot track %: label rule % needs a "label" string', target, rule
        using errcode = 'invalid_parameter_value';
    end if;
    if exists (select from jsonb_object_keys(rule) k
               where k not in ('on', 'when', 'changed', 'label', 'action_type')) then
      raise exception 'cannot track %: label rule % has an unknown key; expected on, when, changed, label, action_type', target, rule
        using errcode = 'invalid_parameter_value';
    end if;
    if rule ? 'action_type' and not (rule ->> 'action_type') = any (audit.action_types()) then
      perform audit.reject_value('label rule action_type', rule ->> 'action_type', audit.action_types());
    end if;
    if rule ? 'when' and jsonb_typeof(rule -> 'when') <> 'object' then
      raise exception 'cannot track %: "when" of label rule % must be an object of column values', target, rule
        using errcode = 'invalid_parameter_value';
    end if;
  end loop;

  -- "case_task" reads "Case task" / "Case tasks" unless told otherwise
  display := upper(left(resource_type, 1)) || replace(substr(resource_type, 2), '_', ' ');

  insert into audit.tracked_table as t (
    relation, resource_type, label, label_plural, label_column, status_columns,
    ignored_columns, redacted_columns, labels)
  values (
    target, resource_type, coalesce(label, display),
    coalesce(label_plural, coalesce(label, display) || 's'), label_column,
    coalesce(status_columns, '{}'), coalesce(ignored_columns, '{}'),
    coalesce(redacted_columns, '{}'), labels)
  on conflict (relation) do update set
    resource_type = excluded.resource_type, label = excluded.label,
    label_plural = excluded.label_plural, label_column = excluded.label_column,
    status_columns = excluded.status_columns, ignored_columns = excluded.ignored_columns,
    redacted_columns = excluded.redacted_columns, labels = excluded.labels,
    tracked_at = now(), tracked_by = session_user;

  perform audit.follow_column_renames(target);  -- takes the columns' numbers

  -- The fast mode needs the event trigger that remakes the function after ALTER TABLE
  -- (11_ddl.sql; a superuser installs it); without it, the generic function.
  if exists (select from pg_event_trigger where evtname = 'audit_capture_alter_table') then
    perform audit.generate_capture(target);
    capture := format('audit.%I', 'capture_' || target::oid);
  else
    capture := 'audit.capture';
  end if;

  -- (Re)create the triggers, so a second call also picks up a changed primary key.
  perform audit.drop_triggers(target);
  perform audit.make_capture_triggers(target, capture::regproc);
  perform audit.make_truncate_triggers(target);
  perform audit.make_key_change_trigger(target);
  perform audit.stamp_triggers(target);
  -- its partitions and inheritance children, present (here) and future (the event
  -- triggers of 11_ddl.sql; without them, `audit-capture status` names a member left
  -- without triggers, and a second audit.track() call gives it them)
  perform audit.make_member_triggers(m) from audit.capture_members(target) m;
  if capture = 'audit.capture' then
    -- back to the generic mode: the function generated earlier is no longer used
    perform audit.drop_generated_capture(target);
  end if;
end
$$;
comment on function audit.track(regclass, text, text, text[], text[], text[], jsonb, text, text) is
  'Tracks a table (idempotent: a second call updates its settings): resource_type, label_column, status_columns, ignored_columns, redacted_columns, labels (label rules), label and label_plural (display words). Needs a primary key.';

create or replace function audit.drop_triggers(target regclass) returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  trigger_name name;
begin
  for trigger_name in
    select t.tgname from pg_trigger t
    where t.tgrelid = target and t.tgname like 'audit\_capture\_%' and not t.tgisinternal
      and t.tgparentid = 0  -- a partition's clone goes with its parent's trigger
  loop
    execute format('drop trigger %I on %s', trigger_name, target);
  end loop;
end
$$;
comment on function audit.drop_triggers(regclass) is
  'Internal: drops the audit_capture_* triggers of a table.';

create or replace function audit.drop_generated_capture(target regclass) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- only when there is one: DROP FUNCTION IF EXISTS would print a NOTICE for every
  -- table, index and sequence of every DROP TABLE (through audit.on_drop())
  if to_regprocedure(format('audit.%I()', 'capture_' || target::oid)) is not null then
    execute format('drop function audit.%I()', 'capture_' || target::oid);
  end if;
end
$$;
comment on function audit.drop_generated_capture(regclass) is
  'Internal: drops audit.capture_<oid>(), the generated capture function of a table, once no trigger uses it any more.';

create or replace function audit.untrack(target regclass) returns void
language plpgsql security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
  -- its members' triggers too (those of a partitioned table's partitions are all its
  -- own: the cloned key-change trigger goes with the tracked table's)
  perform audit.drop_triggers(m) from audit.capture_members(target) m
  where audit.tracked_root(m) = target;
  perform audit.drop_triggers(target);
  perform audit.drop_generated_capture(target);
  delete from audit.tracked_table where relation = target;
  if not found then
    raise notice '% was not tracked', target;
  end if;
end
$$;
comment on function audit.untrack(regclass) is
  'Stops tracking a table: drops its triggers and its registry row. Its past actions stay in the log. Idempotent.';

create or replace view audit.tracked_tables as
  select t.relation::text as table_name, t.resource_type, t.label, t.label_plural,
         t.label_column, t.status_columns, t.ignored_columns, t.redacted_columns,
         t.labels, t.tracked_at, t.tracked_by
  from audit.tracked_table t;
comment on view audit.tracked_tables is 'The tracked tables and their settings, by table name: the registry as a DBA reads it.';
