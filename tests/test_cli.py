"""``audit-capture``: migrate, track, untrack, status, and one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo

from audit_capture import migrate
from audit_capture.cli import cli


def run(url: str | None, *args: str):
    runner = CliRunner()
    argv = (["--database-url", url] if url else []) + list(args)
    return runner.invoke(cli, argv, env={"AUDIT_CAPTURE_DATABASE_URL": None})


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    error_lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(error_lines) == 1, result.output
    assert error_lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in error_lines[0], result.output


def audit_cli_executable() -> str:
    candidate = Path(sys.executable).parent / "audit-capture"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("audit-capture")
    assert found, "the audit-capture console script is not installed in this environment"
    return found


# -- errors ------------------------------------------------------------------------


def test_unreachable_server_is_one_line_in_a_real_process(tmp_path):
    bad_url = "postgresql://nobody@127.0.0.1:1/nowhere"
    completed = subprocess.run(
        [audit_cli_executable(), "--database-url", bad_url, "migrate", "current"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "AUDIT_CAPTURE_DATABASE_URL"},
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr + completed.stdout
    lines = completed.stderr.strip().splitlines()
    assert lines == ["Error: cannot connect to 127.0.0.1:1: connection refused"], completed.stderr


def test_missing_url_names_the_option_and_the_variable():
    result = run(None, "migrate", "current")
    assert_one_line_error(result, "--database-url", "AUDIT_CAPTURE_DATABASE_URL")


def test_malformed_url_is_named():
    result = run("mysql://root@localhost/crm", "status")
    assert_one_line_error(result, "invalid database URL", "mysql://root@localhost/crm")


def test_password_is_not_echoed(pg_server):
    result = run("postgresql://app:s3cret@127.0.0.1:1/crm", "migrate", "current")
    assert_one_line_error(result, "127.0.0.1:1")
    assert "s3cret" not in result.output


def test_unknown_database_is_one_line(pg_server):
    result = run(pg_server.url("no_such_db"), "migrate", "current")
    assert_one_line_error(result, 'database "no_such_db" does not exist')


def test_url_from_environment_variable(empty_db_url):
    result = CliRunner().invoke(
        cli, ["migrate", "current"], env={"AUDIT_CAPTURE_DATABASE_URL": empty_db_url}
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("not installed")


# -- migrate -----------------------------------------------------------------------


def test_migrate_upgrade_current_downgrade(empty_db_url):
    head = migrate.head()

    result = run(empty_db_url, "migrate", "current")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"not installed (head is {head})"

    result = run(empty_db_url, "migrate", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"audit schema upgraded: not installed -> {head}"

    result = run(empty_db_url, "migrate", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"audit schema already at {head}"

    result = run(empty_db_url, "migrate", "current")
    assert result.output.strip() == f"{head} (head)"

    result = run(empty_db_url, "migrate", "downgrade", "base")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"audit schema downgraded: {head} -> not installed"
    assert migrate.current(empty_db_url) is None


def test_migrate_upgrade_sql_prints_without_a_database():
    result = run(None, "migrate", "upgrade", "--sql")
    assert result.exit_code == 0, result.output
    assert "create schema if not exists audit" in result.output.lower()
    assert "audit.alembic_version" in result.output


def test_downgrade_to_an_unknown_revision_is_one_line(db_url):
    result = run(db_url, "migrate", "downgrade", "zzzz")
    assert_one_line_error(result, "zzzz")


# -- track / untrack ---------------------------------------------------------------


@pytest.fixture
def widgets(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "create table widgets (id int primary key, name text, state text, secret text)"
        )
        conn.execute("create table loose_rows (name text)")
    return db_url


def _tracked(url: str, table: str):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select resource_type, label_column, status_columns, ignored_columns,"
            " redacted_columns, label, label_plural"
            " from audit.tracked_table where relation = %s::regclass",
            (table,),
        ).fetchone()


def test_track_and_untrack(widgets):
    result = run(
        widgets,
        "track",
        "widgets",
        "--resource",
        "widget",
        "--label-column",
        "name",
        "--status-column",
        "state",
        "--ignore",
        "secret",
        "--redact",
        "secret",
        "--label",
        "Widget",
        "--label-plural",
        "Widgets",
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "tracking widgets as widget"
    assert _tracked(widgets, "widgets") == (
        "widget",
        "name",
        ["state"],
        ["secret"],
        ["secret"],
        "Widget",
        "Widgets",
    )

    with psycopg.connect(widgets) as conn:
        conn.execute("insert into widgets (id, name, state) values (7, 'Gear', 'new')")
        conn.commit()
        logged = conn.execute(
            "select action_type, resource_type, resource_id, resource_label"
            " from audit.action_log order by id desc limit 1"
        ).fetchone()
    assert logged == ("create", "widget", "7", "Gear")

    result = run(widgets, "untrack", "widgets")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no longer tracking widgets"
    assert _tracked(widgets, "widgets") is None


def test_untrack_of_a_table_that_is_not_tracked_says_so(widgets):
    result = run(widgets, "untrack", "widgets")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "widgets was not tracked: nothing to do"


def test_track_a_table_without_primary_key_is_one_line_error(widgets):
    result = run(widgets, "track", "loose_rows", "--resource", "loose_row")
    assert_one_line_error(result, "loose_rows")
    assert _tracked(widgets, "loose_rows") is None


def test_track_a_missing_table_is_one_line_error(widgets):
    result = run(widgets, "track", "no_such_table", "--resource", "thing")
    assert_one_line_error(result, "no_such_table")


def test_track_by_a_role_without_audit_admin_names_the_grant(widgets):
    """A migration role that owns its tables but is no audit_admin: the error says which
    role and which grant (PostgreSQL's own words were "permission denied for function track")."""
    with psycopg.connect(widgets, autocommit=True) as conn:
        conn.execute("drop role if exists cli_migrator")
        conn.execute("create role cli_migrator login")
        conn.execute("alter table widgets owner to cli_migrator")
    try:
        url = make_conninfo(widgets, user="cli_migrator")
        for args in (["track", "widgets", "--resource", "widget"], ["untrack", "widgets"]):
            result = run(url, *args)
            assert_one_line_error(
                result,
                f"role cli_migrator may not {args[0]} tables",
                "grant audit_admin to cli_migrator;",
            )
    finally:
        with psycopg.connect(widgets, autocommit=True) as conn:
            conn.execute("drop table widgets")
            conn.execute("drop role cli_migrator")


def test_track_before_the_audit_schema_is_installed_says_to_migrate(empty_db_url):
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create table widgets (id int primary key)")
    for args in (["track", "widgets", "--resource", "widget"], ["untrack", "widgets"]):
        assert_one_line_error(
            run(empty_db_url, *args),
            "audit_capture is not installed",
            "audit-capture migrate upgrade",
        )


@pytest.mark.parametrize("place", ["before", "after"])
def test_the_database_url_goes_before_or_after_the_subcommand(widgets, place):
    """A global flag anywhere on the line: ``audit-capture track widgets --database-url
    URL`` answered "No such option"."""

    def invoke(*args):
        if place == "before":
            return run(widgets, *args)
        return run(None, *args, "--database-url", widgets)

    assert (
        invoke("track", "widgets", "--resource", "widget").output.strip()
        == "tracking widgets as widget"
    )
    assert invoke("status").exit_code == 0
    assert "(head)" in invoke("migrate", "current").output
    assert invoke("untrack", "widgets").output.strip() == "no longer tracking widgets"
    if place == "after":  # after the group's name, before its subcommand, as well
        assert "(head)" in run(None, "migrate", "--database-url", widgets, "current").output


def test_track_requires_a_resource(widgets):
    result = run(widgets, "track", "widgets")
    assert result.exit_code != 0
    assert "--resource" in result.output


# -- status ------------------------------------------------------------------------


def test_status_of_a_fresh_install_is_ok(widgets):
    assert run(widgets, "track", "widgets", "--resource", "widget").exit_code == 0

    result = run(widgets, "status")

    assert result.exit_code == 0, result.output
    head = migrate.head()
    assert f"migration: {head} (package head {head}): up to date" in result.output
    assert "audit.track(regclass," in result.output
    assert "modified" not in result.output
    assert "widgets (widget): installed" in result.output
    assert "capture: fast" in result.output
    assert "status: ok" in result.output


@pytest.mark.parametrize("role", ["audit_reader", "audit_admin"])
def test_status_runs_as_a_monitoring_login_of_an_audit_role(widgets, role):
    with psycopg.connect(widgets, autocommit=True) as conn:
        login = f"monitor_{role}_{conn.info.dbname}"
        conn.execute(
            sql.SQL("create role {} login in role {}").format(
                sql.Identifier(login), sql.Identifier(role)
            )
        )
    try:
        url = make_conninfo(widgets, user=login)
        result = run(url, "status")
        assert result.exit_code == 0, result.output
        assert "status: ok" in result.output
        current = run(url, "migrate", "current")
        assert current.exit_code == 0 and migrate.head() in current.output, current.output
    finally:
        with psycopg.connect(widgets, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(login)))


