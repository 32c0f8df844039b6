-- The "clients" shape's two secondary indexes (create_table.sql makes the table): a
-- CRM's client table is looked up by email and by owner.
create index {email_index} on {table} (email);
create index {owner_index} on {table} (owner_id);
