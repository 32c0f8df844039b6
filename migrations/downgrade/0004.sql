-- Revision 0004's downgrade, after revision 0003's SQL is installed again: remove what
-- 0004 added and 0003 does not use, so that the chain below it (down to 0001's
-- uninstall.sql, which drops the registry before the functions) finds the schema as
-- 0003 left it.

set local role audit_owner;

drop function if exists audit.follow_column_renames(regclass);
drop function if exists audit.current_settings(regclass);  -- returns audit.tracked_table
drop function if exists audit.rename_in_rules(jsonb, text, text);
drop function if exists audit.rule_columns(jsonb);
drop function if exists audit.adopt_capture_function(regclass);
drop function if exists audit.restored_capture_function(regclass);
drop function if exists audit.make_capture_triggers(regclass, regproc);
drop function if exists audit.check_context_object(jsonb);

alter table audit.tracked_table drop column if exists setting_columns;