def test_status_says_which_capture_mode_runs(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("drop event trigger audit_capture_alter_table")
    result = run(db_url, "status")
    assert "capture: generic (no ALTER TABLE event trigger" in result.output


def test_status_reports_a_hand_edited_function_as_modified(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "create or replace function audit.sources() returns text[]"
            " language sql immutable as $$ select array['web']::text[] $$"
        )
    result = run(db_url, "status")
    assert result.exit_code != 0, result.output
    assert "audit.sources(): modified" in result.output
    assert "status: NOT OK" in result.output


# -- migrate repair ----------------------------------------------------------------


def test_repair_puts_back_a_hand_edited_function_and_keeps_the_log(widgets):
    assert run(widgets, "track", "widgets", "--resource", "widget").exit_code == 0
    with psycopg.connect(widgets) as conn:
        conn.execute("insert into widgets (id, name) values (1, 'Gear')")
        conn.execute(
            "create or replace function audit.sources() returns text[]"
            " language sql immutable as $$ select array['web']::text[] $$"
        )
    assert run(widgets, "status").exit_code != 0

    result = run(widgets, "migrate", "repair")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"audit schema {migrate.head()} applied again: run audit-capture status to check"
    )
    status = run(widgets, "status")
    assert status.exit_code == 0 and "status: ok" in status.output, status.output
    with psycopg.connect(widgets) as conn:
        assert conn.execute("select audit.sources()").fetchone()[0] == [
            "web",
            "api",
            "ai",
            "mobile",
        ]
        assert conn.execute("select action from audit.action_log").fetchall() == [
            ("Widget created",)
        ]
        conn.execute("insert into widgets (id, name) values (2, 'Cog')")  # still captured
        assert conn.execute("select count(*) from audit.action_log").fetchone()[0] == 2


