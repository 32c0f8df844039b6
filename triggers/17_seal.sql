-- Tamper evidence: the log's actions, with their items, linked into a hash chain.
--
-- audit.seal() (audit-capture seal, or a scheduler) appends blocks to audit.seal_block.
-- A block seals the actions of an id range, in id order: it keeps each action's id
-- and a 16-byte digest of its content (the first half of the sha256 of the action's
-- row and item chunks, audit.action_digests()), and its own hash is the sha256 of the
-- previous block's hash and its content. audit.verify_chain() (audit-capture verify)
-- recomputes everything and names the first action altered, removed or added out of
-- place; audit.chain_head() is the last block's number and hash, "17:3fa4..", which the
-- DBA keeps outside the database: a rewrite of the chain itself (every hash recomputed
-- by someone with audit_owner's powers or a superuser's) changes the head, and
-- `verify --expect` finds it.
--
-- Never skipping an action that commits late. Ids are drawn before commit: a
-- transaction holding id 100 may commit after one holding 101. So a seal goes only up
-- to a MARK that every transaction is done with. A mark is the id sequence's last
-- value L, read BEFORE the marking transaction takes its own transaction id X
-- (audit.seal_mark). Whoever drew an id <= L drew it before L was read, and had a
-- transaction id by then (every path that writes an action has one before it draws
-- its id: a tracked table's change, or audit.log_action()'s txid_current() first), so
-- below X. Once no transaction below X is in progress, every id <= L is final:
-- committed, or gone for good. Each seal leaves a mark and seals up to the newest mark
-- that is safe, its own when no older transaction is still running. (Not a snapshot's
-- xmin and xmax: a snapshot does not list a running transaction whose id is at or past
-- its xmax, the latest completed one's + 1.) This needs the sequence's CACHE 1 (its
-- default): a cached range would hand out ids below L later.
--
-- Retention: a month dropped legitimately (audit.drop_retired_partitions()) appends a
-- retention block naming the ids it dropped, so that verify accepts their absence; an
-- action missing without one is reported as removed.
--
-- Sealing reads; it never runs on the write path.

create table if not exists audit.seal_block (
  block_no     bigint primary key check (block_no >= 1),
  kind         text not null check (kind in ('actions', 'retention')),
  -- actions: the block covers ids first_id..last_id (the previous action block's
  -- last_id + 1 on), and holds those that exist, in id order, with their digests
  first_id     bigint,
  last_id      bigint,
  action_ids   bigint[],
  digests      bytea,
  -- retention: the ids of the actions a retention dropped, and what it said
  dropped_ids  int8multirange,
  detail       jsonb,
  prev_hash    bytea not null,
  block_hash   bytea not null,
  sealed_at    timestamptz not null default pg_catalog.statement_timestamp(),
  sealed_by    text not null,
  check (kind <> 'actions' or (first_id is not null and last_id >= first_id - 1
                               and action_ids is not null and digests is not null
                               and pg_catalog.length(digests) = 16 * pg_catalog.cardinality(action_ids))),
  check (kind <> 'retention' or dropped_ids is not null)
);
comment on table audit.seal_block is
  'audit_capture: the hash chain over the log (audit.seal(), audit.verify_chain()). Append-only.';
comment on column audit.seal_block.block_no is 'The block''s place in the chain, from 1.';
comment on column audit.seal_block.kind is 'actions: a range of action ids sealed; retention: actions dropped by retention.';
comment on column audit.seal_block.first_id is 'Actions: the first action id the block covers (the previous action block''s last_id + 1).';
comment on column audit.seal_block.last_id is 'Actions: the last action id the block covers; every id in between that exists is in action_ids.';
comment on column audit.seal_block.action_ids is 'Actions: the ids of the actions sealed, ascending.';
comment on column audit.seal_block.digests is 'Actions: 16 bytes per action, in action_ids'' order: the first half of the sha256 of its row and item chunks (audit.action_digests()).';
comment on column audit.seal_block.dropped_ids is 'Retention: the ids of the actions the retention dropped.';
comment on column audit.seal_block.detail is 'Retention: the retired table, its action count and id range.';
comment on column audit.seal_block.prev_hash is 'The previous block''s block_hash (32 zero bytes for block 1).';
comment on column audit.seal_block.block_hash is 'sha256(prev_hash || audit.block_content()).';
comment on column audit.seal_block.sealed_at is 'When the block was appended.';
comment on column audit.seal_block.sealed_by is 'The role that sealed it (session_user).';

create or replace trigger seal_block_append_only
  before update or delete on audit.seal_block
  for each row execute function audit.refuse_change();
create or replace trigger seal_block_no_truncate
  before truncate on audit.seal_block
  for each statement execute function audit.refuse_change();

-- Working state of audit.seal(), not evidence: a row per seal run, removed once a later
-- seal has gone past it.
create table if not exists audit.seal_mark (
  last_id    bigint not null,
  mark_xid   xid8 not null,
  marked_at  timestamptz not null default pg_catalog.statement_timestamp()
);
comment on table audit.seal_mark is
  'Internal: audit.seal()''s marks: the id sequence''s last value, and the transaction id its seal took just after reading it. Every id up to last_id is final once no transaction below mark_xid is in progress.';

comment on column audit.seal_mark.last_id is 'The id sequence''s last value when the mark was made.';
comment on column audit.seal_mark.mark_xid is 'The transaction id the marking seal took just after reading last_id.';
comment on column audit.seal_mark.marked_at is 'When the mark was made.';

-- The digests of the actions with ids from_id to to_id, in id order, at most
-- max_actions: the first 16 bytes of the sha256 of each action's row, every column,
-- and its item chunks, as text that does not depend on the session (timestamps in UTC:
-- the callers set the time zone). An explicit column list, not to_jsonb(row): a column
-- a later revision adds must not change the digest of what was sealed before it. One
-- query per block, not a function call per action (a call per action cost 60 µs).
create or replace function audit.action_digests(from_id bigint, to_id bigint, max_actions integer)
returns table (id bigint, digest bytea)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  with a as (
    select l.* from audit.action_log l
    where l.id >= from_id and l.id <= to_id
    order by l.id
    limit max_actions),
  -- the chunks of those actions, read as one range of the chunks' key (a probe per
  -- action cost more than the rest of its digest). A chunk lives in its action's month
  -- (or the legacy partition: '-infinity'); one moved elsewhere is missing here, and
  -- the digest says so
  ch as (
    select a.id,
           string_agg(jsonb_build_array(c.first_item, c.item_count, c.resource_type,
                        c.operation, c.changed_columns, c.items, c.resource_ids)::text,
                      ',' order by c.first_item) as chunks
    from a join audit.action_item_chunk c
      on c.action_id = a.id and c.occurred_at in (a.occurred_at, '-infinity'::timestamptz)
    where c.action_id >= from_id and c.action_id <= (select max(x.id) from a x)
    group by a.id)
  select a.id,
         substr(sha256(convert_to(
           jsonb_build_array(
             a.id, a.occurred_at, a.action, a.action_type, a.resource_type, a.resource_id,
             a.resource_label, a.row_count, a.actor_id, a.actor_name, a.actor_type,
             a.source, a.changes, a.db_user, a.transaction_id, a.request_id, a.context,
             a.table_name, a.operation, a.application_name, a.client_addr)::text
           || coalesce(ch.chunks, ''), 'UTF8')), 1, 16)
  from a left join ch on ch.id = a.id
  order by a.id
