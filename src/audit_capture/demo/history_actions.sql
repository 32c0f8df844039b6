-- The demo's generated history (audit-capture demo --history N): N older actions of the
-- sample CRM in one INSERT ... SELECT, run by the superuser that owns the demo's server,
-- before the month of activity (so that ids keep growing with time, as the viewer
-- expects). Every row says what it is: context {"demo": "generated history"}.
--
-- Parameters: n (how many), end_at (the newest action's bound: before the month of
-- activity), days (how far back the history reaches), clients, cases, tasks and
-- batch_jobs (the ids the history's resources take; the CRM's own rows come after),
-- first_names, last_names, campaigns (the CRM's campaign names; campaign k is
-- campaigns[k]), seed (request ids). random() is seeded by the caller (setseed).
--
-- Actors (about 2,000, skewed): 40 admins (the first three, the activity's own, do a
-- third of the admins' work; 31 to 40 left the firm early on), 1,950 clients (a few
-- busy, most seen once or twice; 1,701 and above are departed), the nightly scheduler,
-- the intake and follow-up AI agents, the case sync, and direct database changes (no
-- context: the database role, source null). Time: more recent days are busier, most
-- weekend work moves to the week before it, office hours for people, the small hours
-- for the scheduler and the sync.
--
-- The statement is one pipeline: the draws are made once per action (the one materialized
-- stage, narrow), each action finds its template in its kind's arrays (a binary search,
-- not a join with all of its kind's templates), each "offset 0" stage computes its
-- columns once for the stage above it (a fence, not a copy), and the one sort orders the
-- actions by time before their wide columns (labels, changes) are built.
with
templates (kind, ord, label, action_type, resource_type, operation, weight, most_rows) as (
  values
    ('admin', 1, 'Client updated', 'update', 'client', 'UPDATE', 20, 1),
    ('admin', 2, 'Client status change', 'status_change', 'client', 'UPDATE', 14, 1),
    ('admin', 3, 'Client created', 'create', 'client', 'INSERT', 8, 1),
    ('admin', 4, 'Client deleted', 'delete', 'client', 'DELETE', 1, 1),
    ('admin', 5, 'Case created', 'create', 'case', 'INSERT', 10, 1),
    ('admin', 6, 'Case task created', 'create', 'case_task', 'INSERT', 10, 1),
    ('admin', 7, 'Case deleted', 'delete', 'case', 'DELETE', 1, 1),
    ('admin', 8, 'Bulk case status update', 'status_change', 'case', 'UPDATE', 3, 40),
    ('admin', 9, 'Bulk case condition update', 'update', 'case', 'UPDATE', 2, 25),
    ('admin', 10, 'Batch client deletion', 'delete', 'client', 'DELETE', 0.5, 20),
    ('admin', 11, 'Batch case deletion', 'delete', 'case', 'DELETE', 0.5, 10),
    ('admin', 12, 'Campaign created', 'create', 'campaign', 'INSERT', 0.5, 1),
    ('admin', 13, 'Campaign updated', 'update', 'campaign', 'UPDATE', 1, 1),
    ('admin', 14, 'Campaign status change', 'status_change', 'campaign', 'UPDATE', 1, 1),
    ('admin', 15, 'Campaign deleted', 'delete', 'campaign', 'DELETE', 0.2, 1),
    ('admin', 16, 'Batch send SMS', 'send', 'batch_job', 'INSERT', 2, 1),
    ('admin', 17, 'Call export to case list', 'export', 'call', null, 2, 0),
    ('admin', 18, 'LawRuler login', 'login', 'integration', null, 5, 0),
    ('admin', 19, 'LawRuler logout', 'logout', 'integration', null, 4, 0),
    ('admin', 20, 'SmartAdvocate login', 'login', 'integration', null, 3, 0),
    ('admin', 21, 'SmartAdvocate logout', 'logout', 'integration', null, 2.5, 0),
    ('admin', 22, 'LawRuler sync configuration update', 'update', 'integration', 'UPDATE', 0.3, 1),
    ('admin', 23, 'SmartAdvocate sync configuration update', 'update', 'integration', 'UPDATE', 0.2, 1),
    ('client', 1, 'Client updated', 'update', 'client', 'UPDATE', 70, 1),
    ('client', 2, 'Call export to file', 'export', 'call', null, 20, 0),
    ('client', 3, 'Client created', 'create', 'client', 'INSERT', 10, 1),
    ('scheduler', 1, 'Clients imported', 'import', 'client', 'INSERT', 30, 100),
    ('scheduler', 2, 'Data import', 'import', 'batch_job', 'INSERT', 30, 1),
    ('scheduler', 3, 'Bulk case status update', 'status_change', 'case', 'UPDATE', 20, 40),
    ('scheduler', 4, 'Batch send SMS', 'send', 'batch_job', 'INSERT', 20, 1),
    ('intake', 1, 'Client created', 'create', 'client', 'INSERT', 40, 1),
    ('intake', 2, 'Client status change', 'status_change', 'client', 'UPDATE', 30, 1),
    ('intake', 3, 'Client updated', 'update', 'client', 'UPDATE', 20, 1),
    ('intake', 4, 'Batch send Email', 'send', 'batch_job', 'INSERT', 10, 1),
    ('followup', 1, 'Batch send SMS', 'send', 'batch_job', 'INSERT', 50, 1),
    ('followup', 2, 'Batch send Email', 'send', 'batch_job', 'INSERT', 50, 1),
    ('sync', 1, 'LawRuler login', 'login', 'integration', null, 30, 0),
    ('sync', 2, 'LawRuler logout', 'logout', 'integration', null, 30, 0),
    ('sync', 3, 'SmartAdvocate login', 'login', 'integration', null, 20, 0),
    ('sync', 4, 'SmartAdvocate logout', 'logout', 'integration', null, 20, 0),
    ('database', 1, 'Client updated', 'update', 'client', 'UPDATE', 80, 1),
    ('database', 2, 'Campaign updated', 'update', 'campaign', 'UPDATE', 20, 1)
),
-- per kind, its templates in arrays: a template's chance is its weight over its kind's;
-- lows[k] is the sum of the chances of the templates before the k-th (lows[1] = 0), so
-- that width_bucket(r_what, lows), a binary search, is the k whose range holds r_what
kinds as (
  select kind,
         array_agg(low::float8 order by ord) as lows,
         array_agg(label order by ord) as labels,
         -- the log's enum types, cast once here rather than once per action
         array_agg(action_type::audit.action_type order by ord) as action_types,
         array_agg(resource_type order by ord) as resource_types,
         array_agg(operation::audit.operation order by ord) as operations,
         array_agg(most_rows order by ord) as most_rows
  from (select t.*,
               (sum(weight) over (partition by kind order by ord) - weight)
                 / sum(weight) over (partition by kind) as low
        from templates t) chances
  group by kind
),
-- the draws, once per action, in generate_series' order: the one materialized stage,
-- narrow (random() is volatile: the stages above it read its rows, they do not redraw)
draw as materialized (
  select g,
         random() as r_who, random() as r_actor, random() as r_day, random() as r_week,
         random() as r_hour, random() as r_hour2, random() as r_source, random() as r_what,
         random() as r_resource, random() as r_variant, random() as r_rows
  from generate_series(1, %(n)s) as g
),
-- the history's first day
start as materialized (
  select (%(end_at)s::timestamptz - make_interval(days => %(days)s))::date as first_day
),
actor as (
  select w.*,
         k.labels, k.action_types, k.resource_types, k.operations, k.most_rows as most_rows_of,
         case kind when 'admin' then 'adm-' || admin_no when 'client' then 'cli-' || client_no
                   when 'scheduler' then 'sys-scheduler' when 'intake' then 'ai-intake'
                   when 'followup' then 'ai-followup' when 'sync' then 'sys-case-sync' end
           as actor_id,
         case kind
           when 'admin' then
             case admin_no when 1 then 'Maria Lopez' when 2 then 'James Carter'
                           when 3 then 'Priya Shah'
                           else (%(first_names)s::text[])[1 + mod(admin_no * 7, 20)] || ' '
                                || (%(last_names)s::text[])[1 + mod(admin_no * 3, 20)] end
           when 'client' then
             case client_no when 17 then 'Dana Whitfield' when 23 then 'Omar Haddad'
                            else (%(first_names)s::text[])[1 + mod(client_no, 20)] || ' '
                                 || (%(last_names)s::text[])[1 + mod(client_no / 20, 20)] end
           when 'scheduler' then 'Nightly scheduler' when 'intake' then 'Intake Agent'
           when 'followup' then 'Follow-up Agent' when 'sync' then 'Case sync'
           else current_user end as actor_name,
         case kind when 'admin' then 'admin' when 'client' then 'client' else 'system' end
           as actor_type,
         case kind
           when 'admin' then case when r_source < 0.75 then 'web' when r_source < 0.90 then 'api'
                                  else 'mobile' end
           when 'client' then case when r_source < 0.65 then 'mobile' else 'web' end
           when 'intake' then 'ai' when 'followup' then 'ai' when 'database' then null
           else 'api' end as source,
         -- the action's template: its number in its kind's arrays
         width_bucket(r_what, k.lows) as pick
  from (
    select d.*,
           case when r_who < 0.40 then 'admin' when r_who < 0.68 then 'client'
                when r_who < 0.77 then 'scheduler' when r_who < 0.87 then 'intake'
                when r_who < 0.93 then 'followup' when r_who < 0.98 then 'sync'
                else 'database' end as kind,
           1 + floor(40 * power(r_actor, 3))::int as admin_no,
           1 + floor(1950 * power(r_actor, 2))::int as client_no
    from draw d
    offset 0
  ) w
  join kinds k using (kind)
),
timed as (
  select a.*,
         -- how far into the history the action lies, 0 (oldest) to 1 (newest)
         case when kind = 'admin' and admin_no > 30 then r_day * 0.05 * (admin_no - 30)
              when kind = 'client' and client_no > 1700 then r_day * 0.4
              else power(r_day, 0.6) end as at,
         labels[pick] as label, action_types[pick] as action_type,
         resource_types[pick] as resource_type, operations[pick] as operation,
         most_rows_of[pick] as most_rows
  from actor a
  offset 0
),
dated as (
  select t.*,
         -- most weekend work moves to the week before it (isodow: Monday 1 to Sunday 7;
         -- 1970-01-05 was a Monday)
         day - case when isodow > 5 and r_week < 0.8
                    then isodow - 5 + floor(r_week / 0.16)::int else 0 end as shifted
  from (select t.*, s.first_day + floor(t.at * (%(days)s - 2))::int as day
        from timed t cross join start s) t
  cross join lateral (select 1 + mod(t.day - date '1970-01-05', 7) as isodow) w
),
acted as (
  select m.*,
         case when most_rows > 1 then 2 + floor(power(r_rows, 3) * (most_rows - 1))::int
              else most_rows end as row_count,
         -- the day's midnight UTC, plus the hour and the second: seconds since 1970 (whole
         -- numbers, exact in a float8), one function call instead of a time zone lookup
         to_timestamp(86400 * (m.shifted - date '1970-01-01') + 3600 * (
           case when m.kind in ('scheduler', 'sync') then 1 + floor(3 * r_hour)::int
                when r_hour < 0.8 then 8 + floor(5 * (r_hour / 0.8 + r_hour2))::int
                else floor(24 * r_hour2)::int end) + floor(3600 * r_variant)) as occurred_at,
         -- the resource: a client, case, task or batch job that existed by then
         case resource_type
           when 'client' then
             case when m.kind = 'client' and label = 'Client updated' then m.client_no
                  when action_type in ('create', 'import')
                    then 1 + floor(m.at * (%(clients)s - 301))::int
                  else 1 + floor(r_resource * (1 + m.at * (%(clients)s - 301)))::int end
           when 'case' then
             case when action_type = 'create' then 1 + floor(m.at * (%(cases)s - 41))::int
                  else 1 + floor(r_resource * (1 + m.at * (%(cases)s - 41)))::int end
           when 'case_task' then 1 + floor(m.at * (%(tasks)s - 1))::int
           when 'batch_job' then 1 + floor(m.at * (%(batch_jobs)s - 1))::int
           when 'campaign' then 1 + mod(g, cardinality(%(campaigns)s::text[]))
           when 'integration' then case when label like 'LawRuler%%' then 1 else 2 end
         end as number
  from dated m
  offset 0
),
-- in time order (g breaks ties), so that the ids the log draws grow with time: the sort
-- carries the draws and the resource's number, the wide columns are built above it
sorted as (
  select * from acted order by occurred_at, g offset 0
),
described as (
  select a.*,
         case a.resource_type
           when 'client' then
             case a.number when 17 then 'Dana Whitfield' when 23 then 'Omar Haddad'
                           else (%(first_names)s::text[])[1 + mod(a.number, 20)] || ' '
                                || (%(last_names)s::text[])[1 + mod(a.number / 20, 20)] end
           when 'case' then 'Case ' || a.number || '-' || (100 + mod(a.number * 37, 900))
           when 'case_task' then (array['Collect medical records', 'Call the client back',
                                        'Request police report'])[1 + mod(a.number, 3)]
           when 'batch_job' then
             case a.label when 'Batch send SMS' then 'Appointment reminders'
                          when 'Batch send Email' then 'Document request follow-up'
                          else 'leads-' || to_char(a.occurred_at, 'YYYY-MM-DD') || '.csv' end
           when 'campaign' then (%(campaigns)s::text[])[a.number]
           when 'integration' then case a.number when 1 then 'LawRuler' else 'SmartAdvocate' end
         end as resource_label,
         to_jsonb(a.occurred_at) as stamp
  from sorted a
  offset 0
)
insert into audit.action_log (
  occurred_at, action, action_type, resource_type, resource_id, resource_label, row_count,
  actor_id, actor_name, actor_type, source, changes, db_user, transaction_id, request_id,
  context, table_name, operation, application_name)
