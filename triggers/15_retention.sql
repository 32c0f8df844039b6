-- Retention: old months leave the log whole, as partitions, and the log records it.
--
-- audit.apply_retention(keep_months, apply) lists (apply false: a dry run) or retires
-- (apply true) every month partition pair of audit.log_partitions whose whole range is
-- older than the first day of the current UTC month minus keep_months months, and the
-- legacy pair (an install upgraded from 0002) once its whole range is. The default
-- partitions are never touched. Never a row delete: the month's two partitions are
-- DETACHed from the log and renamed retired_<name>, and the same transaction writes one
-- action, type delete, resource_type audit_log, "Audit log retention: 3 months dropped,
-- 31,204,117 actions", with the caller's context as actor (else the database role, as
-- for a direct change); it lands in the current month, which is always kept. Then
-- audit.drop_retired_partitions(), in a transaction of its own, DROPs the retired
-- tables (`audit-capture retention --apply` runs both, and drop_retired_partitions()
-- once before, for what a killed run left).
--
-- Why detach, then drop apart: DROP TABLE of a partition locks its parent ACCESS
-- EXCLUSIVE, as DETACH does, but a dropped table's files are removed at COMMIT, still
-- under that lock: 0.8 s for 1.3 GB of months here, seconds on a busy disk, during
-- which every audited write waits. Detached, the months are tables of their own, and
-- dropping them locks nothing of the log.
--
-- One transaction for the whole retirement, not one per month:
-- - all or nothing: a run killed, cancelled or timed out before its commit has retired
--   nothing (a rerun does the whole job), and the one action says exactly what went;
-- - the log's parents are locked once, right before the detaches and until the commit
--   (milliseconds for twelve months: bench/retention.py), so audited writes queue
--   behind it once, for at most lock_wait, not once per month.
-- The slow part, counting each month's rows, runs before that lock, under a SHARE lock
-- of the month's own partitions only: it blocks nothing but a write into those old
-- months (none, in practice), and keeps the counts exact until the detach.
-- DETACH PARTITION CONCURRENTLY would take a weaker lock, but it cannot run in a
-- transaction block (nor a function) and PostgreSQL refuses it while a default
-- partition exists, which the log always has.
--
-- Waits: lock_timeout is lock_wait (2 s by default) for the run: a query or transaction
-- that keeps the log (a long viewer export, an open transaction that read it) makes the
-- run stop after that long with one line, having changed nothing; run it again later.
-- Meanwhile audited writes wait behind it, at most that long.
--
-- Two runs never race: the run takes the advisory lock that audit.maintain() and
-- audit.prepare_partitions() take (hashtext('audit_capture.partitions')), without
-- waiting: a second run, or a run during maintenance, stops at once with one line.

