-- Reading the log as a stream (audit-capture tail) without ever skipping an action.
--
-- Ids are drawn before commit: a transaction holding id 100 may commit after one holding
-- 101 has been read. A reader that goes on "after the last id it printed" must therefore
-- stop below any id that an open transaction may still commit. audit.seal() finds that
-- line with marks it writes (17_seal.sql); a stream is read by audit_reader, which
-- writes nothing, so it takes its marks with the read-only audit.stream_mark() below
-- and keeps them itself (src/audit_capture/stream.py).
--
-- A mark is the id sequence's last value L, then, read after it, the transactions that
-- hold the sequence's RowExclusiveLock: nextval() takes that lock the first time a
-- transaction draws from the sequence, before it draws, and keeps it until the whole
-- transaction ends (a rolled-back savepoint does not release it). So a transaction that
-- drew an id <= L (before L was read) is, when the holders are read just after, either
-- among them or already ended. Every id <= L is final -- committed and visible, or gone
-- for good -- once none of those holders is open any more: a later mark whose holders
-- include none of them says so (a virtual transaction id is never reused for another
-- transaction of its session). A transaction's locks are released after its commit is
-- visible to new snapshots, so a statement that starts after that later mark sees every
-- committed id <= L.
--
-- Only transactions that drew an action id hold the tail back (any other long
-- transaction does not), and nothing is written: no transaction id, no row, which is
-- why the marks live in the reader's memory rather than in a table. Like the seal,
-- this needs the sequence's CACHE 1 (its default): a cached range would hand out ids
-- below L later.

create or replace function audit.stream_mark(out last_id bigint, out open_writers text[])
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  last_value_ bigint;
  called      boolean;
begin
  -- a standby sees neither the primary's locks nor its sequence as drawn (the sequence
  -- is logged ahead): a mark there could settle ids a transaction still holds
  if pg_is_in_recovery() then
    raise exception 'audit.stream_mark() cannot run on a standby: it does not see the primary''s open transactions'
      using errcode = 'feature_not_supported',
            hint = 'Read the log as a stream from the primary.';
  end if;
  -- an audit server (audit-capture replicate) receives the primary's actions late and
  -- in any order, with ids its own sequence never drew: it cannot settle them
  if audit.is_audit_server() then
    raise exception 'this database is an audit server: it receives the log from its primary by replication, so read the stream from the primary'
      using errcode = 'object_not_in_prerequisite_state',
            hint = 'Run audit-capture tail (or audit.stream_mark()) on the primary database.';
  end if;
  -- the sequence first, then the holders of its lock (statements apart, in this order)
  select s.last_value, s.is_called into last_value_, called from audit.action_log_id_seq s;
  last_id := case when called then last_value_ else last_value_ - 1 end;
  -- granted or waiting: a waiting one draws after L was read, so it is only caution
  select coalesce(array_agg(distinct l.virtualtransaction order by l.virtualtransaction), '{}')
  into open_writers
  from pg_locks l
  where l.locktype = 'relation'
    and l.database = (select d.oid from pg_database d where d.datname = current_database())
    and l.relation = 'audit.action_log_id_seq'::regclass
    and l.mode = 'RowExclusiveLock';
end
$$;
comment on function audit.stream_mark() is
  'A mark for reading the log in id order without skipping a late commit (audit-capture tail): last_id, the id sequence''s last value, and open_writers, the virtual transaction ids (pg_locks) of the transactions that had drawn an action id and were still open just after. Every id up to last_id is final once none of open_writers is open: a later mark whose open_writers holds none of them. Writes nothing; refused on a standby and on an audit server; audit_reader.';

revoke all on function audit.stream_mark() from public;
grant execute on function audit.stream_mark() to audit_reader;
