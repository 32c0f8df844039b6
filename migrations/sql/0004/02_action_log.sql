-- The log: one row of audit.action_log is one action; audit.action_item_chunk keeps the
-- rows a many-row action affected, read through audit.action_items(). Both are
-- append-only (audit.refuse_change below).
--
-- Both are partitioned by month of the action's time (UTC calendar months): a month is
-- one partition of each, audit.action_log_pYYYY_MM and audit.action_item_chunk_pYYYY_MM,
-- created and dropped together; a default partition of each catches what no month
-- holds. 14_partitions.sql creates them (audit.maintain(), audit.prepare_partitions()).
-- A chunk carries its ACTION's occurred_at, so it lives in its action's month however
-- late a batch writes it; the action's occurred_at never changes after its insert.

-- No table CHECK (01_vocabulary.sql says why). That an action about many rows names none
-- of them (resource_id null when row_count > 1) is the capture functions' rule.
create table if not exists audit.action_log (
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

comment on table audit.action_log is
  'audit_capture: one row per action (a statement on a tracked table, a batch of statements, or an application event). Append-only.';
comment on column audit.action_log.id is 'Increasing action id; with occurred_at, the key of the viewer''s pagination.';
comment on column audit.action_log.occurred_at is 'When the statement or event happened (statement_timestamp()); for a batch, its first statement. The partition key (UTC months); never changes after the insert.';
comment on column audit.action_log.action is 'Display label, e.g. "Client updated", "Batch client deletion", "LawRuler login".';
comment on column audit.action_log.action_type is 'One of audit.action_types(): create, update, delete, status_change, import, login, logout, export, send.';
comment on column audit.action_log.resource_type is 'Kind of thing acted on (client, campaign, case, ...), from audit.tracked_table or the event.';
comment on column audit.action_log.resource_id is 'Primary key of the one affected row, as text (a composite key as a row literal); null when the action covers many rows.';
comment on column audit.action_log.resource_label is 'The affected row''s label column value, where one is configured.';
comment on column audit.action_log.row_count is 'Rows the action covers; each is an item in audit.action_items(id). 0 for an event.';
comment on column audit.action_log.actor_id is 'audit.actor_id of the transaction.';
comment on column audit.action_log.actor_name is 'audit.actor_name of the transaction; the database role when no context was set.';
comment on column audit.action_log.actor_type is 'admin, client or system (system when no context was set).';
comment on column audit.action_log.source is 'web, api, ai or mobile; null when no context was set (a direct database change).';
comment on column audit.action_log.changes is 'Update: only the changed columns as {"col": {"old": .., "new": ..}}; create: the new row; delete: the old row; many rows: a summary. Redacted values read "[redacted]".';
comment on column audit.action_log.db_user is 'The database role that made the change: the SET ROLE role if any, else the session user. Not the function owner.';
comment on column audit.action_log.transaction_id is 'txid_current() of the transaction that made the change (the same number as pg_current_xact_id()).';
comment on column audit.action_log.request_id is 'audit.request_id of the transaction: a correlation id.';
comment on column audit.action_log.context is 'Free application metadata: audit.context merged with the event''s own context.';
comment on column audit.action_log.table_name is 'The tracked table, schema-qualified, at the time of the action; null for events.';
comment on column audit.action_log.operation is 'The statement behind a table change: INSERT, UPDATE, DELETE or TRUNCATE (for a batch, its first statement); null for an application event.';
comment on column audit.action_log.application_name is 'The session''s application_name.';
comment on column audit.action_log.client_addr is 'The session''s client address (inet_client_addr()); null over a Unix socket.';

create index if not exists action_log_occurred_at_idx
  on audit.action_log (occurred_at desc, id desc);

-- Items: every row an action affected, read with audit.action_items(action_id), which is
-- the contract; this storage is a performance choice. A single-row action stores no
-- item: its one item is its `changes`. A many-row action (or a batch) stores its items
-- in chunks of up to 1,000, one table row per chunk, as compact JSON that TOAST
-- compresses: a bulk statement writes a few dozen rows here, not one per affected row.
--
-- Bulk INSERT and DELETE chunks keep their rows as json_agg() writes them and the rows'
-- ids beside them (resource_ids), rather than pasting each row into a [resource_id, old,
-- new] triple: building the chunks of 100,000 rows took 25% less time (the whole
-- DELETE, about 5%). UPDATE chunks keep [resource_id, old, new] triples, and (from
-- revision 0004 on) the ids in resource_ids as well: every chunk names its rows there,
-- which the index by resource of 20_history.sql reads (audit.history()). No foreign key to action_log on purpose: the capture function
-- writes both in one trigger call, and both tables are append-only, so nothing can
-- orphan a chunk.
create table if not exists audit.action_item_chunk (
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

do $$
begin
  -- lz4 compresses several times faster than the default pglz; use it where the
  -- server was built with it
  if exists (select from pg_settings where name = 'default_toast_compression'
             and 'lz4' = any (enumvals)) then
    alter table audit.action_item_chunk alter column items set compression lz4;
    alter table audit.action_item_chunk alter column resource_ids set compression lz4;
  end if;
end
$$;

comment on table audit.action_item_chunk is
  'audit_capture: the rows affected by many-row actions, up to 1,000 per chunk. Read them with audit.action_items(action_id). Append-only.';
comment on column audit.action_item_chunk.action_id is 'The action (audit.action_log.id).';
comment on column audit.action_item_chunk.occurred_at is 'The action''s occurred_at (not the time the chunk was written): the partition key, so that a chunk lives in its action''s month. ''-infinity'' for a chunk written before the log was partitioned (an upgraded install''s legacy partition).';
comment on column audit.action_item_chunk.first_item is 'item_no of the first item in this chunk; items are numbered 1..row_count within their action.';
comment on column audit.action_item_chunk.item_count is 'How many items the chunk holds.';
comment on column audit.action_item_chunk.resource_type is 'Resource type of the rows'' table.';
comment on column audit.action_item_chunk.operation is 'INSERT, UPDATE or DELETE: the statement that affected the rows.';
comment on column audit.action_item_chunk.changed_columns is 'For an UPDATE: the columns its items changed.';
comment on column audit.action_item_chunk.items is 'JSON text (written without being parsed): an UPDATE''s [[resource_id, old, new], ...], old and new holding the changed columns only; a bulk INSERT''s or DELETE''s [row, ...], the new rows of an INSERT or the old rows of a DELETE. A chunk without resource_ids (an UPDATE''s before revision 0004) holds triples. Redacted values read "[redacted]".';
comment on column audit.action_item_chunk.resource_ids is 'The resource_id of each item, in the same order (null in an UPDATE chunk written before revision 0004: its ids are the triples'' first elements, audit.item_ids(items)). The chunks'' index by resource (20_history.sql) finds a row''s many-row actions through it.';

-- Refused to everyone, the owner included. The one UPDATE allowed is audit.batch growing
-- its action statement by statement: committed history never changes. The row triggers
-- are on the partitioned parents, so PostgreSQL clones them to every partition (they
-- fire as the partition: tg_relid); the TRUNCATE triggers are on the parents and on each
-- partition (14_partitions.sql), since a partition's TRUNCATE does not fire its parent's.
-- The action's occurred_at never changes: an UPDATE of it would move the row to another
-- partition (a DELETE and an INSERT).
create or replace function audit.refuse_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
  -- nested ifs: OLD does not exist in the statement-level (TRUNCATE) case
  if tg_op = 'UPDATE' and tg_level = 'ROW'
     and pg_partition_root(tg_relid) = 'audit.action_log'::regclass then
    if old.transaction_id = txid_current()
       and new.id = old.id and new.transaction_id = old.transaction_id
       and new.occurred_at = old.occurred_at then
      return new;
    end if;
  end if;
  raise exception 'audit.% is append-only: % is not allowed', tg_table_name, tg_op
    using errcode = 'insufficient_privilege',
          hint = 'The audit log keeps its history; nothing in it can be changed or removed.';
end
$$;
comment on function audit.refuse_change() is
  'Trigger function that keeps the log append-only: refuses UPDATE (except of an action the current transaction is still building), DELETE and TRUNCATE.';

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

-- Rows whose primary key an UPDATE changed, noted by a row trigger so that the
-- statement trigger can pair the old and new versions by key. Transient: the statement
-- trigger deletes what it read. Unlogged, since it never outlives a transaction. A note
-- belongs to one statement: its transaction (never reused, where a backend pid is reused
-- by a later session) and the trigger depth its triggers fire at (a statement run inside
-- another's triggers, an ON UPDATE CASCADE, fires one level deeper).
create unlogged table if not exists audit.pending_key_change (
  backend_pid     integer not null,
  relation        oid not null,
  old_key         text not null,
  new_key         text not null,
  transaction_id  bigint not null default pg_catalog.txid_current(),
  trigger_depth   integer not null default 0
);
create index if not exists pending_key_change_statement_idx
  on audit.pending_key_change (transaction_id, trigger_depth, relation);
comment on table audit.pending_key_change is
  'Internal: primary-key changes of the running UPDATE statement, written by audit.capture_key_change() and consumed by the statement''s capture trigger (audit.forget_key_changes()).';
comment on column audit.pending_key_change.backend_pid is 'The session (pg_backend_pid()) whose statement changed the key (informative: notes are matched by transaction and trigger depth).';
comment on column audit.pending_key_change.relation is 'The tracked table.';
comment on column audit.pending_key_change.old_key is 'The row''s primary key before the UPDATE, as text.';
comment on column audit.pending_key_change.new_key is 'The row''s primary key after the UPDATE, as text.';
comment on column audit.pending_key_change.transaction_id is 'The transaction (txid_current()) whose statement changed the key.';
comment on column audit.pending_key_change.trigger_depth is 'pg_trigger_depth() of the statement''s triggers: tells a nested statement''s notes from its outer statement''s.';

-- The TRUNCATE statements being logged: TRUNCATE of a partitioned table (or of an
-- inheritance parent) fires the TRUNCATE triggers of every member too, and several
-- members may be named at once. The first table of a tracked tree whose BEFORE TRUNCATE
-- trigger fires in a statement (its transaction, its trigger depth) notes it here and
-- logs the action; the others find the note and log nothing; the first table's AFTER
-- trigger removes it (audit.capture_truncate()). Written only by audit_owner, so no
-- session can make a TRUNCATE go unlogged.
create unlogged table if not exists audit.pending_truncate (
  transaction_id  bigint not null,
  trigger_depth   integer not null,
  relation        oid not null,
  first_table     oid not null,
  primary key (transaction_id, trigger_depth, relation)
);
comment on table audit.pending_truncate is
  'Internal: the TRUNCATE statements being logged, one row per statement and tracked table, written and removed by audit.capture_truncate().';
comment on column audit.pending_truncate.transaction_id is 'The transaction (txid_current()) of the TRUNCATE.';
comment on column audit.pending_truncate.trigger_depth is 'pg_trigger_depth() of its TRUNCATE triggers: a TRUNCATE run inside a trigger is another statement.';
comment on column audit.pending_truncate.relation is 'The tracked table whose tree is truncated.';
comment on column audit.pending_truncate.first_table is 'The statement''s first table of that tree: the one whose trigger logged it and whose AFTER trigger removes this row.';
