-- Run after each SQL file of a revision (online and in `migrate upgrade --sql`'s script).
-- Alembic creates audit.alembic_version as the migrating user; once the files have given
-- the schema to audit_owner, the table follows, so that the files' statements (run as
-- audit_owner) and Alembic's UPDATE may touch it; SELECT goes back to audit_reader and
-- audit_admin (the files revoke all from public) for `status` and `migrate current`.
-- The role the files left in use is put back.
do $version_table$
declare
  role_in_use  text := current_user;
  schema_owner text;
  table_owner  text;
begin
  select n.nspowner::regrole::text, c.relowner::regrole::text
    into schema_owner, table_owner
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where n.nspname = 'audit' and c.relname = 'alembic_version';
  if not found then
    return;  -- not Alembic's chain (a plain install), or the table is gone
  end if;
  execute 'reset role';
  if schema_owner <> table_owner then
    execute format('alter table audit.alembic_version owner to %I', schema_owner);
  end if;
  if (select count(*) from pg_catalog.pg_roles
      where rolname in ('audit_reader', 'audit_admin')) = 2 then
    grant select on audit.alembic_version to audit_reader, audit_admin;
  end if;
  if current_user <> role_in_use then
    execute format('set local role %I', role_in_use);
  end if;
end
$version_table$;
