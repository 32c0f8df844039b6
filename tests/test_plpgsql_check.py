"""SQL is code: every PL/pgSQL function of the schema passes plpgsql_check, with its
extra, performance and security warnings on."""

from __future__ import annotations

import json

from pg_binaries import skip_without_extension

# Warnings looked at and accepted, each with the reason.
ACCEPTED = {
    # The WHEN clause of the key-change trigger is assembled from format('%I', ...)
    # pieces, one per primary-key column; plpgsql_check cannot see through string_agg.
    ("make_key_change_trigger", "security", "text type variable is not sanitized"),
}

TRIGGER_TABLES = {
    "refuse_change": "audit.action_log",
    "skip_replicated_action": "audit.action_log",
    "skip_replicated_chunk": "audit.action_item_chunk",
}


def test_plpgsql_functions_pass_plpgsql_check(conn):
    # plpgsql_check is Debian's package for 15 only (postgresql-15-plpgsql-check)
    skip_without_extension(conn, "plpgsql_check", "checks every PL/pgSQL function")
    conn.execute("create extension if not exists plpgsql_check")
    findings = conn.execute(
        """
        select p.proname, c.lineno, c.level, c.message
        from pg_proc p
        cross join lateral plpgsql_check_function_tb(
          p.oid,
          case when p.prorettype <> 'trigger'::regtype then 0
               -- a generated capture function belongs to the table of its name
               when p.proname ~ '^capture_[0-9]+$' then substr(p.proname, 9)::oid
               else coalesce(%s::jsonb ->> p.proname, 'public.clients')::regclass end,
          newtable => case when p.proname ~ '^capture(_[0-9]+)?$' then 'audit_new_rows' end,
          oldtable => case when p.proname ~ '^capture(_[0-9]+)?$' then 'audit_old_rows' end,
          fatal_errors => false, extra_warnings => true,
          performance_warnings => true, security_warnings => true) c
        where p.pronamespace = 'audit'::regnamespace
          and p.prolang = (select oid from pg_language where lanname = 'plpgsql')
        """,
        (json.dumps(TRIGGER_TABLES),),
    ).fetchall()
    unexpected = [f for f in findings if (f[0], f[2], f[3]) not in ACCEPTED]
    assert unexpected == []
    checked = conn.execute(
        "select count(*) from pg_proc where pronamespace = 'audit'::regnamespace "
        "and prolang = (select oid from pg_language where lanname = 'plpgsql')"
    ).fetchone()[0]
    assert checked >= 10
