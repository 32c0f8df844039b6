"""Revisions that hold only what they change (migrations/README.md).

A synthetic chain, built in a temporary folder the way a maintainer builds one
(``alembic revision`` with the package's template, then ``Chain.freeze``): a baseline,
and a revision 0002 that changes one state file, adds one, removes one (marker), keeps
the others, and has an upgrade file that alters a table, an enum and a domain.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from pg_binaries import tool
from psycopg import sql
from test_migrations import psql

from audit_capture import migrate, resources, sqlfiles
from audit_capture.revisions import Chain, RevisionError, concurrent_statements, sha256

BASELINE = {
    "00_types.sql": """
do $$ begin
  create type audit.color as enum ('red', 'green');
exception when duplicate_object then null;
end $$;
do $$ begin
  create domain audit.level as text constraint level_check check (value in ('low', 'high'));
exception when duplicate_object then null;
end $$;
""",
    "01_log.sql": """
create table if not exists audit.log (
  id bigint generated always as identity primary key,
  color audit.color not null,
  level audit.level
);
""",
    "02_describe.sql": """
create or replace function audit.describe(entry audit.log) returns text
language sql stable as $$ select entry.color::text || '/' || coalesce(entry.level, '-') $$;
""",
    "03_helper.sql": """
create or replace function audit.helper() returns int language sql immutable as $$ select 1 $$;
""",
    "05_stable.sql": """
create or replace function audit.stable() returns int language sql immutable as $$ select 5 $$;
""",
    "uninstall.sql": "drop schema if exists audit cascade;\n",
}

DELTA = {
    **BASELINE,
    "00_types.sql": """
do $$ begin
  create type audit.color as enum ('red', 'green', 'blue');
exception when duplicate_object then null;
end $$;
do $$ begin
  create domain audit.level as text
    constraint level_check check (value in ('low', 'high', 'urgent'));
exception when duplicate_object then null;
end $$;
""",
    "01_log.sql": """
create table if not exists audit.log (
  id bigint generated always as identity primary key,
  color audit.color not null,
  level audit.level,
  note text
);
""",
    "02_describe.sql": """
create or replace function audit.describe(entry audit.log) returns text
language sql stable
as $$ select entry.color::text || '/' || coalesce(entry.level, '-') || ' ' || entry.note $$;
""",
    "04_shout.sql": """
create or replace function audit.shout(entry audit.log) returns text
language sql stable as $$ select upper(audit.describe(entry)) $$;
""",
}
del DELTA["03_helper.sql"]

UPGRADE_0002 = """
alter type audit.color add value if not exists 'blue';
alter domain audit.level drop constraint level_check;
alter domain audit.level add constraint level_check check (value in ('low', 'high', 'urgent'));
alter table audit.log add column if not exists note text;
drop function if exists audit.helper();
"""

DOWNGRADE_0002 = """
drop function if exists audit.shout(audit.log);
alter table audit.log drop column if exists note;
alter domain audit.level drop constraint level_check;
alter domain audit.level add constraint level_check check (value in ('low', 'high'));
"""


def write_triggers(folder: Path, files: dict[str, str]) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text.lstrip())
    return folder


def chain_config(root: Path, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(root))
    config.attributes["database_url"] = url
    return config


def new_chain(tmp_path: Path) -> Chain:
    """migrations/ of its own: the package's env.py and template, no revision yet."""
    root = tmp_path / "migrations"
    (root / "versions").mkdir(parents=True)
    for name in ("env.py", "script.py.mako"):
        shutil.copy(resources.migrations_dir() / name, root / name)
    return Chain(root)


def add_revision(chain: Chain, rev: str, message: str) -> Chain:
    command.revision(chain_config(chain.root), message, rev_id=rev)
    return Chain(chain.root)  # parents are read once per Chain


@pytest.fixture
def chain(tmp_path) -> Chain:
    """The synthetic chain 0001 (baseline) -> 0002 (delta), frozen and recorded."""
    triggers = tmp_path / "triggers"
    chain = add_revision(new_chain(tmp_path), "0001", "baseline")
    chain.freeze(write_triggers(triggers, BASELINE))
    chain.release("0001")
    chain = add_revision(chain, "0002", "delta")
    for folder, text in (("upgrade", UPGRADE_0002), ("downgrade", DOWNGRADE_0002)):
        (chain.root / folder).mkdir()
        (chain.root / folder / "0002.sql").write_text(text.lstrip())
    chain.freeze(write_triggers(triggers, DELTA))
    return chain


