"""``audit-capture status --show-sql TABLE``: the SQL that captures a table, as the
database holds it (``audit.capture_sql(regclass)``), for a DBA to read or diff."""

from __future__ import annotations

import re

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo

from audit_capture.cli import cli


def run(url: str, *args: str):
    return CliRunner().invoke(
        cli, ["--database-url", url, *args], env={"AUDIT_CAPTURE_DATABASE_URL": None}
    )


def show_sql(url: str, table: str) -> str:
    result = run(url, "status", "--show-sql", table)
    assert result.exit_code == 0, result.output
    return result.output


def one(conn, query, *params):
    return conn.execute(query, params).fetchone()[0]


def compared_columns(conn, table: str) -> list[str]:
    """The columns whose changes capture compares (all but the ignored ones)."""
    return [
        r[0]
        for r in conn.execute(
            "select a.attname from pg_attribute a join audit.tracked_table t"
            " on t.relation = a.attrelid where a.attrelid = %s::regclass"
            " and a.attnum > 0 and not a.attisdropped and not a.attname = any (t.ignored_columns)",
            (table,),
        )
    ]


# What SQL would run if the printed text went through psql: the text less its quoted
# identifiers, literals, dollar-quoted bodies and comments.
_QUOTED_OR_COMMENT = re.compile(
    r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'|\$(\w*)\$.*?\$\1\$|--[^\n\r]*', re.DOTALL
)


def outside_quotes_and_comments(text: str) -> str:
    return _QUOTED_OR_COMMENT.sub(" ", text)


def test_a_tracked_table_shows_its_triggers_and_its_generated_function(db_url):
    with psycopg.connect(db_url) as conn:
        function = one(conn, "select 'audit.capture_' || 'public.clients'::regclass::oid")
        definition = one(conn, "select pg_get_functiondef(%s::regprocedure)", function + "()")
        trigger = one(
            conn,
            "select pg_get_triggerdef(oid) from pg_trigger"
            " where tgrelid = 'public.clients'::regclass and tgname = 'audit_capture_update'",
        )
        clients_columns = compared_columns(conn, "public.clients")

    printed = show_sql(db_url, "clients")

    assert printed.startswith("-- audit_capture: the SQL that captures public.clients, as")
    assert trigger + ";\n" in printed  # exactly as PostgreSQL holds them
    assert definition + ";\n" in printed
    for name in (
        "audit_capture_insert",
        "audit_capture_update",
        "audit_capture_delete",
        "audit_capture_truncate",
        "audit_capture_truncate_end",
        "audit_capture_key_change",
    ):
        assert f"CREATE TRIGGER {name} " in printed
    for helper in ("audit.capture_key_change()", "audit.capture_truncate()"):
        assert f"-- function {helper}\nCREATE OR REPLACE FUNCTION {helper}" in printed
    assert "insert into audit.action_log" in printed
    for column in clients_columns:
        assert f"o.{column} is distinct from n.{column}" in printed, column
    # the parameters are the function's own variables; nothing is left to rename
    assert "p_action_id, p_occurred_at, p_items_before + (i / 1000)" in printed
    assert "$1" not in printed.replace("($1)", "")  # (capture_key_change's own EXECUTE)


@pytest.mark.parametrize("capture_mode", ["generic"])
def test_the_generic_mode_shows_the_queries_audit_capture_writes_out(db_url, capture_mode):
    with psycopg.connect(db_url) as conn:
        clients_columns = compared_columns(conn, "public.clients")

    printed = show_sql(db_url, "public.clients")

    assert "EXECUTE FUNCTION audit.capture()" in printed
    assert "-- function audit.capture()\nCREATE OR REPLACE FUNCTION audit.capture()" in printed
    assert "execute audit.capture_query(tg_relid, 'UPDATE', 'many', '$1', '$2', '$3')" in printed
    assert "audit.capture_1" not in printed  # no generated function in this mode
    written_out = printed.split(
        "-- the queries audit.capture() writes out at every statement on public.clients, as"
    )[1].split("\n-- function ")[0]
    assert written_out.count("insert into audit.action_log") == 3  # one row: each operation
    assert "select $1, $3, $2 + (i / 1000)" in written_out
    for column in clients_columns:
        assert f"o.{column} is distinct from n.{column}" in written_out, column


