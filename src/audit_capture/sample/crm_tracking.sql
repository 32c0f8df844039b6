-- How the sample CRM is tracked, so that every event of the product brief comes out as
-- DESIGN.md's table says. updated_at is ignored everywhere: touching it alone is no change.

select audit.track('campaigns', 'campaign',
  label_column => 'name', status_columns => '{status}', ignored_columns => '{updated_at}');

select audit.track('clients', 'client',
  label_column => 'name', status_columns => '{status}', ignored_columns => '{updated_at}',
  redacted_columns => '{ssn}');

select audit.track('cases', 'case',
  label_column => 'title', status_columns => '{status}', ignored_columns => '{updated_at}');

select audit.track('case_tasks', 'case_task',
  label_column => 'title', ignored_columns => '{updated_at}');

-- A batch job's action is named by its kind: creating an sms job is "Batch send SMS".
select audit.track('batch_jobs', 'batch_job',
  label_column => 'name', status_columns => '{status}', ignored_columns => '{updated_at}',
  labels => '[
    {"on": "create", "when": {"kind": "sms"},    "label": "Batch send SMS",   "action_type": "send"},
    {"on": "create", "when": {"kind": "email"},  "label": "Batch send Email", "action_type": "send"},
    {"on": "create", "when": {"kind": "import"}, "label": "Data import",      "action_type": "import"}
  ]');

-- Logins and logouts are application events (audit.log_action); a change of the sync
-- configuration is an update named after the provider.
select audit.track('integrations', 'integration',
  label_column => 'provider', ignored_columns => '{updated_at,last_login_at}',
  redacted_columns => '{api_key}',
  labels => '[
    {"on": ["update", "status_change"], "changed": ["sync_config"],
     "label": "{provider} sync configuration update", "action_type": "update"}
  ]');
