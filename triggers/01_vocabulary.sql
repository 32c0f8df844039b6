-- The closed vocabularies of the log. Each list is written once, in a function; the
-- domains below check against it, the context validation quotes it in its error
-- messages, and the Python enums are tested against it.

create or replace function audit.action_types() returns text[]
language sql immutable parallel safe
as $$
  select array['create', 'update', 'delete', 'status_change', 'import',
               'login', 'logout', 'export', 'send']
$$;
comment on function audit.action_types() is
  'The allowed values of action_log.action_type and of audit.action_type.';

create or replace function audit.actor_types() returns text[]
language sql immutable parallel safe
as $$ select array['admin', 'client', 'system'] $$;
comment on function audit.actor_types() is
  'The allowed values of action_log.actor_type and of audit.actor_type.';

create or replace function audit.sources() returns text[]
language sql immutable parallel safe
as $$ select array['web', 'api', 'ai', 'mobile'] $$;
comment on function audit.sources() is
  'The allowed values of action_log.source and of audit.source (null: no context was set).';

-- The log's rules are domains rather than table CHECK constraints: PostgreSQL prepares a
-- table's CHECK expressions anew for every INSERT statement, which on the log's
-- one-row inserts cost more than the insert itself, while a domain's are cached. The
-- vocabulary domains copy the lists above in as constants when they are created (a
-- CHECK calling a function would make that call on every row). So a value added to a
-- list later reaches existing databases through its revision's upgrade file (ALTER
-- DOMAIN ... DROP/ADD CONSTRAINT: migrations/README.md), not through this file.
do $$
begin
  if not exists (select from pg_catalog.pg_type t join pg_catalog.pg_namespace n on n.oid = t.typnamespace
                 where n.nspname = 'audit' and t.typname = 'action_type') then
    execute format('create domain audit.action_type as text check (value = any (%L::text[]))',
                   audit.action_types());
    execute format('create domain audit.actor_type as text check (value = any (%L::text[]))',
                   audit.actor_types());
    execute format('create domain audit.source as text check (value = any (%L::text[]))',
                   audit.sources());
    create domain audit.operation as text
      check (value in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'));
    create domain audit.label as text check (value <> '');
    create domain audit.row_count as integer check (value >= 0);
  end if;
end
$$;
comment on domain audit.action_type is 'One of audit.action_types().';
comment on domain audit.actor_type is 'One of audit.actor_types().';
comment on domain audit.source is 'One of audit.sources().';
comment on domain audit.operation is 'The statement behind a table change: INSERT, UPDATE, DELETE or TRUNCATE.';
comment on domain audit.label is 'A display label: never empty.';
comment on domain audit.row_count is 'A count of rows: never negative.';
