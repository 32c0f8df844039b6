-- The classic audit trigger, as the peer bench/write_overhead.py measures audit_capture
-- against: our own reference in the style of 2ndQuadrant's audit-trigger, the oldest and
-- simplest design DBAs know. A row-level AFTER trigger turns each changed row into
-- hstore and inserts one row per changed row into one log with a few btree indexes;
-- nothing is grouped into actions, no context is read, nothing is redacted.
--
-- Installed by the benchmark (a superuser) into the benchmark's database only; the
-- product never ships it. classic_audit.audit_table(t) attaches it to a table.

create extension if not exists hstore;  -- in PostgreSQL's contrib, and in the PG 18 wheel

create schema if not exists classic_audit;
revoke all on schema classic_audit from public;
comment on schema classic_audit is
  'The classic row-level audit trigger (2ndQuadrant audit-trigger style): the reference '
  'bench/write_overhead.py measures audit_capture against. Benchmark only.';

create table classic_audit.logged_actions (
  -- one row per changed row (or per TRUNCATE statement), in insertion order
  event_id           bigserial primary key,
  -- the table, by name as it was then and by oid (the oid is what the index serves)
  schema_name        text not null,
  table_name         text not null,
  relid              oid not null,
  -- the login role: inside the security definer trigger current_user is the owner
  session_user_name  text,
  -- when: transaction start, statement start, and the trigger's own clock reading
  action_tstamp_tx   timestamptz not null,
  action_tstamp_stm  timestamptz not null,
  action_tstamp_clk  timestamptz not null,
  transaction_id     bigint,
  -- where the statement came from
  application_name   text,
  client_addr        inet,
  client_port        integer,
  -- the client's whole query text, logged by default as the original does (it can
  -- leak secrets into the log: one reason audit_capture does not)
  client_query       text,
  -- I insert, U update, D delete, T truncate
  action             char(1) not null check (action in ('I', 'U', 'D', 'T')),
  -- the whole row: the new one for an INSERT, the old one for an UPDATE or DELETE;
  -- null for a statement-level row
  row_data           hstore,
  -- an UPDATE's changed columns with their new values; null otherwise
  changed_fields     hstore,
  -- true for a row written by the statement-level (TRUNCATE) trigger
  statement_only     boolean not null
);

comment on table classic_audit.logged_actions is
  'One row per row changed in an audited table (classic_audit.log_change()), or per '
  'TRUNCATE. The classic design: no actions, no context, no redaction.';
comment on column classic_audit.logged_actions.event_id is 'Increasing id of the logged change';
comment on column classic_audit.logged_actions.schema_name is 'Schema of the audited table';
comment on column classic_audit.logged_actions.table_name is 'Name of the audited table, unqualified';
comment on column classic_audit.logged_actions.relid is
  'The audited table''s oid (changes when the table is dropped and created again)';
comment on column classic_audit.logged_actions.session_user_name is
  'The session''s login role (the security definer trigger runs as its owner)';
comment on column classic_audit.logged_actions.action_tstamp_tx is 'When the transaction started';
comment on column classic_audit.logged_actions.action_tstamp_stm is 'When the statement started';
comment on column classic_audit.logged_actions.action_tstamp_clk is 'When the trigger ran (wall clock)';
comment on column classic_audit.logged_actions.transaction_id is
  'The transaction''s id (txid_current(); unique together with action_tstamp_tx)';
comment on column classic_audit.logged_actions.application_name is 'The session''s application_name';
comment on column classic_audit.logged_actions.client_addr is 'Client address; null over a unix socket';
comment on column classic_audit.logged_actions.client_port is 'Client port; null over a unix socket';
comment on column classic_audit.logged_actions.client_query is
  'The top-level query text the client sent (current_query()), perhaps several statements';
comment on column classic_audit.logged_actions.action is 'I insert, U update, D delete, T truncate';
comment on column classic_audit.logged_actions.row_data is
  'The row as hstore: the new row of an INSERT, the old row of an UPDATE or DELETE';
comment on column classic_audit.logged_actions.changed_fields is
  'Of an UPDATE, the columns it changed with their new values (hstore(new) - hstore(old))';
comment on column classic_audit.logged_actions.statement_only is
  'True for a statement-level row (TRUNCATE), false for a row-level one';

-- the three secondary indexes of the classic design
create index logged_actions_relid_idx on classic_audit.logged_actions (relid);
create index logged_actions_action_tstamp_tx_idx on classic_audit.logged_actions (action_tstamp_tx);
create index logged_actions_action_idx on classic_audit.logged_actions (action);

create function classic_audit.log_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, public as $$
-- public in the search path: hstore's type, functions and operators live there
declare
  row_data hstore;
  changed_fields hstore;
begin
  if tg_level = 'STATEMENT' then
    row_data := null;  -- a TRUNCATE: the statement only, no rows
  elsif tg_op = 'UPDATE' then
    row_data := hstore(old);
    changed_fields := hstore(new) - row_data;
    -- An UPDATE that changed nothing logs nothing. The original skips an empty diff
    -- too (there, once its ignored columns are removed), and audit_capture writes no
    -- action for it either: both sides of the comparison skip the same statements.
    if changed_fields = ''::hstore then
      return null;
    end if;
  elsif tg_op = 'DELETE' then
    row_data := hstore(old);
  else
    row_data := hstore(new);
  end if;
  insert into classic_audit.logged_actions (
    schema_name, table_name, relid, session_user_name, action_tstamp_tx, action_tstamp_stm,
    action_tstamp_clk, transaction_id, application_name, client_addr, client_port,
    client_query, action, row_data, changed_fields, statement_only)
  values (
    tg_table_schema, tg_table_name, tg_relid, session_user, current_timestamp,
    statement_timestamp(), clock_timestamp(), txid_current(),
    current_setting('application_name'), inet_client_addr(), inet_client_port(),
    current_query(), left(tg_op, 1), row_data, changed_fields, tg_level = 'STATEMENT');
  return null;
end
$$;

comment on function classic_audit.log_change() is
  'The classic audit trigger function: for each changed row (AFTER ... FOR EACH ROW) one '
  'row of classic_audit.logged_actions with the row as hstore and an UPDATE''s diff; as '
  'an AFTER TRUNCATE statement trigger, one row for the statement.';

create function classic_audit.audit_table(target regclass) returns void
language plpgsql as $$
begin
  execute format('drop trigger if exists classic_audit_row on %s', target);
  execute format('drop trigger if exists classic_audit_truncate on %s', target);
  execute format('create trigger classic_audit_row after insert or update or delete on %s '
                 'for each row execute function classic_audit.log_change()', target);
  execute format('create trigger classic_audit_truncate after truncate on %s '
                 'for each statement execute function classic_audit.log_change()', target);
end
$$;

comment on function classic_audit.audit_table(regclass) is
  'Audits a table the classic way: a row-level trigger for INSERT, UPDATE and DELETE and '
  'a statement-level one for TRUNCATE, both running classic_audit.log_change(). Run '
  'again, it replaces them.';