$$;
comment on function audit.action_digests(bigint, bigint, integer) is
  'Internal: id and seal digest (the first 16 bytes of the sha256 of the action''s row and item chunks, in UTC: the caller sets the time zone) of the actions from_id to to_id, in id order, at most max_actions.';

create or replace function audit.block_content(b audit.seal_block) returns text
language sql immutable
return pg_catalog.jsonb_build_array(
         b.block_no, b.kind, b.first_id, b.last_id, b.action_ids,
         pg_catalog.encode(b.digests, 'hex'), b.dropped_ids::text, b.detail)::text;
comment on function audit.block_content(audit.seal_block) is
  'Internal: a seal block''s content as text: what its hash covers with the previous block''s hash.';

create or replace function audit.block_hash(prev_hash bytea, b audit.seal_block) returns bytea
language sql immutable
return pg_catalog.sha256(prev_hash || pg_catalog.convert_to(audit.block_content(b), 'UTF8'));
comment on function audit.block_hash(bytea, audit.seal_block) is
  'Internal: a seal block''s hash: sha256 of the previous block''s hash and audit.block_content().';

-- Appends one block: its number and previous hash are the chain's; its hash is made
-- here. The caller holds the chain's lock (audit.lock_chain()).
create or replace function audit.append_block(b audit.seal_block) returns audit.seal_block
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  last audit.seal_block;
begin
  select * into last from audit.seal_block order by block_no desc limit 1;
  b.block_no := coalesce(last.block_no, 0) + 1;
  b.prev_hash := coalesce(last.block_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
  b.sealed_at := statement_timestamp();
  b.sealed_by := session_user::text;
  b.block_hash := audit.block_hash(b.prev_hash, b);
  insert into audit.seal_block select b.*;
  return b;
end
$$;
comment on function audit.append_block(audit.seal_block) is
  'Internal: appends a block to the seal chain, numbering it, linking it to the last block and hashing it; the caller holds audit.lock_chain().';

-- One writer of the chain at a time (seal, retention): a transaction-level advisory
-- lock in a key space of audit_capture's own (two-key form: the class id of
-- audit.seal_block and 1).
create or replace function audit.lock_chain() returns void
language sql
set search_path = pg_catalog, pg_temp
as $$
  select pg_catalog.pg_advisory_xact_lock('audit.seal_block'::pg_catalog.regclass::oid::integer, 1)
