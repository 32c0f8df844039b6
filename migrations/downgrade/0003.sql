-- Back to revision 0002's unpartitioned log. PLACEHOLDER (helper A's first commit;
-- helper E owns it): every row is COPIED into plain tables (a partitioned table cannot
-- become one table without it), under the ACCESS EXCLUSIVE lock of the log.
set local role audit_owner;
drop view if exists audit.log_partitions;
drop function if exists audit.maintain(integer), audit.prepare_partitions(date, date),
  audit.prepare_months(date, date), audit.move_default_rows(), audit.make_month_partitions(date),
  audit.make_default_partitions(), audit.guard_partition(regclass), audit.legacy_chunk_bound(),
  audit.capture_query(regclass, text, text, text, text, text);
do $$
declare
  idx regclass;
  last_id bigint;
  called boolean;
begin
  if (select c.relkind from pg_class c where c.oid = 'audit.action_log'::regclass) <> 'p' then
    return;
  end if;
  for idx in select i.indexrelid::regclass from pg_index i
             where i.indrelid in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass) loop
    execute format('alter index %s rename to %I', idx, 'old_' || idx::oid);
  end loop;
  alter sequence audit.action_log_id_seq rename to action_log_old_id_seq;
  alter table audit.action_log rename to action_log_old;
  alter table audit.action_item_chunk rename to action_item_chunk_old;
  create table audit.action_log (
    id                bigint generated always as identity primary key,
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
    client_addr       inet
  );
  create table audit.action_item_chunk (
    action_id      bigint not null,
    first_item     integer not null check (first_item >= 1),
    item_count     integer not null check (item_count between 1 and 1000),
    resource_type  text not null,
    operation      text not null check (operation in ('INSERT', 'UPDATE', 'DELETE')),
    changed_columns text[],
    items          text not null,
    resource_ids   text[],
    primary key (action_id, first_item)
  );
  insert into audit.action_log overriding system value select * from audit.action_log_old;
  insert into audit.action_item_chunk
  select action_id, first_item, item_count, resource_type, operation, changed_columns, items, resource_ids
  from audit.action_item_chunk_old;
  select s.last_value, s.is_called into last_id, called from audit.action_log_old_id_seq s;
  perform setval('audit.action_log_id_seq', last_id, called);
  drop table audit.action_log_old, audit.action_item_chunk_old;  -- with their partitions
  -- revision 0002's indexes, comments, triggers and grants (its state files ran before
  -- this file, on the partitioned tables)
  create index action_log_occurred_at_idx on audit.action_log (occurred_at desc, id desc);
  create index action_log_actor_source_idx on audit.action_log (actor_id, source, occurred_at desc, id desc) where actor_id is not null;
  create index action_log_actor_name_idx on audit.action_log (actor_name, occurred_at desc, id desc) where actor_id is null;
  create index action_log_kind_idx on audit.action_log (actor_type, action_type, source, resource_type);
  create index action_log_text_time_idx on audit.action_log using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, '')), audit.time_buckets(occurred_at));
  create trigger action_log_append_only before update or delete on audit.action_log
    for each row execute function audit.refuse_change();
  create trigger action_log_no_truncate before truncate on audit.action_log
    for each statement execute function audit.refuse_change();
  create trigger action_item_chunk_append_only before update or delete on audit.action_item_chunk
    for each row execute function audit.refuse_change();
  create trigger action_item_chunk_no_truncate before truncate on audit.action_item_chunk
    for each statement execute function audit.refuse_change();
  grant select on audit.action_log, audit.action_item_chunk to audit_reader;
end
$$;
alter table audit.batch_action drop column if exists occurred_at;
reset role;
