"""SQL is code: every PL/pgSQL function of the schema passes plpgsql_check, with its
extra, performance and security warnings on."""

from __future__ import annotations

import json
import os

import pytest
from pg_binaries import ENVVAR, bin_dir

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


def skip_unless_this_server_has_plpgsql_check(conn) -> None:
    """On a server chosen with AUDIT_CAPTURE_TEST_PGBIN (the version legs), a missing
    plpgsql_check is a skip that says why; on the default server it is a failure
    (scripts/test installs Debian's package for it)."""
    available = conn.execute(
        "select exists (select from pg_available_extensions where name = 'plpgsql_check')"
    ).fetchone()[0]
    conn.rollback()
    if not available and os.environ.get(ENVVAR, "").strip():
        version = conn.execute("show server_version").fetchone()[0]
        pytest.skip(
            "plpgsql_check is packaged for Debian's PostgreSQL only"
            f" (postgresql-15-plpgsql-check); PostgreSQL {version} from {bin_dir()}"
            " has no such extension"
        )


def test_plpgsql_functions_pass_plpgsql_check(conn):
    skip_unless_this_server_has_plpgsql_check(conn)
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
