-- Application events that are no table change: logins, logouts, exports, sends.
-- Same context resolution as the capture trigger; one call is one action. Its
-- action_type is its own argument: audit.action_type (an override for table changes)
-- does not apply to events, and an invalid one is still refused, naming it.

create or replace function audit.log_action(
  action_type     text,
  action          text,
  resource_type   text default null,
  resource_id     text default null,
  resource_label  text default null,
  changes         jsonb default '{}',
  context         jsonb default null,
  row_count       integer default 0
) returns bigint
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  ctx audit.context := audit.current_context();
  new_id bigint;
begin
  if action_type is null or not action_type = any (audit.action_types()) then
    perform audit.reject_value('action_type', coalesce(action_type, 'null'), audit.action_types());
  end if;
  if coalesce(btrim(action), '') = '' then
    raise exception 'action (the label) must not be empty'
      using errcode = 'invalid_parameter_value';
  end if;
  -- the log indexes the label and the resource type (btree, text search): refused when
  -- longer than audit.value_limits() allows; a resource label is cut, like a row's
  if length(action) > (audit.value_limits() ->> 'action')::integer
     or length(resource_type) > (audit.value_limits() ->> 'resource_type')::integer
     or length(context::text) > (audit.value_limits() ->> 'context')::integer then
    perform audit.check_length('action', action);
    perform audit.check_length('resource_type', resource_type);
    perform audit.check_length('context', context::text);
  end if;
  if row_count is null or row_count < 0 then
    raise exception 'row_count is %; expected 0 or more', coalesce(row_count::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  if changes is not null and jsonb_typeof(changes) <> 'object' then
    raise exception 'changes must be a JSON object, not %', jsonb_typeof(changes)
      using errcode = 'invalid_parameter_value';
  end if;
  if context is not null and jsonb_typeof(context) <> 'object' then
    raise exception 'context must be a JSON object, not %', jsonb_typeof(context)
      using errcode = 'invalid_parameter_value';
  end if;

  -- the transaction id before the action's id: audit.seal() relies on every action's
  -- transaction having one when it draws its id (17_seal.sql); an event may be the
  -- first write of its transaction, and the INSERT below draws the id first
  perform txid_current();
  insert into audit.action_log as l (
    action, action_type, resource_type, resource_id, resource_label, row_count,
    actor_id, actor_name, actor_type, source, changes, db_user, transaction_id,
    request_id, context, application_name, client_addr)
  values (
    action, action_type, resource_type, resource_id, audit.capped_label(resource_label), row_count,
    ctx.actor_id, ctx.actor_name, ctx.actor_type, ctx.source, coalesce(changes, '{}'),
    ctx.db_user, txid_current(), ctx.request_id,
    -- the transaction's audit.context, with the event's own keys on top
    case when ctx.context is null and log_action.context is null then null
         else coalesce(ctx.context, '{}') || coalesce(log_action.context, '{}') end,
    nullif(current_setting('application_name'), ''), inet_client_addr())
  returning l.id into new_id;
  return new_id;
end
$$;
comment on function audit.log_action(text, text, text, text, text, jsonb, jsonb, integer) is
  'Records an application event (login, logout, export, send, ...) as one action with the transaction''s audit context; returns its id.';
