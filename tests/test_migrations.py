"""The package's own Alembic chain, and the operations for a host application's chain."""

from __future__ import annotations

import itertools
import subprocess
import textwrap
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from pg_binaries import tool
from psycopg import sql

from audit_capture import migrate, resources, revisions, sqlfiles


def _scalar(url: str, query: str, params=()):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


def _audit_objects(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            "schema": conn.execute(
                "select count(*) from pg_namespace where nspname = 'audit'"
            ).fetchone()[0],
            "functions": conn.execute(
                "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
                " where n.nspname = 'audit'"
            ).fetchone()[0],
            "tables": conn.execute(
                "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = 'audit'"
            ).fetchone()[0],
        }


def test_upgrade_to_head_keeps_version_table_inside_audit_schema(empty_db_url):
    assert migrate.current(empty_db_url) is None

    migrate.upgrade(empty_db_url, "head")

    assert migrate.current(empty_db_url) == migrate.head()
    assert _scalar(empty_db_url, "select to_regclass('audit.alembic_version') is not null")
    assert _scalar(empty_db_url, "select to_regclass('public.alembic_version') is null")
    assert _scalar(empty_db_url, "select to_regclass('audit.action_log') is not null")
    assert _scalar(empty_db_url, "select to_regclass('audit.tracked_table') is not null")


def test_downgrade_to_base_removes_everything_and_upgrade_works_again(empty_db_url):
    migrate.upgrade(empty_db_url, "head")
    assert _audit_objects(empty_db_url)["functions"] > 0

    migrate.downgrade(empty_db_url, "base")

    assert migrate.current(empty_db_url) is None
    assert _audit_objects(empty_db_url) == {"schema": 0, "functions": 0, "tables": 0}

    migrate.upgrade(empty_db_url, "head")
    assert migrate.current(empty_db_url) == migrate.head()
    assert _scalar(empty_db_url, "select to_regclass('audit.action_log') is not null")


def test_downgrade_to_base_with_a_tracked_table_removes_its_triggers_and_every_function(
    empty_db_url,
):
    # uninstall.sql with something to remove: a tracked table's triggers, its generated
    # capture function, logged actions, and audit.refuse_change(), which the log's own
    # triggers call (it goes after the tables)
    migrate.upgrade(empty_db_url, "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create table public.clients (id int primary key, name text)")
        conn.execute("select audit.track('public.clients', 'client')")
        conn.execute("insert into public.clients values (1, 'Ann'), (2, 'Bob')")
        oid = conn.execute("select 'public.clients'::regclass::oid").fetchone()[0]
        assert conn.execute(f"select to_regprocedure('audit.capture_{oid}()')").fetchone()[0]

    migrate.downgrade(empty_db_url, "base")

    assert _audit_objects(empty_db_url) == {"schema": 0, "functions": 0, "tables": 0}
    assert (
        _scalar(
            empty_db_url,
            "select count(*) from pg_trigger where tgrelid = 'public.clients'::regclass",
        )
        == 0
    )
    assert _scalar(empty_db_url, "select count(*) from public.clients") == 2


def test_downgrade_to_base_removes_the_triggers_a_detached_partition_kept(empty_db_url):
    # a partition detached from a tracked table (or a child disinherited) becomes a
    # table of its own and keeps the audit triggers it had, which call the functions
    # the uninstall drops: it failed with "cannot drop function audit.capture()"
    migrate.upgrade(empty_db_url, "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create table public.cases (id int primary key) partition by range (id)")
        conn.execute(
            "create table public.cases_old partition of public.cases for values from (0) to (100)"
        )
        conn.execute("select audit.track('public.cases', 'case')")
        conn.execute("alter table public.cases detach partition public.cases_old")
        kept = "select count(*) from pg_trigger where tgrelid = 'public.cases_old'::regclass"
        assert conn.execute(kept).fetchone()[0] > 0

    migrate.downgrade(empty_db_url, "base")

    assert _audit_objects(empty_db_url) == {"schema": 0, "functions": 0, "tables": 0}
    assert _scalar(empty_db_url, kept) == 0


