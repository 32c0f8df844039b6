-- The session-variable convention: who acts, and through what, per transaction.
--
--   audit.actor_id, audit.actor_name, audit.actor_type, audit.source, audit.request_id,
--   audit.context (JSON), audit.action_type (override), audit.batch (one action per
--   transaction, with this label).
--
-- Values are transaction-local (SET LOCAL or set_config(..., true)), so a pooled
-- connection never carries one request's actor into the next. An ended SET LOCAL leaves
-- '' behind rather than NULL, so '' means unset everywhere.
--
-- A plain (session-level) SET or ALTER ROLE ... SET of one of them is NOT refused: it
-- cannot be told apart from SET LOCAL inside the transaction (custom variables are not
-- in pg_settings), and refusing it would break writes. It outlives the transaction and
-- so is the actor of every later transaction on that connection that states no context
-- of its own; the helpers never do it (set_config(..., true)). The README shows how to
-- find role and database defaults (pg_db_role_setting).
--
-- Limits (audit.value_limits()) are what the log's indexes can hold (a btree entry is
-- at most 2,704 bytes, a text-search document 1 MB) with room to spare; a longer value
-- is refused with a message naming the variable.

do $$
begin
  if not exists (select from pg_catalog.pg_type t join pg_catalog.pg_namespace n on n.oid = t.typnamespace
                 where n.nspname = 'audit' and t.typname = 'context') then
    create type audit.context as (
      actor_id     text,
      actor_name   text,
      actor_type   text,
      source       text,
      request_id   text,
      context      jsonb,
      action_type  text,
      batch        text,
      db_user      text
    );
  end if;
end
$$;
comment on type audit.context is 'The resolved audit context of the current transaction (see audit.current_context()).';

create or replace function audit.reject_value(variable text, value text, allowed text[])
returns void
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  -- a wrong value can be long: the message quotes its first 100 characters
  raise exception '% is %; expected one of %',
      variable, quote_literal(case when length(value) > 100 then left(value, 99) || '…' else value end),
      array_to_string(allowed, ', ')
    using errcode = 'invalid_parameter_value';
end
$$;
comment on function audit.reject_value(text, text, text[]) is
  'Internal: the error every bad context value gets, naming the variable, the value and the allowed ones: "audit.source is ''webb''; expected one of web, api, ai, mobile".';

-- The Python helpers (audit_capture.context.LIMITS) are tested against this list.
create or replace function audit.value_limits() returns jsonb
language sql immutable parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select '{"audit.actor_id": 200, "audit.actor_name": 200, "audit.request_id": 200,
           "audit.batch": 200, "audit.context": 10000,
           "action": 200, "resource_type": 100, "context": 10000,
           "resource_label": 500}'::jsonb
$$;
comment on function audit.value_limits() is
  'The longest value, in characters, of each audit context variable and audit.log_action argument; a resource_label is cut at its limit (audit.capped_label()), the others are refused.';

create or replace function audit.check_length(variable text, value text) returns void
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  most integer := (audit.value_limits() ->> variable)::integer;
begin
  if length(value) > most then
    raise exception '% is % characters; at most % are allowed', variable,
        to_char(length(value), 'FM999,999,999,990'), to_char(most, 'FM999,999,990')
      using errcode = 'string_data_right_truncation',
            hint = case when variable in ('audit.context', 'context')
                        then 'audit.context is short metadata about the request; the row''s data is in the changes.'
                        else 'The log indexes ids, names and labels: keep them short, and longer details in audit.context.' end;
  end if;
end
$$;
comment on function audit.check_length(text, text) is
  'Internal: raises "audit.actor_name is 3,000 characters; at most 200 are allowed" when a value is longer than its audit.value_limits() entry.';

-- An explicit audit.action_type must agree with what the statement did. 'import' marks
-- inserts; an import's updates and deletes (an upsert) keep their own type. login,
-- logout, export and send are events (audit.log_action), never a table change.
create or replace function audit.allowed_action_types(operation text) returns text[]
language sql immutable parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select case operation
    when 'INSERT' then array['create', 'import']
    when 'UPDATE' then array['update', 'status_change', 'import']
    else array['delete', 'import']  -- DELETE, TRUNCATE
  end
$$;
comment on function audit.allowed_action_types(text) is
  'The values audit.action_type may take for an INSERT, UPDATE, DELETE or TRUNCATE (import is allowed on all and marks only inserts).';

create or replace function audit.check_action_type(override text, operation text, target regclass)
returns void
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  if override is not null and not override = any (audit.allowed_action_types(operation)) then
    raise exception 'audit.action_type is % for an % on %; expected one of %',
        quote_literal(override), operation, target,
        array_to_string(audit.allowed_action_types(operation), ', ')
      using errcode = 'invalid_parameter_value',
            hint = 'audit.action_type marks inserts as an import; record logins, logouts, exports and sends with audit.log_action().';
  end if;
end
$$;
comment on function audit.check_action_type(text, text, regclass) is
  'Internal: raises when audit.action_type does not fit the statement (see audit.allowed_action_types()): "audit.action_type is ''delete'' for an INSERT on public.clients; expected one of create, import".';

