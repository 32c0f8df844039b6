-- The SQL that captures one statement on one tracked table, written out for that table.
--
-- audit.capture_query() returns the text of one query, made from the table as it is now
-- (its columns, primary key) and from its settings in audit.tracked_table (ignored,
-- redacted, status and label columns, label overrides). Comparing the table's own
-- columns directly is what keeps the per-row cost low: no row is turned into jsonb just
-- to diff it, and the items of a bulk statement are written as compact JSON arrays.
--
-- Each query is one template (at the end of this file) whose {{slots}} audit.fill()
-- fills with fragments written once per query, one place for each rule (a column's
-- value as JSON, the row's key, the whole row, the label). The same texts serve both
-- capture modes (07_capture.sql): where the many-row queries need the action's id and
-- the number of items it already holds (a batch) and the action's occurred_at (which
-- its chunks carry: their partition is the action's month), they name the generated
-- function's variables, or $1, $2 and $3 for the generic one's EXECUTE ... USING.
--
-- variants:
--   'one'   a statement on one row: writes the whole action (diff or row in `changes`,
--           no item row) and nothing when the statement touched 0 or many rows
--   'many'  any statement: writes its items in chunks of 1,000 under the action and
--           returns (items written, changed columns)
--   'moved' like 'many' for an UPDATE that changed primary keys: pairs old and new
--           versions through audit.pending_key_change

-- (so a column named '{{label}}' stays a name)
create or replace function audit.fill(template text, slots jsonb) returns text
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  pieces text[] := regexp_split_to_array(template, '\{\{[a-z_]+\}\}');
  names  text[] := array(select r.m[1] from regexp_matches(template, '\{\{([a-z_]+)\}\}', 'g')
                                              with ordinality r(m, i) order by r.i);
  result text := pieces[1];
  unused text;
begin
  for i in 1 .. cardinality(names) loop
    if slots ->> names[i] is null then
      raise exception 'audit.fill(): no value for the slot {{%}}', names[i]
        using errcode = 'invalid_parameter_value';
    end if;
    result := result || (slots ->> names[i]) || pieces[i + 1];
  end loop;
  select string_agg(k, ', ') into unused from jsonb_object_keys(slots) k where not k = any (names);
  if unused is not null then
    raise exception 'audit.fill(): the template has no slot for %', unused
      using errcode = 'invalid_parameter_value';
  end if;
  return result;
end
$$;
comment on function audit.fill(text, jsonb) is
  'Internal: a template with each {{name}} replaced by slots ->> name, in one pass (values are never searched for slots); raises on a slot without a value or a value without its slot, mistakes of the generator.';

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
  'Internal: SQL joining the given text expressions with commas, skipping nulls (concat_ws(), in pieces of 99 when there are more).';

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

create or replace function audit.base_type(type_oid oid) returns oid
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case when t.typtype = 'd' then audit.base_type(t.typbasetype) else t.oid end
  from pg_type t where t.oid = type_oid
$$;
comment on function audit.base_type(oid) is
  'Internal: the base type of a domain (through domains over domains); any other type itself.';

-- A value holding json is looked at first: only one with what jsonb could refuse
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

-- The subquery gives a rendered column's value under its own name. Everything the
-- capture queries do with a row (to_jsonb, json_agg, ::text, comparing, joining on the
-- key) then meets only types whose casts and operators are PostgreSQL's own.
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

-- A composite key as a row literal such as "(3,7)". rowref is a table alias or a record
-- expression; the capture queries and audit.capture_key_change() must give the same
-- text for the same key.
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
  'Internal: SQL telling whether two values of a type differ: = where the type has it, as text otherwise, as rendered text for a type capture must not cast or compare itself (never through a cast or operator a non-superuser could define).';

-- The members "column": value of the columns that differ (differs[i]: SQL telling
-- whether columns[i] differs between o and n), joined by commas (the inside of a JSON
-- object): old values (versions 'o'), new ones ('n'), or both as "column": {"old": ..,
-- "new": ..} ('both'). The one place where a redacted column's value is left out.
-- 'both' serves the one-row query, run once per statement: PostgreSQL builds every node
-- of a query's expressions at each execution, whether it runs or not, so each column
-- costs what its expression holds. json_build_object() is one call per column where the
-- pieces to_json(old), to_json(new) and four || were seven (measured with
-- bench/write_breakdown.py: 60 columns, ~60 µs less per single-row UPDATE). It renders
-- a value as to_json() does, the same lookups, so what audit.rows_sql() rendered
-- as text stays text.
create or replace function audit.changed_json_sql(
  columns text[], differs text[], redacted text[], versions text
) returns text
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return audit.concat_ws_sql(array(
    select case
      when versions = 'both' and c = any (redacted)
        then format('case when %s then %L end', d, to_json(c)::text || ':{"old":"[redacted]","new":"[redacted]"}')
      when versions = 'both'
        then format('case when %s then %L || pg_catalog.json_build_object(''old'', o.%I, ''new'', n.%I)::text end',
                    d, to_json(c)::text || ':', c, c)
      -- one version ('o' or 'n', the alias of its row in the query)
      when c = any (redacted)
        then format('case when %s then %L end', d, to_json(c)::text || ':"[redacted]"')
      else format($s$case when %s then %L || coalesce(to_json(%s.%I)::text, 'null') end$s$,
                  d, to_json(c)::text || ':', versions, c)
    end
    from unnest(columns, differs) with ordinality u(c, d, i)
    order by u.i));
end
$$;
comment on function audit.changed_json_sql(text[], text[], text[], text) is
  'Internal: SQL writing the changed columns of a row pair as JSON object members: old values, new values or both; "[redacted]" for a redacted column.';

-- ---- the queries (the header of this file says how they are made) -----------------
create or replace function audit.capture_query(
  target regclass, operation text, variant text, action_id text, items_before text,
  occurred_at text
) returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  -- the tracked table: target itself, or the tracked table that target (a partition at
  -- any depth, an inheritance child) is part of. A member is logged as its tracked
  -- table: its settings, its key columns, its name; its own columns by name (a
  -- partition's attribute numbers may differ; a child's extra columns are left out)
  root         regclass := coalesce(audit.tracked_root(target), target);
  pk           text[] := audit.primary_key_columns(root);
  reg          audit.tracked_table;
  all_columns  text[];     -- every live column, in table order
  compared     text[];     -- the columns an UPDATE compares (all but the ignored)...
  differs      text[];     -- ... and for each, SQL telling whether it differs (UPDATE only)
  redacted     text[];
  label_column text;
  extra        text;       -- ' - ''{level}''::text[]': an inheritance child's own columns
  redaction    text := ''; -- ' || ''{"ssn": "[redacted]"}''::jsonb', merged over whole rows
  -- the row an action names: an INSERT's or an UPDATE's new one, a DELETE's old one
  alias        text := case operation when 'DELETE' then 'o' else 'n' end;
  transition   text := case operation when 'DELETE' then 'audit_old_rows' else 'audit_new_rows' end;
  key_of       jsonb;      -- {"o": .., "n": ..}: SQL giving the row's key as resource_id
  whole_row    text;       -- SQL giving the row (alias) as logged
  changes      text;
  rules        text := '';
begin
  -- the settings under the columns' current names (a column renamed without the event
  -- trigger, in the generic mode, keeps its role: see audit.current_settings())
  reg := audit.current_settings(root);
  if reg.relation is null then
    raise exception '% is not tracked', target using errcode = 'undefined_object';
  end if;
  if pk is null then
    raise exception 'cannot capture changes of %: it has no primary key', target
      using errcode = 'invalid_table_definition';
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
  if operation = 'UPDATE' then
    differs := array(select audit.compare_sql(a.atttypid, format('o.%I', u.c), format('n.%I', u.c))
                     from unnest(compared) with ordinality u(c, i)
                     join pg_attribute a on a.attrelid = target and a.attname = u.c order by u.i);
  end if;
  redacted := array(select c from unnest(all_columns) c where c = any (reg.redacted_columns));

  -- ---- the fragments every query shares: one place for each rule -------------------
  -- A whole row as logged (a create's or a delete's changes and item): without an
  -- inheritance child's own columns, its redacted columns overwritten. alias.*: a bare
  -- alias would mean a column of that name (a table may have one).
  if cardinality(redacted) > 0 then
    redaction := format(' || %L::jsonb', (select jsonb_object_agg(c, '[redacted]') from unnest(redacted) c));
  end if;
  whole_row := format('(to_jsonb(%s.*)%s)%s', alias, extra, redaction);
  -- The row's key as resource_id (of the versions the query reads): '[redacted]' when
  -- a key column is redacted (audit.track() refuses it; an ALTER TABLE could make it so).
  select jsonb_object_agg(v, case when pk && redacted then '''[redacted]''' else audit.key_sql(target, v) end)
  into key_of
  from unnest(case when operation = 'UPDATE' and variant <> 'one' then array['o', 'n'] else array[alias] end) v;
  -- A redacted column never names a row either (audit.track() refuses it; this holds
  -- whatever a later ALTER TABLE made of the settings).
  label_column := case when reg.label_column = any (all_columns)
                        and not reg.label_column = any (redacted) then reg.label_column end;

  -- ---- one row: the whole action in one INSERT ... SELECT --------------------------
  -- It reads the context itself (see audit.current_context() for the rules) and
  -- writes nothing inside an audit.batch or when a value is wrong: the caller then
  -- takes the many-row path, whose audit.current_context() raises the contract's
  -- error. One statement instead of a PL/pgSQL variable per setting is what keeps a
  -- single-row statement cheap. Whether the statement touched exactly one row is asked
  -- of at most two rows (limit 2): counting a bulk statement's whole transition table
  -- here cost 5% of a 100,000-row DELETE.
  if variant = 'one' then
    -- An UPDATE's one old and one new version are the same row, so they pair without a
    -- key (a changed primary key included). Its changes, {"col": {"old": .., "new": ..}}
    -- for the changed columns, are written as JSON text and parsed once: cheaper than
    -- merging one jsonb object per column. An INSERT's or a DELETE's: the whole row.
    if operation = 'UPDATE' then
      changes := format('(''{'' || %s || ''}'')::jsonb', audit.changed_json_sql(compared, differs, redacted, 'both'));
    end if;
    -- The table's label rules (audit.label_override()): their label and action type win.
    if reg.labels <> '[]' then
      rules := format(' cross join lateral audit.label_override(%L::jsonb, k.kind, %s, %s) r', reg.labels,
        case when operation = 'UPDATE' then format('to_jsonb(n.*)%s', redaction) else 'k.changes' end,
        case when operation = 'UPDATE' then format('array_remove(array[%s], null)',
               (select string_agg(format('case when %s then %L end', d, c), ', ') from unnest(compared, differs) u(c, d)))
             else 'null' end);
    end if;
    return audit.fill($q$insert into audit.action_log (action, action_type, resource_type, resource_id,
  resource_label, row_count, actor_id, actor_name, actor_type, source, changes, db_user,
  transaction_id, request_id, context, table_name, operation, application_name, client_addr)
select {{label}}, {{action_type}}, {{resource_type}}, {{resource_id}}, {{resource_label}}, 1,
       c.actor_id, coalesce(c.actor_name, c.actor_id, c.db_user), c.actor_type, c.source,
       k.changes, c.db_user, txid_current(), c.request_id, c.context,
       {{table_name}}, {{operation}}, nullif(current_setting('application_name'), ''), inet_client_addr()
from {{rows}}
cross join (select nullif(current_setting('audit.actor_id', true), '') as actor_id,
        nullif(current_setting('audit.actor_name', true), '') as actor_name,
        coalesce(nullif(current_setting('audit.actor_type', true), ''), 'system') as actor_type,
        nullif(current_setting('audit.source', true), '') as source,
        nullif(current_setting('audit.request_id', true), '') as request_id,
        nullif(current_setting('audit.action_type', true), '') as kind_override,
        case when current_setting('audit.context', true) <> ''
             then (audit.current_context()).context end as context,
        coalesce(nullif(current_setting('role'), 'none'), session_user::text) as db_user) c
cross join lateral (select {{kind}} as kind, {{changes}} as changes{{fence}}) k{{rules}}
where (select count(*) from (select from {{transition}} limit 2) two) = 1
  and {{context_ok}}
  and ({{changed}})$q$,
      jsonb_build_object(
        -- the default label of each action type the operation usually has, written out
        -- (the words audit.default_label() gives)
        'label', (select format(case when rules = '' then '%s' else 'coalesce(r.label, %s)' end,
                                format('case k.kind %s else audit.default_label(%L, %L, k.kind, 1, null) end',
                                       string_agg(format('when %L then %L', u.kind, audit.default_label(
                                                           reg.label, reg.label_plural, u.kind, 1, null)),
                                                  ' ' order by u.i),
                                       reg.label, reg.label_plural))
                  from unnest(case operation when 'INSERT' then array['create', 'import']
                                             when 'UPDATE' then array['update', 'status_change']
                                             else array['delete'] end) with ordinality u(kind, i)),
        'action_type', case when rules = '' then 'k.kind' else 'coalesce(r.override_type, k.kind)' end,
        'resource_type', quote_literal(reg.resource_type),
        'resource_id', key_of ->> alias,
        'resource_label', case when label_column is null then 'null'
                               else format('audit.capped_label(%s.%I::text)', alias, label_column) end,
        'table_name', (select quote_literal(format('%I.%I', n.nspname, c.relname))
                       from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = root),
        'operation', quote_literal(operation),
        'rows', case when operation = 'UPDATE'
                     then format('%s cross join %s', audit.rows_sql(target, 'audit_old_rows', 'o'),
                                 audit.rows_sql(target, 'audit_new_rows', 'n'))
                     else audit.rows_sql(target, transition, alias) end,
        -- an explicit audit.action_type wins; 'import' applies to inserts only (as in
        -- audit.finish_statement(), which writes the other actions)
        'kind', case operation
          when 'INSERT' then 'coalesce(c.kind_override, ''create'')'
          else format('case when c.kind_override is null or c.kind_override = ''import'' then %s else c.kind_override end',
                      case operation when 'DELETE' then '''delete'''
                           else format('case when %s then ''status_change'' else ''update'' end',
                                       coalesce((select string_agg(d, ' or ') from unnest(compared, differs) u(c, d)
                                                 where c = any (reg.status_columns)), 'false')) end) end,
        'changes', coalesce(changes, whole_row),
        'rules', rules,
        -- an UPDATE's changes are computed once (OFFSET 0 keeps the planner from copying
        -- them into the condition below) and say whether anything changed
        'fence', case when operation = 'UPDATE' then ' offset 0' else '' end,
        'transition', transition,
        'context_ok', audit.context_ok_sql(operation),
        -- an UPDATE that changed no compared column writes nothing
        'changed', case when operation <> 'UPDATE' then 'true' else 'k.changes <> ''{}''::jsonb' end));
  end if;

  -- ---- many rows: items in chunks, the action is written by the caller ------------
  -- Items are gathered 1,000 to a chunk row (a hash aggregate: no sort). An item's
  -- number is its chunk's first_item plus its position in the chunk.
  -- INSERT and DELETE: the rows as json_agg() writes them, their ids beside them in
  -- resource_ids (both aggregates see the rows in the same order).
  if operation in ('INSERT', 'DELETE') then
    return audit.fill($q$with d as (
  select row_number() over () - 1 as i, {{resource_id}} as k, {{item}} as r
  from {{rows}}),
chunks as (
  insert into audit.action_item_chunk (action_id, occurred_at, first_item, item_count, resource_type, operation, resource_ids, items)
  select {{action_id}}, {{occurred_at}}, {{items_before}} + (i / 1000)::integer * 1000 + 1, count(*), {{resource_type}}, {{operation}}, array_agg(k), json_agg(r)::text
  from d group by i / 1000
  returning item_count)
select coalesce(sum(item_count), 0)::integer, null::text[] from chunks$q$,
      jsonb_build_object(
        'resource_id', key_of ->> alias,
        -- json_agg() of the row itself (cheaper than of its jsonb) when nothing is taken
        -- out of it; of alias.* where a column has the alias's name
        'item', case when redaction <> '' or extra <> '' then whole_row
                     when alias = any (all_columns) then format('to_json(%s.*)', alias)
                     else alias end,
        'rows', audit.rows_sql(target, transition, alias),
        'action_id', action_id, 'items_before', items_before, 'occurred_at', occurred_at,
        'resource_type', quote_literal(reg.resource_type), 'operation', quote_literal(operation)));
  end if;

  -- UPDATE: each item is written as JSON text, [resource_id, old, new], its old and new
  -- versions paired by primary key. A full join keeps a version whose partner cannot
  -- be found (a row moved across partitions) as an item of its own rather than losing
  -- it. An item keeps the changed columns only; "changed <i>" tells whether the i-th
  -- compared column changed. When keys moved, an old version's key is first turned
  -- into its new one through the notes of audit.capture_key_change(). The items' ids
  -- go into resource_ids too (array_agg() beside string_agg(), the same order), as a
  -- bulk INSERT's and DELETE's do: what the chunks' index by resource finds a row's
  -- history with (audit.history(), 20_history.sql) without parsing the items.
  return audit.fill($q$with d as (
  select row_number() over () - 1 as i, x.*
  from (select '[' || to_json(coalesce({{new_key}}, {{old_key}}))::text
               || ',{' || {{old_values}} || '},{' || {{new_values}} || '}]' as item,
               coalesce({{new_key}}, {{old_key}}) as k,
               {{changed_flags}}
        from {{pairs}}) x
  where {{any_changed}}),
chunks as (
  insert into audit.action_item_chunk (action_id, occurred_at, first_item, item_count, resource_type, operation, changed_columns, resource_ids, items)
  select {{action_id}}, {{occurred_at}}, {{items_before}} + (i / 1000)::integer * 1000 + 1, count(*), {{resource_type}}, 'UPDATE',
         array_remove(array[{{changed_columns}}]::text[], null), array_agg(k), '[' || string_agg(item, ',') || ']'
  from d group by i / 1000
  returning item_count, changed_columns)
select coalesce(sum(item_count), 0)::integer,
       array(select distinct c from chunks, unnest(chunks.changed_columns) c order by c)
from chunks$q$,
    jsonb_build_object(
      'new_key', key_of ->> 'n', 'old_key', key_of ->> 'o',
      'old_values', audit.changed_json_sql(compared, differs, redacted, 'o'),
      'new_values', audit.changed_json_sql(compared, differs, redacted, 'n'),
      'changed_flags', coalesce((select string_agg(format('%s as "changed %s"', d, i), ', ')
                                 from unnest(differs) with ordinality u(d, i)), 'false as "changed 0"'),
      -- (the keys are joined as expressions: a name given to them beside o.* and n.*
      -- could be one of the table's columns, and the join, then ambiguous, failed the
      -- application's UPDATE)
      'pairs', case when variant = 'moved' then audit.fill($p${{old_rows}}
       left join audit.pending_key_change m
              on m.transaction_id = txid_current() and m.trigger_depth = pg_trigger_depth()
             and m.relation = {{tracked}} and m.old_key = {{old_key}}
      full join {{new_rows}}
              on coalesce(m.new_key, {{old_key}}) = {{new_key}}$p$,
        jsonb_build_object('old_key', audit.key_sql(target, 'o'), 'new_key', audit.key_sql(target, 'n'),
                           'tracked', root::oid::text,
                           'old_rows', audit.rows_sql(target, 'audit_old_rows', 'o'),
                           'new_rows', audit.rows_sql(target, 'audit_new_rows', 'n')))
        else format('%s full join %s on %s',
          audit.rows_sql(target, 'audit_old_rows', 'o'), audit.rows_sql(target, 'audit_new_rows', 'n'),
          -- a domain's values are joined as its base type's (no = for a domain over an
          -- enum); those capture renders are text by now
          (select string_agg(case when t.typtype = 'd' and audit.value_rendering(t.oid) is null
                                  then format('o.%1$I::%2$s = n.%1$I::%2$s', k.c, format_type(t.typbasetype, null))
                                  else format('o.%1$I = n.%1$I', k.c) end, ' and ' order by k.i)
           from unnest(pk) with ordinality k(c, i)
           join pg_attribute a on a.attrelid = target and a.attname = k.c
           join pg_type t on t.oid = a.atttypid)) end,
      'any_changed', coalesce((select string_agg(format('x."changed %s"', i), ' or ')
                               from generate_series(1, cardinality(compared)) i), 'false'),
      'action_id', action_id, 'items_before', items_before, 'occurred_at', occurred_at,
      'resource_type', quote_literal(reg.resource_type),
      'changed_columns', coalesce((select string_agg(format('case when bool_or("changed %s") then %L end', i, c), ', ')
                                   from unnest(compared) with ordinality u(c, i)), '')));
end
$$;
comment on function audit.capture_query(regclass, text, text, text, text, text) is
  'Internal: the SQL that captures one INSERT, UPDATE or DELETE statement on a tracked table (variant one, many or moved), written out for the table as it is now; action_id, items_before and occurred_at (the action''s time, which its chunks carry) name the many-row variants'' parameters.';