_numbers = itertools.count(1)


@pytest.fixture
def other_empty_db_url(pg_superuser_url):
    """A second empty database, beside empty_db_url; dropped after the test."""
    name = f"revisions_{next(_numbers)}"
    with psycopg.connect(pg_superuser_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    try:
        yield pg_superuser_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(pg_superuser_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def schema_dump(url: str) -> str:
    """The audit schema as pg_dump writes it, without Alembic's version table."""
    done = subprocess.run(
        [tool("pg_dump"), "--schema-only", "-n", "audit", "-T", "audit.alembic_version", url],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # pg_dump 17.6+ brackets its output with a random \restrict key
    return "\n".join(
        line
        for line in done.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def fresh_install(url: str, files: list[Path]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("create schema if not exists audit")
        sqlfiles.install(conn, files)
        conn.commit()


def _scalar(url: str, query: str):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchone()[0]


# -- the loader -------------------------------------------------------------------------


def test_a_revision_folder_holds_only_what_it_changes(chain):
    assert sorted(p.name for p in chain.folder("0002").iterdir()) == [
        "00_types.sql",
        "01_log.sql",
        "02_describe.sql",
        "03_helper.sql.removed",
        "04_shout.sql",
    ]
    assert chain.folder("0002").joinpath("03_helper.sql.removed").read_bytes() == b""
    resolved = chain.state_files("0002")
    assert {name: path.parent.name for name, path in resolved.items()} == {
        "00_types.sql": "0002",
        "01_log.sql": "0002",
        "02_describe.sql": "0002",
        "04_shout.sql": "0002",
        "05_stable.sql": "0001",
        "uninstall.sql": "0001",
    }
    assert [p.name for p in chain.install_files("0002")] == sorted(
        set(resolved) - {"uninstall.sql"}
    )
    assert {name: path.read_text() for name, path in resolved.items()} == {
        name: text.lstrip() for name, text in DELTA.items()
    }
    assert [p.name for p in chain.install_files("0001")] == sorted(
        set(BASELINE) - {"uninstall.sql"}
    )


def test_the_revision_template_makes_a_tiny_revision(chain):
    (script,) = chain.root.joinpath("versions").glob("0002_*.py")
    text = script.read_text()
    assert "sqlfiles.upgrade(revision)" in text and "sqlfiles.downgrade(revision)" in text
    assert 'down_revision = "0001"' in text
    assert len(text.splitlines()) < 35
    # scripts/test's checks accept a new revision as written
    ruff = str(Path(sys.executable).with_name("ruff"))
    for check in (["format", "--check"], ["check"]):
        settings = str(Path(__file__).parents[1] / "pyproject.toml")
        done = subprocess.run(
            [ruff, *check, "--config", settings, str(script)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_upgrade_to_head_is_a_fresh_install_of_head(chain, empty_db_url, other_empty_db_url):
    config = chain_config(chain.root, empty_db_url)
    command.upgrade(config, "0001")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("insert into audit.log (color, level) values ('red', 'low')")

    command.upgrade(config, "head")

    assert migrate.current(empty_db_url) == "0002"
    fresh_install(other_empty_db_url, chain.install_files("0002"))
    assert schema_dump(empty_db_url) == schema_dump(other_empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("insert into audit.log (color, level, note) values ('blue', 'urgent', 'n')")
        assert conn.execute("select audit.shout(l) from audit.log l order by id").fetchall() == [
            (None,),  # the old row's note is null
            ("BLUE/URGENT N",),
        ]


def test_a_downgrade_runs_the_previous_sql_then_the_downgrade_file(chain, empty_db_url):
    config = chain_config(chain.root, empty_db_url)
    command.upgrade(config, "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("insert into audit.log (color, level, note) values ('green', 'high', 'n')")

    command.downgrade(config, "0001")

    assert migrate.current(empty_db_url) == "0001"
    assert _scalar(empty_db_url, "select audit.helper()") == 1  # 0001's removed file, back
    assert _scalar(empty_db_url, "select to_regproc('audit.shout') is null")
    assert _scalar(empty_db_url, "select audit.describe(l) from audit.log l") == "green/high"
    with (
        pytest.raises(psycopg.errors.CheckViolation),
        psycopg.connect(empty_db_url, autocommit=True) as conn,
    ):
        conn.execute("insert into audit.log (color, level) values ('red', 'urgent')")

    command.upgrade(config, "head")  # again: the note column went with the downgrade
    assert _scalar(empty_db_url, "select to_regproc('audit.helper') is null")
    assert _scalar(empty_db_url, "select count(note) from audit.log") == 0

    command.downgrade(config, "base")
    assert migrate.current(empty_db_url) is None
    assert _scalar(empty_db_url, "select count(*) from pg_namespace where nspname = 'audit'") == 0


def test_offline_sql_runs_the_upgrade_file_before_the_state_files(
    chain, capsys, empty_db_url, other_empty_db_url
):
    command.upgrade(chain_config(chain.root), "0001:0002", sql=True)
    out = capsys.readouterr().out
    order = [
        "-- upgrade/0002.sql",
        "-- sql/0002/00_types.sql",
        "-- sql/0002/01_log.sql",
        "-- sql/0002/02_describe.sql",
        "-- sql/0002/04_shout.sql",
        "-- sql/0001/05_stable.sql",
    ]
    at = [out.index(line + "\n") for line in order]
    assert at == sorted(at), out
    assert "-- sql/0001/03_helper.sql" not in out
    assert "alter type audit.color add value if not exists 'blue';" in out
    # the script does in psql what an online upgrade does
    command.upgrade(chain_config(chain.root, empty_db_url), "0001")
    psql(empty_db_url, out)
    assert migrate.current(empty_db_url) == "0002"
    fresh_install(other_empty_db_url, chain.install_files("0002"))
    assert schema_dump(empty_db_url) == schema_dump(other_empty_db_url)


def test_a_marker_for_a_file_no_ancestor_has_is_an_error(chain):
    chain.folder("0002").joinpath("07_nothing.sql.removed").write_bytes(b"")
    with pytest.raises(RevisionError, match=r"07_nothing.sql.removed removes 07_nothing.sql"):
        chain.state_files("0002")


def test_the_package_head_upgrade_is_a_fresh_install_of_triggers(empty_db_url, other_empty_db_url):
    migrate.upgrade(empty_db_url, "head")
    with psycopg.connect(other_empty_db_url) as conn:
        sqlfiles.install(conn)
        conn.commit()
    assert schema_dump(empty_db_url) == schema_dump(other_empty_db_url)


# -- freezing ---------------------------------------------------------------------------


def test_freeze_refuses_a_released_revision_and_a_revision_below_head(chain, tmp_path):
    triggers = write_triggers(tmp_path / "triggers", {**DELTA, "06_more.sql": "select 1;\n"})
    before = chain.recorded_files("0002")
    with pytest.raises(RevisionError) as raised:
        chain.freeze(triggers, "0001")
    assert str(raised.value) == (
        "revision 0001 is not the head (0002): only the head revision's SQL may be frozen; "
        'a change goes into a new revision (scripts/new-revision "what changed")'
    )
    chain.release("0002")
    with pytest.raises(RevisionError) as raised:
        chain.freeze(triggers)
    assert str(raised.value) == (
        "revision 0002 is released (manifest.json): its SQL never changes; "
        'put the change in a new revision (scripts/new-revision "what changed")'
    )
    assert chain.recorded_files("0002") == before
    assert not chain.manifest_problems()


def test_freeze_refreshes_an_unreleased_head(chain, tmp_path):
    triggers = write_triggers(
        tmp_path / "triggers", {**DELTA, "01_log.sql": BASELINE["01_log.sql"]}
    )
    assert chain.freeze(triggers) == [
        "00_types.sql",
        "02_describe.sql",
        "04_shout.sql",
        "03_helper.sql.removed",
    ]
    assert not chain.folder("0002").joinpath("01_log.sql").exists()
    assert chain.state_files("0002")["01_log.sql"].parent.name == "0001"
    assert not chain.manifest_problems()


def test_the_freeze_script_refuses_a_revision_that_is_not_the_head():
    # as a maintainer runs it: from a shell, outside the test environment's python
    venv = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv)
    done = subprocess.run(
        [str(resources.SOURCE_ROOT / "scripts" / "freeze-sql"), "0000"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"scripts/freeze-sql: revision 0000 is not the head ({migrate.head()}): only the head "
        "revision's SQL may be frozen; a change goes into a new revision "
        '(scripts/new-revision "what changed")'
    )


# -- the manifest -----------------------------------------------------------------------


def test_every_file_of_every_revision_matches_the_manifest():
    chain = Chain.packaged()
    problems = chain.manifest_problems()
    assert not problems, "migrations/manifest.json:\n" + "\n".join(problems)
    assert set(chain.manifest()["revisions"]) == set(chain.revisions())


def test_the_manifest_check_names_an_edited_an_added_and_a_missing_file(chain):
    assert not chain.manifest_problems()
    released = (
        "revision 0001 is released and never changes: restore the file (git checkout) and put "
        'the change in a new revision (scripts/new-revision "what changed")'
    )
    describe = chain.folder("0001") / "02_describe.sql"
    describe.write_text(describe.read_text().replace("'/'", "':'"))
    chain.folder("0001").joinpath("07_extra.sql").write_text("select 1;\n")
    chain.folder("0001").joinpath("05_stable.sql").unlink()
    chain.upgrade_file("0002").write_text("select 2;\n")
    chain.root.joinpath("downgrade", "0009.sql").write_text("select 9;\n")

    assert chain.manifest_problems() == [
        "downgrade/0009.sql belongs to no revision",
        f"sql/0001/02_describe.sql differs from its sha256 in manifest.json: {released}",
        f"sql/0001/05_stable.sql is missing (manifest.json lists it): {released}",
        f"sql/0001/07_extra.sql is not in manifest.json: {released}",
        "upgrade/0002.sql differs from its sha256 in manifest.json: "
        "if the change is meant, run scripts/freeze-sql",
    ]
    with pytest.raises(RevisionError, match="upgrade/0002.sql differs"):
        chain.release("0002")


# -- what runs outside a transaction (upgrade_concurrently/, downgrade_concurrently/) ---

CONCURRENT_0002 = """
-- the index the state file makes again (if not exists), built without blocking writes
create or replace function audit.first_color(c audit.color) returns text
language sql immutable parallel safe
return 'first; ' || c::text;  -- a ';' inside a string, and in a comment: fine

create index concurrently if not exists log_color_idx on audit.log (color);
create unique index concurrently if not exists log_note_idx on audit.log (note);
drop index concurrently if exists audit.log_old_idx;
"""


def test_a_concurrent_file_is_split_at_each_semicolon_outside_strings_and_comments(tmp_path):
    path = tmp_path / "0002.sql"
    path.write_text(CONCURRENT_0002.lstrip())
    statements = concurrent_statements(path)
    assert [(s.line, s.index) for s in statements] == [
        (2, None),
        (6, ("log_color_idx", "audit.log")),
        (7, ("log_note_idx", "audit.log")),
        (8, None),
    ]
    assert statements[0].text.startswith("-- the index")
    assert statements[0].text.endswith("return 'first; ' || c::text;")
    assert statements[1].text == (
        "  -- a ';' inside a string, and in a comment: fine\n\n"
        "create index concurrently if not exists log_color_idx on audit.log (color);"
    )


def test_a_concurrent_file_keeps_dollar_quoted_bodies_whole(tmp_path):
    # a DO block (revision 0003 computes a constraint's bound in one) or a plpgsql
    # function: their ';' are inside the $tag$ string; a '$' in a name or a $1 opens none
    path = tmp_path / "0002.sql"
    path.write_text(
        "do $$ begin perform 1; end $$;\n"
        "create or replace function audit.f(int) returns int language sql\n"
        "as $body$ select $1; -- ; $$ $body$;\n"
        "select a$b, 'it''s; $$' from audit.log;\n"
    )
    statements = concurrent_statements(path)
    assert [(s.line, s.text.strip()) for s in statements] == [
        (1, "do $$ begin perform 1; end $$;"),
        (
            2,
            "create or replace function audit.f(int) returns int language sql\n"
            "as $body$ select $1; -- ; $$ $body$;",
        ),
        (4, "select a$b, 'it''s; $$' from audit.log;"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("select 1;\ndo $$ begin perform 1; end;\n", 2, "an unterminated $$...$$"),
        ("select 1;\nselect $q$;$Q$;", 2, "an unterminated $q$...$q$"),
        ("select $ 1;", 1, "a '$' that opens no $tag$ string"),
        ("select 1; /* ; */", 1, "a /* comment */ (write -- comments)"),
        ("select E'it\\';s';", 1, "an E'...' string (backslash escapes)"),
        ("select 'it;s;\n", 1, "an unterminated '...'"),
        ("select 1;\n\nselect 2", 3, "a statement without its closing ';'"),
        ("select 1;;", 1, "an empty statement"),
        ("-- nothing\n", 1, "no statement"),
        (
            "create index if not exists a_idx on audit.log (color);",
            1,
            "CREATE INDEX must read 'create [unique] index concurrently if not exists "
            "<name> on <schema>.<table>' (a plain name, lowercase)",
        ),
        (
            "create index concurrently if not exists a_idx on log (color);",
            1,
            "CREATE INDEX must read 'create [unique] index concurrently if not exists "
            "<name> on <schema>.<table>' (a plain name, lowercase)",
        ),
        (
            'create index concurrently if not exists "A" on audit.log (color);',
            1,
            "CREATE INDEX must read 'create [unique] index concurrently if not exists "
            "<name> on <schema>.<table>' (a plain name, lowercase)",
        ),
        (
            "create index concurrently on audit.log (color);",
            1,
            "CREATE INDEX must read 'create [unique] index concurrently if not exists "
            "<name> on <schema>.<table>' (a plain name, lowercase)",
        ),
        (
            "drop index audit.log_old_idx;",
            1,
            "DROP INDEX must read 'drop index concurrently if exists ...'",
        ),
        (
            "\n  Set role audit_owner;",
            2,
            "SET: transaction, role and session commands have no place here (each "
            "statement runs in its own transaction, as audit_owner)",
        ),
        (
            "begin;\ncreate index concurrently if not exists a on audit.log (color);\ncommit;",
            1,
            "BEGIN: transaction, role and session commands have no place here (each "
            "statement runs in its own transaction, as audit_owner)",
        ),
        (
            "create function audit.f() returns int language sql\n"
            "begin atomic select 1; select 2; end;",
            1,
            "a BEGIN ATOMIC body (its ';' cannot be split safely): write the function's "
            "body as 'return ...', or create it in the transactional part",
        ),
        ("select 1;\n\\gexec\n", 2, "a '\\' (a psql command: the file also runs without psql)"),
    ],
)
def test_a_concurrent_file_that_cannot_be_split_safely_is_refused(tmp_path, text, line, why):
    path = tmp_path / "0002.sql"
    path.write_text(text)
    with pytest.raises(RevisionError) as raised:
        concurrent_statements(path)
    assert str(raised.value) == (
        f"{path.as_posix()}, line {line}: {why}; the statements of a *_concurrently file run "
        "one at a time outside a transaction and are split at each ';' outside strings, "
        "quoted names and -- comments (migrations/README.md)"
    )


# the state file that makes again what CONCURRENT_0002 built
INDEXES_0002 = """
-- the same as upgrade_concurrently/0002.sql, its comments and spacing aside
create or replace function audit.first_color(c audit.color) returns text
language sql immutable parallel safe
return 'first; '   ||   c::text;
create index if not exists log_color_idx on audit.log (color);
create unique index if not exists log_note_idx on audit.log (note);
"""


def test_freeze_records_the_concurrent_files_and_refuses_one_it_cannot_split(chain, tmp_path):
    triggers = write_triggers(tmp_path / "triggers", {**DELTA, "06_indexes.sql": INDEXES_0002})
    folder = chain.root / "upgrade_concurrently"
    folder.mkdir()
    folder.joinpath("0002.sql").write_text(CONCURRENT_0002.lstrip())
    chain.freeze(triggers)
    files = chain.manifest()["revisions"]["0002"]["files"]
    assert files["upgrade_concurrently/0002.sql"] == sha256(folder / "0002.sql")
    assert not chain.manifest_problems()

    folder.joinpath("0002.sql").write_text("create index on audit.log (color);\n")
    with pytest.raises(RevisionError, match=r"upgrade_concurrently/0002.sql, line 1: CREATE"):
        chain.freeze(triggers)
    assert chain.manifest()["revisions"]["0002"]["files"] == files  # nothing recorded

    chain.root.joinpath("downgrade_concurrently").mkdir()
    chain.concurrent_file("0002", "downgrade").write_text("select 1;\n")
    folder.joinpath("0002.sql").write_text(CONCURRENT_0002.lstrip())
    chain.freeze(triggers)
    chain.release("0002")
    released = (
        "revision 0002 is released and never changes: restore the file (git checkout) and put "
        'the change in a new revision (scripts/new-revision "what changed")'
    )
    chain.concurrent_file("0002", "downgrade").write_text("select 2;\n")
    chain.root.joinpath("upgrade_concurrently", "0003.sql").write_text("select 3;\n")
    assert chain.manifest_problems() == [
        "upgrade_concurrently/0003.sql belongs to no revision",
        f"downgrade_concurrently/0002.sql differs from its sha256 in manifest.json: {released}",
    ]
    with pytest.raises(RevisionError, match="is released"):
        chain.freeze(triggers)


def test_freeze_refuses_a_concurrent_statement_that_the_state_files_lack(chain, tmp_path):
    # the state files must find what the file built: an index of another definition
    # would be kept by 'if not exists'; a function they replace would no longer be the
    # one that computed the index's entries
    triggers = write_triggers(tmp_path / "triggers", {**DELTA, "06_indexes.sql": INDEXES_0002})
    folder = chain.root / "upgrade_concurrently"
    folder.mkdir()
    chain.root.joinpath("downgrade_concurrently").mkdir()
    text = CONCURRENT_0002.lstrip()
    for wrong in (
        text.replace("(color)", "(color desc)"),
        text.replace("'first; '", "'first: '"),
    ):
        folder.joinpath("0002.sql").write_text(wrong)
        with pytest.raises(RevisionError) as raised:
            chain.freeze(triggers)
        (problem,) = str(raised.value).split("; upgrade")
        assert problem.startswith("upgrade_concurrently/0002.sql, line ")
        assert problem.endswith(
            ": not a statement of revision 0002's state files (the same but for "
            "'concurrently', comments aside): make it the state file's, character for "
            "character, or the state files keep (create index if not exists) or replace "
            "(create or replace function) what it built"
        )
    folder.joinpath("0002.sql").write_text(text)
    # the way back is checked against the previous revision's state files
    chain.concurrent_file("0002", "downgrade").write_text(
        "create index concurrently if not exists log_color_idx on audit.log (color);\n"
    )
    with pytest.raises(RevisionError) as raised:
        chain.freeze(triggers)
    assert str(raised.value).startswith(
        "downgrade_concurrently/0002.sql, line 1: not a statement of revision 0001's state files"
    )
    # an index no state file creates must be one the revision's own file uses by name
    # (0003's primary keys: 'add constraint ... primary key using index <name>')
    chain.concurrent_file("0002", "downgrade").unlink()
    folder.joinpath("0002.sql").write_text(
        text + "create unique index concurrently if not exists log_new_pkey on audit.log (id);\n"
    )
    with pytest.raises(RevisionError) as raised:
        chain.freeze(triggers)
    assert str(raised.value) == (
        "upgrade_concurrently/0002.sql, line 9: not a statement of revision 0002's state "
        "files, whose 'create index if not exists' lack log_new_pkey, nor an index "
        "upgrade/0002.sql uses by name (e.g. 'primary key using index'): nothing would use it"
    )
    chain.upgrade_file("0002").parent.mkdir(exist_ok=True)
    chain.upgrade_file("0002").write_text(
        "alter table audit.log add primary key using index log_new_pkey;\n"
    )
    chain.freeze(triggers)
    assert not chain.concurrent_problems("0002")
    assert not chain.manifest_problems()


def test_the_package_s_concurrent_files_split_and_match_the_state_files():
    chain = Chain.packaged()
    for revision in chain.revisions():
        for direction in ("upgrade", "downgrade"):
            chain.concurrent_statements(revision, direction)  # raises when it cannot
        assert not chain.concurrent_problems(revision)
    assert [s.index for s in chain.concurrent_statements("0002", "upgrade") if s.index] == [
        ("action_log_text_time_idx", "audit.action_log"),
        ("action_log_actor_source_idx", "audit.action_log"),
    ]