create or replace function audit.check_context_object(context jsonb) returns void
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if context is not null and jsonb_typeof(context) <> 'object' then
    raise exception 'audit.context is a JSON %, not an object: %', jsonb_typeof(context),
        left(context::text, 200)
      using errcode = 'invalid_parameter_value',
            hint = 'Give the context as an object of keys and values, for example {"ticket": 4312}.';
  end if;
end
$$;
comment on function audit.check_context_object(jsonb) is
  'Internal: raises when audit.context is valid JSON but not an object ([1], "x", 42): free application metadata, but its keys are what the viewer shows (and what the Python helpers accept: a mapping).';

create or replace function audit.current_context() returns audit.context
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  c audit.context;
  raw_context text := nullif(current_setting('audit.context', true), '');
begin
  -- SET ROLE's role when there is one: inside a SECURITY DEFINER function current_user
  -- is the function's owner, so it would say nothing about who made the change.
  c.db_user := coalesce(nullif(current_setting('role'), 'none'), session_user::text);

  c.actor_id := nullif(current_setting('audit.actor_id', true), '');
  c.actor_type := coalesce(nullif(current_setting('audit.actor_type', true), ''), 'system');
  c.actor_name := coalesce(nullif(current_setting('audit.actor_name', true), ''), c.actor_id, c.db_user);
  c.source := nullif(current_setting('audit.source', true), '');
  c.request_id := nullif(current_setting('audit.request_id', true), '');
  c.action_type := nullif(current_setting('audit.action_type', true), '');
  c.batch := nullif(current_setting('audit.batch', true), '');

  -- one test, whose limits PostgreSQL folds into constants once, before five calls
  -- that would cost more than the rest of this function together
  if length(c.actor_id) > (audit.value_limits() ->> 'audit.actor_id')::integer
     or length(c.actor_name) > (audit.value_limits() ->> 'audit.actor_name')::integer
     or length(c.request_id) > (audit.value_limits() ->> 'audit.request_id')::integer
     or length(c.batch) > (audit.value_limits() ->> 'audit.batch')::integer
     or length(raw_context) > (audit.value_limits() ->> 'audit.context')::integer then
    perform audit.check_length('audit.actor_id', c.actor_id);
    perform audit.check_length('audit.actor_name', c.actor_name);
    perform audit.check_length('audit.request_id', c.request_id);
    perform audit.check_length('audit.batch', c.batch);
    perform audit.check_length('audit.context', raw_context);
  end if;
  if not c.actor_type = any (audit.actor_types()) then
    perform audit.reject_value('audit.actor_type', c.actor_type, audit.actor_types());
  end if;
  if c.source is not null and not c.source = any (audit.sources()) then
    perform audit.reject_value('audit.source', c.source, audit.sources());
  end if;
  if c.action_type is not null and not c.action_type = any (audit.action_types()) then
    perform audit.reject_value('audit.action_type', c.action_type, audit.action_types());
  end if;
  if raw_context is not null then
    begin
      c.context := raw_context::jsonb;
    exception when data_exception then
      -- not JSON at all, or JSON that jsonb cannot hold (a "\u0000" escape)
      raise exception 'audit.context is not valid JSON for the log (%): %', sqlerrm,
          left(raw_context, 200)
        using errcode = 'invalid_parameter_value',
              hint = 'Give audit.context as a JSON object whose strings hold no \u0000.';
    end;
    perform audit.check_context_object(c.context);
  end if;
  return c;
end
$$;
comment on function audit.current_context() is
  'The validated audit context of the current transaction, with the contract''s defaults (no context: actor_type system, actor_name the database role, source null); raises on an unknown actor_type, source or action_type, and on a value longer than its audit.value_limits() entry.';

create or replace function audit.set_context(
  actor_id    text default null,
  actor_name  text default null,
  actor_type  text default null,
  source      text default null,
  request_id  text default null,
  context     jsonb default null
) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if actor_type is not null and not actor_type = any (audit.actor_types()) then
    perform audit.reject_value('audit.actor_type', actor_type, audit.actor_types());
  end if;
  if source is not null and not source = any (audit.sources()) then
    perform audit.reject_value('audit.source', source, audit.sources());
  end if;
  perform audit.check_context_object(context);
  if length(actor_id) > (audit.value_limits() ->> 'audit.actor_id')::integer
     or length(actor_name) > (audit.value_limits() ->> 'audit.actor_name')::integer
     or length(request_id) > (audit.value_limits() ->> 'audit.request_id')::integer
     or length(context::text) > (audit.value_limits() ->> 'audit.context')::integer then
    perform audit.check_length('audit.actor_id', actor_id);
    perform audit.check_length('audit.actor_name', actor_name);
    perform audit.check_length('audit.request_id', request_id);
    perform audit.check_length('audit.context', context::text);
  end if;
  perform set_config('audit.actor_id', coalesce(actor_id, ''), true);
  perform set_config('audit.actor_name', coalesce(actor_name, ''), true);
  perform set_config('audit.actor_type', coalesce(actor_type, ''), true);
  perform set_config('audit.source', coalesce(source, ''), true);
  perform set_config('audit.request_id', coalesce(request_id, ''), true);
  perform set_config('audit.context', coalesce(context::text, ''), true);
