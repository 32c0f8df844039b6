-- Revision 0003, before its transaction: what makes the unpartitioned log (revision 0002)
-- ready to become the legacy partition of the partitioned one WITHOUT blocking audited
-- writes for a scan or an index build. Each statement runs on its own, in autocommit, as
-- audit_owner (migrations/README.md, "Outside the transaction"); upgrade/0003.sql then
-- only renames, swaps keys and attaches, under a short lock (it does each step itself
-- when this file did not run: on a caller's transaction, under the lock).

-- The chunks' partition key. A constant default is stored in the catalog (no rewrite,
-- no scan); chunks written meanwhile by revision 0002's functions take it too.
-- '-infinity' marks a chunk written before the upgrade (the contract's legacy chunks).
-- Its ACCESS EXCLUSIVE lock is taken under a short lock_timeout, again and again: waiting
-- in the lock queue behind a long query would block every write queued behind it.
do $$
begin
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  perform pg_catalog.set_config('lock_timeout', '100ms', true);
  for attempt in 1..3000 loop
    begin
      lock table audit.action_item_chunk in access exclusive mode;
      alter table audit.action_item_chunk
        add column if not exists occurred_at timestamptz not null default '-infinity';
      return;
    exception when lock_not_available then
      perform pg_catalog.pg_sleep(0.1 + 0.2 * pg_catalog.random());
    end;
  end loop;
  raise exception 'audit.action_item_chunk stayed locked by other sessions for 3,000 tries (about 15 minutes)'
    using errcode = 'lock_not_available', hint = 'See pg_locks; run the upgrade again later.';
end
$$;

-- The new primary keys, which must hold the partition key: (id, occurred_at) and
-- (action_id, first_item, occurred_at). Built here without blocking writes, made the
-- keys by upgrade/0003.sql ('primary key using index': no build under its lock).
create unique index concurrently if not exists action_item_chunk_legacy_pkey on audit.action_item_chunk (action_id, first_item, occurred_at);

create unique index concurrently if not exists action_log_legacy_pkey on audit.action_log (id, occurred_at);

-- The legacy bound: the first month boundary (UTC) at least a day from now, and after
-- every action already logged (an action in the future keeps its place). The current
-- month goes on being written into the old tables until it; months after it get
-- partitions of their own. A CHECK constraint that ATTACH PARTITION finds (validated)
-- spares it the scan of the whole table under its lock. Added NOT VALID (a moment's
-- ACCESS EXCLUSIVE lock, under a short lock_timeout as above; no scan); its name
-- carries its month. A constraint left by an
-- earlier run whose month is now too near (or past) gives way to a new one: once the
-- month it names begins, every audited write would break it.
do $$
declare
  needed date;
  tbl text;
  found date;
begin
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  needed := (date_trunc('month', greatest(now() + interval '1 day',
               (select max(occurred_at) from audit.action_log)) at time zone 'UTC')
             + interval '1 month')::date;
  if not pg_catalog.isfinite(needed) then
    raise exception 'audit.action_log holds an action at infinity: no month boundary follows it'
      using hint = 'Such an action cannot stay in a log partitioned by month.';
  end if;
  if needed > (date_trunc('month', now() at time zone 'UTC') + interval '2 months')::date then
    -- an action dated in the future (a wrong clock, a forged time) is kept where it is
    raise warning 'audit.action_log holds actions dated after next month (the latest at % UTC): the legacy partition keeps them, up to %, and the months before that get no partition of their own',
      to_char((select max(occurred_at) from audit.action_log) at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
      to_char(needed, 'YYYY-MM-DD');
  end if;
  perform pg_catalog.set_config('lock_timeout', '100ms', true);
  for attempt in 1..3000 loop  -- as above: never long in the lock queue
    begin
      lock table audit.action_log, audit.action_item_chunk in access exclusive mode;
      exit;
    exception when lock_not_available then
      perform pg_catalog.pg_sleep(0.1 + 0.2 * pg_catalog.random());
    end;
    if attempt = 3000 then
      raise exception 'audit.action_log stayed locked by other sessions for 3,000 tries (about 15 minutes)'
        using errcode = 'lock_not_available', hint = 'See pg_locks; run the upgrade again later.';
    end if;
  end loop;
  foreach tbl in array array['action_log', 'action_item_chunk'] loop
    select max(pg_catalog.to_date(pg_catalog.right(conname, 7), 'YYYY_MM')) into found
      from pg_catalog.pg_constraint
      where conrelid = ('audit.' || tbl)::regclass and conname like tbl || '\_legacy\_before\_%';
    continue when found >= needed;
    if found is not null then
      execute format('alter table audit.%I drop constraint %I', tbl,
                     tbl || '_legacy_before_' || to_char(found, 'YYYY_MM'));
    end if;
    execute format('alter table audit.%I add constraint %I check (occurred_at < %L) not valid',
                   tbl, tbl || '_legacy_before_' || to_char(needed, 'YYYY_MM'),
                   to_char(needed, 'YYYY-MM-DD') || ' 00:00:00+00');
  end loop;
end
$$;

-- Validated: a scan of each table that takes only a SHARE UPDATE EXCLUSIVE lock (writes
-- go on meanwhile).
do $$
declare
  c record;
begin
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  for c in select conrelid::regclass as tbl, conname from pg_catalog.pg_constraint
           where conrelid in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass)
             and conname like '%\_legacy\_before\_%' and not convalidated loop
    execute format('alter table %s validate constraint %I', c.tbl, c.conname);
  end loop;
end
$$;
