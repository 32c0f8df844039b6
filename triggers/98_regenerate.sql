-- Rewrites the generated capture function of every table tracked in the fast mode
-- (audit.capture_<oid>() exists), so that an upgrade that changed how those functions
-- are written (06_capture_queries.sql, 07_capture.sql) reaches the tables tracked
-- before it. Tables in the generic mode use audit.capture(), already rewritten above.
-- Idempotent: a fresh install has nothing to rewrite.

select audit.generate_capture(t.relation)
from audit.tracked_table t
where pg_catalog.to_regprocedure(pg_catalog.format('audit.%I()', 'capture_' || t.relation::oid)) is not null;
