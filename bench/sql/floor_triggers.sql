-- Reference triggers for bench/write_floor.py: what the cheapest conceivable capture
-- of a one-row UPDATE costs on this server, to set beside audit_capture's own.
-- bench/write_floor.py attaches each function to its own copy of the benchmark table.
--
--   empty      a SECURITY DEFINER statement trigger with both transition tables that
--              does nothing: the price of being called at all
--   log_bare   the same, inserting one constant action into a copy of audit.action_log
--              that has only its primary key: the price of writing any row at all
--   log_full   the same, inserting one constant action into audit.action_log itself,
--              with the viewer's indexes: the floor of any design that writes the
--              action into the indexed log at commit (audit_capture's design)

create table if not exists audit.bench_log_bare (like audit.action_log including defaults including identity);
alter table audit.bench_log_bare drop constraint if exists bench_log_bare_pkey;
alter table audit.bench_log_bare add constraint bench_log_bare_pkey primary key (id);
alter table audit.bench_log_bare owner to audit_owner;

create or replace function audit.bench_floor_empty() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp set jit = off as $$
begin
  return null;
end
$$;

create or replace function audit.bench_floor_log_bare() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp set jit = off as $$
begin
  insert into audit.bench_log_bare (action, action_type, resource_type, resource_id,
    resource_label, row_count, actor_type, db_user, transaction_id)
  values ('Client updated', 'update', 'client', '1', 'Client 1', 1, 'system', 'postgres', 1);
  return null;
end
$$;

create or replace function audit.bench_floor_log_full() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp set jit = off as $$
begin
  insert into audit.action_log (action, action_type, resource_type, resource_id,
    resource_label, row_count, actor_type, db_user, transaction_id)
  values ('Client updated', 'update', 'client', '1', 'Client 1', 1, 'system', 'postgres', 1);
  return null;
end
$$;

alter function audit.bench_floor_empty() owner to audit_owner;
alter function audit.bench_floor_log_bare() owner to audit_owner;
alter function audit.bench_floor_log_full() owner to audit_owner;

-- The bulk DELETE's floor: what keeping 100,000 deleted rows costs before any audit
-- design choice. bench/write_floor.py attaches these to copies of the table as DELETE
-- triggers (bench_floor_empty above is the price of the transition table alone).
--
--   rows_copy  copies the rows as they are into an unindexed table of the same row
--              type: the cheapest way to keep them (a history table per tracked table)
--   rows_json  turns them into JSON in chunks of 1,000, as audit_capture does, and
--              stores nothing: the price of the format audit.action_items speaks

create table if not exists audit.bench_rows_copy (like public.clients_plain);
alter table audit.bench_rows_copy owner to audit_owner;

create or replace function audit.bench_floor_rows_copy() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp set jit = off as $$
begin
  insert into audit.bench_rows_copy select * from audit_old_rows;
  return null;
end
$$;

create or replace function audit.bench_floor_rows_json() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp set jit = off as $$
declare
  chunk_bytes bigint;
begin
  perform set_config('work_mem', '64MB', true);  -- as audit_capture gives its chunk query
  select sum(length(items)) into chunk_bytes
  from (select array_agg(k) as ids, json_agg(r)::text as items
        from (select row_number() over () - 1 as i, o.id::text as k, o as r
              from audit_old_rows o) d
        group by i / 1000) chunks;
  return null;
end
$$;

alter function audit.bench_floor_rows_copy() owner to audit_owner;
alter function audit.bench_floor_rows_json() owner to audit_owner;
