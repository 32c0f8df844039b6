-- Reference triggers for bench/write_breakdown.py: one single-row statement's capture
-- cost, taken apart. Each function below is attached to its own copy of the clients
-- table (for each statement, with audit_capture's transition tables), so that the
-- difference between two neighbours is the price of one thing.
--
--   empty_plain        a plpgsql statement trigger that does nothing
--   empty_definer      + SECURITY DEFINER (audit_capture's functions run as audit_owner)
--   empty_search_path  + SET search_path (PostgreSQL before 17 resolves the path again
--                        at every call of a function that sets it)
--   empty_jit          + SET jit = off: audit_capture's function attributes, all of them
--   row_<log>          + one constant action (an application's: an actor with an id, a
--                        source) into audit.bd_log_<log>, an unpartitioned copy of
--                        audit.action_log with its primary key and the named index(es)
--   row_action_log     the same action into audit.action_log itself (partitioned, every
--                        index of the viewer)

create or replace function audit.bd_empty_plain() returns trigger
language plpgsql as $$
begin
  return null;
end
$$;

create or replace function audit.bd_empty_definer() returns trigger
language plpgsql security definer as $$
begin
  return null;
end
$$;

create or replace function audit.bd_empty_search_path() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  return null;
end
$$;

create or replace function audit.bd_empty_jit() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp set jit = off as $$
begin
  return null;
end
$$;

-- The copies of the log: its columns and defaults, its primary key, no partitions.
-- Each index is the one audit.action_log has (02_action_log.sql, 13_viewer_indexes.sql).
create or replace function audit.bd_make_log(name text, indexes text[]) returns void
language plpgsql as $make$
declare
  log regclass;
  index_sql text;
begin
  execute format('drop table if exists audit.%I', 'bd_log_' || name);
  execute format('create table audit.%I (like audit.action_log including defaults including identity)',
                 'bd_log_' || name);
  log := format('audit.%I', 'bd_log_' || name)::regclass;
  execute format('alter table %s add primary key (id)', log);
  foreach index_sql in array indexes loop
    execute format(index_sql, log);
  end loop;
  execute format('alter table %s owner to audit_owner', log);
  execute format($f$
    create or replace function audit.%I() returns trigger
    language plpgsql security definer set search_path = pg_catalog, pg_temp set jit = off as $b$
    begin
      insert into %s (action, action_type, resource_type, resource_id, resource_label,
        row_count, actor_id, actor_name, actor_type, source, db_user, transaction_id)
      values ('Client updated', 'update', 'client', '1', 'Client 1', 1, '42', 'Maria Lopez',
              'admin', 'web', 'crm_app', 1);
      return null;
    end
    $b$$f$, 'bd_row_' || name, log);
  execute format('alter function audit.%I() owner to audit_owner', 'bd_row_' || name);
end
$make$;

select audit.bd_make_log('bare', '{}');
select audit.bd_make_log('time', array['create index on %s (occurred_at desc, id desc)']);
select audit.bd_make_log('kind', array['create index on %s (actor_type, action_type, source, resource_type)']);
select audit.bd_make_log('actor', array['create index on %s (actor_id, source, occurred_at desc, id desc) where actor_id is not null',
                                        'create index on %s (actor_name, occurred_at desc, id desc) where actor_id is null']);
select audit.bd_make_log('text', array[$i$create index on %s using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, '')), audit.time_buckets(occurred_at)) with (gin_pending_list_limit = 256)$i$]);
select audit.bd_make_log('text_day', array[$i$create index on %s using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, '')), (array[2 * ((occurred_at at time zone 'UTC')::date - date '2000-01-01')])) with (gin_pending_list_limit = 256)$i$]);
select audit.bd_make_log('text_words', array[$i$create index on %s using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, ''))) with (gin_pending_list_limit = 256)$i$]);
select audit.bd_make_log('all', array[
  'create index on %s (occurred_at desc, id desc)',
  'create index on %s (actor_type, action_type, source, resource_type)',
  'create index on %s (actor_id, source, occurred_at desc, id desc) where actor_id is not null',
  'create index on %s (actor_name, occurred_at desc, id desc) where actor_id is null',
  $i$create index on %s using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, '')), audit.time_buckets(occurred_at)) with (gin_pending_list_limit = 256)$i$]);

create or replace function audit.bd_row_action_log() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp set jit = off as $$
begin
  insert into audit.action_log (action, action_type, resource_type, resource_id, resource_label,
    row_count, actor_id, actor_name, actor_type, source, db_user, transaction_id)
  values ('Client updated', 'update', 'client', '1', 'Client 1', 1, '42', 'Maria Lopez',
          'admin', 'web', 'crm_app', 1);
  return null;
end
$$;
alter function audit.bd_row_action_log() owner to audit_owner;

-- as audit_capture's own functions: run as audit_owner, not as the superuser (whose
-- permission checks are shortcuts)
alter function audit.bd_empty_plain() owner to audit_owner;
alter function audit.bd_empty_definer() owner to audit_owner;
alter function audit.bd_empty_search_path() owner to audit_owner;
alter function audit.bd_empty_jit() owner to audit_owner;
