-- Restore: bring back what an action deleted, or put back the columns an update changed,
-- from the log alone (audit-capture restore, audit.restore()).
--
-- Security. audit.restore() and its helpers are SECURITY INVOKER: every write, every
-- read of the application table, every cast and type input function, every trigger of
-- the table runs as the CALLER, with the caller's privileges. A role without INSERT or
-- UPDATE on the table is refused by PostgreSQL itself (a check first turns that into a
-- sentence), row-level security applies as to any write of that role, and no code a
-- table's owner wrote ever runs as audit_owner here. The log is read with the caller's
-- rights too (audit_reader's: action_log, action_item_chunk, tracked_table, and the
-- SECURITY DEFINER audit.action_items(), which only reads). EXECUTE is audit_admin's:
-- restoring is the DBA's (or an admin's) act, not any application role's, even one
-- that may write the table: so it needs audit_admin AND the table's privileges.
--
-- The restore is its own action. Its writes are captured by the table's triggers like
-- any write, under audit.batch = 'Client restored' (or 'Clients restored'): every
-- statement of the restore goes into ONE action, whatever the number of rows, with
-- audit.action_type create (rows brought back) or update (columns put back), and
-- audit.context {"restores": <action id>} merged into the caller's context, so the
-- action names the one it undoes. The actor is the caller's context (set it before),
-- else the database role. The caller's audit.* settings are put back afterwards;
-- inside an open audit.batch it refuses (the restore would join that batch's action).
--
-- Refusals (errors, so nothing is half restored: the whole call is one statement):
--   - the row exists again (a delete's key is taken): "client 35 exists again"
--   - a later action touched the row since: named; --force (force => true) is allowed
--     only where it overwrites nothing: for a deleted row that is still absent, and for
--     an update whose columns still hold what the action wrote (a later action changed
--     other columns only). Otherwise no force can help.
--   - a column that is NOT NULL without a default and whose value was never logged
--     (redacted, or added to the table since)
--   - a logged column no longer in the table; a logged value that no longer fits its
--     column's type
-- A redacted column of an update cannot be put back (its old value was never logged):
-- it is left as it is, and the restore's context lists it ("not_restored").
--
-- Cost. "Touched since" is found through the indexes by resource of 20_history.sql, as
-- audit.history() finds a row's history: the single-row actions naming the rows and the
-- TRUNCATEs of their type (action_log_resource_idx, action_log_truncate_idx), and the chunks holding any of them
-- (action_item_chunk_resource_idx, GIN: only those chunks are read, and only their ids
-- are compared); one query per resource type restored (not one per row), whatever the
-- number of months since the action.

-- The later actions (id above action_id, from its month on) that touched any of the
-- given rows of a resource type; a TRUNCATE of the type touches them all. Each branch
-- writes its condition as the index it reads is defined (collate "C", coalesce()).
create or replace function audit.restore_later_actions(
  action_id bigint, since timestamptz, resource_type text, resource_ids text[]
) returns table (id bigint, action text, resource_id text, restores text)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  -- single-row actions (and batches of one row) name their row
  select a.id, a.action::text, a.resource_id, a.context ->> 'restores'
  from audit.action_log a
  where a.resource_type = restore_later_actions.resource_type collate "C"
    and a.resource_id = any (restore_later_actions.resource_ids collate "C")
    and a.occurred_at >= restore_later_actions.since and a.id > restore_later_actions.action_id
  union
  -- a TRUNCATE names none: it touched every row
  select a.id, a.action::text, '*', a.context ->> 'restores'
  from audit.action_log a
  where a.resource_type = restore_later_actions.resource_type collate "C"
    and a.operation = 'TRUNCATE'
    and a.occurred_at >= restore_later_actions.since and a.id > restore_later_actions.action_id
  union
  -- many-row actions: the chunks holding any of the rows (a chunk carries its action's
  -- time; '-infinity' in an upgraded install's legacy partition, matched by id)
  select a.id, a.action::text, k.rid, a.context ->> 'restores'
  from audit.action_item_chunk c
  cross join lateral (
    select r as rid from unnest(coalesce(c.resource_ids, audit.item_ids(c.items))) r
    where r = any (restore_later_actions.resource_ids)) k
  join audit.action_log a
    on a.id = c.action_id and (a.occurred_at = c.occurred_at or c.occurred_at = '-infinity'::timestamptz)
  where coalesce(c.resource_ids, audit.item_ids(c.items)) collate "C" && restore_later_actions.resource_ids
    and c.resource_type = restore_later_actions.resource_type
    and (c.occurred_at >= restore_later_actions.since or c.occurred_at = '-infinity'::timestamptz)
    and c.action_id > restore_later_actions.action_id
    and a.occurred_at >= restore_later_actions.since
  order by 1
$$;
comment on function audit.restore_later_actions(bigint, timestamptz, text, text[]) is
  'Internal (audit.restore()): the actions after action_id (from its month on) that touched any of the given rows of a resource type, one row per action and row (resource_id ''*'' for a TRUNCATE); restores is the action''s context ->> ''restores''. Reads the indexes by resource (20_history.sql).';

-- SQL matching a row of target (alias t) to a resource_id ($1): a one-column key through
-- its type's input (an index can serve it), a composite key as its rendered row literal
-- (audit.key_sql(): no index, a scan of the table).
create or replace function audit.restore_key_condition(target regclass) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when count(*) = 1 then
      (select case when t.typtype = 'd' and b.typtype = 'e'
                     -- a domain over an enum has no =: compare as the enum
                     then format('t.%I::%s = $1::%s', min(k.c), format_type(t.typbasetype, null), format_type(t.typbasetype, null))
                   else format('t.%I = $1::%s', min(k.c), format_type(min(a.atttypid), min(a.atttypmod))) end
       from pg_type t left join pg_type b on b.oid = t.typbasetype where t.oid = min(a.atttypid))
    else audit.key_sql(target, 't') || ' = $1'
  end
  from unnest(audit.primary_key_columns(target)) k(c)
  join pg_attribute a on a.attrelid = target and a.attname = k.c
$$;
comment on function audit.restore_key_condition(regclass) is
  'Internal (audit.restore()): SQL telling whether row t of the table has the primary key given as resource_id text in $1.';

-- The table's own code (its triggers, defaults, domain checks) runs during a restore
-- as it runs for the application: with the role's default search_path (the session's
-- reset value), not the pinned one of these functions, so a trigger that names its
-- tables without a schema still works. Only the statements that run that code switch
-- to it; the table in them is a regclass and their functions are pg_catalog's (always
-- searched first). It is the caller's own code path: nothing here runs as audit_owner.
-- (A function cannot set it for its caller: the SET clause of its own would put the
-- value back when it returns. The callers switch with set_config().)
create or replace function audit.restore_search_path() returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select s.reset_val from pg_catalog.pg_settings s where s.name = 'search_path'
$$;
comment on function audit.restore_search_path() is
  'Internal (audit.restore()): the role''s default search_path (the session''s reset value), which the statements running a table''s own code switch to.';

-- Checks one logged row (or an update's old columns) against the table as it is now,
-- and returns it ready for jsonb_populate_record(): unlogged values ("[redacted]")
-- taken out. Raises naming the column when a column is gone or a value does not fit.
create or replace function audit.restore_values(target regclass, logged jsonb, what text)
returns jsonb
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  col    text;
  value  jsonb;
  att    pg_attribute;
  result jsonb := '{}'::jsonb;
begin
  for col, value in select e.key, e.value from jsonb_each(logged) e loop
    select * into att from pg_attribute a
    where a.attrelid = target and a.attname = col and a.attnum > 0 and not a.attisdropped;
    if not found then
      raise exception '% was logged with column %, which % no longer has', what, quote_ident(col), target
        using errcode = 'undefined_column',
              hint = 'Add the column back, or restore by hand: the logged value is in audit.action_items().';
    end if;
    continue when value = '"[redacted]"' or att.attgenerated <> '';
    result := result || jsonb_build_object(col, value);
  end loop;
  -- every value at once (one subtransaction); only when that fails, column by column
  -- to name the one that no longer fits
  begin
    perform set_config('search_path', audit.restore_search_path(), true);
    execute format('select pg_catalog.jsonb_populate_record(null::%s, $1)', target) using result;
    perform set_config('search_path', 'pg_catalog, pg_temp', true);
  exception when others then
    for col, value in select e.key, e.value from jsonb_each(result) e loop
      select * into att from pg_attribute a
      where a.attrelid = target and a.attname = col and a.attnum > 0 and not a.attisdropped;
      begin
        perform set_config('search_path', audit.restore_search_path(), true);
        execute format('select pg_catalog.jsonb_populate_record(null::%s, $1)', target)
          using jsonb_build_object(col, value);
        perform set_config('search_path', 'pg_catalog, pg_temp', true);
      exception when others then
        raise exception '% cannot be restored: its logged % % no longer fits column % (%): %', what,
            quote_ident(col), left(value::text, 80), quote_ident(col), format_type(att.atttypid, att.atttypmod), sqlerrm
          using errcode = 'datatype_mismatch',
                hint = 'The column''s type changed since the action. Restore it by hand.';
      end;
    end loop;
    raise;  -- (not one column alone: the row as a whole)
  end;
  return result;
end
$$;
comment on function audit.restore_values(regclass, jsonb, text) is
  'Internal (audit.restore()): a logged row or set of columns checked against the table now (every column still there, every value still of its type), without its unlogged ("[redacted]") and generated columns.';

-- One item: a deleted row checked, to be inserted again (returned, ready for
-- audit.restore_rows(): one INSERT per table for all of them, where one statement per
-- row grew the batch's action row once per row), or an update's columns put back (not
-- its redacted ones: their old values were never logged; returns null).
create or replace function audit.restore_item(
  target regclass, what text, resource_id text, old jsonb, new jsonb, later text, force boolean
) returns jsonb
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  vals     jsonb;
  missing  text;
  present  boolean;
  current  jsonb;
  differs  text;
begin
  if new is null then
    -- ---- a deleted row: insert it again ------------------------------------------
    if not has_any_column_privilege(target, 'INSERT') then
      raise exception 'role % may not insert into %: restoring a deleted row needs INSERT on the table', current_user, target
        using errcode = 'insufficient_privilege';
    end if;
    vals := audit.restore_values(target, old, what);
    -- a column the row must have, whose value the log does not hold
    select string_agg(format('%I (%s)', a.attname,
                             case when old ? a.attname then 'redacted: its value was never logged'
                                  else 'added since the action: no value was logged' end), ', ')
    into missing
    from pg_attribute a
    where a.attrelid = target and a.attnum > 0 and not a.attisdropped
      and a.attnotnull and not a.atthasdef and a.attidentity = '' and a.attgenerated = ''
      and not vals ? a.attname;
    if missing is not null then
      raise exception '% cannot be restored: % is NOT NULL without a default, and %', what, missing,
          'the log holds no value for it'
        using errcode = 'not_null_violation',
              hint = 'Give the column a default (ALTER TABLE ... SET DEFAULT) and restore again.';
    end if;
    execute format('select exists (select from %s t where %s)', target, audit.restore_key_condition(target))
      into present using resource_id;
    if present then
      raise exception '% exists again', what
        using errcode = 'unique_violation',
              hint = 'A row with its key was created since; nothing was restored. Delete it first, or change it by hand.';
    end if;
    if later is not null and not force then
      raise exception '% was touched since: %', what, later
        using errcode = 'object_not_in_prerequisite_state',
              hint = 'The row is absent now, so --force (force => true) brings back the version this action deleted.';
    end if;
    -- (inserted by audit.restore_rows(), with the action's other rows of the table)
    return vals;
  end if;

  -- ---- an update: put back the columns it changed ------------------------------
  if not has_any_column_privilege(target, 'UPDATE') or not has_any_column_privilege(target, 'SELECT') then
    raise exception 'role % may not update %: putting back an update needs SELECT and UPDATE on the table', current_user, target
      using errcode = 'insufficient_privilege';
  end if;
  vals := audit.restore_values(target, old, what);
  if vals = '{}' then
    raise exception '% cannot be restored: every column the action changed is redacted, and their old values were never logged', what
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  -- the restored columns as they are now, rendered as capture logs them, locked
  execute format('select jsonb_build_object(%s) from %s t where %s for update', (
      select string_agg(format('%L, %s', a.attname, audit.rendered_sql(a.atttypid, format('t.%I', a.attname))), ', ')
      from jsonb_object_keys(vals) k join pg_attribute a on a.attrelid = target and a.attname = k),
    target, audit.restore_key_condition(target))
    into current using resource_id;
  if current is null then
    raise exception '% no longer exists%', what, coalesce(': ' || later, '')
      using errcode = 'no_data_found',
            hint = 'Restore the action that deleted it first.';
  end if;
  select string_agg(format('%I (now %s, the action left %s)', k, left((current -> k)::text, 40), left((new -> k)::text, 40)), ', ')
  into differs
  from jsonb_object_keys(vals) k where current -> k is distinct from new -> k;
  if later is not null and (not force or differs is not null) then
    raise exception '% was changed since: %', what, later
      using errcode = 'object_not_in_prerequisite_state',
            hint = case when differs is null
                        then 'The columns this action changed still hold what it wrote, so --force (force => true) puts them back without losing a later change.'
                        else format('--force cannot help: a later change would be lost: %s.', differs) end;
  end if;
  begin
    perform set_config('search_path', audit.restore_search_path(), true);
    execute format('update %s t set %s from pg_catalog.jsonb_populate_record(null::%s, $2) r where %s',
                   target, (select string_agg(format('%1$I = r.%1$I', k), ', ') from jsonb_object_keys(vals) k),
                   target, audit.restore_key_condition(target))
      using resource_id, vals;
    perform set_config('search_path', 'pg_catalog, pg_temp', true);
  exception
    when unique_violation then
      raise exception '% cannot be restored: %', what, sqlerrm
        using errcode = 'unique_violation', hint = 'Another row holds one of its unique values now.';
    when foreign_key_violation then
      raise exception '% cannot be restored: %', what, sqlerrm
        using errcode = 'foreign_key_violation', hint = 'A row it refers to is gone: restore that one first.';
    when insufficient_privilege then
      raise exception 'role % may not restore % into %: %', current_user, what, target, sqlerrm
        using errcode = 'insufficient_privilege', hint = 'Restoring writes the table with your own privileges.';
  end;
  return null;
end
$$;
comment on function audit.restore_item(regclass, text, text, jsonb, jsonb, text, boolean) is
  'Internal (audit.restore()): one item, with the caller''s rights: checks a deleted row (new null) and returns it for audit.restore_rows(), or puts back an update''s old columns (returns null); raises on a refusal.';

-- The deleted rows of one table, checked by audit.restore_item(), inserted again: one
-- INSERT per set of columns (rows logged with the same columns: all of them, unless
-- the table changed between statements of a batch).
create or replace function audit.restore_rows(target regclass, what text, rows_ jsonb)
returns void
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  batch   jsonb;
  detail  text;
begin
  for batch in
    select jsonb_agg(r order by o) from jsonb_array_elements(rows_) with ordinality e(r, o)
    group by (select array_agg(k order by k) from jsonb_object_keys(r) k)
  loop
    begin
      perform set_config('search_path', audit.restore_search_path(), true);
      execute format('insert into %1$s (%2$s) overriding system value select %2$s from pg_catalog.jsonb_populate_recordset(null::%1$s, $1)',
                     target, (select string_agg(quote_ident(k), ', ') from jsonb_object_keys(batch -> 0) k))
        using batch;
      perform set_config('search_path', 'pg_catalog, pg_temp', true);
    exception
      when unique_violation then
        get stacked diagnostics detail = pg_exception_detail;
        raise exception '% cannot be restored: % (%)', what, sqlerrm, detail
          using errcode = 'unique_violation', hint = 'Another row holds one of its unique values now.';
      when insufficient_privilege then
        raise exception 'role % may not restore % into %: %', current_user, what, target, sqlerrm
          using errcode = 'insufficient_privilege', hint = 'Restoring writes the table with your own privileges.';
      when foreign_key_violation then
        get stacked diagnostics detail = pg_exception_detail;
        raise exception '% cannot be restored: % (%)', what, sqlerrm, detail
          using errcode = 'foreign_key_violation', hint = 'A row it refers to is gone: restore that one first.';
    end;
  end loop;
end
$$;
comment on function audit.restore_rows(regclass, text, jsonb) is
  'Internal (audit.restore()): inserts the checked deleted rows of one table again, with the caller''s rights, one INSERT per set of logged columns.';

create or replace function audit.restore(
  action_id bigint, item_no integer default null, all_items boolean default false,
  force boolean default false
) returns bigint
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  l           audit.action_log;
  ctx         audit.context := audit.current_context();  -- validates the caller's context
  item_total  bigint;
  items       jsonb;     -- [{item_no, resource_type, resource_id, old, new}, ...]
  it          jsonb;
  rel         regclass;
  reg         audit.tracked_table;
  types       text[];
  later       jsonb := '{}'::jsonb;   -- {"<type> <id>": "action 57 (Client updated), ..."}
  dup         text;
  label       text;
  not_restored jsonb := '{}'::jsonb;
  what        text;
  saved       jsonb;
  new_id      bigint;
  checked     jsonb;
  pending_rels oid[] := '{}'::oid[];     -- the deleted rows to insert: their tables ...
  pending_rows jsonb[] := '{}'::jsonb[]; -- ... and the rows, checked
  pending_rel  oid;
begin
  if ctx.batch is not null then
    raise exception 'audit.restore() cannot run inside audit.batch (%): the restore is an action of its own', quote_literal(ctx.batch)
      using errcode = 'active_sql_transaction',
            hint = 'Restore in a transaction without audit.batch, or clear it first: select set_config(''audit.batch'', '''', true).';
  end if;
  select * into l from audit.action_log a where a.id = restore.action_id;
  if not found then
    raise exception 'no action %', action_id
      using errcode = 'no_data_found', hint = 'The id is audit.action_log.id (the viewer shows it on the action''s page).';
  end if;
  if l.operation is null then
    raise exception 'action % (%) is an application event: it changed no row, there is nothing to restore', l.id, l.action
      using errcode = 'wrong_object_type';
  elsif l.operation = 'TRUNCATE' then
    raise exception 'action % (%) was a TRUNCATE: its rows were not logged, so they cannot be restored', l.id, l.action
      using errcode = 'wrong_object_type';
  end if;
  if item_no is not null and all_items then
    raise exception 'name one item or all items, not both'
      using errcode = 'invalid_parameter_value';
  end if;
  item_total := l.row_count::bigint;
  if item_no is not null and (item_no < 1 or item_no > item_total) then
    raise exception 'action % has no item %: its items are 1 to %', l.id, item_no, item_total
      using errcode = 'invalid_parameter_value';
  end if;
  if item_no is null and not all_items and item_total > 1 then
    raise exception 'action % (%) covers % rows: name one item (--item N) or restore them all (--all-items)', l.id, l.action, item_total
      using errcode = 'invalid_parameter_value';
  end if;

  select jsonb_agg(to_jsonb(i) order by i.item_no) into items
  from audit.action_items(l.id, coalesce(item_no, 1), case when item_no is null then 2147483647 else 1 end) i;
  -- a create has nothing to bring back (undoing it would be a delete)
  items := (select coalesce(jsonb_agg(e), '[]') from jsonb_array_elements(items) e where e -> 'old' <> 'null');
  if jsonb_array_length(items) = 0 then
    raise exception 'action % (%) created % row(s): it deleted or changed nothing, so there is nothing to restore', l.id, l.action, l.row_count
      using errcode = 'wrong_object_type',
            hint = 'Undoing a create is a delete: delete the rows by hand.';
  end if;
  -- one row twice in the action (a batch updated then deleted it): which version is meant?
  select format('%s %s is in items %s', min(e ->> 'resource_type'), e ->> 'resource_id',
                string_agg(e ->> 'item_no', ' and ' order by (e ->> 'item_no')::integer))
  into dup
  from jsonb_array_elements(items) e
  group by e ->> 'resource_type', e ->> 'resource_id' having count(*) > 1 limit 1;
  if dup is not null then
    raise exception 'action % changed a row more than once (%): restore one item at a time (--item N)', l.id, dup
      using errcode = 'cardinality_violation';
  end if;

  -- the later actions, one scan per resource type
  types := array(select distinct e ->> 'resource_type' from jsonb_array_elements(items) e);
  for i in 1 .. cardinality(types) loop
    select later || coalesce(jsonb_object_agg(x.key, x.actions), '{}') into later
    from (select types[i] || ' ' || r.resource_id as key,
                 string_agg(format('action %s (%s)%s', r.id, r.action,
                                   case when r.restores = l.id::text then ', which restored it already' else '' end),
                            ', ' order by r.id) as actions
          from audit.restore_later_actions(l.id, l.occurred_at, types[i],
                 array(select e ->> 'resource_id' from jsonb_array_elements(items) e where e ->> 'resource_type' = types[i])) r
          group by r.resource_id) x;
    -- a TRUNCATE touched every row
    if later ? (types[i] || ' *') then
      select later || coalesce(jsonb_object_agg(types[i] || ' ' || (e ->> 'resource_id'),
                                                concat_ws(', ', later ->> (types[i] || ' ' || (e ->> 'resource_id')), later ->> (types[i] || ' *'))), '{}')
      into later
      from jsonb_array_elements(items) e where e ->> 'resource_type' = types[i];
    end if;
  end loop;

  -- an update's redacted columns cannot be put back (never logged): named in the context
  select coalesce(jsonb_object_agg(x.rid, x.cols), '{}') into not_restored
  from (select e ->> 'resource_id' as rid, jsonb_agg(k order by k) as cols
        from jsonb_array_elements(items) e, jsonb_object_keys(e -> 'old') k
        where e -> 'new' <> 'null' and e -> 'old' -> k = '"[redacted]"'
        group by 1) x;

  -- the restore's own action: one batch, by the caller, naming the action it undoes
  saved := jsonb_build_object('batch_action_id', current_setting('audit.batch_action_id', true),
                              'action_type', current_setting('audit.action_type', true),
                              'context', current_setting('audit.context', true));
  for it in select e from jsonb_array_elements(items) e loop
    -- the table: the one logged by the action, or the one tracked under the item's type
    select t.* into reg from audit.tracked_table t
    where t.resource_type = it ->> 'resource_type'
    order by t.relation = to_regclass(l.table_name) desc nulls last, t.relation::oid
    limit 1;
    if reg.relation is null then
      raise exception 'no tracked table holds % rows now: there is nowhere to restore action % into', it ->> 'resource_type', l.id
        using errcode = 'undefined_table';
    end if;
    rel := reg.relation;
    if label is null then
      label := case when jsonb_array_length(items) = 1 then reg.label || ' restored' else reg.label_plural || ' restored' end;
      perform set_config('audit.batch', label, true);
      perform set_config('audit.batch_action_id', '', true);
      perform set_config('audit.context', (coalesce(ctx.context, '{}') || jsonb_build_object('restores', l.id)
        || case when item_no is not null and item_total > 1 then jsonb_build_object('restores_item', item_no) else '{}' end
        || case when not_restored <> '{}' then jsonb_build_object('not_restored', not_restored) else '{}' end)::text, true);
    end if;
    what := format('%s %s', it ->> 'resource_type', it ->> 'resource_id')
            || case when item_total > 1 then format(' (item %s of action %s)', it ->> 'item_no', l.id) else '' end;
    perform set_config('audit.action_type', case when it -> 'new' = 'null' then 'create' else 'update' end, true);
    checked := audit.restore_item(rel, what, it ->> 'resource_id', it -> 'old',
                                  case when it -> 'new' = 'null' then null else it -> 'new' end,
                                  later ->> ((it ->> 'resource_type') || ' ' || (it ->> 'resource_id')), force);
    if checked is not null then
      -- (appended in place: arrays, where a growing jsonb was copied at every row)
      pending_rels := array_append(pending_rels, rel::oid);
      pending_rows := array_append(pending_rows, checked);
    end if;
  end loop;
  -- the deleted rows, table by table
  perform set_config('audit.action_type', 'create', true);
  for pending_rel, checked in
    select p.rel, jsonb_agg(p.r order by p.o) from unnest(pending_rels, pending_rows) with ordinality p(rel, r, o)
    group by p.rel order by min(p.o)
  loop
    perform audit.restore_rows(pending_rel::regclass,
      case when item_total > 1 then format('%s rows of action %s', (select t.resource_type from audit.tracked_table t where t.relation = pending_rel), l.id)
           else what end,
      checked);
  end loop;

  new_id := nullif(current_setting('audit.batch_action_id', true), '')::bigint;
  perform set_config('audit.batch', '', true);
  perform set_config('audit.batch_action_id', saved ->> 'batch_action_id', true);
  perform set_config('audit.action_type', coalesce(saved ->> 'action_type', ''), true);
  perform set_config('audit.context', coalesce(saved ->> 'context', ''), true);
  if new_id is null then
    raise exception 'nothing to restore: the rows of action % already hold the values it changed', l.id
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  return new_id;
end
$$;
comment on function audit.restore(bigint, integer, boolean, boolean) is
  'Restores what an action deleted (the rows, inserted again) or changed (the old values of the columns it updated), as the caller (SECURITY INVOKER: the caller''s table privileges apply). item_no picks one item of a many-row action, all_items takes them all (one transaction, one action); force restores although a later action touched the row, where that overwrites nothing. The restore is one action ("Client restored", create or update) whose context is {"restores": action_id}; returns its id. Refuses, changing nothing: a row that exists again, a later change, an unlogged NOT NULL column, a column dropped or no longer of its type.';

revoke all on function
  audit.restore_rows(regclass, text, jsonb),
  audit.restore_search_path(),
  audit.restore(bigint, integer, boolean, boolean),
  audit.restore_item(regclass, text, text, jsonb, jsonb, text, boolean),
  audit.restore_values(regclass, jsonb, text),
  audit.restore_key_condition(regclass),
  audit.restore_later_actions(bigint, timestamptz, text, text[])
  from public;
grant execute on function
  audit.restore_rows(regclass, text, jsonb),
  audit.restore_search_path(),
  audit.restore(bigint, integer, boolean, boolean),
  audit.restore_item(regclass, text, text, jsonb, jsonb, text, boolean),
  audit.restore_values(regclass, jsonb, text),
  audit.restore_key_condition(regclass),
  audit.restore_later_actions(bigint, timestamptz, text, text[]),
  -- (what the helpers call: rendering a key and values as capture does)
  audit.key_sql(regclass, text), audit.loggable_json(json)
  to audit_admin;
