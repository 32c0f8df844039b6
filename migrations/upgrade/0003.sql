-- Revision 0003 partitions the log by month (triggers/02_action_log.sql,
-- 14_partitions.sql). PLACEHOLDER (helper A's first commit; helper E replaces it with an
-- upgrade that attaches the old tables without rewriting them): the old tables are
-- COPIED, under their ACCESS EXCLUSIVE lock, into the legacy partition pair of the new
-- partitioned tables (from MINVALUE to the next month boundary, as the contract's
-- legacy pair), their chunks with occurred_at '-infinity'; ids continue. The state
-- files then find the parents and add the rest (indexes, triggers, default and month
-- partitions).
set local role audit_owner;
do $$
declare
  idx regclass;
  bound text := to_char(date_trunc('month', now() at time zone 'UTC') + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
  last_id bigint;
  called boolean;
begin
  if (select c.relkind from pg_class c where c.oid = 'audit.action_log'::regclass) = 'p' then
    return;
  end if;
  -- an empty log (a fresh install through the chain) needs no legacy pair: the state
  -- files create the partitioned tables as a fresh install does
  -- (and ids never given out)
  if not exists (select from audit.action_log) and not exists (select from audit.action_item_chunk)
     and not (select s.is_called from audit.action_log_id_seq s) then
    drop table audit.action_log, audit.action_item_chunk;
    return;
  end if;
  for idx in select i.indexrelid::regclass from pg_index i
             where i.indrelid in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass) loop
    execute format('alter index %s rename to %I', idx, 'old_' || idx::oid);
  end loop;
  alter sequence audit.action_log_id_seq rename to action_log_old_id_seq;
  execute (select string_agg(format('alter table %s rename constraint %I to %I', c.conrelid::regclass, c.conname, 'old_' || c.oid), '; ')
           from pg_constraint c
           where c.conrelid in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass) and c.contype = 'c');
  alter table audit.action_log rename to action_log_old;
  alter table audit.action_item_chunk rename to action_item_chunk_old;
  create table audit.action_log (
    id                bigint generated always as identity,
    occurred_at       timestamptz not null default pg_catalog.statement_timestamp(),
    action            audit.label not null,
    action_type       audit.action_type not null,
    resource_type     text,
    resource_id       text,
    resource_label    text,
    row_count         audit.row_count not null default 0,
    actor_id          text,
    actor_name        text,
    actor_type        audit.actor_type not null,
    source            audit.source,
    changes           jsonb not null default '{}',
    db_user           text not null,
    transaction_id    bigint not null,
    request_id        text,
    context           jsonb,
    table_name        text,
    operation         audit.operation,
    application_name  text,
    client_addr       inet,
    primary key (id, occurred_at)
  ) partition by range (occurred_at);
  create table audit.action_item_chunk (
    action_id      bigint not null,
    occurred_at    timestamptz not null,
    first_item     integer not null check (first_item >= 1),
    item_count     integer not null check (item_count between 1 and 1000),
    resource_type  text not null,
    operation      text not null check (operation in ('INSERT', 'UPDATE', 'DELETE')),
    changed_columns text[],
    items          text not null,
    resource_ids   text[],
    primary key (action_id, first_item, occurred_at)
  ) partition by range (occurred_at);
  execute format('create table audit.action_log_legacy partition of audit.action_log for values from (minvalue) to (%L)', bound);
  execute format('create table audit.action_item_chunk_legacy partition of audit.action_item_chunk for values from (minvalue) to (%L)', bound);
  insert into audit.action_log overriding system value select * from audit.action_log_old;
  insert into audit.action_item_chunk (action_id, occurred_at, first_item, item_count, resource_type, operation,
                                       changed_columns, items, resource_ids)
  select action_id, '-infinity', first_item, item_count, resource_type, operation, changed_columns, items, resource_ids
  from audit.action_item_chunk_old;
  select s.last_value, s.is_called into last_id, called from audit.action_log_old_id_seq s;
  perform setval('audit.action_log_id_seq', last_id, called);
  drop table audit.action_log_old, audit.action_item_chunk_old;
end
$$;
-- replaced by the 6-argument one (the chunks carry their action's occurred_at)
drop function if exists audit.capture_query(regclass, text, text, text, text);
alter table audit.batch_action add column if not exists occurred_at timestamptz not null default pg_catalog.statement_timestamp();
reset role;
