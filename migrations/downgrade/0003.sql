-- Revision 0003 back to 0002: the partitioned log becomes one plain table again (two:
-- audit.action_log and audit.action_item_chunk), with every row. This one COPIES: rows
-- of the month and default partitions cannot become part of one table without being
-- written into it. Revision 0002's state files have just run (its functions again); then,
-- under an ACCESS EXCLUSIVE lock on both parents until the migration commits (every
-- audited write, and every read of the log, waits):
--
-- - an install upgraded from 0002 keeps its legacy partition as the table (detached: no
--   copy of its rows); an install made at 0003 gets a new table;
-- - the rows of every other partition are copied into it (INSERT ... SELECT: ids and
--   every value kept), then the parents and their other partitions are dropped;
-- - revision 0002's keys are built ((id); (action_id, first_item), the chunks'
--   occurred_at dropped), and the indexes the table lacks (all of them on a new table);
-- - the identity sequence goes on from the parent's; the grants are the parent's.
--
-- It takes as long as that copy and those builds: 6.8 s at 10 million actions with few
-- rows in the months (bench/upgrade_partitions.py), most of it the (id) key's build. A
-- WARNING says how many rows it copies.
set local role audit_owner;

-- what revision 0003 added (14_partitions.sql)
drop view if exists audit.log_partitions;
drop function if exists audit.maintain(integer);
drop function if exists audit.prepare_partitions(date, date);
drop function if exists audit.prepare_months(date, date);
drop function if exists audit.move_default_rows();
drop function if exists audit.make_month_partitions(date);
drop function if exists audit.make_default_partitions();
drop function if exists audit.guard_partition(regclass);
drop function if exists audit.name_partition_indexes(regclass);
drop function if exists audit.legacy_chunk_bound();
-- (15_retention.sql)
drop function if exists audit.apply_retention(integer, boolean, jsonb, interval);
drop function if exists audit.drop_retired_partitions(interval);
drop function if exists audit.retention_floor_months();
-- (16_replication.sql; CASCADE: on an audit server, the two BEFORE INSERT triggers
-- `audit-capture replicate` made with them go too: revision 0002 has neither)
drop function if exists audit.skip_replicated_action() cascade;
drop function if exists audit.skip_replicated_chunk() cascade;
-- (06_capture_queries.sql's revision 0003 signature; 0002's state files made its own again)
drop function if exists audit.capture_query(regclass, text, text, text, text, text);

do $$
declare
  tbl text;
  legacy regclass;
  copied bigint;
  last_id bigint;
  called boolean;
  acl record;
  idx record;
  indexes jsonb;
  previous_timeout text;
  previous_path text;
