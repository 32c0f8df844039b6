-- Rewrites the generated capture function of every table tracked in the fast mode
-- (audit.capture_<oid>() exists), so that an upgrade that changed how those functions
-- are written (06_capture_queries.sql, 07_capture.sql) reaches the tables tracked
-- before it, and of every table restored from a dump (see below). Tables in the generic
-- mode use audit.capture(), already rewritten above. Idempotent: a fresh install has
-- nothing to rewrite.
--
-- As in audit.on_alter_table(), a primary key that changed behind the event trigger's
-- back (generate_capture() returns true) also gets its key-change trigger remade. That
-- takes the table owner's rights, so this runs as the role installing the schema, not as
-- audit_owner (generate_capture() itself is SECURITY DEFINER), and switches back after.

reset role;

-- settings naming a column renamed while the event trigger was off follow it
select audit.follow_column_renames(t.relation) from audit.tracked_table t;

select audit.make_key_change_trigger(t.relation)
from audit.tracked_table t
where case when pg_catalog.to_regprocedure(
                  pg_catalog.format('audit.%I()', 'capture_' || t.relation::oid)) is not null
           then audit.generate_capture(t.relation) else false end;

-- A table restored by pg_dump into this database (a new oid) whose triggers still call
-- the capture function written for its old oid: write its own, move the triggers to it
-- (audit.adopt_capture_function() in 10_track.sql says why).
select audit.generate_capture(t.relation), audit.adopt_capture_function(t.relation)
from audit.tracked_table t
where audit.restored_capture_function(t.relation) is not null;

-- TRUNCATE triggers (a BEFORE and an AFTER one) and the audit triggers of partitions and
-- inheritance children that differ from audit.track()'s (audit.capture_gaps()) are
-- remade. That takes the tables' owners' rights: a table the installing role may not
-- change is left with a warning (`audit-capture status` names it; `audit-capture track`
-- as its owner remakes it).
do $$
declare
  target regclass;
begin
  for target in
    select distinct g.relation from audit.capture_gaps() g
    where g.relation = g.tracked and g.trigger_name like 'audit\_capture\_truncate%'
  loop
    begin
      perform audit.make_truncate_triggers(target);
      perform audit.stamp_triggers(target);
    exception when insufficient_privilege then
      raise warning 'audit_capture: the TRUNCATE triggers of % could not be remade: %', target, sqlerrm;
    end;
  end loop;
  for target in
    select distinct g.relation from audit.capture_gaps() g where g.relation <> g.tracked
  loop
    begin
      perform audit.make_member_triggers(target);
    exception when insufficient_privilege then
      raise warning 'audit_capture: % (part of a tracked table) could not be given its audit triggers: %', target, sqlerrm;
    end;
  end loop;
end
$$;

set local role audit_owner;