def test_upgrade_leaves_a_host_alembic_version_table_alone(empty_db_url):
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create table public.alembic_version (version_num varchar(32) primary key)")
        conn.execute("insert into public.alembic_version values ('hostrev1')")

    migrate.upgrade(empty_db_url, "head")
    migrate.downgrade(empty_db_url, "base")

    assert _scalar(empty_db_url, "select version_num from public.alembic_version") == "hostrev1"


def test_current_changes_nothing_on_a_database_without_audit(empty_db_url):
    assert migrate.current(empty_db_url) is None
    assert _audit_objects(empty_db_url)["schema"] == 0


def test_head_revision_freezes_current_triggers():
    """triggers/*.sql must equal the head revision's resolved SQL (migrations/README.md)."""
    chain = revisions.Chain.packaged()
    head = chain.head()
    current = {path.name: path.read_bytes() for path in resources.triggers_dir().glob("*.sql")}
    frozen = {name: path.read_bytes() for name, path in chain.state_files(head).items()}
    differ = sorted(
        name for name in set(current) | set(frozen) if current.get(name) != frozen.get(name)
    )
    fix = (
        "add a revision (scripts/new-revision)"
        if chain.is_released(head)
        else "run scripts/freeze-sql"
    )
    assert not differ, f"triggers/ differs from revision {head}'s SQL: {differ}; {fix}"
    assert revisions.UNINSTALL_FILE in frozen


def test_every_revision_has_its_sql():
    chain = revisions.Chain.packaged()
    assert chain.revisions() == migrate.revisions()
    for revision in chain.revisions():
        assert chain.install_files(revision), f"no SQL for revision {revision}"
        assert chain.uninstall_file(revision).is_file()


def test_upgrade_sql_mode_prints_the_frozen_sql(capsys):
    migrate.upgrade_sql("head")
    out = capsys.readouterr().out
    assert "audit.alembic_version" in out
    chain = revisions.Chain.packaged()
    files = chain.install_files(chain.head())
    for path in files:
        assert f"-- {path.relative_to(chain.root).as_posix()}\n" in out
    assert files[0].read_text().strip().splitlines()[-1] in out


