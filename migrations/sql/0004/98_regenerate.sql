-- Rewrites the generated capture function of every table tracked in the fast mode
-- (audit.capture_<oid>() exists), so that an upgrade that changed how those functions
-- are written (06_capture_queries.sql, 07_capture.sql) reaches the tables tracked
-- before it. Tables in the generic mode use audit.capture(), already rewritten above.
-- Idempotent: a fresh install has nothing to rewrite.
--
-- As in audit.on_alter_table(), a primary key that changed behind the event trigger's
-- back (generate_capture() returns true) also gets its key-change trigger remade. That
-- takes the table owner's rights, so this runs as the role installing the schema, not as
-- audit_owner (generate_capture() itself is SECURITY DEFINER), and switches back after.

reset role;

select audit.make_key_change_trigger(t.relation)
from audit.tracked_table t
where case when pg_catalog.to_regprocedure(
                  pg_catalog.format('audit.%I()', 'capture_' || t.relation::oid)) is not null
           then audit.generate_capture(t.relation) else false end;

set local role audit_owner;