end
$$;
comment on function audit.set_context(text, text, text, text, text, jsonb) is
  'Sets the whole audit context (actor, source, request id, metadata) for the current transaction only: every argument is stored, null clears its variable. Raises on an unknown actor_type or source, or a value over its audit.value_limits() entry.';

-- It reads the context values as c.*. When it is false the statement takes the
-- many-row path, whose audit.current_context() and audit.check_action_type() raise the
-- named error. The vocabularies and limits are copied in as constants.
create or replace function audit.context_ok_sql(operation text) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select format(
    $c$coalesce(current_setting('audit.batch', true), '') = ''
  and c.actor_type = any (%L) and (c.source is null or c.source = any (%L))
  and (c.kind_override is null or c.kind_override = any (%L))
  and coalesce(length(c.actor_id), 0) <= %s and coalesce(length(c.actor_name), 0) <= %s
  and coalesce(length(c.request_id), 0) <= %s$c$,
    audit.actor_types(), audit.sources(), audit.allowed_action_types(operation),
    audit.value_limits() ->> 'audit.actor_id', audit.value_limits() ->> 'audit.actor_name',
    audit.value_limits() ->> 'audit.request_id')
$$;
comment on function audit.context_ok_sql(text) is
  'Internal: SQL condition under which the one-row capture query may write its action (no batch; context values known, fitting the statement and within their limits).';

-- The actions audit.batch has opened, one row per batch action, so that the action a
-- batch grows can only be one that a batch opened in this same transaction: the
-- audit.batch_action_id variable that points at it can be set by anyone, this table
-- only by the capture functions. A row outlives its transaction only until the next
-- batch begins (audit.note_batch_action() removes those of ended transactions);
-- transaction ids never repeat, so a left row can never match. Unlogged: it is never
-- needed after a crash.
create unlogged table if not exists audit.batch_action (
  action_id       bigint primary key,
  transaction_id  bigint not null,
  occurred_at     timestamptz not null default pg_catalog.statement_timestamp()
);
comment on table audit.batch_action is
  'Internal: the actions audit.batch opened, with their transaction (txid_current()); what audit.batch_action_id is checked against.';
comment on column audit.batch_action.action_id is 'The batch''s action (audit.action_log.id).';
comment on column audit.batch_action.transaction_id is 'The transaction that opened it.';
comment on column audit.batch_action.occurred_at is 'The action''s occurred_at (the time of the batch''s first statement): its later statements write their chunks with it, into the action''s month, and find the action''s partition by it.';

create or replace function audit.batch_action_setting() returns bigint
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  raw text := nullif(current_setting('audit.batch_action_id', true), '');
begin
  if raw is not null and raw !~ '^[0-9]{1,18}$' then
    raise exception 'audit.batch_action_id is %; it is the number of the action audit.batch is building, kept by the capture trigger',
        quote_literal(case when length(raw) > 100 then left(raw, 99) || '…' else raw end)
      using errcode = 'invalid_parameter_value',
            hint = 'Leave audit.batch_action_id to the capture trigger; clear it with set_config(''audit.batch_action_id'', '''', true) to start a new batch action.';
  end if;
  return raw::bigint;
end
$$;
comment on function audit.batch_action_setting() is
  'Internal: audit.batch_action_id (the capture trigger''s record of the action audit.batch is building in this transaction) as a number, null when unset or ''''; raises, naming it, when it is not one.';

-- The action that audit.batch is building in this transaction, if any: the one
-- audit.batch_action_id names, when a batch of this transaction opened it under this
-- label. Anything else (a forged id, an event's, an earlier batch's under another
-- label) is no open batch: the statement opens a new one.
create or replace function audit.open_batch(batch_label text, out action_id bigint, out row_count integer)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select l.id, l.row_count
  from audit.batch_action b
  join audit.action_log l on l.id = b.action_id and l.occurred_at = b.occurred_at
  where b.action_id = audit.batch_action_setting()
    and b.transaction_id = txid_current()
    and l.transaction_id = txid_current()
    and l.action = batch_label
$$;
comment on function audit.open_batch(text) is
  'Internal: id and row count of the action audit.batch is building in this transaction (nulls when none).';

-- The rows of ended transactions are skipped when another session holds them, never
-- waited for.
create or replace function audit.note_batch_action(action_id bigint) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  delete from audit.batch_action b
  where b.action_id in (select e.action_id from audit.batch_action e
                        where e.transaction_id < txid_snapshot_xmin(txid_current_snapshot())
                        for update skip locked);
  insert into audit.batch_action (action_id, transaction_id)
  values (note_batch_action.action_id, txid_current());
  perform set_config('audit.batch_action_id', note_batch_action.action_id::text, true);
end
$$;
comment on function audit.note_batch_action(bigint) is
  'Internal: records that audit.batch opened this action in the current transaction (audit.batch_action_id and audit.batch_action); forgets those of ended transactions.';