$$;
comment on function audit.lock_chain() is
  'Internal: the seal chain''s lock, held by its one writer until the transaction ends (audit.seal(), retention).';

create or replace function audit.chain_head() returns text
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select b.block_no || ':' || encode(b.block_hash, 'hex')
  from audit.seal_block b order by b.block_no desc limit 1
$$;
comment on function audit.chain_head() is
  'The seal chain''s head, "block_no:sha256 hex" (null before the first seal): keep it outside the database and give it to audit-capture verify --expect.';

create or replace function audit.seal(max_actions integer default 100000)
returns table (actions_sealed bigint, blocks integer, sealed_through bigint,
               newest_id bigint, head text)
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
as $$
declare
  block_size  constant integer := 1000;
  last_value_ bigint;
  called      boolean;
  mark_id     bigint;       -- this run's mark: the sequence's last value
  bound       bigint;       -- the newest safe mark: every id up to it is final
  sealed_to   bigint;       -- the last id sealed so far
  ids         bigint[];
  digests_    bytea;
  wanted      integer;      -- the actions this block may hold
  upto        bigint;
  b           audit.seal_block;
  snap        pg_snapshot;
begin
  if max_actions is null or max_actions < 1 then
    raise exception 'max_actions is %; expected 1 or more', coalesce(max_actions::text, 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  -- An audit server (audit-capture replicate) receives the primary's actions by logical
  -- replication, late and in any order: a mark read from its own id sequence would
  -- seal ranges that replicated actions still arrive into, and verify would call them
  -- added. The primary seals its log.
  if audit.is_audit_server() then
    raise exception 'this database is an audit server: it receives the log from its primary by replication, so seal the primary'
      using errcode = 'object_not_in_prerequisite_state',
            hint = 'Run audit-capture seal (or audit.seal()) on the primary database; its actions arrive here late and in any order.';
  end if;
  -- a snapshot older than the mark (repeatable read, serializable) would both miss
  -- transactions that drew ids and hide committed actions from the seal
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'audit.seal() needs a READ COMMITTED transaction, not %', upper(current_setting('transaction_isolation'))
      using errcode = 'invalid_transaction_state';
  end if;
  perform audit.lock_chain();

  -- the mark: the sequence first, then this transaction's id (statements apart, in
  -- this order)
  select s.last_value, s.is_called into last_value_, called from audit.action_log_id_seq s;
  mark_id := case when called then last_value_ else last_value_ - 1 end;
  insert into audit.seal_mark (last_id, mark_xid) values (mark_id, pg_current_xact_id());

  -- the newest safe mark: no transaction below its id in progress. Those are the
  -- snapshot's running ones below its xmax, and any at or past its xmax (which it does
  -- not list): asked one by one from its xmin up, stopping at the first that runs
  snap := pg_current_snapshot();
  select max(m.last_id) into bound from audit.seal_mark m
  where not exists (
    select from generate_series(pg_snapshot_xmin(snap)::text::bigint,
                                m.mark_xid::text::bigint - 1) x
    where pg_xact_status(x::text::xid8) = 'in progress');
  select coalesce(max(s.last_id), 0) into sealed_to from audit.seal_block s where s.kind = 'actions';

  actions_sealed := 0;
  blocks := 0;
  while bound is not null and sealed_to < bound and actions_sealed < max_actions loop
    wanted := least(block_size, max_actions - actions_sealed)::integer;
    select array_agg(d.id order by d.id), string_agg(d.digest, ''::bytea order by d.id)
    into ids, digests_
    from audit.action_digests(sealed_to + 1, bound, wanted) d;
    -- a full block ends at its last action; the last one covers up to the mark, so
    -- that an id inserted later below it is "added out of place"
    upto := case when cardinality(ids) = wanted then ids[cardinality(ids)] else bound end;
    b := null;
    b.kind := 'actions';
    b.first_id := sealed_to + 1;
    b.last_id := upto;
    b.action_ids := coalesce(ids, '{}');
    b.digests := coalesce(digests_, ''::bytea);
    perform audit.append_block(b);
    actions_sealed := actions_sealed + coalesce(cardinality(ids), 0);
    blocks := blocks + 1;
    sealed_to := upto;
  end loop;

  -- the marks at or below what is sealed are spent
  delete from audit.seal_mark m where m.last_id <= sealed_to;
  sealed_through := sealed_to;
  newest_id := mark_id;
  head := audit.chain_head();
  return next;