def psql(url: str, script: str) -> None:
    """Apply a script as a DBA applies ``migrate upgrade --sql``: psql, stop at an error."""
    binary = tool("psql")
    done = subprocess.run(
        [binary, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=script,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_upgrade_sql_script_installs_the_chain_in_psql(empty_db_url, capsys):
    migrate.upgrade_sql("head")
    psql(empty_db_url, capsys.readouterr().out)
    assert migrate.current(empty_db_url) == migrate.head()
    with psycopg.connect(empty_db_url) as conn:
        # the version table went to the schema's owner, readable by the audit roles
        assert (
            conn.execute(
                "select relowner::regrole::text from pg_class"
                " where oid = 'audit.alembic_version'::regclass"
            ).fetchone()[0]
            == "audit_owner"
        )
        for role in ("audit_reader", "audit_admin"):
            assert conn.execute(
                "select has_table_privilege(%s, 'audit.alembic_version', 'select')", (role,)
            ).fetchone()[0]
        conn.execute("create table widgets (id int primary key, name text)")
        conn.execute("select audit.track('widgets', 'widget', label_column => 'name')")
        conn.execute("insert into widgets values (1, 'Gear')")
        assert conn.execute("select action, resource_label from audit.action_log").fetchall() == [
            ("Widget created", "Gear")
        ]
        assert conn.execute("select current_user").fetchone()[0] == conn.info.user


def test_the_viewer_keeps_execute_on_time_buckets_after_a_repair(make_role, db_url):
    # the text search's condition calls audit.time_buckets(); 12_privileges.sql revokes
    # PUBLIC's EXECUTE from the functions that exist when it runs: on a fresh install
    # not yet this one (13_viewer_indexes.sql makes it), on a repair (or an upgrade) it
    # did, and the viewer's text search failed with "permission denied"
    reader = make_role("grant audit_reader to {role}")
    stranger = make_role()
    search = (
        "select count(*) from audit.action_log"
        " where audit.time_buckets(occurred_at) && '{1}'::integer[]"
    )
    for _ in ("fresh", "repaired"):
        with psycopg.connect(reader, autocommit=True) as conn:
            assert conn.execute(search).fetchone()[0] == 0
        with (
            psycopg.connect(stranger, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("select audit.time_buckets(now())")
        migrate.repair(db_url)


# -- a host application's own chain ---------------------------------------------------

HOST_ENV = """
from alembic import context
from sqlalchemy import create_engine

import audit_capture.alembic_ops  # noqa: F401  registers op.track_table / op.untrack_table

config = context.config
engine = create_engine(config.attributes["sqlalchemy_url"])
with engine.connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""

HOST_REVISION = '''
"""widgets"""
from alembic import op
import sqlalchemy as sa

revision = "h001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "widgets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text),
    )
    op.track_table("widgets", "widget", label_column="name")


def downgrade():
    op.untrack_table("widgets")
    op.drop_table("widgets")
'''


@pytest.fixture
def host_chain(tmp_path: Path, db_url: str) -> Config:
    """A host application's Alembic chain (own env.py, public.alembic_version)."""
    return make_host_chain(tmp_path, db_url)


def make_host_chain(tmp_path: Path, db_url: str) -> Config:
    script_dir = tmp_path / "host_migrations"
    (script_dir / "versions").mkdir(parents=True)
    (script_dir / "env.py").write_text(textwrap.dedent(HOST_ENV))
    (script_dir / "versions" / "h001_widgets.py").write_text(textwrap.dedent(HOST_REVISION))
    config = Config()
    config.set_main_option("script_location", str(script_dir))
    from audit_capture.database import sqlalchemy_url

    config.attributes["sqlalchemy_url"] = sqlalchemy_url(db_url)
    return config


def test_host_chain_tracks_and_untracks_with_alembic_operations(host_chain, db_url):
    command.upgrade(host_chain, "head")

    assert _scalar(db_url, "select version_num from public.alembic_version") == "h001"
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "select resource_type, label_column from audit.tracked_table"
            " where relation = 'widgets'::regclass"
        ).fetchone()
        assert row == ("widget", "name")
        before = conn.execute("select coalesce(max(id), 0) from audit.action_log").fetchone()[0]
        conn.execute("insert into widgets (id, name) values (1, 'Sprocket')")
        conn.commit()
        action = conn.execute(
            "select action_type, resource_type, resource_id, resource_label"
            " from audit.action_log where id > %s",
            (before,),
        ).fetchall()
    assert action == [("create", "widget", "1", "Sprocket")]

    command.downgrade(host_chain, "base")

    assert _scalar(db_url, "select to_regclass('public.widgets') is null")
    assert (
        _scalar(
            db_url,
            "select count(*) from audit.tracked_table where relation::text = 'widgets'",
        )
        == 0
    )


def test_untrack_operation_reverses_to_the_settings_it_read(db_url):
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from audit_capture.alembic_ops import TrackTableOp, UntrackTableOp
    from audit_capture.database import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(db_url))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "create table gadgets (id int primary key, name text, state text)"
            )
            op = Operations(MigrationContext.configure(connection))
            op.track_table(
                "gadgets",
                "gadget",
                label_column="name",
                status_columns=["state"],
                label="Gadget",
                label_plural="Gadgets",
            )
            untrack = UntrackTableOp("gadgets")
            op.invoke(untrack)
            again = untrack.reverse()
            assert isinstance(again, TrackTableOp)
            assert again.settings.resource_type == "gadget"
            assert again.settings.status_columns == ("state",)
            op.invoke(again)
            tracked = connection.exec_driver_sql(
                "select resource_type, label_column, status_columns from audit.tracked_table"
                " where relation = 'gadgets'::regclass"
            ).one()
            assert tuple(tracked) == ("gadget", "name", ["state"])
            assert isinstance(again.reverse(), UntrackTableOp)
    finally:
        engine.dispose()


def test_untrack_without_known_settings_cannot_be_reversed():
    from audit_capture.alembic_ops import UntrackTableOp

    with pytest.raises(ValueError, match="widgets"):
        UntrackTableOp("widgets").reverse()


def test_operations_render_in_offline_sql_mode():
    import io

    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    import audit_capture.alembic_ops  # noqa: F401

    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql",
        opts={"as_sql": True, "output_buffer": buffer, "literal_binds": True},
    )
    op = Operations(context)
    op.track_table(
        "widgets",
        "widget",
        label_column="name",
        status_columns=["state"],
        labels=[{"label": "it's"}],
        schema="crm",
    )
    op.untrack_table("widgets")
    out = buffer.getvalue()
    assert (
        "select audit.track(cast(quote_ident('crm') || '.' || quote_ident('widgets') as regclass)"
        in out
    )
    assert "cast(ARRAY[] as text[])" in out
    assert """cast('[{"label": "it''s"}]' as jsonb)""" in out
    assert "select audit.untrack(cast(quote_ident('widgets') as regclass))" in out