select
  occurred_at,
  case when label = 'Clients imported' then label || ' (' || row_count || ')' else label end,
  action_type::audit.action_type, resource_type,
  case when row_count = 1 or operation is null and resource_type = 'integration'
       then number::text end,
  case when row_count = 1 or operation is null and resource_type = 'integration'
       then resource_label end,
  row_count, actor_id, actor_name, actor_type::audit.actor_type, source::audit.source,
  case
    when row_count > 1 and operation = 'UPDATE' then
      jsonb_build_object('rows', row_count, 'changed_columns',
                         jsonb_build_array(case when label like '%%condition%%' then 'condition'
                                                else 'status' end))
    when row_count > 1 then jsonb_build_object('rows', row_count)
    when label like 'Call export%%' then
      jsonb_build_object('calls', 1 + floor(60 * r_variant)::int, 'destination',
                         case when label like '%%file' then 'file' else 'case_list' end)
    when operation is null then '{}'::jsonb
    when resource_type = 'client' and operation in ('INSERT', 'DELETE') then
      jsonb_build_object(
        'id', number, 'ssn', '[redacted]', 'name', resource_label,
        'email', lower(replace(resource_label, ' ', '.')) || number || '@example.com',
        'notes', null, 'phone', '555-' || lpad(mod(number * 7919, 10000)::text, 4, '0'),
        'status', case when operation = 'INSERT' then 'new' else 'contacted' end,
        'created_at', stamp, 'updated_at', stamp,
        'campaign_id', 1 + mod(number, cardinality(%(campaigns)s::text[])))
    when resource_type = 'client' and action_type = 'status_change' then
      jsonb_build_object('status',
        case when r_variant < 0.5 then '{"old": "new", "new": "contacted"}'::jsonb
             when r_variant < 0.85 then '{"old": "contacted", "new": "qualified"}'::jsonb
             else '{"old": "qualified", "new": "retained"}'::jsonb end)
    when resource_type = 'client' and kind = 'database' then
      '{"notes": {"old": null, "new": "Name spelling checked by DBA"}}'::jsonb
    when resource_type = 'client' then
      case when r_variant < 0.4 then
             jsonb_build_object('phone', jsonb_build_object(
               'old', '555-' || lpad(mod(number * 7919, 10000)::text, 4, '0'),
               'new', '555-' || lpad(mod(number * 7907 + g, 10000)::text, 4, '0')))
           when r_variant < 0.7 then
             jsonb_build_object('email', jsonb_build_object(
               'old', lower(replace(resource_label, ' ', '.')) || number || '@example.com',
               'new', 'updated' || number || '@example.com'))
           else '{"notes": {"old": null, "new": "Prefers a call after 5pm"}}'::jsonb end
    when resource_type = 'case' then
      jsonb_build_object(
        'id', number, 'title', resource_label,
        'status', case when operation = 'INSERT' then 'open' else 'closed' end,
        'client_id', 1 + mod(number * 7, %(clients)s),
        'condition', (array['awaiting records', 'medical review', 'ready to file',
                            'urgent'])[1 + mod(number, 4)],
        'created_at', stamp, 'updated_at', stamp,
        'document_url', 'https://docs.example.com/' || number)
    when resource_type = 'case_task' then
      jsonb_build_object(
        'id', number, 'done', false, 'title', resource_label,
        'due_on', (occurred_at + interval '7 days')::date,
        'case_id', 1 + mod(number, %(cases)s), 'created_at', stamp, 'updated_at', stamp)
    when resource_type = 'batch_job' then
      jsonb_build_object(
        'id', number,
        'kind', case label when 'Batch send SMS' then 'sms' when 'Batch send Email' then 'email'
                           else 'import' end,
        'name', resource_label, 'status', 'queued', 'payload', '{}'::jsonb,
        'created_at', stamp, 'updated_at', stamp,
        'recipients', 5 + floor(400 * power(r_variant, 2))::int)
    when resource_type = 'campaign' and operation in ('INSERT', 'DELETE') then
      jsonb_build_object(
        'id', number, 'name', resource_label, 'script', null,
        'status', case when operation = 'INSERT' then 'draft' else 'paused' end,
        'channel', (array['voice', 'sms', 'email'])[1 + mod(number, 3)],
        'created_at', stamp, 'updated_at', stamp)
    when resource_type = 'campaign' and action_type = 'status_change' then
      case when r_variant < 0.5 then '{"status": {"old": "draft", "new": "active"}}'::jsonb
           when r_variant < 0.8 then '{"status": {"old": "active", "new": "paused"}}'::jsonb
           else '{"status": {"old": "paused", "new": "active"}}'::jsonb end
    when resource_type = 'campaign' then
      jsonb_build_object('script', jsonb_build_object(
        'old', null, 'new', 'Hello, this is the ' || resource_label || ' team...'))
    else
      '{"sync_config": {"old": {"every": "1h"}, "new": {"every": "15m", "cases": true}}}'::jsonb
  end,
  current_user, txid_current(),
  case when source is not null then md5(%(seed)s::text || '/' || g) end,
  '{"demo": "generated history"}'::jsonb,
  case when operation is not null then
    'public.' || case resource_type when 'client' then 'clients' when 'case' then 'cases'
                                    when 'case_task' then 'case_tasks'
                                    when 'batch_job' then 'batch_jobs'
                                    when 'campaign' then 'campaigns'
                                    else 'integrations' end end,
  operation::audit.operation,
  'audit-capture demo --history'
from described
