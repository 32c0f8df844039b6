-- Revision 0004 back to 0003: the seal chain goes (17_seal.sql). Revision 0003's state
-- files have just run (audit.log_action() and audit.drop_retired_partitions() without
-- the chain again). The chain's blocks go with it: a database downgraded and upgraded
-- again starts a new chain, and heads saved before no longer verify.
set local role audit_owner;

drop function if exists audit.seal(integer);
drop function if exists audit.verify_chain(text[], integer);
drop function if exists audit.chain_head();
drop function if exists audit.seal_retention(regclass);
drop function if exists audit.append_block(audit.seal_block);
drop function if exists audit.lock_chain();
drop function if exists audit.block_hash(bytea, audit.seal_block);
drop function if exists audit.block_content(audit.seal_block);
drop function if exists audit.action_digests(bigint, bigint, integer);
drop table if exists audit.seal_block, audit.seal_mark;

reset role;
