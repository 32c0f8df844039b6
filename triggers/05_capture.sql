-- Capture: the trigger functions that turn a statement on a tracked table into one
-- action in audit.action_log and one item per affected row in audit.action_item.
--
-- One statement-level trigger per event (INSERT, UPDATE, DELETE, TRUNCATE) reads the
-- statement's transition tables, so the work is one INSERT ... SELECT per statement
-- however many rows it touched. Rows are handled as jsonb, read from the table as it is
-- at that moment, which is why ADD, DROP and RENAME COLUMN need no reinstall.

-- The primary-key column names of a table, in key order.
create or replace function audit.primary_key_columns(rel oid) returns text[]
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select array_agg(a.attname::text order by k.ord)
  from pg_index i
  cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
  where i.indrelid = rel and i.indisprimary
$$;
comment on function audit.primary_key_columns(oid) is
  'Internal: the primary-key column names of a table, in key order; null when it has none.';

-- The SQL expression that renders a row's primary key as text: "o.id::text" for one
-- column, "row(o.a, o.b)::text" (a row literal such as "(3,7)") for a composite key.
-- rowref is a table alias ("o") or a record expression ("($1)").
create or replace function audit.key_expression(pk_columns text[], rowref text) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when cardinality(pk_columns) = 1 then format('%s.%I::text', rowref, pk_columns[1])
    else format('row(%s)::text',
                (select string_agg(format('%s.%I', rowref, c), ', ' order by ord)
                 from unnest(pk_columns) with ordinality as u(c, ord)))
  end
$$;
comment on function audit.key_expression(text[], text) is
  'Internal: SQL expression rendering a row''s primary key as text (a row literal for a composite key).';

-- The default label of an action on a tracked table, from the table's display words:
-- "Client created", "Campaign status change", "Batch client deletion",
-- "Bulk case status update", "Bulk case condition update", "Clients imported (12)".
create or replace function audit.default_label(
  reg audit.tracked_table, action_type text, row_count integer, changed_columns text[]
) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when action_type = 'import' then format('%s imported (%s)', reg.label_plural, row_count)
    when row_count = 1 then case action_type
      when 'create' then reg.label || ' created'
      when 'update' then reg.label || ' updated'
      when 'status_change' then reg.label || ' status change'
      when 'delete' then reg.label || ' deleted'
      else format('%s %s', reg.label, replace(action_type, '_', ' '))
    end
    else case action_type
      when 'create' then format('Batch %s creation', lower(reg.label))
      when 'delete' then format('Batch %s deletion', lower(reg.label))
      when 'status_change' then format('Bulk %s status update', lower(reg.label))
      -- one column changed on every row: name it ("Bulk case condition update")
      when 'update' then case when cardinality(changed_columns) = 1
        then format('Bulk %s %s update', lower(reg.label), replace(changed_columns[1], '_', ' '))
        else format('Bulk %s update', lower(reg.label)) end
      else format('Bulk %s %s', lower(reg.label), replace(action_type, '_', ' '))
    end
  end
$$;
comment on function audit.default_label(audit.tracked_table, text, integer, text[]) is
  'Internal: the default action label for a tracked table, an action type, a row count and the changed columns.';

-- Applies a table's label overrides (tracked_table.labels) to a single-row action.
-- Returns the label and action type to use, or nulls when no rule matches.
create or replace function audit.label_override(
  rules jsonb, action_type text, row_data jsonb, changed_columns text[],
  out label text, out override_type text
)
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  rule jsonb;
  placeholder text;
