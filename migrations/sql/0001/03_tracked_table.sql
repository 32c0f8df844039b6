-- The registry of tracked tables and how each is logged. Written by audit.track() and
-- audit.untrack(); read by the capture trigger on every statement.

create table if not exists audit.tracked_table (
  relation          regclass primary key,
  resource_type     text not null check (resource_type ~ '^[a-z][a-z0-9_]*$'),
  label             text not null check (label <> ''),
  label_plural      text not null check (label_plural <> ''),
  label_column      text,
  status_columns    text[] not null default '{}',
  ignored_columns   text[] not null default '{}',
  redacted_columns  text[] not null default '{}',
  labels            jsonb not null default '[]' check (jsonb_typeof(labels) = 'array'),
  key_columns       text[] not null default '{}',
  tracked_at        timestamptz not null default pg_catalog.now(),
  tracked_by        text not null default pg_catalog.session_user(),
  setting_columns   jsonb not null default '{}'
);

comment on table audit.tracked_table is
  'audit_capture: the tables whose changes are logged, and how. Change it with audit.track() and audit.untrack().';
comment on column audit.tracked_table.relation is 'The tracked table (a regclass: follows the table''s renames).';
comment on column audit.tracked_table.resource_type is 'The resource_type its actions carry (client, campaign, case_task, ...).';
comment on column audit.tracked_table.label is 'Singular display word used in action labels: "Client" gives "Client updated".';
comment on column audit.tracked_table.label_plural is 'Plural display word: "Clients" gives "Clients imported (12)".';
comment on column audit.tracked_table.label_column is 'Column whose value names a row (a client''s name) and becomes action_log.resource_label; null: none.';
comment on column audit.tracked_table.status_columns is 'A change to any of these columns makes the action a status_change.';
comment on column audit.tracked_table.ignored_columns is 'Columns left out of diffs; an update that changes only these is not logged.';
comment on column audit.tracked_table.redacted_columns is 'Columns whose values are stored as "[redacted]", never in clear.';
comment on column audit.tracked_table.labels is 'Label overrides for single-row actions, first match wins: [{"on": "create", "when": {"kind": "sms"}, "changed": ["col"], "label": "Batch send SMS", "action_type": "send"}]; "{col}" in a label is replaced by the row''s value.';
comment on column audit.tracked_table.setting_columns is 'The attribute numbers of the columns named by the settings ({"ssn": 7}): audit.follow_column_renames() follows ALTER TABLE ... RENAME COLUMN into the settings through them (a renamed redacted column stays redacted).';
comment on column audit.tracked_table.key_columns is 'The primary-key columns the installed capture triggers were made for.';
comment on column audit.tracked_table.tracked_at is 'When audit.track() last configured the table.';
comment on column audit.tracked_table.tracked_by is 'The role that last configured it.';

create or replace function audit.tracked_root(target regclass) returns regclass
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  with recursive up(rel, depth) as (
    select target::oid, 0
    union all
    select i.inhparent, up.depth + 1
    from pg_inherits i join up on i.inhrelid = up.rel
    where up.depth < 64)
  select t.relation
  from up join audit.tracked_table t on t.relation = up.rel
  order by up.depth desc, t.relation::oid
  limit 1
$$;
comment on function audit.tracked_root(regclass) is
  'The tracked table a table''s changes are logged as: itself when tracked, else its topmost tracked ancestor (of a partition at any depth, or of an inheritance child); null when none.';
