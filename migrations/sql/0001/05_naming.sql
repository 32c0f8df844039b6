-- Naming: how rows are identified (primary keys as text) and how actions are labelled
-- ("Client updated", "Batch client deletion", label overrides).

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

-- A label for the log, cut to its limit: a row's label column value as resource_label
-- (audit.value_limits() ->> 'resource_label', 500 characters), or an action label made
-- from row values by a label rule ("{name}": 'action', 200). What is cut ends with "…"
-- and is exactly the limit long. The log's text-search and btree indexes read these
-- copies, so a value of any length in the row (whose own data is untouched, and whose
-- full value stays in changes and the items) never makes the application's write fail.
-- No SET search_path, unlike every other function here: that would stop PostgreSQL from
-- inlining it into the capture queries, and a call with one cost 7 µs of every
-- single-row statement (inlined: none). It names only pg_catalog's functions and
-- operators and a schema-qualified constant, and it runs inside the capture functions'
-- pinned search_path; it is no SECURITY DEFINER, so it runs with its caller's rights.
create or replace function audit.capped_label(value text, kind text default 'resource_label')
returns text
language sql immutable parallel safe
as $$
  select case when pg_catalog.length(value) operator(pg_catalog.>)
                   (audit.value_limits() operator(pg_catalog.->>) kind)::integer
              then pg_catalog.left(value, (audit.value_limits() operator(pg_catalog.->>) kind)::integer
                                          operator(pg_catalog.-) 1)
                   operator(pg_catalog.||) '…'
              else value end
$$;
comment on function audit.capped_label(text, text) is
  'Internal: a label cut to its audit.value_limits() entry (resource_label: 500 characters, action: 200), ending with "…" when cut.';

-- The default label of an action on a tracked table, from the table's display words:
-- "Client created", "Campaign status change", "Batch client deletion",
-- "Bulk case status update", "Bulk case condition update", "Clients imported (12)".
create or replace function audit.default_label(
  label text, label_plural text, action_type text, row_count integer, changed_columns text[]
) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when action_type = 'import' then format('%s imported (%s)', label_plural, row_count)
    when row_count = 1 then case action_type
      when 'create' then label || ' created'
      when 'update' then label || ' updated'
      when 'status_change' then label || ' status change'
      when 'delete' then label || ' deleted'
      else format('%s %s', label, replace(action_type, '_', ' '))
    end
    else case action_type
      when 'create' then format('Batch %s creation', lower(label))
      when 'delete' then format('Batch %s deletion', lower(label))
      when 'status_change' then format('Bulk %s status update', lower(label))
      -- one column changed on every row: name it ("Bulk case condition update")
      when 'update' then case when cardinality(changed_columns) = 1
        then format('Bulk %s %s update', lower(label), replace(changed_columns[1], '_', ' '))
        else format('Bulk %s update', lower(label)) end
      else format('Bulk %s %s', lower(label), replace(action_type, '_', ' '))
    end
  end
$$;
comment on function audit.default_label(text, text, text, integer, text[]) is
  'Internal: the default action label from a table''s display words ("Client", "Clients"), an action type, a row count and the changed columns.';

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
    -- filled from the row: as long as the row's values, cut to what the log indexes
    label := audit.capped_label(label, 'action');
    override_type := rule ->> 'action_type';
    return;
  end loop;
end
$$;
comment on function audit.label_override(jsonb, text, jsonb, text[]) is
  'Internal: the label and action type of the first matching label rule (tracked_table.labels) for a single-row action, with "{column}" placeholders filled from the row (cut at 200 characters); nulls when no rule matches.';
