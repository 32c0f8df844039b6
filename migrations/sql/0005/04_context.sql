-- The session-variable convention: who acts, and through what, per transaction.
--
--   audit.actor_id, audit.actor_name, audit.actor_type, audit.source, audit.request_id,
--   audit.context (JSON), audit.action_type (override), audit.batch (one action per
--   transaction, with this label).
--
-- Values are transaction-local (SET LOCAL or set_config(..., true)), so a pooled
-- connection never carries one request's actor into the next. An ended SET LOCAL leaves
-- '' behind rather than NULL, so '' means unset everywhere.

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

-- Raises the error every bad context value gets: it names the variable, the value and
-- the allowed values.
create or replace function audit.reject_value(variable text, value text, allowed text[])
returns void
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception '% is %; expected one of %',
      variable, quote_literal(value), array_to_string(allowed, ', ')
    using errcode = 'invalid_parameter_value';
end
$$;
comment on function audit.reject_value(text, text, text[]) is
  'Internal: raises "audit.source is ''webb''; expected one of web, api, ai, mobile".';

-- audit.context is free application metadata, but a JSON object: its keys are what the
-- viewer shows (and what the Python helpers accept: a mapping).
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
  'Internal: raises when audit.context is valid JSON but not an object ([1], "x", 42).';

-- The current transaction's context, validated, with the defaults of the contract:
-- no context gives actor_type system, actor_name the database role, source null.
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
    exception when invalid_text_representation then
      raise exception 'audit.context is not valid JSON: %', left(raw_context, 200)
        using errcode = 'invalid_parameter_value';
    end;
    perform audit.check_context_object(c.context);
  end if;
  return c;
end
$$;
comment on function audit.current_context() is
  'The validated audit context of the current transaction; raises on an unknown actor_type, source or action_type.';

-- Sets the whole context for the current transaction. Every argument is stored
-- (null clears the variable), so a call states the context completely.
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
  perform set_config('audit.actor_id', coalesce(actor_id, ''), true);
  perform set_config('audit.actor_name', coalesce(actor_name, ''), true);
  perform set_config('audit.actor_type', coalesce(actor_type, ''), true);
  perform set_config('audit.source', coalesce(source, ''), true);
  perform set_config('audit.request_id', coalesce(request_id, ''), true);
  perform set_config('audit.context', coalesce(context::text, ''), true);
end
$$;
comment on function audit.set_context(text, text, text, text, text, jsonb) is
  'Sets the audit context (actor, source, request id, metadata) for the current transaction only. Raises on an unknown actor_type or source.';