def test_a_partitioned_table_shows_its_partitions_triggers_and_what_they_run(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "create table public.ledger (id int, region text, amount int, primary key (id, region))"
            " partition by list (region);"
            " create table public.ledger_eu partition of public.ledger for values in ('eu');"
            " select audit.track('public.ledger', 'entry')"
        )

    printed = show_sql(db_url, "ledger")

    assert "-- triggers on public.ledger_eu\n" in printed
    assert re.search(r"CREATE TRIGGER audit_capture_insert .* ON public\.ledger_eu ", printed)
    assert (
        "-- the queries audit.capture() writes out at every statement on public.ledger_eu"
        in printed
    )
    assert "'public.ledger', 'INSERT'" in printed  # a partition is logged as its table
    # asked about the partition: its own triggers, and what they run
    member = show_sql(db_url, "ledger_eu")
    assert "(logged as public.ledger)" in member.splitlines()[0]
    assert "-- triggers on public.ledger\n" not in member


def test_an_untracked_or_unknown_table_is_a_one_line_error_naming_it(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("create table public.loose (id int primary key)")

    untracked = run(db_url, "status", "--show-sql", "loose")
    unknown = run(db_url, "status", "--show-sql", "public.nope")

    assert untracked.exit_code == 1
    assert untracked.output.strip().splitlines() == [
        "Error: 'loose' is not tracked, nor a partition or inheritance child of a tracked"
        " table (audit-capture status lists the tracked tables)"
    ]
    assert unknown.exit_code == 1
    assert unknown.output.strip().splitlines() == [
        "Error: no table 'public.nope' in this database (name it as SQL does: crm.clients)"
    ]


def test_a_database_without_the_audit_schema_says_to_install_it(empty_db_url):
    result = run(empty_db_url, "status", "--show-sql", "clients")
    assert result.exit_code == 1
    assert "audit-capture migrate upgrade" in result.output


# A table's owner chooses its names: a line break must not end a comment line and turn
# the rest of the name into SQL, and a terminal's escape sequences must not reach it.
HOSTILE = "o\ndeclare z int := public.mark('table');--\x1b[2J\r*/$$"
HOSTILE_COLUMN = "id\n    UPDATE many;\n    INSERT one;\"'$1*/--\x1b]0;title\x07"


def test_a_hostile_table_name_prints_as_inert_text(db_url):
    table = sql.Identifier("public", HOSTILE)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create table {} ({} int primary key, note text)").format(
                table, sql.Identifier(HOSTILE_COLUMN)
            )
        )
        conn.execute(
            "select audit.track(%s::regclass, 'odd', label_column => 'note')",
            (table.as_string(conn),),
        )
        name = table.as_string(conn)

    printed = show_sql(db_url, name)

    assert "\x1b" not in printed and "\r" not in printed and "\x07" not in printed
    assert "⟨U+001B⟩" in printed and "⟨U+000D⟩" in printed
    assert "mark" not in outside_quotes_and_comments(printed)
    for line in printed.splitlines():
        if line.startswith("-- "):  # a name in a comment: escaped, on its one line
            assert "declare z" not in line or "\\ndeclare z" in line, line


def test_an_audit_reader_login_may_show_the_sql(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        login = f"reader_{conn.info.dbname}"
        conn.execute(
            sql.SQL("create role {} login in role audit_reader").format(sql.Identifier(login))
        )
    try:
        printed = show_sql(make_conninfo(db_url, user=login), "clients")
        assert "insert into audit.action_log" in printed
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(login)))


def test_a_role_without_audit_reader_may_not_show_the_sql(db_url):
    # an application role, and one that owns a tracked table of its own: neither reads
    # the capture SQL (capture_sql is SECURITY DEFINER, granted to audit_reader only)
    with psycopg.connect(db_url, autocommit=True) as conn:
        app = f"app_{conn.info.dbname}"
        owner = f"owner_{conn.info.dbname}"
        for role in (app, owner):
            conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("grant usage, create on schema public to {}").format(sql.Identifier(owner))
        )
        conn.execute(sql.SQL("create table public.owned (id int primary key)"))
        conn.execute(sql.SQL("alter table public.owned owner to {}").format(sql.Identifier(owner)))
        conn.execute("select audit.track('public.owned', 'owned')")
    try:
        for role, table in ((app, "clients"), (owner, "owned")):
            url = make_conninfo(db_url, user=role)
            with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select audit.capture_sql(%s::regclass)", (table,))
            result = run(url, "status", "--show-sql", table)
            assert result.exit_code != 0
            assert isinstance(result.exception, SystemExit), result.exception
            assert result.output == (
                f"Error: role {role!r} may not read the capture SQL: grant audit_reader to {role}\n"
            )
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("select audit.untrack('public.owned')")
            conn.execute("drop table public.owned")
            for role in (app, owner):
                conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
