-- The log's partitions (02_action_log.sql): one pair per UTC calendar month,
-- audit.action_log_pYYYY_MM and audit.action_item_chunk_pYYYY_MM (occurred_at from the
-- first of the month 00:00:00+00 to the first of the next), created and dropped together;
-- a default pair, audit.action_log_default and audit.action_item_chunk_default, that
-- catches anything outside the prepared months so that a write never fails for lack of
-- a partition; on an install upgraded from an unpartitioned log, a legacy pair (the old
-- tables, from MINVALUE to a month boundary).
--
-- Partitions are made only here, by audit_owner: audit.maintain() (cron, every hour)
-- keeps the current month and the next ones ready and moves rows out of the default
-- pair; audit.prepare_partitions() prepares given months (before writing old history).
-- Both take an advisory lock, so that two runs never race, and only audit_admin may run
-- them. Creating a partition, and moving rows out of the default, takes an ACCESS
-- EXCLUSIVE lock on both parents for a moment (every audited write waits meanwhile):
-- under a short lock_timeout, so that a run never queues writers behind it for long; it
-- gives up, changing nothing, and the next run tries again.

-- One row per partition pair. Bounds are read from the catalog (pg_get_expr() writes
-- them in the session's TimeZone, with their offset: read back as the same instants).
create or replace view audit.log_partitions as
with parts as (
  select case p.oid when to_regclass('audit.action_log') then 'action' else 'chunk' end as side,
         c.oid::regclass as partition, c.relname::text as relname,
         pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' as is_default,
         regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') as m
  from pg_inherits i
  join pg_class p on p.oid = i.inhparent
  join pg_class c on c.oid = i.inhrelid
  where p.oid in (to_regclass('audit.action_log'), to_regclass('audit.action_item_chunk'))
), bounds as (
  select side, partition, relname, is_default,
         case when m[1] <> 'MINVALUE' then btrim(m[1], '''')::timestamptz end as from_at,
         case when m[2] <> 'MAXVALUE' then btrim(m[2], '''')::timestamptz end as to_at
  from parts
), keyed as (
  select *, case when is_default then 'default'
                 else coalesce(from_at::text, 'MINVALUE') || ' .. ' || coalesce(to_at::text, 'MAXVALUE') end as key
  from bounds
)
select case when kind = 'month' then (from_at at time zone 'UTC')::date end as month,
       kind, from_at, to_at, action_partition, chunk_partition
from (
  select coalesce(a.is_default, c.is_default) as is_default,
         case when coalesce(a.is_default, c.is_default) then 'default'
              when coalesce(a.relname, c.relname) like '%\_legacy' or coalesce(a.from_at, c.from_at) is null
                then 'legacy'
              else 'month' end as kind,
         coalesce(a.from_at, c.from_at) as from_at, coalesce(a.to_at, c.to_at) as to_at,
         a.partition as action_partition, c.partition as chunk_partition
  from (select * from keyed where side = 'action') a
  full join (select * from keyed where side = 'chunk') c on c.key = a.key
) pairs
order by is_default, from_at nulls first;
comment on view audit.log_partitions is
  'The partitions of the log, one row per pair of audit.action_log and audit.action_item_chunk partitions: month (first day, UTC; null for the default and legacy pairs), kind (month, default or legacy), from_at and to_at (null: unbounded), action_partition, chunk_partition (null where one of the pair is missing).';

-- The TRUNCATE refusal of one partition (a partition's TRUNCATE does not fire its
-- parent's trigger). The row triggers need nothing: PostgreSQL clones the parents'.
create or replace function audit.guard_partition(part regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  parent regclass := (select i.inhparent::regclass from pg_inherits i where i.inhrelid = part);
begin
  if parent is null or parent not in (to_regclass('audit.action_log'), to_regclass('audit.action_item_chunk')) then
    raise exception '% is not a partition of the audit log', part using errcode = 'invalid_parameter_value';
  end if;
  if not exists (select from pg_trigger t where t.tgrelid = part and not t.tgisinternal
                   and t.tgname = (select c.relname || '_no_truncate' from pg_class c where c.oid = parent)) then
    execute format('create trigger %I before truncate on %s for each statement execute function audit.refuse_change()',
                   (select c.relname || '_no_truncate' from pg_class c where c.oid = parent), part);
  end if;
end
$$;
comment on function audit.guard_partition(regclass) is
  'Internal: gives a partition of the log its TRUNCATE refusal (the parents'' row triggers are cloned to it by PostgreSQL).';

-- A partition's indexes are named after the partition and the log's index each belongs
-- to (audit.action_log_p2026_12_text_time_idx for audit.action_log_text_time_idx), so
-- that a plan or \d names the parent index; PostgreSQL's own names are made of columns.
create or replace function audit.name_partition_indexes(part regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  idx    record;
  parent text := (select p.relname::text from pg_inherits i join pg_class p on p.oid = i.inhparent
                  where i.inhrelid = part);
begin
  for idx in
    select c.relname as name,
           left((select t.relname from pg_class t where t.oid = part)
                || regexp_replace(pc.relname, '^' || parent, ''), 63) as wanted
    from pg_index x
    join pg_class c on c.oid = x.indexrelid
    join pg_inherits h on h.inhrelid = x.indexrelid
    join pg_class pc on pc.oid = h.inhparent
    where x.indrelid = part and starts_with(pc.relname, parent)
  loop
    if idx.name <> idx.wanted and to_regclass(format('audit.%I', idx.wanted)) is null then
      execute format('alter index audit.%I rename to %I', idx.name, idx.wanted);
    end if;
  end loop;
end
$$;
comment on function audit.name_partition_indexes(regclass) is
  'Internal: renames the indexes of a partition of the log after the partition and the parent index each is attached to.';

-- The default pair (if missing).
create or replace function audit.make_default_partitions() returns setof regclass
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  parent text;
begin
  foreach parent in array array['action_log', 'action_item_chunk'] loop
    if to_regclass(format('audit.%I', parent || '_default')) is null then
      execute format('create table audit.%I partition of audit.%I default', parent || '_default', parent);
      execute format('comment on table audit.%I is %L', parent || '_default',
        format('audit_capture: the default partition of audit.%s: rows of no prepared month (audit.maintain() moves them into their month). Append-only.', parent));
      perform audit.guard_partition(format('audit.%I', parent || '_default')::regclass);
      perform audit.name_partition_indexes(format('audit.%I', parent || '_default')::regclass);
      -- the viewer reads a partition's statistics (pg_stats shows only what it may read)
      execute format('grant select on audit.%I to audit_reader', parent || '_default');
      return next format('audit.%I', parent || '_default')::regclass;
    end if;
  end loop;
end
$$;
comment on function audit.make_default_partitions() is
  'Internal: creates the default partitions of audit.action_log and audit.action_item_chunk where missing; returns those it created.';

-- One month's pair (if missing). A month that an existing partition covers whole (the
-- legacy one) is left alone; one that a partition covers in part is an error.
create or replace function audit.make_month_partitions(month date) returns setof regclass
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_from  timestamptz;
  v_to    timestamptz;
  parent  text;
  part    text;
  bound_from text;
  bound_to   text;
begin
  if month is null or month <> date_trunc('month', month)::date
     or month < date '1000-01-01' or month > date '9999-12-01' then
    raise exception 'month is %; expected the first day of a month between 1000-01 and 9999-12',
        coalesce(month::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  bound_from := to_char(month, 'YYYY-MM-DD') || ' 00:00:00+00';
  bound_to := to_char((month + interval '1 month')::date, 'YYYY-MM-DD') || ' 00:00:00+00';
  v_from := bound_from::timestamptz;
  v_to := bound_to::timestamptz;
  if exists (select from audit.log_partitions p
             where p.kind <> 'default' and p.from_at is not distinct from v_from and p.to_at = v_to
               and p.action_partition is not null and p.chunk_partition is not null)
     or exists (select from audit.log_partitions p
                where p.kind <> 'default' and coalesce(p.from_at <= v_from, true)
                  and coalesce(p.to_at >= v_to, true) and p.kind = 'legacy') then
    return;
  end if;
  if exists (select from audit.log_partitions p
             where p.kind <> 'default' and coalesce(p.from_at < v_to, true) and coalesce(p.to_at > v_from, true)
               and not (p.from_at is not distinct from v_from and p.to_at = v_to)) then
    raise exception 'the log''s month % overlaps a partition of other bounds', to_char(month, 'YYYY-MM')
      using errcode = 'invalid_object_definition',
            detail = 'See audit.log_partitions.';
  end if;
  foreach parent in array array['action_log', 'action_item_chunk'] loop
    part := format('%s_p%s', parent, to_char(month, 'YYYY_MM'));
    if to_regclass(format('audit.%I', part)) is null then
      execute format('create table audit.%I partition of audit.%I for values from (%L) to (%L)',
                     part, parent, bound_from, bound_to);
      execute format('comment on table audit.%I is %L', part,
        format('audit_capture: audit.%s of %s (UTC). Append-only.', parent, to_char(month, 'YYYY-MM')));
      perform audit.guard_partition(format('audit.%I', part)::regclass);
      perform audit.name_partition_indexes(format('audit.%I', part)::regclass);
      execute format('grant select on audit.%I to audit_reader', part);
      return next format('audit.%I', part)::regclass;
    end if;
  end loop;
end
$$;
comment on function audit.make_month_partitions(date) is
  'Internal: creates the partition pair of one UTC month (month: its first day) where missing; returns those it created. Rows of that month must not be in the default partitions (see audit.move_default_rows()).';

-- The rows of the default pair move into their months: PostgreSQL refuses to create a
-- partition whose range has rows in the default one, and the append-only triggers refuse
-- to DELETE them. So the default pair is detached, the months its rows belong to and a
-- fresh default pair are created, the rows are copied through the parents (each lands
-- in its month; ids and every value kept), and the old default tables are dropped, in
-- the caller's transaction. The caller holds the parents' ACCESS EXCLUSIVE locks.
create or replace function audit.move_default_rows()
returns table (month date, actions bigint, chunks bigint, created regclass)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  months     date[];
  m          date;
  old_log    text;
  old_chunk  text;
  log_cols   text;
  chunk_cols text;
  idx        regclass;
  parent     text;
  part       text;
begin
  if to_regclass('audit.action_log_default') is null or to_regclass('audit.action_item_chunk_default') is null then
    return;
  end if;
  months := array(select distinct date_trunc('month', d.occurred_at at time zone 'UTC')::date
                  from (select l.occurred_at from audit.action_log_default l
                        union select c.occurred_at from audit.action_item_chunk_default c) d
                  where isfinite(d.occurred_at)
                  order by 1);
  if cardinality(months) = 0 then
    return;
  end if;
  old_log := format('action_log_moving_%s', 'audit.action_log_default'::regclass::oid);
  old_chunk := format('action_item_chunk_moving_%s', 'audit.action_item_chunk_default'::regclass::oid);
  alter table audit.action_log detach partition audit.action_log_default;
  alter table audit.action_item_chunk detach partition audit.action_item_chunk_default;
  -- their names (and their indexes') go to the fresh default pair
  for idx in select i.indexrelid::regclass from pg_index i
             where i.indrelid in ('audit.action_log_default'::regclass, 'audit.action_item_chunk_default'::regclass) loop
    execute format('alter index %s rename to %I', idx, 'audit_moving_' || idx::oid);
  end loop;
  execute format('alter table audit.action_log_default rename to %I', old_log);
  execute format('alter table audit.action_item_chunk_default rename to %I', old_chunk);
  -- (a fresh default pair: not reported, the default pair is no new partition)
  perform audit.make_default_partitions();
  -- One month (the usual case: rows written before maintain prepared their month): the
  -- old default pair BECOMES that month's pair, attached in place: no row is copied
  -- (nor sent again to a subscriber of the log), ATTACH checks the rows fit its bounds.
  if cardinality(months) = 1
     and not exists (select from audit.log_partitions p
                     where p.kind <> 'default' and p.from_at = (to_char(months[1], 'YYYY-MM-DD') || ' 00:00:00+00')::timestamptz) then
    m := months[1];
    execute format('alter table audit.%I rename to %I', old_log, 'action_log_p' || to_char(m, 'YYYY_MM'));
    execute format('alter table audit.%I rename to %I', old_chunk, 'action_item_chunk_p' || to_char(m, 'YYYY_MM'));
    foreach parent in array array['action_log', 'action_item_chunk'] loop
      part := parent || '_p' || to_char(m, 'YYYY_MM');
      execute format('alter table audit.%I attach partition audit.%I for values from (%L) to (%L)',
                     parent, part, to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00',
                     to_char((m + interval '1 month')::date, 'YYYY-MM-DD') || ' 00:00:00+00');
      execute format('comment on table audit.%I is %L', part,
        format('audit_capture: audit.%s of %s (UTC). Append-only.', parent, to_char(m, 'YYYY-MM')));
      perform audit.guard_partition(format('audit.%I', part)::regclass);
      perform audit.name_partition_indexes(format('audit.%I', part)::regclass);
      created := format('audit.%I', part)::regclass;
      return next;
    end loop;
    created := null;
    month := m;
    actions := (select count(*) from audit.action_log l
                where l.tableoid = format('audit.%I', 'action_log_p' || to_char(m, 'YYYY_MM'))::regclass);
    chunks := (select count(*) from audit.action_item_chunk c
               where c.tableoid = format('audit.%I', 'action_item_chunk_p' || to_char(m, 'YYYY_MM'))::regclass);
    return next;
    return;
  end if;
  foreach m in array months loop
    for created in select * from audit.make_month_partitions(m) loop
      return next;
    end loop;
  end loop;
  created := null;
  select string_agg(format('%I', a.attname), ', ' order by a.attnum) into log_cols
  from pg_attribute a where a.attrelid = 'audit.action_log'::regclass and a.attnum > 0 and not a.attisdropped;
  select string_agg(format('%I', a.attname), ', ' order by a.attnum) into chunk_cols
  from pg_attribute a where a.attrelid = 'audit.action_item_chunk'::regclass and a.attnum > 0 and not a.attisdropped;
  execute format('insert into audit.action_log (%1$s) overriding system value select %1$s from audit.%2$I', log_cols, old_log);
  execute format('insert into audit.action_item_chunk (%1$s) select %1$s from audit.%2$I', chunk_cols, old_chunk);
  for month, actions, chunks in
    execute format($q$select m, (select count(*) from audit.%1$I l where date_trunc('month', l.occurred_at at time zone 'UTC')::date = m),
                        (select count(*) from audit.%2$I c where date_trunc('month', c.occurred_at at time zone 'UTC')::date = m)
                   from unnest($1) m order by m$q$, old_log, old_chunk)
    using months
  loop
    return next;
  end loop;
  execute format('drop table audit.%I, audit.%I', old_log, old_chunk);
end
$$;
comment on function audit.move_default_rows() is
  'Internal: moves the rows of the default partitions into their months'' partitions: rows of one month by attaching the old default pair as that month (no copy), of several by copying them into the months (created where missing); one row per month moved (and per partition created). The caller locks the parents.';

-- The work of prepare_partitions() and maintain(): no lock taken when nothing is to do.
create or replace function audit.prepare_months(from_month date, to_month date)
returns table (step text, detail text, created regclass)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  m       date;
  missing date[];
  moved   record;
begin
  if from_month is null or from_month <> date_trunc('month', from_month)::date then
    raise exception 'from_month is %; expected the first day of a month', coalesce(from_month::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  if to_month is null or to_month <> date_trunc('month', to_month)::date then
    raise exception 'to_month is %; expected the first day of a month', coalesce(to_month::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  if to_month < from_month then
    raise exception 'to_month (%) is before from_month (%)', to_month, from_month
      using errcode = 'invalid_parameter_value';
  end if;
  if from_month < date '1000-01-01' or to_month > date '9999-12-01'
     or to_month > (from_month + interval '1200 months')::date then
    raise exception 'from_month % to to_month %: at most 1,200 months between 1000-01 and 9999-12', from_month, to_month
      using errcode = 'invalid_parameter_value';
  end if;
  perform pg_advisory_xact_lock(hashtext('audit_capture.partitions'));
  missing := array(
    select g::date from generate_series(from_month, to_month, interval '1 month') g
    where not exists (select from audit.log_partitions p
                      where p.kind <> 'default' and coalesce(p.from_at <= (g::date::text || ' 00:00:00+00')::timestamptz, true)
                        and coalesce(p.to_at >= ((g + interval '1 month')::date::text || ' 00:00:00+00')::timestamptz, true)
                        and p.action_partition is not null and p.chunk_partition is not null));
  -- (a row of no month, occurred_at 'infinity', stays in the default)
  if cardinality(missing) = 0
     and to_regclass('audit.action_log_default') is not null
     and to_regclass('audit.action_item_chunk_default') is not null
     and not exists (select from audit.action_log_default l where isfinite(l.occurred_at))
     and not exists (select from audit.action_item_chunk_default c where isfinite(c.occurred_at)) then
    return;
  end if;
  -- every audited write locks the chunks before the log (items first, then the action):
  -- the same order here
  lock table only audit.action_item_chunk, only audit.action_log in access exclusive mode;
  for created in select * from audit.make_default_partitions() loop
    step := 'created'; detail := created::text;
    return next;
  end loop;
  for moved in select * from audit.move_default_rows() loop
    if moved.created is not null then
      step := 'created'; detail := moved.created::text; created := moved.created;
    else
      step := 'moved';
      detail := format('%s actions and %s item chunks of %s out of the default partitions',
                       moved.actions, moved.chunks, to_char(moved.month, 'YYYY-MM'));
      created := null;
    end if;
    return next;
  end loop;
  foreach m in array missing loop
    for created in select * from audit.make_month_partitions(m) loop
      step := 'created'; detail := created::text;
      return next;
    end loop;
  end loop;
end
$$;
comment on function audit.prepare_months(date, date) is
  'Internal: creates the missing partition pairs of the months from_month to to_month and moves the default partitions'' rows into their months (creating those); rows (step, detail, created partition). Under the advisory lock of the log''s partitions.';

create or replace function audit.prepare_partitions(from_month date, to_month date) returns setof regclass
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return query select p.created from audit.prepare_months(from_month, to_month) p where p.created is not null;
end
$$;
comment on function audit.prepare_partitions(date, date) is
  'Creates the log''s missing month partitions from from_month to to_month (first days of months), after moving any rows of the default partitions into their months; returns the partitions it created. Idempotent. For audit_admin: before writing history of past months.';

-- The lock wait is kept below deadlock_timeout: a transaction that wrote a single-row
-- action (the log) and then a bulk statement (chunks, then the log) would otherwise
-- deadlock with the run, and PostgreSQL could cancel the application's transaction
-- rather than this one. A shorter lock_timeout of the caller's is kept.
create or replace function audit.maintain(months_ahead integer default 3)
returns table (step text, detail text)
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  this_month date := date_trunc('month', pg_catalog.now() at time zone 'UTC')::date;
  caller_timeout text := current_setting('lock_timeout');
  wait_ms bigint;
  n integer := 0;
begin
  if months_ahead is null or months_ahead < 0 or months_ahead > 120 then
    raise exception 'months_ahead is %; expected 0 to 120', coalesce(months_ahead::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  wait_ms := (select s.setting::bigint / 2 from pg_settings s where s.name = 'deadlock_timeout');
  if (select s.setting::bigint from pg_settings s where s.name = 'lock_timeout') not between 1 and wait_ms then
    perform set_config('lock_timeout', wait_ms || 'ms', true);
  end if;
  begin
    for step, detail in
      select p.step, p.detail
      from audit.prepare_months(this_month, (this_month + make_interval(months => months_ahead))::date) p
    loop
      n := n + 1;
      return next;
    end loop;
  exception when lock_not_available then
    raise exception 'audit.maintain: the log is in use (its lock was not free within %): nothing changed; run it again (from cron: the next run does it)',
        current_setting('lock_timeout')
      using errcode = 'lock_not_available';
  end;
  perform set_config('lock_timeout', caller_timeout, true);
  if n = 0 then
    step := 'ok';
    detail := format('%s to %s ready; no row of a month in the default partitions',
                     to_char(this_month, 'YYYY-MM'),
                     to_char((this_month + make_interval(months => months_ahead))::date, 'YYYY-MM'));
    return next;
  end if;
end
$$;
comment on function audit.maintain(integer) is
  'Keeps the log''s partitions ready: creates the current month''s and the next months_ahead months'' (UTC) where missing, and moves rows out of the default partitions into their months. Safe to run every hour from cron and concurrently with itself (advisory lock); gives up with lock_not_available, changing nothing, when the log stays locked longer than half of deadlock_timeout. For audit_admin.';

-- (12_privileges.sql ran before these existed)
revoke all on function audit.guard_partition(regclass), audit.make_default_partitions(),
  audit.make_month_partitions(date), audit.move_default_rows(), audit.prepare_months(date, date),
  audit.prepare_partitions(date, date), audit.maintain(integer),
  audit.name_partition_indexes(regclass)
  from public;
grant execute on function audit.prepare_partitions(date, date), audit.maintain(integer) to audit_admin;
revoke all on audit.log_partitions from public;
grant select on audit.log_partitions to audit_reader;

-- The install (and every upgrade): the default pair, the current month and the next 3.
select audit.make_default_partitions();
select audit.prepare_months(date_trunc('month', pg_catalog.now() at time zone 'UTC')::date,
                            (date_trunc('month', pg_catalog.now() at time zone 'UTC') + interval '3 months')::date);