end
$$;
comment on function audit.seal(integer) is
  'Seals the log: appends blocks of up to 1,000 actions (ids, digests) to the hash chain audit.seal_block, in id order, up to the newest id that every transaction is done with (at most max_actions per call). Returns what it sealed, the last id sealed, the newest id drawn (above sealed_through: transactions still open, or max_actions reached) and the chain''s head. READ COMMITTED only; one at a time. Only audit_admin.';

-- Retention's record: called by audit.drop_retired_partitions() before it drops a
-- retired month of the log, in its transaction.
create or replace function audit.seal_retention(retired regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
as $$
declare
  b audit.seal_block;
begin
  perform audit.lock_chain();
  b.kind := 'retention';
  execute format('select coalesce(range_agg(int8range(id, id, ''[]'')), ''{}''::int8multirange),'
                 ' jsonb_build_object(''table'', %L, ''actions'', count(*), ''first_id'', min(id), ''last_id'', max(id))'
                 ' from %s', retired::text, retired)
    into b.dropped_ids, b.detail;
  perform audit.append_block(b);
end
$$;
comment on function audit.seal_retention(regclass) is
  'Internal: appends a retention block to the seal chain naming the ids of the actions in a retired partition of the log, before retention drops it.';

-- One finding per problem, in chain order, at most max_findings; none when the chain
-- and the log agree.
create or replace function audit.verify_chain(expect_heads text[] default '{}', max_findings integer default 100)
returns table (finding text, block_no bigint, action_id bigint, detail text)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
as $$
declare
  blk          audit.seal_block;
  prev_hash    bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  expected_no  bigint;
  next_first   bigint := 1::bigint;
  found_count  integer := 0;
  f            record;
  head         text;
  expect_nos   bigint[] := '{}'::bigint[];
  expect_hashes bytea[] := '{}'::bytea[];
begin
  foreach head in array coalesce(expect_heads, '{}') loop
    if head is null or head !~ '^[0-9]{1,18}:[0-9a-f]{64}$' then
      raise exception 'expected head %: not a chain head (block:sha256 in hex, as audit.chain_head() gives)', coalesce(head, 'null')
        using errcode = 'invalid_parameter_value';
    end if;
    expect_nos := expect_nos || split_part(head, ':', 1)::bigint;
    expect_hashes := expect_hashes || decode(split_part(head, ':', 2), 'hex');
  end loop;

  -- the chain: numbered from 1 without a gap, each block linked and hashed as stored
  expected_no := 1;
  for blk in select * from audit.seal_block s order by s.block_no loop
    if blk.block_no <> expected_no then
      finding := 'chain_broken'; block_no := expected_no; action_id := null;
      detail := format('block %s is missing from the chain (the next is %s)', expected_no, blk.block_no);
      return next; return;
    end if;
    if blk.prev_hash <> prev_hash or audit.block_hash(blk.prev_hash, blk) <> blk.block_hash then
      finding := 'chain_broken'; block_no := blk.block_no; action_id := null;
      detail := format('block %s does not match its hash or its link to block %s: the chain was edited', blk.block_no, blk.block_no - 1);
      return next; return;
    end if;
    if blk.kind = 'actions' and blk.first_id <> next_first then
      finding := 'chain_broken'; block_no := blk.block_no; action_id := null;
      detail := format('block %s starts at action %s, not %s', blk.block_no, blk.first_id, next_first);
      return next; return;
    end if;
    for i in 1 .. coalesce(cardinality(expect_nos), 0) loop
      if expect_nos[i] = blk.block_no and expect_hashes[i] <> blk.block_hash then
        finding := 'head_mismatch'; block_no := blk.block_no; action_id := null;
        detail := format('block %s is %s, not the %s saved earlier: the chain was rewritten', blk.block_no, encode(blk.block_hash, 'hex'), encode(expect_hashes[i], 'hex'));
        return next; return;
      end if;
    end loop;
    prev_hash := blk.block_hash;
    expected_no := expected_no + 1;
    if blk.kind = 'actions' then
      next_first := blk.last_id + 1;
    end if;
  end loop;
  for i in 1 .. coalesce(cardinality(expect_nos), 0) loop
    if expect_nos[i] >= expected_no then
      finding := 'head_mismatch'; block_no := expect_nos[i]; action_id := null;
      detail := format('block %s, saved earlier, is no longer in the chain (it ends at block %s): the chain was cut', expect_nos[i], expected_no - 1);
      return next; return;
    end if;
  end loop;

  -- the actions, block by block, against their digests
  for blk in select * from audit.seal_block s where s.kind = 'actions' order by s.block_no loop
    for f in
      select coalesce(st.id, cur.id) as id,
             case when cur.id is null then 'removed' when st.id is null then 'added' else 'altered' end as what
      from (select u.id, substr(blk.digests, (u.ord::integer - 1) * 16 + 1, 16) as d
            from unnest(blk.action_ids) with ordinality u(id, ord)) st
      full join (select a.id, a.digest as d
                 from audit.action_digests(blk.first_id, blk.last_id, 2147483647) a) cur
        on cur.id = st.id
      where st.d is distinct from cur.d
        -- gone by a retention recorded in the chain after this block: as it should be
        and not (cur.id is null and exists (
              select from audit.seal_block r
              where r.kind = 'retention' and r.block_no > blk.block_no and st.id <@ r.dropped_ids))
      order by 1
    loop
      finding := f.what; block_no := blk.block_no; action_id := f.id;
      detail := case f.what
        when 'altered' then format('action %s differs from what block %s sealed', f.id, blk.block_no)
        when 'removed' then format('action %s, sealed in block %s, is missing and no retention dropped it', f.id, blk.block_no)
        else format('action %s is in the range block %s sealed (%s to %s) but was not there when it was sealed', f.id, blk.block_no, blk.first_id, blk.last_id) end;
      return next;
      found_count := found_count + 1;
      if found_count >= max_findings then
        return;
      end if;
    end loop;
  end loop;
end
$$;
comment on function audit.verify_chain(text[], integer) is
  'Checks the seal chain and the log against it: returns one row per problem (chain_broken, head_mismatch, altered, removed, added), in chain order, at most max_findings; none when all agree. expect_heads: heads saved earlier (audit.chain_head()), each of which must still be in the chain.';

revoke all on function audit.seal(integer), audit.verify_chain(text[], integer), audit.chain_head(),
  audit.seal_retention(regclass), audit.append_block(audit.seal_block), audit.lock_chain(),
  audit.action_digests(bigint, bigint, integer),
  audit.block_content(audit.seal_block), audit.block_hash(bytea, audit.seal_block)
  from public;
grant execute on function audit.seal(integer) to audit_admin;
grant execute on function audit.verify_chain(text[], integer), audit.chain_head() to audit_reader;
grant select on audit.seal_block to audit_reader;
