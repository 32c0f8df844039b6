-- audit_capture: the log's tables stay replicated across a schema change.
--
-- `audit-capture replicate` (src/audit_capture/replication.py) publishes the log on the
-- primary (publication audit_capture, owned by audit_owner) and subscribes to it on the
-- audit server (subscription audit_capture). Both hold TABLES, not names: an upgrade
-- that replaces audit.action_log or audit.action_item_chunk by a new table of the same
-- name (as revision 0003 does, keeping the old one as the legacy partition) leaves
--   - the publication on the old table: every row written afterwards stays off the
--     audit server;
--   - the subscription on the old table: its apply worker maps the primary's tables to
--     the subscriber's by name and skips, without an error, every change of a table
--     missing from pg_subscription_rel.
-- This file runs at the end of every install, upgrade and repair, in its transaction:
-- on a primary it moves the publication onto the tables that carry the names now (in
-- the same transaction as the change, so that no row falls between); on an audit
-- server whose ENABLED subscription no longer applies to them, it refuses the change
-- (nothing is lost: disable the subscription, upgrade, then run replicate again, which
-- makes it again on the same slot). Nothing happens where neither exists.
do $$
declare
  owner name;
begin
  select p.pubowner::regrole::name into owner
  from pg_catalog.pg_publication p
  where p.pubname = 'audit_capture' and not p.puballtables
    and (select pg_catalog.array_agg(r.prrelid order by r.prrelid)
         from pg_catalog.pg_publication_rel r where r.prpubid = p.oid)
        is distinct from
        (select pg_catalog.array_agg(t order by t)
         from unnest(array['audit.action_log'::regclass::oid,
                           'audit.action_item_chunk'::regclass::oid]) t);
  if found then
    if not pg_catalog.pg_has_role(current_user, owner, 'usage') then
      raise exception 'the publication audit_capture, owned by %, no longer publishes audit.action_log and audit.action_item_chunk as they are now, and % cannot change it', owner, current_user
        using errcode = 'insufficient_privilege',
              hint = 'ALTER PUBLICATION audit_capture OWNER TO audit_owner (as a superuser), then run this again; or run it as ' || owner || '.';
    end if;
    alter publication audit_capture set table audit.action_log, audit.action_item_chunk;
  end if;

  if exists (
    select from pg_catalog.pg_subscription s
    join pg_catalog.pg_database d on d.oid = s.subdbid
    where d.datname = pg_catalog.current_database() and s.subenabled
      and 'audit_capture' = any (s.subpublications)
      and exists (select from unnest(array['audit.action_log'::regclass,
                                           'audit.action_item_chunk'::regclass]) t
                  where not exists (select from pg_catalog.pg_subscription_rel r
                                    where r.srsubid = s.oid and r.srrelid = t))
  ) then
    raise exception 'the enabled subscription audit_capture would no longer apply to audit.action_log and audit.action_item_chunk: PostgreSQL would skip their replicated rows without an error'
      using errcode = 'object_not_in_prerequisite_state',
            hint = 'ALTER SUBSCRIPTION audit_capture DISABLE (the primary keeps the rows meanwhile), run this again, then audit-capture replicate (it subscribes the new tables where the old ones stopped).';
  end if;
end
$$;

-- Whether this database is an audit server: it subscribes to a primary's log
-- (audit-capture replicate). Its actions arrive late and in any order, with ids its own
-- sequence never drew, so what reads that sequence to decide which ids are final (the
-- seal, the stream) refuses to run here.
create or replace function audit.is_audit_server() returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select exists (select from pg_catalog.pg_subscription s
                 join pg_catalog.pg_database d on d.oid = s.subdbid
                 where d.datname = pg_catalog.current_database()
                   and 'audit_capture' = any (s.subpublications))
$$;
comment on function audit.is_audit_server() is
  'Internal: true in a database that subscribes to a primary''s log (an audit server), where audit.seal() and audit.stream_mark() refuse to run.';
revoke all on function audit.is_audit_server() from public;

-- On an audit server, a row the primary sends again must not stop replication. The
-- primary writes a row of the log once, but audit.maintain() moving rows of SEVERAL
-- months out of its default partitions copies them (insert through the parents, drop
-- the old default): logical replication sends those inserts, and the audit server, which
-- holds the rows already, would stop on a duplicate key until someone skipped the whole
-- transaction by hand. `audit-capture replicate` puts these two trigger functions on the
-- audit server's parents, ENABLE ALWAYS (replicated rows are applied with
-- session_replication_role = replica, where ordinary triggers do not fire): a row whose
-- key is already there is skipped (the copy is the same row). Not used on a primary.
create or replace function audit.skip_replicated_action() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select from audit.action_log l
             where l.id = new.id and l.occurred_at = new.occurred_at) then
    return null;
  end if;
  return new;
end
$$;
comment on function audit.skip_replicated_action() is
  'Trigger function of an audit server (audit-capture replicate): skips a replicated action whose key (id, occurred_at) it holds already (audit.maintain() on the primary copies rows of several months out of its default partitions, and logical replication sends them again).';

create or replace function audit.skip_replicated_chunk() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select from audit.action_item_chunk c
             where c.action_id = new.action_id and c.first_item = new.first_item
               and c.occurred_at = new.occurred_at) then
    return null;
  end if;
  return new;
end
$$;
comment on function audit.skip_replicated_chunk() is
  'Trigger function of an audit server (audit-capture replicate): skips a replicated item chunk whose key it holds already (see audit.skip_replicated_action()).';
revoke all on function audit.skip_replicated_action(), audit.skip_replicated_chunk() from public;