# -- the application's chain, run in the wrong order or by the wrong role -----------------


def test_the_host_chain_before_the_package_chain_says_to_run_migrate_upgrade(
    tmp_path, empty_db_url
):
    from audit_capture.alembic_ops import AuditNotInstalled

    chain = make_host_chain(tmp_path, empty_db_url)
    with pytest.raises(AuditNotInstalled) as raised:
        command.upgrade(chain, "head")
    assert str(raised.value) == (
        "track_table('widgets'): audit_capture is not installed in this database; run "
        "`audit-capture migrate upgrade` (the package's own chain) before the application's "
        "migrations that track tables"
    )
    assert _scalar(empty_db_url, "select to_regclass('public.widgets') is null")  # rolled back
    migrate.upgrade(empty_db_url, "head")
    command.upgrade(chain, "head")
    assert _scalar(empty_db_url, "select count(*) from audit.tracked_table") == 1


@pytest.fixture
def migrator(db_url):
    """A login role that may create tables in public (as an application's migrations
    run), and nothing of audit_capture's; dropped after the test."""
    name = f"app_migrator_{db_url.rsplit('/', 1)[1]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create role {0} login; grant usage, create on schema public to {0}").format(
                sql.Identifier(name)
            )
        )
    yield name, db_url.replace("postgres@", f"{name}@", 1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop owned by {0}; drop role {0}").format(sql.Identifier(name)))


def test_a_migrating_role_without_audit_admin_is_told_the_grant(tmp_path, db_url, migrator):
    from audit_capture.alembic_ops import NotAuditAdmin

    role, url = migrator
    chain = make_host_chain(tmp_path, url)
    with pytest.raises(NotAuditAdmin) as raised:
        command.upgrade(chain, "head")
    assert str(raised.value) == (
        f"role {role} may not track tables (track_table('widgets')): a superuser runs "
        f"`grant audit_admin to {role};`, or run the migration as a role that has audit_admin"
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("grant audit_admin to {}").format(sql.Identifier(role))
        )  # as the message says
    command.upgrade(chain, "head")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("revoke audit_admin from {}").format(sql.Identifier(role)))
    with pytest.raises(NotAuditAdmin, match=f"role {role} may not untrack tables"):
        command.downgrade(chain, "base")
    assert (
        _scalar(
            db_url, "select count(*) from audit.tracked_table where relation = 'widgets'::regclass"
        )
        == 1
    )


def test_a_host_downgrade_after_the_audit_schema_was_removed_goes_on(host_chain, db_url, caplog):
    command.upgrade(host_chain, "head")
    migrate.downgrade(db_url, "base")  # the wrong order: the audit schema first
    assert (
        _scalar(db_url, "select count(*) from pg_trigger where tgrelid = 'widgets'::regclass") == 0
    )
    with caplog.at_level("WARNING", logger="audit_capture.alembic_ops"):
        command.downgrade(host_chain, "base")
    assert _scalar(db_url, "select to_regclass('public.widgets') is null")
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "audit_capture.alembic_ops"]
    assert warning.startswith(
        "untrack_table('widgets') did nothing: audit_capture is not installed"
    )
    assert (
        "the application's downgrade first, then `audit-capture migrate downgrade base`" in warning
    )