begin
  if (select relkind from pg_catalog.pg_class where oid = 'audit.action_log'::regclass) <> 'p' then
    return;  -- not partitioned
  end if;
  -- names resolve in pg_catalog first (then pg_temp), as in the state files' functions;
  -- put back at the end, for the state files
  previous_path := pg_catalog.current_setting('search_path');
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  -- under a short lock_timeout, again and again, as upgrade/0003.sql: never long in the
  -- lock queue, where every audited write would wait behind the migration
  previous_timeout := pg_catalog.current_setting('lock_timeout');
  perform pg_catalog.set_config('lock_timeout', '100ms', true);
  for attempt in 1..3000 loop
    begin
      lock table audit.action_log, audit.action_item_chunk in access exclusive mode;
      exit;
    exception when lock_not_available then
      perform pg_catalog.pg_sleep(0.1 + 0.2 * pg_catalog.random());
    end;
    if attempt = 3000 then
      raise exception 'audit.action_log stayed locked by other sessions for 3,000 tries (about 15 minutes)'
        using errcode = 'lock_not_available', hint = 'See pg_locks; run the downgrade again later.';
    end if;
  end loop;
  perform pg_catalog.set_config('lock_timeout', previous_timeout, true);
  execute format('select last_value, is_called from %s',
                 pg_catalog.pg_get_serial_sequence('audit.action_log', 'id'))
    into last_id, called;

  foreach tbl in array array['action_log', 'action_item_chunk'] loop
    -- the parent's indexes but its key, and the legacy partition's index attached to each
    legacy := (select h.inhrelid::regclass from pg_catalog.pg_inherits h
               where h.inhparent = ('audit.' || tbl)::regclass
                 and h.inhrelid = pg_catalog.to_regclass('audit.' || tbl || '_legacy'));
    select coalesce(jsonb_agg(jsonb_build_object(
             'name', c.relname,
             'definition', pg_catalog.pg_get_indexdef(i.indexrelid),
             'legacy', (select l.relname from pg_catalog.pg_inherits h
                        join pg_catalog.pg_class l on l.oid = h.inhrelid
                        join pg_catalog.pg_index li on li.indexrelid = l.oid
                        where h.inhparent = i.indexrelid and li.indrelid = legacy))), '[]')
      into indexes
      from pg_catalog.pg_index i join pg_catalog.pg_class c on c.oid = i.indexrelid
      where i.indrelid = ('audit.' || tbl)::regclass and not i.indisprimary;

    if legacy is null then
      execute format('create table audit.%I (like audit.%I including defaults including constraints'
                     ' including storage including compression including comments)',
                     tbl || '_legacy', tbl);
      legacy := ('audit.' || tbl || '_legacy')::regclass;
    else
      execute format('alter table audit.%I detach partition %s', tbl, legacy);
    end if;
    -- by name: the columns' order may differ (an upgraded install's chunks)
    execute (select format('insert into %s (%s) select %2$s from audit.%I', legacy,
                           string_agg(quote_ident(a.attname), ', ' order by a.attnum), tbl)
             from pg_catalog.pg_attribute a
             where a.attrelid = legacy and a.attnum > 0 and not a.attisdropped);
    get diagnostics copied = row_count;
    if copied > 0 then
      raise warning 'revision 0003 downgrade: % rows of audit.%''s month and default partitions copied into one table',
        copied, tbl;
    end if;
    for acl in select a.privilege_type, coalesce(r.rolname, 'public') as grantee
               from pg_catalog.pg_class c
               cross join lateral pg_catalog.aclexplode(c.relacl) a
               left join pg_catalog.pg_roles r on r.oid = a.grantee
               where c.oid = ('audit.' || tbl)::regclass and a.grantee <> c.relowner loop
      execute format('grant %s on %s to %s', acl.privilege_type, legacy,
                     case acl.grantee when 'public' then 'public' else quote_ident(acl.grantee) end);
    end loop;
    execute format('comment on table %s is %L', legacy,
                   pg_catalog.obj_description(('audit.' || tbl)::regclass, 'pg_class'));
    execute format('drop table audit.%I', tbl);  -- its partitions with it
    execute format('alter table %s rename to %I', legacy, tbl);
    -- PostgreSQL 18's named NOT NULL constraints: the upgrade renamed the chunks' to
    -- action_item_chunk_legacy_*; they take their names back (none before 18)
    for idx in select c.conname as name
               from pg_catalog.pg_constraint c
               where c.conrelid = ('audit.' || tbl)::regclass and c.contype = 'n'
                 and c.conname like tbl || '\_legacy\_%\_not\_null' loop
      execute format('alter table audit.%I rename constraint %I to %I', tbl, idx.name,
                     tbl || '_' || substr(idx.name, length(tbl || '_legacy_') + 1));
    end loop;
    for idx in select * from jsonb_to_recordset(indexes) as (name text, definition text, legacy text) loop
      if idx.legacy is not null then
        execute format('alter index audit.%I rename to %I', idx.legacy, idx.name);
      else
        execute replace(idx.definition, ' ON ONLY ', ' ON ');
      end if;
    end loop;
  end loop;
  -- 0003 set the text index's pending list to 256 kB (13_viewer_indexes.sql); 0002 had
  -- PostgreSQL's default
  alter index if exists audit.action_log_text_time_idx reset (gin_pending_list_limit);

  -- revision 0002's keys
  alter table audit.action_item_chunk drop column occurred_at;  -- and the key that held it
  alter table audit.action_item_chunk add constraint action_item_chunk_pkey primary key (action_id, first_item);
  for idx in select conname from pg_catalog.pg_constraint
             where conrelid = 'audit.action_log'::regclass and contype = 'p' loop
    execute format('alter table audit.action_log drop constraint %I', idx.conname);
  end loop;
  alter table audit.action_log add constraint action_log_pkey primary key (id);
  alter table audit.action_log alter column id add generated always as identity;
  perform pg_catalog.setval(pg_catalog.pg_get_serial_sequence('audit.action_log', 'id'),
                            last_id, called);
  -- as 12_privileges.sql leaves every sequence of the schema (it ran before this one was made)
  execute format('revoke all on sequence %s from public',
                 pg_catalog.pg_get_serial_sequence('audit.action_log', 'id'));
  perform pg_catalog.set_config('search_path', previous_path, true);
end
$$;

-- revision 0002's triggers (02_action_log.sql): a detached partition loses the ones
-- PostgreSQL had cloned onto it, and a new table has none
create or replace trigger action_log_append_only
  before update or delete on audit.action_log
  for each row execute function audit.refuse_change();
create or replace trigger action_log_no_truncate
  before truncate on audit.action_log
  for each statement execute function audit.refuse_change();
create or replace trigger action_item_chunk_append_only
  before update or delete on audit.action_item_chunk
  for each row execute function audit.refuse_change();
create or replace trigger action_item_chunk_no_truncate
  before truncate on audit.action_item_chunk
  for each statement execute function audit.refuse_change();

alter table audit.batch_action drop column if exists occurred_at;

reset role;