-- The floor: keep_months may not be under it, whoever asks. It is no setting of the
-- caller's on purpose: retention is run by audit_admin, and a floor that role could
-- lower would let it erase the recent history of its own actions. Raising it is a
-- change of this function by the schema's owner (a superuser), which `audit-capture
-- status` then reports as modified.
create or replace function audit.retention_floor_months() returns integer
language sql immutable parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select 3
$$;
comment on function audit.retention_floor_months() is
  'The least keep_months audit.apply_retention() accepts (3): the current month and the 3 before it are never dropped.';

create or replace function audit.apply_retention(
  keep_months  integer,
  apply        boolean default false,
  archives     jsonb default null,
  lock_wait    interval default '2 s'
) returns table (
  month          date,
  kind           text,
  from_at        timestamptz,
  to_at          timestamptz,
  actions        bigint,
  chunks         bigint,
  bytes          bigint,
  archive        text,
  action_id      bigint
)
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  floor_months constant integer := audit.retention_floor_months();
  this_month constant timestamptz :=
    date_trunc('month', statement_timestamp() at time zone 'UTC') at time zone 'UTC';
  cutoff timestamptz;
  old_lock_timeout constant text := current_setting('lock_timeout');
  waited text := rtrim(rtrim(extract(epoch from lock_wait)::text, '0'), '.') || ' s';
  p record;
  n_actions bigint;
  n_chunks bigint;
  n_bytes bigint;
  archived jsonb;
  archive_state text;
  months_ date[] := '{}'::date[];
  kinds text[] := '{}'::text[];
  froms timestamptz[] := '{}'::timestamptz[];
  tos timestamptz[] := '{}'::timestamptz[];
  action_counts bigint[] := '{}'::bigint[];
  chunk_counts bigint[] := '{}'::bigint[];
  byte_counts bigint[] := '{}'::bigint[];
  archive_states text[] := '{}'::text[];
  doomed regclass[] := '{}'::regclass[];
  parents regclass[] := '{}'::regclass[];
  doomed_name text;
  dropped jsonb := '[]'::jsonb;
  total_actions bigint := 0::bigint;
  total_chunks bigint := 0::bigint;
  total_bytes bigint := 0::bigint;
  month_count integer := 0;
  has_legacy boolean := false;
  label text;
  new_id bigint;
begin
  if keep_months is null or keep_months < floor_months then
    raise exception 'keep_months is %; expected at least % (the retention floor: the current month and the % before it are never dropped)',
        coalesce(keep_months::text, 'null'), floor_months, floor_months
      using errcode = 'invalid_parameter_value',
            hint = 'keep_months counts the whole months kept before the current one; the floor is audit.retention_floor_months().';
  end if;
  if keep_months > 12 * 1000 then
    raise exception 'keep_months is %; expected at most 12000', keep_months
      using errcode = 'invalid_parameter_value';
  end if;
  if archives is not null and jsonb_typeof(archives) <> 'object' then
    raise exception 'archives must be a JSON object {"YYYY-MM": {"actions": n, "chunks": n}, ...}, not %', jsonb_typeof(archives)
      using errcode = 'invalid_parameter_value';
  end if;
  if lock_wait is null or lock_wait <= interval '0' or lock_wait > interval '10 minutes' then
    raise exception 'lock_wait is %; expected more than 0 and at most 10 minutes', coalesce(lock_wait::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  cutoff := this_month - make_interval(months => keep_months);

  if apply then
    perform set_config('lock_timeout', (ceil(extract(epoch from lock_wait) * 1000))::bigint::text || 'ms', true);
    if not pg_try_advisory_xact_lock(hashtext('audit_capture.partitions')) then
      raise exception 'another audit retention run or audit-capture maintain is working on the log''s partitions: nothing was dropped; run it again when it has finished'
        using errcode = 'lock_not_available';
    end if;
  end if;

  for p in
    select l.month, l.kind, l.from_at, l.to_at, l.action_partition, l.chunk_partition
    from audit.log_partitions l
    where l.kind in ('month', 'legacy') and l.to_at is not null and l.to_at <= cutoff
    order by l.from_at nulls first
  loop
    if p.to_at > this_month - make_interval(months => floor_months) then
      -- cannot happen (keep_months >= floor_months): the last guard before a drop
      raise exception 'refusing to drop %: it is inside the retention floor', p.action_partition
        using errcode = 'invalid_parameter_value';
    end if;
    if apply then
      -- no write may reach the month until the drop: the counts stay exact
      begin
        execute format('lock table %s in share mode',
                       concat_ws(', ', p.chunk_partition, p.action_partition));
      exception when lock_not_available then
        raise exception 'audit retention could not lock % within % (a transaction is writing to it): nothing was dropped; run it again later',
            p.action_partition, waited
          using errcode = 'lock_not_available';
      end;
    end if;
    execute format('select count(*) from %s', p.action_partition) into n_actions;
    n_chunks := 0;
    if p.chunk_partition is not null then
      execute format('select count(*) from %s', p.chunk_partition) into n_chunks;
    end if;
    n_bytes := pg_total_relation_size(p.action_partition)
               + coalesce(pg_total_relation_size(p.chunk_partition), 0);

    archive_state := null;
    if archives is not null then
      archived := archives -> coalesce(to_char(p.month, 'YYYY-MM'), p.kind);
      if archived is null then
        archive_state := 'missing';
      elsif jsonb_typeof(archived) <> 'object'
            or (archived ->> 'actions') is distinct from n_actions::text
            or (archived ->> 'chunks') is distinct from n_chunks::text then
        archive_state := format('holds %s actions and %s chunks, the partitions %s and %s',
                                coalesce(archived ->> 'actions', '?'), coalesce(archived ->> 'chunks', '?'),
                                n_actions, n_chunks);
      else
        archive_state := 'verified';
      end if;
      if apply and archive_state <> 'verified' then
        raise exception 'no verified archive of % (%): nothing was dropped',
            coalesce(to_char(p.month, 'YYYY-MM'), p.kind || ' partition'),
            case when archive_state = 'missing' then 'none given' else 'its archive ' || archive_state end
          using errcode = 'object_not_in_prerequisite_state',
                hint = 'Archive the month again (audit-capture archive), then run retention again.';
      end if;
    end if;

    months_ := months_ || p.month;
    kinds := kinds || p.kind;
    froms := froms || p.from_at;
    tos := tos || p.to_at;
    action_counts := action_counts || n_actions;
    chunk_counts := chunk_counts || n_chunks;
    byte_counts := byte_counts || n_bytes;
    archive_states := archive_states || archive_state;
    doomed := doomed || p.action_partition;
    parents := parents || 'audit.action_log'::regclass;
    if p.chunk_partition is not null then
      doomed := doomed || p.chunk_partition;
      parents := parents || 'audit.action_item_chunk'::regclass;
    end if;
    dropped := dropped || jsonb_build_object(
      'month', coalesce(to_char(p.month, 'YYYY-MM'), p.kind), 'kind', p.kind,
      'from', p.from_at, 'to', p.to_at, 'actions', n_actions, 'chunks', n_chunks,
      'bytes', n_bytes, 'action_partition', p.action_partition::text,
      'chunk_partition', p.chunk_partition::text);
    total_actions := total_actions + n_actions;
    total_chunks := total_chunks + n_chunks;
    total_bytes := total_bytes + n_bytes;
    if p.kind = 'legacy' then
      has_legacy := true;
    else
      month_count := month_count + 1;
    end if;
  end loop;

  if apply and cardinality(doomed) > 0 then
    -- a table an earlier run detached but did not drop keeps its retired_ name
    for i in 1 .. cardinality(doomed) loop
      doomed_name := 'retired_' || (select c.relname from pg_class c where c.oid = doomed[i]);
      if to_regclass(format('audit.%I', doomed_name)) is not null then
        raise exception 'audit.% is left from an earlier retention run: run audit.drop_retired_partitions() first; nothing was dropped', doomed_name
          using errcode = 'object_not_in_prerequisite_state',
                hint = 'audit-capture retention --apply does it before and after its run.';
      end if;
    end loop;
    -- the one moment audited writes wait: from here to the commit
    -- (only the parents: LOCK TABLE of a partitioned table would lock every partition;
    -- the drop locks the months' own. Chunks first, in the order audited writes and
    -- audit.maintain() take them, so that none of them deadlocks with the run)
    begin
      lock table only audit.action_item_chunk, only audit.action_log in access exclusive mode;
      for i in 1 .. cardinality(doomed) loop
        execute format('alter table %s detach partition %s', parents[i], doomed[i]);
        execute format('alter table %s rename to %I', doomed[i],
                       'retired_' || (select c.relname from pg_class c where c.oid = doomed[i]));
      end loop;
    exception when lock_not_available then
      raise exception 'audit retention could not lock audit.action_log and the months it drops within % (a query or transaction is using them): nothing was dropped; run it again later',
          waited
        using errcode = 'lock_not_available';
    end;

    label := 'Audit log retention: '
      || case when month_count > 0
              then month_count || case when month_count = 1 then ' month' else ' months' end
              else '' end
      || case when has_legacy and month_count > 0 then ' and ' else '' end
      || case when has_legacy then 'the pre-partitioning log' else '' end
      || ' dropped, ' || to_char(total_actions, 'FM999,999,999,999,990')
      || case when total_actions = 1 then ' action' else ' actions' end;
    new_id := audit.log_action(
      'delete', label, 'audit_log', null, null,
      jsonb_build_object(
        'keep_months', keep_months,
        'kept_from', cutoff,
        'dropped', dropped,
        'tables', 'detached and renamed retired_*, then dropped by audit.drop_retired_partitions()',
        'actions', total_actions,
        'chunks', total_chunks,
        'bytes', total_bytes,
        'archives', case when archives is null then 'not required' else 'verified' end));
    perform set_config('lock_timeout', old_lock_timeout, true);
  end if;

  return query
    select u.m, u.k, u.f, u.t, u.a, u.c, u.b, u.s, new_id
    from unnest(months_, kinds, froms, tos, action_counts, chunk_counts, byte_counts,
                archive_states) as u(m, k, f, t, a, c, b, s);
end
$$;
comment on function audit.apply_retention(integer, boolean, jsonb, interval) is
  'Retention: the month partition pairs (and the legacy pair) wholly older than keep_months whole months before the current UTC month, one row each with its actions, chunks and bytes. apply false (the default) changes nothing; apply true detaches them in one transaction (lock_timeout lock_wait), renamed retired_<name> for audit.drop_retired_partitions() to drop, and logs one delete action "Audit log retention: N months dropped, M actions" (its id in action_id). archives {"YYYY-MM" or "legacy": {"actions": n, "chunks": n}} (verified archives): a month whose counts differ or lack is refused. Only audit_admin.';

revoke all on function audit.apply_retention(integer, boolean, jsonb, interval) from public;
grant execute on function audit.apply_retention(integer, boolean, jsonb, interval) to audit_admin;
-- (12_privileges.sql ran before it existed)
revoke all on function audit.retention_floor_months() from public;
grant execute on function audit.retention_floor_months() to audit_admin;

-- The second step of retention, in a transaction of its own: drops the tables that
-- audit.apply_retention() detached from the log (audit.retired_action_log_p2025_01 ...).
-- It locks only those tables, never the log. Only tables of that exact name form, in
-- this schema (where only audit_owner creates tables), that are no partition.
create or replace function audit.drop_retired_partitions(lock_wait interval default '2 s')
returns setof text
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  retired regclass;
begin
  if lock_wait is null or lock_wait <= interval '0' or lock_wait > interval '10 minutes' then
    raise exception 'lock_wait is %; expected more than 0 and at most 10 minutes', coalesce(lock_wait::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  perform set_config('lock_timeout', (ceil(extract(epoch from lock_wait) * 1000))::bigint::text || 'ms', true);
  for retired in
    select c.oid::regclass from pg_class c
    where c.relnamespace = 'audit'::regnamespace and c.relkind = 'r' and not c.relispartition
      and c.relname ~ '^retired_action_(log|item_chunk)_(p[0-9]{4}_[0-9]{2}|legacy)$'
    order by c.relname
  loop
    -- the seal chain records which sealed actions leave, so that audit.verify_chain()
    -- tells this drop from a removal (17_seal.sql); nothing to record before a first seal
    if retired::text like 'audit.retired\_action\_log\_%'
       and exists (select from audit.seal_block b where b.kind = 'actions') then
      perform audit.seal_retention(retired);
    end if;
    execute format('drop table %s', retired);
    return next retired::text;
  end loop;
end
$$;
comment on function audit.drop_retired_partitions(interval) is
  'Retention''s second step: drops the tables audit.apply_retention() detached from the log (audit.retired_action_log_pYYYY_MM, audit.retired_action_item_chunk_pYYYY_MM, ..._legacy), in a transaction apart, locking none of the log; returns their names. Only audit_admin.';

revoke all on function audit.drop_retired_partitions(interval) from public;
grant execute on function audit.drop_retired_partitions(interval) to audit_admin;
