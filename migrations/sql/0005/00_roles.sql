-- audit_capture: roles and schema ownership.
--
-- Three roles, none of which can log in:
--   audit_owner   owns the schema, the log and every function. Nobody logs in as it;
--                 the SECURITY DEFINER functions run as it, which is how the log gets
--                 written by roles that cannot write it themselves.
--   audit_reader  may read the log (the viewer's login role is granted this).
--   audit_admin   may track and untrack tables (the DBA's role is granted this).
-- Roles are cluster-wide, so they are created only when missing and are left in place
-- by uninstall.sql (another database of the cluster may still use them).

do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'audit_owner') then
    create role audit_owner nologin;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'audit_reader') then
    create role audit_reader nologin;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'audit_admin') then
    create role audit_admin nologin;
  end if;
  -- an admin may read whatever a reader may
  if not pg_has_role('audit_admin', 'audit_reader', 'member') then
    grant audit_reader to audit_admin;
  end if;
end
$$;

create schema if not exists audit;
alter schema audit owner to audit_owner;
comment on schema audit is
  'audit_capture: the append-only log of every change to tracked tables and of application events.';

-- Everything below, up to 99_stamp.sql, is created as audit_owner so that it owns it.
set local role audit_owner;