def test_repair_by_a_superuser_adds_the_event_triggers_of_fast_capture(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("drop event trigger audit_capture_alter_table")
    assert "capture: generic" in run(db_url, "status").output

    assert run(db_url, "migrate", "repair").exit_code == 0

    assert "capture: fast" in run(db_url, "status").output


@pytest.mark.parametrize("installed", [None, "other"])
def test_repair_below_head_is_one_line_error(empty_db_url, installed):
    if installed:  # a revision other than the head (an older package's, or a pre-release one)
        migrate.upgrade(empty_db_url, "head")
        with psycopg.connect(empty_db_url) as conn:
            conn.execute("update audit.alembic_version set version_num = '0000'")
    result = run(empty_db_url, "migrate", "repair")
    assert_one_line_error(result)
    assert "run audit-capture migrate upgrade instead" in result.output
    assert migrate.current(empty_db_url) == ("0000" if installed else None)


def test_status_reports_a_disabled_trigger(widgets):
    assert run(widgets, "track", "widgets", "--resource", "widget").exit_code == 0
    with psycopg.connect(widgets) as conn:
        conn.execute("alter table widgets disable trigger all")
    result = run(widgets, "status")
    assert result.exit_code != 0, result.output
    assert "widgets (widget): disabled" in result.output


def test_status_of_a_database_without_audit(empty_db_url):
    result = run(empty_db_url, "status")
    assert result.exit_code != 0
    assert f"migration: - (package head {migrate.head()}): not installed" in result.output


def test_one_row_names_the_query_that_returned_none(conn):
    from audit_capture import database

    assert database.one_value(conn, "select count(*) from clients where false") == 0
    assert database.one_row(conn, "select 1, %s", ("two",)) == (1, "two")
    with pytest.raises(LookupError, match="got none from: 'select 1 where false'"):
        database.one_row(conn, "select 1 where false")


def test_a_server_leaves_its_start_out_of_full_garbage_collections():
    """The viewer and the demo call it before serving (cli.py says why)."""
    import gc

    from audit_capture.cli import freeze_startup_objects

    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


def test_status_names_an_invalid_index_and_how_to_build_it_again(db_url):
    """A CREATE INDEX CONCURRENTLY that did not finish (revision upgrades build their
    indexes so) leaves an INVALID index: no query uses it, every write updates it, and
    `if not exists` would keep it as it is."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into clients (name) values ('Ann'), ('Ann')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("create unique index concurrently clients_name_once on clients (name)")
        # the log is partitioned by month: a partition's index is the one a concurrent
        # build leaves invalid (its partitioned parent index is valid once all are attached)
        (index,) = conn.execute(
            "select i.inhrelid::regclass::text from pg_inherits i"
            " join pg_index x on x.indexrelid = i.inhrelid"
            " where i.inhparent = 'audit.action_log_kind_idx'::regclass"
            " and x.indrelid = to_char(now() at time zone 'UTC',"
            " '\"audit.action_log_p\"YYYY_MM')::regclass"
        ).fetchone()
        conn.execute(
            "update pg_index set indisvalid = false where indexrelid = %s::regclass", (index,)
        )
    result = run(db_url, "status")
    assert result.exit_code == 1, result.output
    assert (
        f"index {index} on audit.action_log_p" in result.output
        and f"reindex index concurrently {index}" in result.output
    )
    assert "clients_name_once" not in result.output  # the application's own: not ours
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"reindex index concurrently {index}")
    result = run(db_url, "status")
    assert result.exit_code == 0 and "INVALID" not in result.output, result.output


def test_status_names_an_invalid_index_of_the_partitioned_log_and_how_to_attach(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update pg_index set indisvalid = false"
            " where indexrelid = 'audit.action_log_kind_idx'::regclass"
        )
    result = run(db_url, "status")
    assert result.exit_code == 1, result.output
    assert (
        "index audit.action_log_kind_idx on audit.action_log: INVALID (a partition's index"
        " is missing or not attached"
        in result.output
        and "alter index audit.action_log_kind_idx attach partition <its index>" in result.output
    )


def test_every_command_is_there_under_python_dash_m():
    # `python -m audit_capture.cli` runs the module as a script: a command defined below
    # its `if __name__ == "__main__"` was missing there
    shown = subprocess.run(
        [sys.executable, "-m", "audit_capture.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for name in cli.commands:
        assert f"  {name} " in shown or f"  {name}\n" in shown, name


def test_commands_that_do_not_migrate_start_without_alembic(db_url):
    """Alembic, SQLAlchemy and Mako take most of a second to import: a command that does
    not migrate (tail here, which a log shipper may start often) never loads them, and
    a migrate command still does."""
    probe = (
        "import sys\n"
        "from audit_capture.cli import cli\n"
        "try:\n"
        "    cli.main(sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    print('loaded:', sorted({m for m in ('alembic', 'sqlalchemy', 'mako')"
        " if m in sys.modules}))\n"
    )

    def loaded(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, "--database-url", db_url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1]

    assert loaded("tail") == "loaded: []"
    assert loaded("migrate", "current") == "loaded: ['alembic', 'mako', 'sqlalchemy']"
