-- Revision 0003 on an existing install (revision 0002): the unpartitioned log becomes the
-- LEGACY partition of the partitioned one, without rewriting or copying a row.
-- audit.action_log and audit.action_item_chunk are renamed action_log_legacy and
-- action_item_chunk_legacy, new partitioned parents of the same columns take their names,
-- and the old tables are attached for occurred_at from MINVALUE to the legacy bound (the
-- first month boundary after the upgrade: the current month is still written into them;
-- 14_partitions.sql then creates the default pair and the months after the bound).
--
-- What would scan or build under the lock is done before, by
-- upgrade_concurrently/0003.sql, without blocking writes: the chunks' occurred_at column
-- (a constant default: catalog only), the unique indexes that become the new primary
-- keys, and a validated CHECK (occurred_at < bound) on each table, which spares ATTACH
-- PARTITION its scan. Here, under an ACCESS EXCLUSIVE lock on both tables until the
-- migration commits (every audited write waits; catalog work only): keys swapped
-- ('primary key using index'), indexes renamed action_log_legacy_* (the state files then
-- create the parents' indexes, which PostgreSQL matches to these: nothing is built), the
-- old row triggers dropped (the parents' are cloned onto the partition; the TRUNCATE
-- triggers stay: a partition's TRUNCATE does not fire its parent's), the id sequence
-- continued by the parent's identity, and the attach. On a caller's transaction (the
-- fallback: upgrade_concurrently/0003.sql skipped), the same steps build and validate
-- here, under the lock.
--
-- Ids keep their values and go on from the old sequence's; a chunk of the legacy
-- partition has occurred_at '-infinity' (audit.action_items() finds it by its action's id).
-- An empty log (an install the chain takes from 0001 to head at once) keeps no legacy
-- partition: the old tables are dropped, as a fresh install never had them.
set local role audit_owner;

-- 06_capture_queries.sql's capture_query() takes the action's occurred_at too: the
-- state files make the new signature, and the old one goes.
drop function if exists audit.capture_query(regclass, text, text, text, text);

-- A batch keeps its action's occurred_at beside its id (04_context.sql): its later
-- statements find the action's partition, and write their chunks into its month, by it.
-- (Unlogged and small: the actions of open batches.)
alter table audit.batch_action add column if not exists occurred_at timestamptz;
update audit.batch_action b set occurred_at = l.occurred_at
  from audit.action_log l where l.id = b.action_id and b.occurred_at is null;
update audit.batch_action set occurred_at = '-infinity' where occurred_at is null;
alter table audit.batch_action
  alter column occurred_at set default pg_catalog.statement_timestamp(),
  alter column occurred_at set not null;

do $$
declare
  bound date;
  bound_at text;
  tbl text;
  last_id bigint;
  called boolean;
  idx record;
  previous_timeout text;
  previous_path text;
  empty boolean;
begin
  if (select relkind from pg_catalog.pg_class where oid = 'audit.action_log'::regclass) = 'p' then
    return;  -- partitioned already
  end if;
  -- names resolve in pg_catalog first (then pg_temp), as in the state files' functions;
  -- put back at the end, for the state files
  previous_path := pg_catalog.current_setting('search_path');
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  -- under a short lock_timeout, again and again: waiting in the lock queue behind a long
  -- query would block every audited write queued behind the migration meanwhile
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
        using errcode = 'lock_not_available', hint = 'See pg_locks; run the upgrade again later.';
    end if;
  end loop;
  perform pg_catalog.set_config('lock_timeout', previous_timeout, true);

  empty := not exists (select from audit.action_log) and not exists (select from audit.action_item_chunk);

  alter table audit.action_item_chunk
    add column if not exists occurred_at timestamptz not null default '-infinity';
  alter table audit.action_item_chunk alter column occurred_at drop default;

  -- the bound upgrade_concurrently/0003.sql chose, or the first month boundary after now
  -- and after every action
  select min(pg_catalog.to_date(pg_catalog.right(conname, 7), 'YYYY_MM')) into bound
    from pg_catalog.pg_constraint
    where conrelid = 'audit.action_log'::regclass and conname like 'action_log\_legacy\_before\_%';
  if bound is null then
    bound := (date_trunc('month', greatest(pg_catalog.now(),
                (select max(occurred_at) from audit.action_log)) at time zone 'UTC')
              + interval '1 month')::date;
    if not pg_catalog.isfinite(bound) then
      raise exception 'audit.action_log holds an action at infinity: no month boundary follows it'
        using hint = 'Such an action cannot stay in a log partitioned by month.';
    end if;
  end if;
  bound_at := to_char(bound, 'YYYY-MM-DD') || ' 00:00:00+00';
  foreach tbl in array array['action_log', 'action_item_chunk'] loop
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = ('audit.' || tbl)::regclass
                     and conname = tbl || '_legacy_before_' || to_char(bound, 'YYYY_MM')) then
      execute format('alter table audit.%I add constraint %I check (occurred_at < %L)',
                     tbl, tbl || '_legacy_before_' || to_char(bound, 'YYYY_MM'), bound_at);
    end if;
    execute format('alter table audit.%I validate constraint %I',
                   tbl, tbl || '_legacy_before_' || to_char(bound, 'YYYY_MM'));
  end loop;

  -- the keys with the partition key
  create unique index if not exists action_log_legacy_pkey
    on audit.action_log (id, occurred_at);
  create unique index if not exists action_item_chunk_legacy_pkey
    on audit.action_item_chunk (action_id, first_item, occurred_at);
  alter table audit.action_log drop constraint action_log_pkey,
    add constraint action_log_legacy_pkey primary key using index action_log_legacy_pkey;
  alter table audit.action_item_chunk drop constraint action_item_chunk_pkey,
    add constraint action_item_chunk_legacy_pkey primary key using index action_item_chunk_legacy_pkey;

  -- the other indexes leave their names to the parents' (action_log_x: action_log_legacy_x)
  for idx in select c.relname from pg_catalog.pg_index i
             join pg_catalog.pg_class c on c.oid = i.indexrelid
             where i.indrelid in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass)
               and c.relname !~ '_legacy_' loop
    execute format('alter index audit.%I rename to %I', idx.relname,
                   left(regexp_replace(idx.relname, '^(action_log|action_item_chunk)_', '\1_legacy_'), 63));
  end loop;

  -- the row triggers of the parents (02_action_log.sql) are cloned onto the partition, of
  -- the same names: the old ones go (nobody writes meanwhile: the lock)
  drop trigger action_log_append_only on audit.action_log;
  drop trigger action_item_chunk_append_only on audit.action_item_chunk;

  -- the ids go on from the old sequence's last value (not max(id): a rolled back insert
  -- took a number too)
  execute format('select last_value, is_called from %s',
                 pg_catalog.pg_get_serial_sequence('audit.action_log', 'id'))
    into last_id, called;
  alter table audit.action_log alter column id drop identity;

  alter table audit.action_log rename to action_log_legacy;
  alter table audit.action_item_chunk rename to action_item_chunk_legacy;
  -- PostgreSQL 18 keeps NOT NULL constraints under names (action_item_chunk_items_not_null),
  -- which the chunks' new parent would find taken and number (..._not_null1): the old
  -- table's take their new name (none before 18: the loop finds nothing). The log's
  -- parent copies its names from the old table (LIKE), so they stay as they are.
  for idx in select c.conname
             from pg_catalog.pg_constraint c
             where c.conrelid = 'audit.action_item_chunk_legacy'::regclass and c.contype = 'n'
               and c.conname ~ '^action_item_chunk_.*_not_null$' loop
    execute format('alter table audit.action_item_chunk_legacy rename constraint %I to %I', idx.conname,
                   regexp_replace(idx.conname, '^action_item_chunk_', 'action_item_chunk_legacy_'));
  end loop;

  -- the parents: the very columns of the old tables (ATTACH requires them), keys and
  -- partitioning as 02_action_log.sql's (whose 'create table if not exists' then finds
  -- them); its comments, indexes and triggers come from it
  create table audit.action_log (
    like audit.action_log_legacy including defaults including storage including compression,
    primary key (id, occurred_at)
  ) partition by range (occurred_at);
  alter table audit.action_log alter column id add generated always as identity;
  perform pg_catalog.setval(pg_catalog.pg_get_serial_sequence('audit.action_log', 'id'),
                            last_id, called);
  -- the chunks' parent has occurred_at second, as a fresh install's (the old table has it
  -- last: ATTACH matches columns by name), and the old table's CHECKs (of the same names)
  execute (
    select format('create table audit.action_item_chunk (%s, primary key (action_id, first_item, occurred_at))'
                  ' partition by range (occurred_at)',
                  string_agg(format('%I %s%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                                    case when a.attnotnull then ' not null' else '' end),
                             ', ' order by case a.attname when 'occurred_at' then 1.5 else a.attnum end))
    from pg_catalog.pg_attribute a
    where a.attrelid = 'audit.action_item_chunk_legacy'::regclass and a.attnum > 0 and not a.attisdropped);
  for idx in select conname, pg_catalog.pg_get_constraintdef(oid) as definition
             from pg_catalog.pg_constraint
             where conrelid = 'audit.action_item_chunk_legacy'::regclass and contype = 'c'
               and conname not like '%\_legacy\_before\_%' order by conname loop
    execute format('alter table audit.action_item_chunk add constraint %I %s', idx.conname, idx.definition);
  end loop;

  foreach tbl in array array['action_log', 'action_item_chunk'] loop
    if empty then
      -- nothing to keep (an install that the chain takes from 0001 to head at once): no
      -- legacy partition, as on a fresh install
      execute format('drop table audit.%I', tbl || '_legacy');
      continue;
    end if;
    -- no scan: the validated CHECK proves the partition's bound
    execute format('alter table audit.%I attach partition audit.%I for values from (minvalue) to (%L)',
                   tbl, tbl || '_legacy', bound_at);
    execute format('alter table audit.%I drop constraint %I',
                   tbl || '_legacy', tbl || '_legacy_before_' || to_char(bound, 'YYYY_MM'));
  end loop;
  perform pg_catalog.set_config('search_path', previous_path, true);
end
$$;

reset role;