begin
  for rule in select value from jsonb_array_elements(rules) loop
    -- "on": an action type or a list of them; "?" matches a string or an array element
    continue when rule ? 'on' and not (rule -> 'on') ? action_type;
    continue when rule ? 'when' and not coalesce(row_data @> (rule -> 'when'), false);
    continue when rule ? 'changed' and not coalesce(changed_columns, '{}') @> array(
      select jsonb_array_elements_text(
        case jsonb_typeof(rule -> 'changed') when 'array' then rule -> 'changed'
             else jsonb_build_array(rule -> 'changed') end));
    label := rule ->> 'label';
    for placeholder in
      select distinct m[1] from regexp_matches(label, '\{([A-Za-z_][A-Za-z0-9_]*)\}', 'g') as m
    loop
      label := replace(label, '{' || placeholder || '}', coalesce(row_data ->> placeholder, ''));
    end loop;
    override_type := rule ->> 'action_type';
    return;
  end loop;
end
$$;
comment on function audit.label_override(jsonb, text, jsonb, text[]) is
  'Internal: first matching label rule of a tracked table for a single-row action, with "{column}" placeholders filled from the row.';

-- The action type of a batch that mixes statements: equal types stay, a status change
-- wins over a plain update, anything else is an update.
create or replace function audit.merge_action_types(a text, b text) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when a = b then a
    when array[a, b] <@ array['update', 'status_change'] then 'status_change'
    else 'update'
  end
$$;
comment on function audit.merge_action_types(text, text) is
  'Internal: the action type of a batch action that groups statements of types a and b.';

-- The statement trigger of INSERT, UPDATE and DELETE.
create or replace function audit.capture() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  -- validated first: a bad actor_type or source fails the statement before anything
  ctx            audit.context := audit.current_context();
  reg            audit.tracked_table;
  operation      text := lower(tg_op);
  pk_columns     text[];
  redaction      jsonb;
  rows_query     text;
  keys_moved     boolean := false;
  action_id      bigint;
  batch_action   audit.action_log;
  items_before   integer := 0;
  -- what the statement did, from the one query below
  n              integer;
  status_changed boolean;
  changed        text[];
  first_key      text;
  first_old      jsonb;
  first_new      jsonb;
  -- the action
  kind           text;
  label          text;
  override_type  text;
  the_row        jsonb;
  changes        jsonb;
