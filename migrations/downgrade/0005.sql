-- Revision 0005's downgrade, after revision 0004's SQL is installed again: remove what
-- 0005 added and 0004 does not use, so that the chain below it finds the schema as 0004
-- left it.

set local role audit_owner;
