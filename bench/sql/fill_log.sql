-- Fill audit.action_log with {rows} realistic actions in one set-based statement
-- (bench/fill_log.py renders {rows} and {days}, and has run setseed()).
--
-- Shape: actions spread over the last {days} days, denser towards now (row g happens at
-- start + span * sqrt(g / rows), so the density grows linearly with time and ids grow
-- with time as in a real log). Sources web 48%, api 20%, ai 8%, mobile 14%, none 10%
-- (direct database changes by database roles, without actor_id). About 2,000 actors,
-- skewed: 40 admins (a few much busier than others), 1,950 clients (client-0 the
-- busiest), 3 system actors with ids (sys-intake, the AI agent, ~8% of the log), 3
-- database roles; and 5 departed admins ("Departed Admin N", ids departed-N) whose rows
-- are all in the oldest tenth of the log: the rare-and-old actor of the viewer's worst
-- case. Resource labels and clients' names are "<first> <last>" names from 30 x 30 names
-- (Maria Smith, ... Garcia), so one first name matches about 1% of the log (the text
-- search's hard case) and a name may belong to several clients. A client's login and
-- logout are "Portal login" / "Portal logout" (resource client); an admin's or system's
-- are an integration's ("LawRuler login").

insert into audit.action_log (
  occurred_at, action, action_type, resource_type, resource_id, resource_label, row_count,
  actor_id, actor_name, actor_type, source, changes, db_user, transaction_id, request_id,
  context, table_name, operation, application_name, client_addr)
select
  ts, label, action_type, resource_type,
  case when row_count = 1 then res_id::text end,
  case when row_count = 1 then res_label end,
  row_count, actor_id, actor_name, actor_type, source,
  case
    when operation is null then jsonb_build_object('provider', provider)
    when row_count > 1 then jsonb_build_object('rows', row_count, 'changed_columns',
                                                case when operation = 'UPDATE' then '["status"]'::jsonb else '[]'::jsonb end)
    when operation = 'UPDATE' and action_type = 'status_change'
      then jsonb_build_object('status', jsonb_build_object('old', 'open', 'new', 'closed'))
    when operation = 'UPDATE'
      then jsonb_build_object('email', jsonb_build_object('old', 'old' || res_id || '@example.com',
                                                          'new', 'new' || res_id || '@example.com'))
    else jsonb_build_object('id', res_id, 'name', res_label, 'status', 'open')
  end,
  case when source is null then actor_name else 'crm_app' end,
  1000 + g, case when source is not null then 'req-' || g end,
  case when source = 'ai' then '{"agent": "intake", "model": "m1"}'::jsonb end,
  case when operation is not null then 'public.' || resource_type || 's' end,
  operation,
  case when source is null then 'psql' else 'crm' end,
  case when source is null then null else '10.0.0.7'::inet end
from (
  select p.*,
    case
      when action_type = 'login' and actor_type = 'client' then 'Portal login'
      when action_type = 'logout' and actor_type = 'client' then 'Portal logout'
      when action_type = 'login' then provider || ' login'
      when action_type = 'logout' then provider || ' logout'
      when action_type = 'export' then 'Call export to file'
      when action_type = 'send' then (array['Batch send SMS', 'Batch send Email'])[1 + (g % 2)]
      when action_type = 'import' then initcap(replace(resource_type, '_', ' ')) || 's imported (' || row_count || ')'
      when row_count > 1 and action_type = 'delete' then 'Batch ' || replace(resource_type, '_', ' ') || ' deletion'
      when row_count > 1 then 'Bulk ' || replace(resource_type, '_', ' ') || ' status update'
      else initcap(replace(resource_type, '_', ' '))
           || case action_type when 'create' then ' created' when 'update' then ' updated'
                               when 'delete' then ' deleted' else ' status change' end
    end as label,
    case
      when action_type in ('login', 'logout', 'export', 'send') then null
      when action_type in ('create', 'import') then 'INSERT'
      when action_type = 'delete' then 'DELETE'
      else 'UPDATE'
    end as operation,
    (array['Maria', 'James', 'Linda', 'Robert', 'Patricia', 'John', 'Jennifer', 'Michael',
           'Elizabeth', 'David', 'Barbara', 'William', 'Susan', 'Richard', 'Jessica', 'Joseph',
           'Sarah', 'Thomas', 'Karen', 'Charles', 'Nancy', 'Daniel', 'Lisa', 'Matthew',
           'Betty', 'Anthony', 'Sandra', 'Mark', 'Ashley', 'Steven'])[1 + res_id % 30]
    || ' ' ||
    (array['Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis',
           'Rodriguez', 'Martinez', 'Hernandez', 'Lopez', 'Gonzalez', 'Wilson', 'Anderson',
           'Thomas', 'Taylor', 'Moore', 'Jackson', 'Martin', 'Lee', 'Perez', 'Thompson',
           'White', 'Harris', 'Sanchez', 'Clark', 'Ramirez', 'Lewis', 'Robinson'])[1 + (res_id / 30) % 30]
    as res_label
  from (
    select a.*,
      case
        when action_type in ('login', 'logout') and actor_type = 'client' then 'client'
        when action_type in ('login', 'logout') then 'integration'
        when action_type = 'export' then 'call'
        when action_type = 'send' then 'batch_job'
        when r_res < 0.40 then 'client'
        when r_res < 0.65 then 'case'
        when r_res < 0.78 then 'case_task'
        when r_res < 0.93 then 'campaign'
        when r_res < 0.99 then 'batch_job'
        else 'integration'
      end as resource_type,
      case
        when action_type in ('login', 'logout', 'export', 'send') then 0
        when action_type = 'import' or r_bulk < 0.002 then 2 + floor(power(r_size, 6) * 2000)::int
        else 1
      end as row_count,
      (array['LawRuler', 'Salesforce', 'HubSpot'])[1 + (g % 3)] as provider,
      floor(r_id * 200000)::int as res_id
    from (
      select s.*,
        case
          when r_type < 0.20 then 'create'
          when r_type < 0.64 then 'update'
          when r_type < 0.69 then 'delete'
          when r_type < 0.84 then 'status_change'
          when r_type < 0.85 then 'import'
          when r_type < 0.90 then 'login'
          when r_type < 0.94 then 'logout'
          when r_type < 0.97 then 'export'
          else 'send'
        end as action_type,
        case
          when departed then 'departed-' || (1 + g % 5)
          when source is null then null
          when source = 'ai' then 'sys-intake'
          when source = 'api' and r_actor < 0.7 then (array['sys-sync', 'sys-billing'])[1 + (g % 2)]
          when source = 'mobile' or (source = 'web' and r_actor < 0.25) then 'client-' || client_no
          else 'admin-' || admin_no
        end as actor_id,
        case
          when departed then 'Departed Admin ' || (1 + g % 5)
          when source is null then case when r_actor < 0.005 then 'crm_migrator' when r_actor < 0.6 then 'crm_app' else 'postgres' end
          when source = 'ai' then 'Intake agent'
          when source = 'api' and r_actor < 0.7 then (array['Nightly sync', 'Billing job'])[1 + (g % 2)]
          when source = 'mobile' or (source = 'web' and r_actor < 0.25)
            then (array['Maria', 'James', 'Linda', 'Robert', 'Patricia', 'John', 'Jennifer', 'Michael',
                        'Elizabeth', 'David', 'Barbara', 'William', 'Susan', 'Richard', 'Jessica', 'Joseph',
                        'Sarah', 'Thomas', 'Karen', 'Charles', 'Nancy', 'Daniel', 'Lisa', 'Matthew',
                        'Betty', 'Anthony', 'Sandra', 'Mark', 'Ashley', 'Steven'])[1 + (client_no + 11) % 30]
                 || ' ' ||
                 (array['Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis',
                        'Rodriguez', 'Martinez', 'Hernandez', 'Lopez', 'Gonzalez', 'Wilson', 'Anderson',
                        'Thomas', 'Taylor', 'Moore', 'Jackson', 'Martin', 'Lee', 'Perez', 'Thompson',
                        'White', 'Harris', 'Sanchez', 'Clark', 'Ramirez', 'Lewis', 'Robinson'])[1 + (client_no / 30 + 5) % 30]
          else (array['Alice', 'Bruno', 'Carmen', 'Dmitri', 'Esther', 'Farid', 'Greta', 'Hiro'])[1 + admin_no % 8]
               || ' ' || (array['Admin', 'Okafor', 'Novak', 'Reyes', 'Kim'])[1 + admin_no / 8]
        end as actor_name,
        case
          when departed then 'admin'
          when source is null or source = 'ai' or (source = 'api' and r_actor < 0.7) then 'system'
          when source = 'mobile' or (source = 'web' and r_actor < 0.25) then 'client'
          else 'admin'
        end as actor_type
      from (
        select r.*,
          -- the departed admins: 1 row in 1,000 of the oldest tenth
          (g <= {rows} / 10 and r_dep < 0.001) as departed,
          -- skewed: the lower numbers act far more often
          floor(power(r_actor2, 2) * 1950)::int as client_no,
          floor(power(r_actor2, 2) * 40)::int as admin_no,
          case
            when r_dep < 0.001 and g <= {rows} / 10 then 'web'
            when r_src < 0.10 then null
            when r_src < 0.58 then 'web'
            when r_src < 0.78 then 'api'
            when r_src < 0.86 then 'ai'
            else 'mobile'
          end as source
        from (
          select g,
            now() - make_interval(days => {days})
              + make_interval(secs => {days} * 86400.0 * sqrt(g::float8 / {rows})) as ts,
            random() as r_src, random() as r_actor, random() as r_actor2, random() as r_type,
            random() as r_res, random() as r_bulk, random() as r_size, random() as r_id, random() as r_dep
          from generate_series(1, {rows}) g
        ) r
      ) s
    ) a
  ) p
) q;