def test_an_install_catches_up_a_primary_key_changed_behind_the_event_trigger(empty_db_url):
    migrate.upgrade(empty_db_url, "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create table public.widgets (id int primary key, code text not null)")
        conn.execute("select audit.track('public.widgets', 'widget')")
        conn.execute("drop event trigger audit_capture_alter_table")
        conn.execute(
            "alter table public.widgets drop constraint widgets_pkey, add primary key (code)"
        )
    assert _scalar(empty_db_url, "select key_columns from audit.tracked_table") == ["id"]

    with psycopg.connect(empty_db_url) as conn:
        sqlfiles.install(conn)
        conn.commit()

    assert _scalar(empty_db_url, "select key_columns from audit.tracked_table") == ["code"]
    when = _scalar(
        empty_db_url,
        "select pg_get_triggerdef(oid) from pg_trigger where tgname = 'audit_capture_key_change'",
    )
    assert "old.code IS DISTINCT FROM new.code" in when and "old.id" not in when
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("insert into public.widgets values (1, 'a'), (2, 'b')")
        conn.execute("update public.widgets set code = code || '2'")
        moved = conn.execute(
            "select resource_id, old, new from audit.action_items("
            "(select max(id) from audit.action_log)) order by 1"
        ).fetchall()
    assert moved == [("a2", {"code": "a"}, {"code": "a2"}), ("b2", {"code": "b"}, {"code": "b2"})]


# -- a database restored from pg_dump ------------------------------------------------


