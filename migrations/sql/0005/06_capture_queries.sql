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

-- Whether values of a type can be compared with = (IS DISTINCT FROM): base types and
-- enums with a default btree or hash operator class, arrays of those, domains over
-- those. Others (json, xml, point, composites...) are compared as text.
create or replace function audit.has_equality(type_oid oid) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when t.typtype = 'd' then audit.has_equality(t.typbasetype)
    when t.typtype = 'e' then true
    when t.typtype = 'b' and t.typcategory = 'A' and t.typelem <> 0 then audit.has_equality(t.typelem)
    when t.typtype = 'b' then exists (
      select from pg_opclass c join pg_am a on a.oid = c.opcmethod
      where a.amname in ('btree', 'hash') and c.opcdefault and c.opcintype = t.oid)
    else false
  end
  from pg_type t where t.oid = type_oid
$$;
comment on function audit.has_equality(oid) is
  'Internal: true when values of the type compare with =; capture compares other types as text.';

-- SQL telling whether column c differs between the old (o) and new (n) version.
create or replace function audit.differs_sql(target regclass, c text) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case when audit.has_equality(a.atttypid)
              then format('o.%1$I is distinct from n.%1$I', c)
              else format('o.%1$I::text is distinct from n.%1$I::text', c) end
  from pg_attribute a where a.attrelid = target and a.attname = c
$$;
comment on function audit.differs_sql(regclass, text) is
  'Internal: SQL comparing a column''s old and new value, with = where the type has it, as text otherwise.';

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
begin
  -- the settings under the columns' current names (a column renamed without the event
  -- trigger, in the generic mode, keeps its role: see audit.current_settings())
  reg := audit.current_settings(target);
  if reg.relation is null then
    raise exception '% is not tracked', target using errcode = 'undefined_object';
  end if;
  select array_agg(a.attname::text order by a.attnum) into all_columns
  from pg_attribute a
  where a.attrelid = target and a.attnum > 0 and not a.attisdropped;
  compared := array(select c from unnest(all_columns) c where not c = any (reg.ignored_columns));
  redacted := array(select c from unnest(all_columns) c where c = any (reg.redacted_columns));
  status := array(select c from unnest(compared) c where c = any (reg.status_columns));
  label_column := case when reg.label_column = any (all_columns) then reg.label_column end;
  pk := audit.primary_key_columns(target);
  if pk is null then
    raise exception 'cannot capture changes of %: it has no primary key', target
      using errcode = 'invalid_table_definition';
  end if;
  select format('%I.%I', n.nspname, c.relname) into table_name
  from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = target;
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
    context_ok := format(
      $c$coalesce(current_setting('audit.batch', true), '') = ''
  and c.actor_type = any (%L) and (c.source is null or c.source = any (%L))
  and (c.kind_override is null or c.kind_override = any (%L))$c$,
      audit.actor_types(), audit.sources(), audit.action_types());
    if operation in ('INSERT', 'DELETE') then
      source_rows := case operation when 'INSERT' then 'audit_new_rows' else 'audit_old_rows' end;
      alias := case operation when 'INSERT' then 'n' else 'o' end;
      -- an explicit audit.action_type wins; 'import' applies to inserts only
      kind_sql := case operation when 'INSERT' then 'coalesce(c.kind_override, ''create'')'
                  else 'case when c.kind_override is null or c.kind_override = ''import'' then ''delete'' else c.kind_override end' end;
      row_json := format('to_jsonb(%s)%s', alias, redaction);
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
from %8$s %9$s
cross join %13$s
cross join lateral (select %10$s as kind, %11$s as changes) k%12$s
where (select count(*) from (select from %8$s limit 2) two) = 1 and %14$s$q$,
        label_sql, type_sql, reg.resource_type, audit.key_expression(pk, alias),
        case when label_column is null then 'null' else format('%s.%I::text', alias, label_column) end, table_name, operation,
        source_rows, alias, kind_sql, row_json, rules_join, context_sql, context_ok);
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
        ' cross join lateral audit.label_override(%s, k.kind, to_jsonb(n)%s, array_remove(array[%s], null)) r',
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
from audit_old_rows o cross join audit_new_rows n
cross join %11$s
cross join lateral (select %8$s as kind) k%9$s
where (select count(*) from (select from audit_new_rows limit 2) two) = 1 and %12$s and (%10$s)$q$,
      label_sql, type_sql, reg.resource_type, audit.key_expression(pk, 'n'),
      case when label_column is null then 'null' else format('n.%I::text', label_column) end, changes_sql, table_name,
      kind_sql, rules_join, changed, context_sql, context_ok);
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
      audit.key_expression(pk, alias),
      case when redaction = '' then alias else format('to_jsonb(%s)%s', alias, redaction) end,
      case operation when 'INSERT' then 'audit_new_rows' else 'audit_old_rows' end, alias,
      reg.resource_type, operation);
  end if;

  -- UPDATE: each item is written as JSON text, [resource_id, old, new], its old and new
  -- versions paired by primary key. A full join keeps a version whose partner cannot
  -- be found (a row moved across partitions) as an item of its own rather than losing
  -- it. An item keeps the changed columns only.
  if variant = 'moved' then
    pairs := format($q$(select o.*, coalesce(m.new_key, %1$s) as "audit.key"
       from audit_old_rows o
       left join audit.pending_key_change m
              on m.backend_pid = pg_backend_pid() and m.relation = %2$s and m.old_key = %1$s) o
      full join (select n.*, %3$s as "audit.key" from audit_new_rows n) n
              on o."audit.key" = n."audit.key"$q$,
      audit.key_expression(pk, 'o'), target::oid, audit.key_expression(pk, 'n'));
  else
    pairs := format('audit_old_rows o full join audit_new_rows n on %s',
      (select string_agg(format('o.%1$I = n.%1$I', c), ' and ') from unnest(pk) c));
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
    audit.key_expression(pk, 'n'), audit.key_expression(pk, 'o'),
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