begin
  select * into reg from audit.tracked_table where relation = tg_relid::regclass;
  if not found then
    return null;  -- untracked while its triggers were still queued: nothing to log
  end if;

  pk_columns := audit.primary_key_columns(tg_relid);
  -- {"col": "[redacted]"} for the redacted columns the table has now; merged over a
  -- row, it masks them (and jsonb || null stays null for a missing side).
  select coalesce(jsonb_object_agg(a.attname, '[redacted]'), '{}') into redaction
  from pg_attribute a
  where a.attrelid = tg_relid and a.attnum > 0 and not a.attisdropped
    and a.attname = any (reg.redacted_columns);

  -- rows: one per affected row, with its key, its old and new versions (unredacted)
  if operation = 'insert' then
    rows_query := format(
      'select %s as k, null::jsonb as old, to_jsonb(r) as new from audit_new_rows r',
      audit.key_expression(pk_columns, 'r'));
  elsif operation = 'delete' then
    rows_query := format(
      'select %s as k, to_jsonb(r) as old, null::jsonb as new from audit_old_rows r',
      audit.key_expression(pk_columns, 'r'));
  else
    -- Old and new versions are paired by primary key, never by position. A row whose
    -- key the statement changed was noted by audit.capture_key_change(), so its old
    -- version is looked up under its new key. A row moved to another partition fires
    -- no row trigger; when exactly one old and one new version are left unpaired they
    -- are that row. Anything else left unpaired is kept as it is, never invented.
    keys_moved := coalesce(current_setting('audit.keys_moved', true), '') = 'on';
    rows_query := format(
      $q$with o as (
           select coalesce(m.new_key, o.k) as k, o.j
           from (select %1$s as k, to_jsonb(r) as j from audit_old_rows r) o
           left join (select old_key, new_key from audit.pending_key_change
                      where %2$L and backend_pid = pg_backend_pid() and relation = %3$s) m
                  on m.old_key = o.k),
         n as (select %1$s as k, to_jsonb(r) as j from audit_new_rows r),
         paired as materialized (
           select coalesce(n.k, o.k) as k, o.j as old, n.j as new
           from o full join n on n.k = o.k),
         lone_pair as (
           select n.k, o.old, n.new
           from (select old from paired where new is null) o,
                (select k, new from paired where old is null) n
           where (select count(*) from paired where new is null) = 1
             and (select count(*) from paired where old is null) = 1)
       select k, old, new from paired
       where (old is not null and new is not null) or not exists (select from lone_pair)
       union all
       select k, old, new from lone_pair$q$,
      audit.key_expression(pk_columns, 'r'), keys_moved, tg_relid);
  end if;

  -- Batch: every tracked change of the transaction joins one action labelled
  -- audit.batch. The action's id is remembered in a transaction-local variable and
  -- checked against this transaction, so a forged value cannot redirect items.
  if ctx.batch is not null then
    select * into batch_action from audit.action_log l
    where l.id = nullif(current_setting('audit.batch_action_id', true), '')::bigint
      and l.transaction_id = pg_current_xact_id()::text::bigint
      and l.action = ctx.batch;
    if found then
      action_id := batch_action.id;
      items_before := batch_action.row_count;
    end if;
  end if;
  if action_id is null then
    action_id := nextval('audit.action_log_id_seq');
  end if;

  -- One query: compute each row's changed columns, drop rows that did not really
  -- change (no-op updates, updates of ignored columns only), write the items, and
  -- return what the action row needs. MATERIALIZED: the rows are read once.
  execute format(
    $q$with p as (%s),
     d as materialized (
       select k, old || $4 as old, new || $4 as new,
              case when old is null or new is null then
                     array(select c from jsonb_object_keys(coalesce(new, old)) c
                           where not c = any ($5) order by c)
                   else
                     array(select e.key from jsonb_each(new) e
                           where e.value is distinct from old -> e.key
                             and not e.key = any ($5) order by e.key)
              end as changed
       from p),
     kept as materialized (
       select k, old, new, changed, row_number() over () as item_no
       from d where cardinality(changed) > 0),
     items as (
       insert into audit.action_item (action_id, item_no, resource_type, resource_id, old, new)
       select $1, $2 + item_no, $3, k, old, new from kept
       returning 1)
     select (select count(*) from kept)::int,
            coalesce((select bool_or(changed && $6) from kept), false),
            (select coalesce(array_agg(distinct c order by c), '{}') from kept, unnest(changed) c),
            (select k from kept limit 1),
            (select old from kept limit 1),
            (select new from kept limit 1)$q$,
    rows_query)
  into n, status_changed, changed, first_key, first_old, first_new
  using action_id, items_before, reg.resource_type, redaction,
        reg.ignored_columns, reg.status_columns;

  if keys_moved then
    delete from audit.pending_key_change
    where backend_pid = pg_backend_pid() and relation = tg_relid;
    perform set_config('audit.keys_moved', '', true);
  end if;

  if n = 0 then
    return null;  -- nothing really changed: no action
  end if;

  kind := case operation
    when 'insert' then case when ctx.action_type = 'import' then 'import' else 'create' end
    when 'delete' then 'delete'
    else case when status_changed then 'status_change' else 'update' end
  end;
  -- an explicit audit.action_type other than import applies to every statement
  if ctx.action_type is not null and ctx.action_type <> 'import' then
    kind := ctx.action_type;
  end if;

  the_row := coalesce(first_new, first_old);
  if n = 1 then
    changes := case operation
      when 'insert' then first_new
      when 'delete' then first_old
      else (select jsonb_object_agg(c, jsonb_build_object('old', first_old -> c, 'new', first_new -> c))
            from unnest(changed) c)
    end;
  else
    changes := jsonb_build_object('rows', n);
    if operation = 'update' then
      changes := changes || jsonb_build_object('changed_columns', to_jsonb(changed));
    end if;
  end if;

  if batch_action.id is not null then
    -- a later statement of the batch: grow the action this transaction is building
    update audit.action_log l set
      row_count = l.row_count + n,
      resource_id = null,
      resource_label = null,
      action_type = audit.merge_action_types(l.action_type, kind),
      changes = jsonb_build_object('rows', l.row_count + n)
    where l.id = action_id;
    return null;
  end if;

  if ctx.batch is not null then
    label := ctx.batch;
    perform set_config('audit.batch_action_id', action_id::text, true);
  else
    if n = 1 and reg.labels <> '[]' then
      select o.label, o.override_type into label, override_type
      from audit.label_override(reg.labels, kind, the_row, changed) o;
      kind := coalesce(override_type, kind);
    end if;
    label := coalesce(label, audit.default_label(reg, kind, n, changed));
  end if;

  insert into audit.action_log (
    id, action, action_type, resource_type, resource_id, resource_label, row_count,
    actor_id, actor_name, actor_type, source, changes, db_user, transaction_id,
    request_id, context, table_name, application_name, client_addr)
  overriding system value
  values (
    action_id, label, kind, reg.resource_type,
    case when n = 1 then first_key end,
    case when n = 1 and reg.label_column is not null then the_row ->> reg.label_column end,
    n, ctx.actor_id, ctx.actor_name, ctx.actor_type, ctx.source, changes, ctx.db_user,
    pg_current_xact_id()::text::bigint, ctx.request_id, ctx.context,
    format('%I.%I', tg_table_schema, tg_table_name),
    nullif(current_setting('application_name'), ''), inet_client_addr());
  return null;