def restore_dump_of(source_url: str, target_url: str) -> None:
    """pg_dump of ``source_url`` applied with psql to the empty ``target_url``: the
    tables come back with new oids, their triggers and functions with their old names."""
    binary = tool("pg_dump")
    dump = subprocess.run([binary, "-d", source_url], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    psql(target_url, dump.stdout)


def _capture_function_of(conn, table: str) -> str:
    return conn.execute(
        "select tgfoid::regproc::text from pg_trigger"
        " where tgrelid = %s::regclass and tgname = 'audit_capture_update'",
        (table,),
    ).fetchone()[0]


def test_a_restored_table_moves_to_its_own_capture_function_at_alter_table(db_url, empty_db_url):
    restore_dump_of(db_url, empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        oid = conn.execute("select 'clients'::regclass::oid").fetchone()[0]
        assert _capture_function_of(conn, "clients") != f"audit.capture_{oid}"  # the old oid's
        # before 0004, the stale function kept the dropped column: every UPDATE failed
        conn.execute("alter table clients drop column notes")
        conn.execute("insert into clients (name) values ('Ann')")
        conn.execute("update clients set name = 'Ann Lee' where name = 'Ann'")
        assert conn.execute(
            "select action, changes from audit.action_log order by id desc limit 1"
        ).fetchone() == ("Client updated", {"name": {"old": "Ann", "new": "Ann Lee"}})
        assert _capture_function_of(conn, "clients") == f"audit.capture_{oid}"
        generated = conn.execute(
            "select count(*) from pg_proc where proname ~ '^capture_[0-9]+$'"
            " and not exists (select from pg_trigger where tgfoid = pg_proc.oid)"
        ).fetchone()[0]
        assert generated == 0  # the stale copy went with its last trigger


def test_status_reports_restored_tables_and_repair_moves_them(db_url, empty_db_url):
    from click.testing import CliRunner

    from audit_capture.cli import cli

    restore_dump_of(db_url, empty_db_url)

    def status():
        return CliRunner().invoke(
            cli,
            ["--database-url", empty_db_url, "status"],
            env={"AUDIT_CAPTURE_DATABASE_URL": None},
        )

    before = status()
    assert before.exit_code == 1
    assert (
        "clients (client): stale (calls the capture function of the table it was restored from)"
        in before.output
    )
    repaired = CliRunner().invoke(
        cli,
        ["--database-url", empty_db_url, "migrate", "repair"],
        env={"AUDIT_CAPTURE_DATABASE_URL": None},
    )
    assert repaired.exit_code == 0, repaired.output
    after = status()
    assert after.exit_code == 0 and "stale" not in after.output, after.output
    with psycopg.connect(empty_db_url) as conn:
        for table in ("clients", "campaigns", "cases"):
            oid = conn.execute("select %s::regclass::oid", (table,)).fetchone()[0]
            assert _capture_function_of(conn, table) == f"audit.capture_{oid}"


# -- revision 0002: its indexes built outside the transaction ---------------------------

_numbered_databases = itertools.count(1)

LOG_INDEXES = """
select c.relname, x.indexdef, i.indisvalid
from pg_index i
join pg_class c on c.oid = i.indexrelid
join pg_indexes x on x.schemaname = 'audit' and x.indexname = c.relname
where i.indrelid = 'audit.action_log'::regclass
order by 1
"""


def _log_indexes(url: str) -> list[tuple[str, str, bool]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(LOG_INDEXES).fetchall()


@pytest.fixture
def fresh_indexes(pg_superuser_url):
    """fresh_indexes(rev): the log's indexes of a fresh install of revision ``rev``'s
    state files (sqlfiles.install, no migration), in a database of its own."""
    made: list[str] = []

    def indexes(revision: str) -> list[tuple[str, str, bool]]:
        name = f"fresh_{next(_numbered_databases)}"
        with psycopg.connect(pg_superuser_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("create database {} template template0").format(sql.Identifier(name))
            )
        made.append(name)
        url = pg_superuser_url.rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(url) as conn:
            conn.execute("create schema audit")
            sqlfiles.install(conn, revisions.Chain.packaged().install_files(revision))
            conn.commit()
        return _log_indexes(url)

    yield indexes
    with psycopg.connect(pg_superuser_url, autocommit=True) as admin:
        for name in made:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def _at_0001_with_actions(url: str, rows: int = 300) -> None:
    """The audit schema at revision 0001 and a tracked table whose writes filled the log
    (actors with an id and a source, and without)."""
    from audit_capture import set_context

    migrate.upgrade(url, "0001")
    with psycopg.connect(url) as conn:
        conn.execute("create table public.clients (id int primary key, name text)")
        conn.execute("select audit.track('public.clients', 'client', label_column => 'name')")
        for start in range(0, rows, 100):
            with conn.transaction():
                if start % 200 == 0:
                    set_context(conn, actor_id=start + 1, actor_name="Ann", source="web")
                conn.execute(
                    "insert into public.clients select n, 'client ' || n"
                    " from generate_series(%s::int, %s::int) as n",
                    (start + 1, start + 100),
                )
        conn.commit()


def _make_invalid_indexes(url: str) -> None:
    """As a failed CREATE INDEX CONCURRENTLY leaves them: one index of each new name of
    revision 0002, INVALID, with the wrong definition."""
    with psycopg.connect(url, autocommit=True) as conn:  # the superuser
        # a real failed concurrent build: a unique index over duplicate values
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "create unique index concurrently action_log_actor_source_idx"
                " on audit.action_log (action_type)"
            )
        conn.execute("create index action_log_text_time_idx on audit.action_log (id)")
        conn.execute(
            "update pg_index set indisvalid = false"
            " where indexrelid = 'audit.action_log_text_time_idx'::regclass"
        )
    invalid = {name for name, _, valid in _log_indexes(url) if not valid}
    assert invalid == {"action_log_actor_source_idx", "action_log_text_time_idx"}


NEW_INDEXES = {"action_log_text_time_idx", "action_log_actor_source_idx"}
OLD_INDEXES = {"action_log_text_idx", "action_log_actor_idx"}


def test_upgrade_to_0002_leaves_the_indexes_of_a_fresh_install_at_head(
    empty_db_url, fresh_indexes, caplog
):
    _at_0001_with_actions(empty_db_url)
    assert {name for name, _, _ in _log_indexes(empty_db_url)} >= OLD_INDEXES
    _make_invalid_indexes(empty_db_url)  # a concurrent build that failed before

    with caplog.at_level("WARNING", logger="audit_capture.sqlfiles"):
        migrate.upgrade(empty_db_url, "0002")

    assert migrate.current(empty_db_url) == "0002"
    indexes = _log_indexes(empty_db_url)
    assert indexes == fresh_indexes("0002")  # names and pg_indexes.indexdef
    assert all(valid for _, _, valid in indexes)
    names = {name for name, _, _ in indexes}
    assert names >= NEW_INDEXES and not OLD_INDEXES & names
    assert sorted(r.getMessage() for r in caplog.records) == [
        f"dropping the INVALID index audit.{name} (a failed concurrent build left it)"
        for name in sorted(NEW_INDEXES)
    ]
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("insert into public.clients values (1000, 'after')")
        assert conn.execute(
            "select count(*) from audit.action_log where to_tsvector('simple', action"
            " || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, ''))"
            " @@ 'after'::tsquery"
        ).fetchone() == (1,)
        assert conn.execute("select current_user").fetchone()[0] == conn.info.user


def test_downgrade_from_0002_leaves_the_indexes_of_a_fresh_install_of_0001(
    empty_db_url, fresh_indexes
):
    _at_0001_with_actions(empty_db_url)
    migrate.upgrade(empty_db_url, "0002")

    migrate.downgrade(empty_db_url, "0001")

    assert migrate.current(empty_db_url) == "0001"
    indexes = _log_indexes(empty_db_url)
    assert indexes == fresh_indexes("0001")
    assert all(valid for _, _, valid in indexes)
    assert (
        _scalar(empty_db_url, "select to_regprocedure('audit.time_buckets(timestamptz)')") is None
    )
    migrate.upgrade(empty_db_url, "0002")  # and up again
    assert _log_indexes(empty_db_url) == fresh_indexes("0002")


def _caller_connection(url: str):
    from sqlalchemy import create_engine

    from audit_capture.database import sqlalchemy_url

    return create_engine(sqlalchemy_url(url))


def test_on_a_caller_s_transaction_0002_builds_its_indexes_in_it_and_says_so(
    empty_db_url, fresh_indexes, caplog
):
    _at_0001_with_actions(empty_db_url)
    _make_invalid_indexes(empty_db_url)
    config = migrate.alembic_config(None)
    engine = _caller_connection(empty_db_url)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            # everything runs in the caller's transaction: rolled back, nothing happened
            with connection.begin() as transaction:
                command.upgrade(config, "0002")
                transaction.rollback()
            assert migrate.current(empty_db_url) == "0001"
            assert {n for n, _, _ in _log_indexes(empty_db_url)} >= OLD_INDEXES

            caplog.clear()
            with (
                caplog.at_level("WARNING", logger="audit_capture.sqlfiles"),
                connection.begin(),
            ):
                command.upgrade(config, "0002")
    finally:
        engine.dispose()

    assert migrate.current(empty_db_url) == "0002"
    indexes = _log_indexes(empty_db_url)
    assert indexes == fresh_indexes("0002")
    assert all(valid for _, _, valid in indexes)
    warning, *dropped = [r.getMessage() for r in caplog.records]
    assert warning == (
        "revision 0002: the connection is already in a transaction, so "
        "upgrade_concurrently/0002.sql cannot run (CREATE INDEX CONCURRENTLY runs outside a "
        "transaction): its indexes are built inside the transaction instead, which holds a "
        "SHARE lock on audit.action_log (ACCESS EXCLUSIVE, which blocks reads too, where it "
        "drops an index) and blocks every INSERT, UPDATE and DELETE of every "
        "tracked table (their audited writes) until it commits. To build them without "
        "blocking writes, run `audit-capture migrate upgrade` (or migrate.upgrade(url, ...)) "
        "on a connection of its own."
    )
    assert sorted(dropped) == [
        f"dropping the INVALID index audit.{name} (a failed concurrent build left it)"
        for name in sorted(NEW_INDEXES)
    ]

    # the way back, in a caller's transaction too
    caplog.clear()
    engine = _caller_connection(empty_db_url)
    try:
        with (
            engine.connect() as connection,
            caplog.at_level("WARNING", logger="audit_capture.sqlfiles"),
        ):
            config.attributes["connection"] = connection
            with connection.begin():
                command.downgrade(config, "0001")
    finally:
        engine.dispose()
    assert migrate.current(empty_db_url) == "0001"
    assert _log_indexes(empty_db_url) == fresh_indexes("0001")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(
        "revision 0002: the connection is already in a transaction, so "
        "downgrade_concurrently/0002.sql cannot run"
    )
    assert "run `audit-capture migrate downgrade` (or migrate.downgrade(url, ...))" in warning


def test_on_a_caller_s_connection_outside_a_transaction_0002_builds_concurrently(
    empty_db_url, fresh_indexes, caplog
):
    _at_0001_with_actions(empty_db_url)
    config = migrate.alembic_config(None)
    engine = _caller_connection(empty_db_url)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            with caplog.at_level("WARNING", logger="audit_capture.sqlfiles"):
                command.upgrade(config, "0002")
            assert not connection.in_transaction()
    finally:
        engine.dispose()
    assert not caplog.records
    assert _log_indexes(empty_db_url) == fresh_indexes("0002")


def test_an_audited_write_goes_on_while_0002_builds_its_indexes(empty_db_url):
    # An open transaction that wrote to a tracked table (it holds ROW EXCLUSIVE on the
    # log) makes the index build wait for it. Built in the migration's transaction, the
    # index would hold SHARE on the log (or the old index's DROP, ACCESS EXCLUSIVE) and
    # queue every other write behind it; CONCURRENTLY, it holds SHARE UPDATE EXCLUSIVE,
    # and another write takes its lock at once (NOWAIT: no timing involved).
    import threading

    _at_0001_with_actions(empty_db_url)
    failures: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrate.upgrade(empty_db_url, "0002")
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    holder = psycopg.connect(empty_db_url)
    holder.execute("insert into public.clients values (5001, 'open')")
    migration = threading.Thread(target=upgrade)
    migration.start()
    try:
        with psycopg.connect(empty_db_url, autocommit=True) as watcher:
            waiting = None
            for _ in range(600):  # until the migration waits for the open transaction
                waiting = watcher.execute(
                    "select query from pg_stat_activity where datname = current_database()"
                    " and backend_type = 'client backend' and wait_event_type = 'Lock'"
                    " and pid <> %s",
                    (holder.info.backend_pid,),
                ).fetchone()
                if waiting or failures:
                    break
                watcher.execute("select pg_sleep(0.1)")
            assert waiting is not None, failures
            assert (
                "create index concurrently if not exists action_log_text_time_idx" in waiting[0]
            ), waiting
            with psycopg.connect(empty_db_url) as writer:
                writer.execute("lock table audit.action_log in row exclusive mode nowait")
                writer.execute("insert into public.clients values (5002, 'during')")
                writer.commit()
    finally:
        holder.rollback()
        holder.close()
        migration.join(timeout=300)
    assert not migration.is_alive() and not failures, failures
    assert migrate.current(empty_db_url) == "0002"
    indexes = _log_indexes(empty_db_url)
    assert all(valid for _, _, valid in indexes)
    assert {name for name, _, _ in indexes} >= NEW_INDEXES
    assert (
        _scalar(
            empty_db_url, "select count(*) from audit.action_log where resource_label = 'during'"
        )
        == 1
    )


def test_the_upgrade_sql_script_builds_0002_s_indexes_outside_a_transaction_in_psql(
    empty_db_url, fresh_indexes, capsys
):
    migrate.upgrade_sql("0002", "0001")
    script = capsys.readouterr().out
    order = [
        "COMMIT;",
        "-- upgrade_concurrently/0002.sql: OUTSIDE a transaction, one statement at a time.",
        "-- psql runs each statement in autocommit (its default): run this script without",
        "set role audit_owner;",
        "create or replace function audit.time_buckets(",
        "-- an index action_log_text_time_idx left INVALID by a failed build is dropped first",
        "create index concurrently if not exists action_log_text_time_idx on audit.action_log",
        "-- an index action_log_actor_source_idx left INVALID by a failed build is dropped first",
        "create index concurrently if not exists action_log_actor_source_idx on audit.action_log",
        "drop index concurrently if exists audit.action_log_text_idx;",
        "drop index concurrently if exists audit.action_log_actor_idx;",
        "reset role;",
        "BEGIN;",
        "-- upgrade/0002.sql",
        "-- sql/0001/00_roles.sql",
    ]
    at = [script.index("\n" + line) for line in order]
    assert at == sorted(at), script
    # as a DBA runs it (psql, autocommit, stop at an error), on a log with actions and
    # the INVALID indexes a failed build left
    _at_0001_with_actions(empty_db_url)
    _make_invalid_indexes(empty_db_url)
    psql(empty_db_url, script)
    assert migrate.current(empty_db_url) == "0002"
    indexes = _log_indexes(empty_db_url)
    assert indexes == fresh_indexes("0002")
    assert all(valid for _, _, valid in indexes)
