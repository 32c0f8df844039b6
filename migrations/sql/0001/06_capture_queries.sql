-- The SQL that captures one statement on one tracked table, written out for that table.
--
-- audit.capture_query() returns the text of one query, made from the table as it is now
-- (its columns, primary key) and from its settings in audit.tracked_table (ignored,
-- redacted, status and label columns, label overrides). Comparing the table's own
-- columns directly is what keeps the per-row cost low: no row is turned into jsonb just
-- to diff it, and the items of a bulk statement are written as compact JSON arrays.
--
-- The same texts serve both capture modes (see 07_capture.sql): a function generated
-- per table embeds them as static SQL, whose plans PostgreSQL caches; the generic
-- fallback runs them with EXECUTE. The many-row queries take two parameters:
--   $1 the action's id   $2 the items the action already holds (a batch)
--
-- variants:
--   'one'   a statement on one row: writes the whole action (diff or row in `changes`,
--           no item row) and nothing when the statement touched 0 or many rows
--   'many'  any statement: writes its items in chunks of 1,000 under action $1 and
--           returns (items written, changed columns)
--   'moved' like 'many' for an UPDATE that changed primary keys: pairs old and new
--           versions through audit.pending_key_change

-- concat_ws(',', ...) of the given expressions (nulls skipped), in pieces of 99.
create or replace function audit.concat_ws_sql(expressions text[]) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when cardinality(expressions) = 0 then ''''''
    when cardinality(expressions) <= 99 then
      format('concat_ws('','', %s)', array_to_string(expressions, ', '))
    else format('concat_ws('','', %s)', (
      select string_agg(format('nullif(concat_ws('','', %s), '''')', array_to_string(expressions[i:i + 98], ', ')),
                        ', ' order by i)
      from generate_series(1, cardinality(expressions), 99) i))
  end
$$;
comment on function audit.concat_ws_sql(text[]) is
  'Internal: SQL joining the given text expressions with commas, skipping nulls, in pieces when there are more than 99.';

-- (has_equality, value_rendering and compare_sql are PL/pgSQL rather than SQL: the
-- generic capture mode writes its queries out at every statement, calling them for each
-- column, and PL/pgSQL keeps their plans for the session where a nested SQL function is
-- planned again at every call: 24 ms against 5 ms per single-row UPDATE's query.)

-- Whether values of a type can be compared with = (IS DISTINCT FROM): base types and
-- enums with a default btree or hash operator class, arrays of those, domains over
-- those but enums (PostgreSQL finds no = for a domain over an enum: the UPDATE of such
-- a column failed). Others (json, xml, point, composites...) are compared as text.
create or replace function audit.has_equality(type_oid oid) returns boolean
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  t pg_type;
begin
  select * into t from pg_type where oid = type_oid;
  if not found then
    return null;
  elsif t.typtype = 'd' then
    return (select b.typtype <> 'e' from pg_type b where b.oid = t.typbasetype)
           and audit.has_equality(t.typbasetype);
  elsif t.typtype = 'e' then
    return true;
  elsif t.typtype = 'b' and t.typcategory = 'A' and t.typelem <> 0 then
    return audit.has_equality(t.typelem);
  elsif t.typtype = 'b' then
    return exists (select from pg_opclass c join pg_am a on a.oid = c.opcmethod
                   where a.amname in ('btree', 'hash') and c.opcdefault and c.opcintype = t.oid);
  end if;
  return false;
end
$$;
comment on function audit.has_equality(oid) is
  'Internal: true when values of the type compare with =; capture compares other types as text.';

-- How capture renders a value of the type, so that no code a table's owner wrote ever
-- runs as audit_owner (capture is SECURITY DEFINER) and no value can make it fail:
--   null    as PostgreSQL renders it (to_json(), ::text, =): built-in types, and types
--           owned by a superuser (an extension's), whose casts only a superuser makes
--   'text'  as its output text (a JSON string): a type owned by another role, or one
--           holding such a type (a domain over it, an array, a composite, a range of
--           it). to_json() and ::text would call a cast its owner may create (to_json
--           looks one up for every type not built in), = could pick an operator through
--           an implicit cast; the output functions of enums, composites, ranges, arrays
--           and domains are PostgreSQL's own (a base type needs C: a superuser).
--   'json'  json, or a type holding json (json[], a composite with a json field): as
--           to_json() gives it, but as a JSON string of its text when jsonb cannot hold
--           it (see audit.rendered_sql())
-- Casts on a domain are never used (PostgreSQL looks through domains): its base decides.
-- 'text' wins over 'json' (max()).
create or replace function audit.value_rendering(type_oid oid) returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  t pg_type;
  owner_is_superuser boolean;
begin
  select * into t from pg_type where oid = type_oid;
  if not found then
    return null;
  end if;
  if t.typtype = 'd' then
    return audit.value_rendering(t.typbasetype);
  end if;
  if t.oid >= 16384 then
    select r.rolsuper into owner_is_superuser from pg_roles r where r.oid = t.typowner;
    if not coalesce(owner_is_superuser, false) then
      return 'text';
    end if;
  end if;
  if t.oid = 'json'::regtype then
    return 'json';
  elsif t.typtype = 'c' then
    return (select max(audit.value_rendering(a.atttypid)) from pg_attribute a
            where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped);
  elsif t.typcategory = 'A' and t.typelem <> 0 then
    return audit.value_rendering(t.typelem);
  elsif t.typtype = 'r' then
    return (select audit.value_rendering(r.rngsubtype) from pg_range r where r.rngtypid = t.oid);
  elsif t.typtype = 'm' then
    return (select audit.value_rendering(r.rngtypid) from pg_range r where r.rngmultitypid = t.oid);
  end if;
  return null;
end
$$;
comment on function audit.value_rendering(oid) is
  'Internal: how capture renders values of a type: null (as PostgreSQL does), ''text'' (its output text: a type a non-superuser owns, whose casts capture must never call) or ''json'' (holds json, which jsonb may refuse).';

-- A json value as capture logs it: itself, or a JSON string of its text when jsonb
-- cannot hold it ("\u0000", a number beyond numeric's range). Whole rows and changes
-- become jsonb, and the error that conversion raised carried the value in its CONTEXT
-- line (a redacted one too) and made the application's write fail.
create or replace function audit.loggable_json(value json) returns json
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  perform value::jsonb;
  return value;
exception when others then
  return to_json(value::text);
end
$$;
comment on function audit.loggable_json(json) is
  'Internal: a json value, or a JSON string of its text when jsonb cannot hold it (\u0000, a number out of numeric''s range); never fails.';

-- The type under a domain (and a domain over a domain); the type itself otherwise.
create or replace function audit.base_type(type_oid oid) returns oid
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case when t.typtype = 'd' then audit.base_type(t.typbasetype) else t.oid end
  from pg_type t where t.oid = type_oid
$$;
comment on function audit.base_type(oid) is
  'Internal: the base type of a domain (through domains over domains); any other type itself.';

-- SQL rendering the value expression expr, of type type_oid, as audit.value_rendering()
-- says. A value holding json is looked at first: only one with what jsonb could refuse
-- ("\u0000", an exponent of 5 digits, a run of 200 digits: numeric keeps up to 131072
-- digits before the point and 16383 after) goes through audit.loggable_json() (json)
-- or becomes a JSON string of its text (a type holding json).
create or replace function audit.rendered_sql(type_oid oid, expr text) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case audit.value_rendering(type_oid)
    when 'text' then format('case when pg_catalog.num_nulls(%1$s) = 0 then pg_catalog.format(''%%s'', %1$s) end', expr)
    when 'json' then format($f$case when %1$s::text ~ '\\u0000|[eE][-+]?[0-9]{5}|[0-9]{200}' then %2$s else %3$s end$f$,
                            expr,
                            case when audit.base_type(type_oid) = 'json'::regtype
                                 then format('audit.loggable_json(%s::json)', expr)
                                 else format('pg_catalog.to_json(%s::text)', expr) end,
                            case when audit.base_type(type_oid) = 'json'::regtype
                                 then format('%s::json', expr)
                                 else format('pg_catalog.to_json(%s)', expr) end)
    else expr
  end
$$;
comment on function audit.rendered_sql(oid, text) is
  'Internal: SQL rendering a value as capture logs it (see audit.value_rendering()): itself, its output text, or json that jsonb can hold.';

-- The rows of a transition table as capture reads them: the table itself, or, when a
-- column needs rendering (audit.value_rendering()), a subquery giving that column's
-- rendered value under its own name. Everything the capture queries do with a row
-- (to_jsonb, json_agg, ::text, comparing, joining on the key) then meets only types
-- whose casts and operators are PostgreSQL's own.
create or replace function audit.rows_sql(target regclass, transition text, alias text) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when bool_or(v.rendered <> v.plain) then
      format('(select %s from %s %s) %s',
             string_agg(case when v.rendered = v.plain then v.plain else format('%s as %I', v.rendered, v.attname) end,
                        ', ' order by v.attnum),
             transition, alias, alias)
    else format('%s %s', transition, alias)
  end
  from (select a.attnum, a.attname, format('%s.%I', alias, a.attname) as plain,
               audit.rendered_sql(a.atttypid, format('%s.%I', alias, a.attname)) as rendered
        from pg_attribute a
        where a.attrelid = target and a.attnum > 0 and not a.attisdropped) v
$$;
comment on function audit.rows_sql(regclass, text, text) is
  'Internal: the FROM item of a transition table for capture: the table, or a subquery rendering the columns of types capture must not cast (see audit.value_rendering()).';

-- SQL rendering a row's primary key as text (one column's text, or a row literal such
-- as "(3,7)" for a composite key), with the columns of a type capture must not cast
-- rendered first (their output text). rowref is a table alias or a record expression;
-- the capture queries and audit.capture_key_change() must give the same text for the
-- same key.
create or replace function audit.key_sql(target regclass, rowref text) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when count(*) = 1 then format('(%s)::text', min(v))
    else format('row(%s)::text', string_agg(v, ', ' order by ord))
  end
  from (select k.ord, audit.rendered_sql(a.atttypid, format('%s.%I', rowref, a.attname)) as v
        -- the tracked table's key columns (an inheritance child has no key of its own),
        -- found by name in target
        from unnest(audit.primary_key_columns(coalesce(audit.tracked_root(target), target))) with ordinality k(c, ord)
        join pg_attribute a on a.attrelid = target and a.attname = k.c) keys
$$;
comment on function audit.key_sql(regclass, text) is
  'Internal: SQL rendering a row''s primary key as text (a row literal for a composite key), never through a cast of a type a non-superuser owns.';

-- SQL telling whether two values of a type differ: = where the type has it, as text
-- otherwise, as rendered text for a type capture must not cast or compare itself.
create or replace function audit.compare_sql(type_oid oid, a text, b text) returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  if type_oid >= 16384 and audit.value_rendering(type_oid) = 'text' then
    return format('%s is distinct from %s', audit.rendered_sql(type_oid, a), audit.rendered_sql(type_oid, b));
  elsif audit.has_equality(type_oid) then
    return format('%s is distinct from %s', a, b);
  end if;
  return format('%s::text is distinct from %s::text', a, b);
end
$$;
comment on function audit.compare_sql(oid, text, text) is
  'Internal: SQL telling whether two values of a type differ, never through a cast or operator a non-superuser could define.';

-- SQL telling whether column c differs between the old (o) and new (n) version.
create or replace function audit.differs_sql(target regclass, c text) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select audit.compare_sql(a.atttypid, format('o.%I', c), format('n.%I', c))
  from pg_attribute a where a.attrelid = target and a.attname = c
$$;
comment on function audit.differs_sql(regclass, text) is
  'Internal: SQL comparing a column''s old and new value (see audit.compare_sql()).';

-- The label (or action type) expression of a one-row action: the label rules' result
-- when the table has rules (rules_join is not empty), the default otherwise.
create or replace function audit.overridden_sql(rules_join text, default_sql text, field text default 'label')
returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case when rules_join = '' then default_sql
              else format('coalesce(r.%I, %s)', field, default_sql) end
$$;
comment on function audit.overridden_sql(text, text, text) is
  'Internal: SQL choosing a label rule''s label or action type over the default, when the table has rules.';

create or replace function audit.capture_query(target regclass, operation text, variant text)
returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  reg          audit.tracked_table;
  all_columns  text[];     -- every live column, in table order
  compared     text[];     -- the columns an UPDATE compares (all but the ignored)
  redacted     text[];
  status       text[];
  pk           text[];
  label_column text;
  key_shown    text;       -- SQL: the row's key as resource_id (of n for INSERT, o otherwise)
  table_name   text;
  redaction    text;       -- '{"ssn": "[redacted]"}'::jsonb merged over whole rows
  changed      text;       -- does this row pair differ in a compared column?
  status_hit   text;       -- ... in a status column?
  label_words  text;       -- 'Client', 'Clients' as SQL literals
  rules        text;
  source_rows  text;
  alias        text;
  row_json     text;
  single_label text;
  kind_sql     text;
  label_sql    text;
  type_sql     text;
  rules_join   text := '';
  pairs        text;
  changes_sql  text;
  context_sql  text;
  context_ok   text;
  -- the tracked table: target itself, or the tracked table that target (a partition at
  -- any depth, an inheritance child) is part of. A member is logged as its tracked
  -- table: its settings, its key columns, its name; its own columns by name (a
  -- partition's attribute numbers may differ; a child's extra columns are left out)
  root         regclass := coalesce(audit.tracked_root(target), target);
  extra        text := '';  -- ' - ''{level}''::text[]': an inheritance child's own columns
begin
  -- the settings under the columns' current names (a column renamed without the event
  -- trigger, in the generic mode, keeps its role: see audit.current_settings())
  reg := audit.current_settings(root);
  if reg.relation is null then
    raise exception '% is not tracked', target using errcode = 'undefined_object';
  end if;
  select array_agg(a.attname::text order by a.attnum) into all_columns
  from pg_attribute a
  where a.attrelid = target and a.attnum > 0 and not a.attisdropped
    and (root = target or exists (select from pg_attribute r
                                  where r.attrelid = root and r.attname = a.attname
                                    and r.attnum > 0 and not r.attisdropped));
  -- (whole rows are written without them, as a statement on the tracked table sees them)
  select case when count(*) > 0 then format(' - %L::text[]', array_agg(a.attname::text)) else '' end into extra
  from pg_attribute a
  where a.attrelid = target and a.attnum > 0 and not a.attisdropped
    and not a.attname::text = any (all_columns);
  compared := array(select c from unnest(all_columns) c where not c = any (reg.ignored_columns));
  redacted := array(select c from unnest(all_columns) c where c = any (reg.redacted_columns));
  status := array(select c from unnest(compared) c where c = any (reg.status_columns));
  -- a redacted column never names a row (audit.track() refuses it; this holds whatever
  -- a later ALTER TABLE made of the settings)
  label_column := case when reg.label_column = any (all_columns)
                        and not reg.label_column = any (redacted) then reg.label_column end;
  pk := audit.primary_key_columns(root);
  if pk is null then
    raise exception 'cannot capture changes of %: it has no primary key', target
      using errcode = 'invalid_table_definition';
  end if;
  -- the key as resource_id: '[redacted]' when a key column is redacted (audit.track()
  -- refuses it; an ALTER TABLE could make it so)
  key_shown := case when pk && redacted then '''[redacted]'''
                    else audit.key_sql(target, case when operation = 'INSERT' then 'n' else 'o' end) end;
  select format('%I.%I', n.nspname, c.relname) into table_name
  from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = root;
  label_words := format('%L, %L', reg.label, reg.label_plural);
  rules := case when reg.labels <> '[]' then quote_literal(reg.labels::text) || '::jsonb' end;
  redaction := case when cardinality(redacted) > 0 then
    format(' || %L::jsonb', (select jsonb_object_agg(c, '[redacted]') from unnest(redacted) c)) else '' end;
  changed := coalesce((select string_agg(audit.differs_sql(target, c), ' or ')
                       from unnest(compared) c), 'false');
  status_hit := coalesce((select string_agg(audit.differs_sql(target, c), ' or ')
                          from unnest(status) c), 'false');

  -- ---- one row: the whole action in one INSERT ... SELECT --------------------------
  -- It reads the context itself (see audit.current_context() for the rules) and
  -- writes nothing inside an audit.batch or when a value is wrong: the caller then
  -- takes the many-row path, whose audit.current_context() raises the contract's
  -- error. One statement instead of a PL/pgSQL variable per setting is what keeps a
  -- single-row statement cheap. Whether the statement touched exactly one row is asked
  -- of at most two rows (limit 2): counting a bulk statement's whole transition table
  -- here cost 5% of a 100,000-row DELETE.
  if variant = 'one' then
    context_sql := $c$(select nullif(current_setting('audit.actor_id', true), '') as actor_id,
        nullif(current_setting('audit.actor_name', true), '') as actor_name,
        coalesce(nullif(current_setting('audit.actor_type', true), ''), 'system') as actor_type,
        nullif(current_setting('audit.source', true), '') as source,
        nullif(current_setting('audit.request_id', true), '') as request_id,
        nullif(current_setting('audit.action_type', true), '') as kind_override,
        case when current_setting('audit.context', true) <> ''
             then (audit.current_context()).context end as context,
        coalesce(nullif(current_setting('role'), 'none'), session_user::text) as db_user) c$c$;
    context_ok := audit.context_ok_sql(operation);
    if operation in ('INSERT', 'DELETE') then
      source_rows := case operation when 'INSERT' then 'audit_new_rows' else 'audit_old_rows' end;
      alias := case operation when 'INSERT' then 'n' else 'o' end;
      -- an explicit audit.action_type wins; 'import' applies to inserts only
      kind_sql := case operation when 'INSERT' then 'coalesce(c.kind_override, ''create'')'
                  else 'case when c.kind_override is null or c.kind_override = ''import'' then ''delete'' else c.kind_override end' end;
      -- alias.*: a bare alias would mean a column of that name (a table may have one)
      row_json := format('(to_jsonb(%s.*)%s)%s', alias, extra, redaction);
      single_label := case operation
        when 'INSERT' then format('case k.kind when ''create'' then %L when ''import'' then %L else audit.default_label(%s, k.kind, 1, null) end',
                                  reg.label || ' created', reg.label_plural || ' imported (1)', label_words)
        else format('case k.kind when ''delete'' then %L else audit.default_label(%s, k.kind, 1, null) end',
                    reg.label || ' deleted', label_words) end;
      if rules is not null then
        rules_join := format(' cross join lateral audit.label_override(%s, k.kind, k.changes, null) r', rules);
      end if;
      label_sql := audit.overridden_sql(rules_join, single_label);
      type_sql := audit.overridden_sql(rules_join, 'k.kind', 'override_type');
      return format($q$insert into audit.action_log (action, action_type, resource_type, resource_id,
  resource_label, row_count, actor_id, actor_name, actor_type, source, changes, db_user,
  transaction_id, request_id, context, table_name, operation, application_name, client_addr)
select %1$s, %2$s, %3$L, %4$s, %5$s, 1, c.actor_id, coalesce(c.actor_name, c.actor_id, c.db_user),
       c.actor_type, c.source, k.changes, c.db_user, txid_current(), c.request_id, c.context,
       %6$L, %7$L, nullif(current_setting('application_name'), ''), inet_client_addr()
from %8$s
cross join %13$s
cross join lateral (select %10$s as kind, %11$s as changes) k%12$s
where (select count(*) from (select from %15$s limit 2) two) = 1 and %14$s$q$,
        label_sql, type_sql, reg.resource_type, key_shown,
        case when label_column is null then 'null' else format('audit.capped_label(%s.%I::text)', alias, label_column) end, table_name, operation,
        audit.rows_sql(target, source_rows, alias), alias, kind_sql, row_json, rules_join, context_sql, context_ok,
        source_rows);
    end if;

    -- UPDATE of one row: its one old and one new version are the same row, so they
    -- pair without a key (a changed primary key included)
    kind_sql := format('case when c.kind_override is null or c.kind_override = ''import'' then case when %s then ''status_change'' else ''update'' end else c.kind_override end',
                       status_hit);
    single_label := format('case k.kind when ''update'' then %L when ''status_change'' then %L else audit.default_label(%s, k.kind, 1, null) end',
                           reg.label || ' updated', reg.label || ' status change', label_words);
    -- {"col": {"old": .., "new": ..}} for the changed columns, written as JSON text
    -- and parsed once: cheaper than merging one jsonb object per column
    changes_sql := format('(''{'' || %s || ''}'')::jsonb', audit.concat_ws_sql(array(
      select format('case when %1$s then %2$L || %3$s || '',"new":'' || %4$s || ''}'' end',
                    audit.differs_sql(target, c), to_json(c)::text || ':{"old":',
                    case when c = any (redacted) then '''"[redacted]"''' else format('coalesce(to_json(o.%I)::text, ''null'')', c) end,
                    case when c = any (redacted) then '''"[redacted]"''' else format('coalesce(to_json(n.%I)::text, ''null'')', c) end)
      from unnest(compared) c)));
    if rules is not null then
      rules_join := format(
        ' cross join lateral audit.label_override(%s, k.kind, to_jsonb(n.*)%s, array_remove(array[%s], null)) r',
        rules, redaction,
        (select string_agg(format('case when %s then %L end', audit.differs_sql(target, c), c), ', ')
         from unnest(compared) c));
    end if;
    label_sql := audit.overridden_sql(rules_join, single_label);
    type_sql := audit.overridden_sql(rules_join, 'k.kind', 'override_type');
    return format($q$insert into audit.action_log (action, action_type, resource_type, resource_id,
  resource_label, row_count, actor_id, actor_name, actor_type, source, changes, db_user,
  transaction_id, request_id, context, table_name, operation, application_name, client_addr)
select %1$s, %2$s, %3$L, %4$s, %5$s, 1, c.actor_id, coalesce(c.actor_name, c.actor_id, c.db_user),
       c.actor_type, c.source, %6$s, c.db_user, txid_current(), c.request_id, c.context,
       %7$L, 'UPDATE', nullif(current_setting('application_name'), ''), inet_client_addr()
from %13$s cross join %14$s
cross join %11$s
cross join lateral (select %8$s as kind) k%9$s
where (select count(*) from (select from audit_new_rows limit 2) two) = 1 and %12$s and (%10$s)$q$,
      label_sql, type_sql, reg.resource_type,
      case when pk && redacted then key_shown else audit.key_sql(target, 'n') end,
      case when label_column is null then 'null' else format('audit.capped_label(n.%I::text)', label_column) end, changes_sql, table_name,
      kind_sql, rules_join, changed, context_sql, context_ok,
      audit.rows_sql(target, 'audit_old_rows', 'o'), audit.rows_sql(target, 'audit_new_rows', 'n'));
  end if;

  -- ---- many rows: items in chunks, the action is written by the caller ------------
  -- Items are gathered 1,000 to a chunk row (a hash aggregate: no sort). An item's
  -- number is its chunk's first_item plus its position in the chunk.
  -- INSERT and DELETE: the rows as json_agg() writes them, their ids beside them in
  -- resource_ids (both aggregates see the rows in the same order).
  if operation in ('INSERT', 'DELETE') then
    alias := case operation when 'INSERT' then 'n' else 'o' end;
    return format($q$with d as (
  select row_number() over () - 1 as i, %1$s as k, %2$s as r
  from %3$s %4$s),
chunks as (
  insert into audit.action_item_chunk (action_id, first_item, item_count, resource_type, operation, resource_ids, items)
  select $1, $2 + (i / 1000)::integer * 1000 + 1, count(*), %5$L, %6$L, array_agg(k), json_agg(r)::text
  from d group by i / 1000
  returning item_count)
select coalesce(sum(item_count), 0)::integer, null::text[] from chunks$q$,
      key_shown,
      -- the whole row (json_agg() of the row, not of its JSON, where a column has the
      -- alias's name: a bare alias would name that column); an inheritance child's own
      -- columns left out
      case when redaction <> '' or extra <> '' then format('(to_jsonb(%s.*)%s)%s', alias, extra, redaction)
           when alias = any (all_columns) then format('to_json(%s.*)', alias)
           else alias end,
      audit.rows_sql(target, case operation when 'INSERT' then 'audit_new_rows' else 'audit_old_rows' end, alias), '',
      reg.resource_type, operation);
  end if;

  -- UPDATE: each item is written as JSON text, [resource_id, old, new], its old and new
  -- versions paired by primary key. A full join keeps a version whose partner cannot
  -- be found (a row moved across partitions) as an item of its own rather than losing
  -- it. An item keeps the changed columns only.
  if variant = 'moved' then
    pairs := format($q$(select o.*, coalesce(m.new_key, %1$s) as "audit.key"
       from %4$s
       left join audit.pending_key_change m
              on m.transaction_id = txid_current() and m.trigger_depth = pg_trigger_depth()
             and m.relation = %2$s and m.old_key = %1$s) o
      full join (select n.*, %3$s as "audit.key" from %5$s) n
              on o."audit.key" = n."audit.key"$q$,
      audit.key_sql(target, 'o'), root::oid, audit.key_sql(target, 'n'),
      audit.rows_sql(target, 'audit_old_rows', 'o'), audit.rows_sql(target, 'audit_new_rows', 'n'));
  else
    pairs := format('%s full join %s on %s',
      audit.rows_sql(target, 'audit_old_rows', 'o'), audit.rows_sql(target, 'audit_new_rows', 'n'),
      -- a domain's values are joined as its base type's (no = for a domain over an
      -- enum); those capture renders are text by now
      (select string_agg(case when t.typtype = 'd' and audit.value_rendering(t.oid) is null
                              then format('o.%1$I::%2$s = n.%1$I::%2$s', c, format_type(t.typbasetype, null))
                              else format('o.%1$I = n.%1$I', c) end, ' and ')
       from unnest(pk) c
       join pg_attribute a on a.attrelid = target and a.attname = c
       join pg_type t on t.oid = a.atttypid));
  end if;
  return format($q$with d as (
  select row_number() over () - 1 as i, x.*
  from (select '[' || to_json(coalesce(%1$s, %2$s))::text
               || ',{' || %3$s || '},{' || %4$s || '}]' as item,
               %5$s
        from %6$s) x
  where %7$s),
chunks as (
  insert into audit.action_item_chunk (action_id, first_item, item_count, resource_type, operation, changed_columns, items)
  select $1, $2 + (i / 1000)::integer * 1000 + 1, count(*), %8$L, 'UPDATE',
         array_remove(array[%9$s]::text[], null), '[' || string_agg(item, ',') || ']'
  from d group by i / 1000
  returning item_count, changed_columns)
select coalesce(sum(item_count), 0)::integer,
       array(select distinct c from chunks, unnest(chunks.changed_columns) c order by c)
from chunks$q$,
    case when pk && redacted then key_shown else audit.key_sql(target, 'n') end,
    case when pk && redacted then key_shown else audit.key_sql(target, 'o') end,
    audit.concat_ws_sql(array(
      select format('case when %1$s then %2$L || %3$s end', audit.differs_sql(target, c), to_json(c)::text || ':',
                    case when c = any (redacted) then $s$'"[redacted]"'$s$ else format($s$coalesce(to_json(o.%I)::text, 'null')$s$, c) end)
      from unnest(compared) c)),
    audit.concat_ws_sql(array(
      select format('case when %1$s then %2$L || %3$s end', audit.differs_sql(target, c), to_json(c)::text || ':',
                    case when c = any (redacted) then $s$'"[redacted]"'$s$ else format($s$coalesce(to_json(n.%I)::text, 'null')$s$, c) end)
      from unnest(compared) c)),
    coalesce((select string_agg(format('%s as "changed %s"', audit.differs_sql(target, c), i), ', ')
              from unnest(compared) with ordinality u(c, i)), 'false as "changed 0"'),
    pairs,
    coalesce((select string_agg(format('x."changed %s"', i), ' or ') from generate_series(1, cardinality(compared)) i), 'false'),
    reg.resource_type,
    coalesce((select string_agg(format('case when bool_or("changed %s") then %L end', i, c), ', ')
              from unnest(compared) with ordinality u(c, i)), ''));
end
$$;
comment on function audit.capture_query(regclass, text, text) is
  'Internal: the SQL that captures one INSERT, UPDATE or DELETE statement on a tracked table (variant one, many or moved), written out for the table as it is now.';
