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