end
$$;
comment on function audit.capture() is
  'Statement trigger of tracked tables: logs one action per INSERT, UPDATE or DELETE statement (or joins the transaction''s audit.batch action), with one item per affected row.';

-- Row trigger that fires only for rows whose primary key an UPDATE changes (its WHEN
-- clause compares the key columns), so that audit.capture() can pair their versions.
create or replace function audit.capture_key_change() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  key_sql text := audit.key_expression(audit.primary_key_columns(tg_relid), '($1)');
  old_key text;
  new_key text;
begin
  execute 'select ' || key_sql into old_key using old;
  execute 'select ' || key_sql into new_key using new;
  insert into audit.pending_key_change (backend_pid, relation, old_key, new_key)
  values (pg_backend_pid(), tg_relid, old_key, new_key);
  perform set_config('audit.keys_moved', 'on', true);
  return null;
end
$$;
comment on function audit.capture_key_change() is
  'Row trigger of tracked tables, fired only when an UPDATE changes a row''s primary key: notes old and new key for audit.capture().';

-- TRUNCATE has no transition table: it is logged as one delete action whose label says
-- the table was truncated. The rows themselves are not copied.
create or replace function audit.capture_truncate() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  ctx audit.context := audit.current_context();
  reg audit.tracked_table;
begin
  select * into reg from audit.tracked_table where relation = tg_relid::regclass;
  if not found then
    return null;
  end if;
  insert into audit.action_log (
    action, action_type, resource_type, row_count, actor_id, actor_name, actor_type,
    source, changes, db_user, transaction_id, request_id, context, table_name,
    application_name, client_addr)
  values (
    reg.label_plural || ' table truncated', 'delete', reg.resource_type, 0,
    ctx.actor_id, ctx.actor_name, ctx.actor_type, ctx.source,
    jsonb_build_object('truncated', format('%I.%I', tg_table_schema, tg_table_name)),
    ctx.db_user, pg_current_xact_id()::text::bigint, ctx.request_id, ctx.context,
    format('%I.%I', tg_table_schema, tg_table_name),
    nullif(current_setting('application_name'), ''), inet_client_addr());
  return null;
end
$$;
comment on function audit.capture_truncate() is
  'Statement trigger of tracked tables: logs a TRUNCATE as one delete action ("Clients table truncated").';
