"""Revision 0003 on an existing install: the unpartitioned log of revision 0002 becomes the
legacy partition of the partitioned log without a row rewritten (migrations/upgrade/0003.sql,
upgrade_concurrently/0003.sql), and the way back (downgrade/0003.sql, which copies)."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess

import psycopg
import pytest
from alembic import command
from pg_binaries import tool
from psycopg import sql
from test_migrations import _caller_connection

from audit_capture import migrate, revisions, set_context, sqlfiles
from audit_capture.context import batch

_databases = itertools.count()

# the months the history is spread over (actions moved back in time, items with them)
MONTHS_BACK = (1, 2, 5)


def _populated_0002(url: str) -> None:
    """Revision 0002 with a log as an application leaves it: single-row actions, a bulk
    insert (chunks), a bulk update, a batch, an event, in the current month and (moved
    back by the superuser, the triggers off) in several earlier months."""
    migrate.upgrade(url, "0002")
    with psycopg.connect(url) as conn:
        conn.execute("create table public.clients (id int primary key, name text)")
        conn.execute("select audit.track('public.clients', 'client', label_column => 'name')")
        conn.commit()
        for month, back in enumerate((0, *MONTHS_BACK)):
            base = 10_000 * (month + 1)
            (start,) = conn.execute("select coalesce(max(id), 0) from audit.action_log").fetchone()
            with conn.transaction():
                set_context(conn, actor_id=month + 1, actor_name="Ann", source="web")
                conn.execute(
                    "insert into public.clients select n, 'client ' || n"
                    " from generate_series(%s::int, %s::int) as n",
                    (base, base + 2_499),
                )
            with conn.transaction():
                conn.execute(
                    "update public.clients set name = name || ' (moved)'"
                    " where id between %s and %s",
                    (base, base + 1_200),
                )
            conn.execute("insert into public.clients values (%s, 'single')", (base + 5_000,))
            conn.commit()
            with conn.transaction(), batch(conn, "Batch client deletion"):
                conn.execute(
                    "delete from public.clients where id between %s and %s", (base, base + 9)
                )
                conn.execute("delete from public.clients where id = %s", (base + 5_000,))
            conn.execute("select audit.log_action('login', 'LawRuler login')")
            conn.commit()
            if back:
                with conn.transaction():
                    conn.execute("set local session_replication_role = replica")
                    conn.execute(
                        "update audit.action_log set occurred_at = occurred_at - %s::interval"
                        " where id > %s",
                        (f"{back} months", start),
                    )


def _actions(url: str) -> list:
    with psycopg.connect(url) as conn:
        return conn.execute("select to_jsonb(l) from audit.action_log l order by id").fetchall()


def _items(url: str) -> list:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select l.id, to_jsonb(i) from audit.action_log l"
            " cross join lateral audit.action_items(l.id) i order by 1, 2::text"
        ).fetchall()


def _dump(url: str) -> tuple[list, list]:
    return _actions(url), _items(url)


# -- the catalog, to compare an upgraded install with a fresh one -----------------------

SCHEMA_FACTS = {
    "columns": """
        select c.relname, rank() over (partition by c.oid order by a.attnum), a.attname,
               format_type(a.atttypid, a.atttypmod),
               a.attnotnull, a.attidentity, pg_get_expr(d.adbin, d.adrelid),
               col_description(c.oid, a.attnum), a.attcompression
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
        where n.nspname = 'audit' and c.relkind in ('r', 'p', 'v')
          and not c.relispartition and c.relname <> 'alembic_version'""",
    "tables": """
        select c.relname, c.relkind, c.relpersistence, c.relowner::regrole::text,
               c.relacl::text, obj_description(c.oid, 'pg_class'),
               pg_get_partkeydef(c.oid)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'audit' and c.relkind in ('r', 'p', 'v', 'S')
          and not c.relispartition and c.relname <> 'alembic_version'""",
    "constraints": """
        select c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        from pg_constraint c join pg_namespace n on n.oid = c.connamespace
        join pg_class r on r.oid = c.conrelid
        where n.nspname = 'audit' and not r.relispartition
          and r.relname <> 'alembic_version'""",
    "indexes": """
        select i.indrelid::regclass::text, c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid
        from pg_index i join pg_class c on c.oid = i.indexrelid
        join pg_class r on r.oid = i.indrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'audit' and not r.relispartition
          and r.relname <> 'alembic_version'""",
    "triggers": """
        select t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid)
        from pg_trigger t join pg_class r on r.oid = t.tgrelid
        join pg_namespace n on n.oid = r.relnamespace
        where n.nspname = 'audit' and not t.tgisinternal and not r.relispartition""",
    "functions": """
        select p.oid::regprocedure::text, md5(p.prosrc), p.prosecdef, p.proconfig::text,
               p.proacl::text, p.proowner::regrole::text, obj_description(p.oid, 'pg_proc')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'audit' and p.proname !~ '^capture_[0-9]+$'""",
    "views": """
        select c.relname, pg_get_viewdef(c.oid)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'audit' and c.relkind = 'v'""",
    # the partitions after the legacy bound: the default and the months
    "partitions": """
        select p.relname, pg_get_expr(p.relpartbound, p.oid), p.relowner::regrole::text,
               p.relacl::text,
               array(select x.relname from pg_index i join pg_class x on x.oid = i.indexrelid
                     where i.indrelid = p.oid order by 1)::text,
               array(select t.tgname || ' ' || (t.tgparentid <> 0)::text from pg_trigger t
                     where t.tgrelid = p.oid and not t.tgisinternal order by 1)::text
        from pg_inherits h join pg_class p on p.oid = h.inhrelid
        where h.inhparent in ('audit.action_log'::regclass, 'audit.action_item_chunk'::regclass)
          and p.relname not like '%\\_legacy'""",
}


def _schema(url: str) -> dict[str, list]:
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        facts = {
            name: sorted(conn.execute(query).fetchall(), key=repr)
            for name, query in SCHEMA_FACTS.items()
        }
    return facts


@pytest.fixture
def fresh_head(pg_superuser_url):
    """The URL of a database of its own where the package's head is freshly installed
    (its state files run, as no migration ever did)."""
    name = f"fresh_head_{next(_databases)}"
    with psycopg.connect(pg_superuser_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = pg_superuser_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url) as conn:  # the state files alone, no migration
        conn.execute("create schema audit")
        chain = revisions.Chain.packaged()
        sqlfiles.install(conn, chain.install_files(chain.head()))
        conn.commit()
    yield url
    with psycopg.connect(pg_superuser_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def _storage(url: str) -> dict[str, tuple[int, int]]:
    """{relation: (oid, relfilenode)} of the log's tables and their indexes: a rewrite or
    a rebuild changes the file."""
    with psycopg.connect(url) as conn:
        return dict(
            (name, (oid, node))
            for name, oid, node in conn.execute(
                "select c.relname, c.oid::int, c.relfilenode::int from pg_class c"
                " join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'audit'"
                " and c.relkind in ('r', 'i')"
                " and (c.relname like 'action_log%' or c.relname like 'action_item_chunk%')"
            )
        )


def _legacy_bound(url: str) -> str:
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        return conn.execute(
            "select to_at::text from audit.log_partitions where kind = 'legacy'"
        ).fetchone()[0]


def _partition_of(conn, action_id: int) -> str:
    return conn.execute(
        "select tableoid::regclass::text from audit.action_log where id = %s", (action_id,)
    ).fetchone()[0]


def _check_upgraded(url: str, before: tuple[list, list], storage: dict, fresh_url: str) -> None:
    assert migrate.current(url) == migrate.head()
    # every action and every item as before
    assert _dump(url) == before
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        # the old tables are the legacy pair, to the first month boundary after now
        parts = conn.execute(
            "select kind, from_at, to_at, action_partition::text, chunk_partition::text"
            " from audit.log_partitions where kind = 'legacy'"
        ).fetchall()
        assert len(parts) == 1
        kind, from_at, to_at, action_part, chunk_part = parts[0]
        assert (from_at, action_part, chunk_part) == (
            None,
            "audit.action_log_legacy",
            "audit.action_item_chunk_legacy",
        )
        now = conn.execute("select now()").fetchone()[0]
        assert to_at > now and to_at.day == 1 and to_at.hour == 0 and to_at.tzinfo is not None
        assert (to_at.year * 12 + to_at.month) - (now.year * 12 + now.month) in (1, 2)
        assert conn.execute("select count(*) from only audit.action_log_legacy").fetchone()[
            0
        ] == len(before[0])
        # legacy chunks have occurred_at '-infinity'
        assert conn.execute(
            "select array_agg(distinct occurred_at::text) from audit.action_item_chunk"
        ).fetchone()[0] == ["-infinity"]
        # every index of the parents has its legacy index attached: matched, not built
        assert (
            conn.execute(
                "select array_agg(c.relname order by c.relname) from pg_index i"
                " join pg_class c on c.oid = i.indexrelid"
                " where i.indrelid in ('audit.action_log_legacy'::regclass,"
                "                      'audit.action_item_chunk_legacy'::regclass)"
                " and not exists (select from pg_inherits h where h.inhrelid = i.indexrelid)"
            ).fetchone()[0]
            is None
        )
    # no table rewritten, no index rebuilt (same files), the old ones renamed *_legacy*
    after = _storage(url)
    for name, (oid, node) in storage.items():
        if name in ("action_log_pkey", "action_item_chunk_pkey") or "legacy" in name:
            continue  # dropped, or the new keys' indexes built concurrently before
        legacy = name.replace("action_log", "action_log_legacy", 1).replace(
            "action_item_chunk", "action_item_chunk_legacy", 1
        )
        assert after[legacy] == (oid, node), name
    # the schema is a fresh install's but for the legacy pair
    got, fresh = _schema(url), _schema(fresh_url)
    bound = _legacy_bound(url)
    fresh["partitions"] = [
        row for row in fresh["partitions"] if "DEFAULT" in row[1] or row[1].split("'")[1] >= bound
    ]
    for name in SCHEMA_FACTS:
        assert got[name] == fresh[name], name


def _check_writes_after_upgrade(url: str, before: tuple[list, list]) -> None:
    last_id = before[0][-1][0]["id"]
    bound = _legacy_bound(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # an application's write of now: the legacy partition, ids going on
        conn.execute(
            "insert into public.clients select n, 'after ' || n from generate_series(1, 1500) n"
        )
        new_id, occurred = conn.execute(
            "select id, occurred_at from audit.action_log order by id desc limit 1"
        ).fetchone()
        assert new_id > last_id
        assert _partition_of(conn, new_id) == "audit.action_log_legacy"
        assert conn.execute(
            "select tableoid::regclass::text, occurred_at = %s from audit.action_item_chunk"
            " where action_id = %s group by 1, 2",
            (occurred, new_id),
        ).fetchall() == [("audit.action_item_chunk_legacy", True)]
        assert (
            len(conn.execute("select * from audit.action_items(%s)", (new_id,)).fetchall()) == 1500
        )
        # routing (the superuser writes the time): after the bound a month partition, far
        # away the default one
        for at, partition in (
            (bound, "audit.action_log_p" + bound[:7].replace("-", "_")),
            ("2090-06-01 00:00:00+00", "audit.action_log_default"),
            ("2001-01-01 00:00:00+00", "audit.action_log_legacy"),
        ):
            (action_id,) = conn.execute(
                "insert into audit.action_log (occurred_at, action, action_type, actor_type,"
                " db_user, transaction_id) values (%s, 'Routed', 'create', 'system', 'me', 1)"
                " returning id",
                (at,),
            ).fetchone()
            assert action_id > new_id
            assert _partition_of(conn, action_id) == partition, at


def _check_append_only(url: str) -> None:
    # the legacy partition refuses to change, to its owner too, and its TRUNCATE
    with psycopg.connect(url, autocommit=True) as conn:
        for role in (None, "audit_owner"):
            if role:
                conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            for statement in (
                "delete from audit.action_log_legacy where id = 1",
                "update audit.action_log_legacy set action = 'x' where id = 1",
                "delete from audit.action_item_chunk_legacy",
                "update audit.action_log set action = 'x' where id = 1",
                "truncate audit.action_log_legacy",
                "truncate audit.action_item_chunk_legacy",
                "truncate audit.action_log",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                    conn.execute(statement)
            conn.execute("reset role")
        assert conn.execute("select count(*) from audit.action_log where id = 1").fetchone() == (1,)


@pytest.mark.parametrize("way", ["own connection", "caller's transaction"])
def test_an_existing_log_becomes_the_legacy_partition_without_a_rewrite(
    empty_db_url, fresh_head, caplog, way
):
    _populated_0002(empty_db_url)
    before = _dump(empty_db_url)
    assert len({row[0]["occurred_at"][:7] for row in before[0]}) == 1 + len(MONTHS_BACK)
    assert len(before[1]) > 10_000
    storage = _storage(empty_db_url)

    with caplog.at_level(logging.WARNING, logger="audit_capture.sqlfiles"):
        if way == "own connection":
            migrate.upgrade(empty_db_url, "head")
        else:
            config = migrate.alembic_config(None)
            engine = _caller_connection(empty_db_url)
            try:
                with engine.connect() as connection, connection.begin():
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            finally:
                engine.dispose()
    warnings = [r.getMessage() for r in caplog.records]
    if way == "own connection":
        assert not warnings
    else:
        # the fallback builds and validates under the lock, and says so (revision 0004
        # too, for the indexes of a record's history)
        warning, history_warning = warnings
        assert history_warning.startswith(
            "revision 0004: the connection is already in a transaction, so "
            "upgrade_concurrently/0004.sql cannot run"
        )
        assert warning.startswith(
            "revision 0003: the connection is already in a transaction, so "
            "upgrade_concurrently/0003.sql cannot run"
        )
        assert (
            " The work of its other statements is done in the transaction too, under its "
            "locks, however long it takes (the scan that validates a constraint, for one)."
            in warning
        )

    _check_upgraded(empty_db_url, before, storage, fresh_head)
    _check_writes_after_upgrade(empty_db_url, before)
    _check_append_only(empty_db_url)


def test_a_failed_upgrade_after_its_concurrent_part_leaves_0002_working_and_a_rerun_ends_it(
    empty_db_url, fresh_head
):
    _populated_0002(empty_db_url)
    chain = revisions.Chain.packaged()
    # what upgrade_concurrently/0003.sql does, then the migration stops (a lock timeout, a
    # killed session...): the log is still revision 0002's, with a column, two indexes and
    # two constraints more
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("set role audit_owner")
        for statement in chain.concurrent_statements("0003", "upgrade"):
            conn.execute(statement.text.strip(), prepare=False)
        conn.execute("reset role")
        assert migrate.current(empty_db_url) == "0002"
        # revision 0002's capture goes on: chunks take the default '-infinity'
        conn.execute(
            "insert into public.clients select n, 'meanwhile'"
            " from generate_series(900001, 902000) n"
        )
        # and a rerun of the file changes nothing
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("set role audit_owner")
        for statement in chain.concurrent_statements("0003", "upgrade"):
            conn.execute(statement.text.strip(), prepare=False)
        assert conn.execute(
            "select count(*) from pg_constraint where conname like '%legacy_before%'"
        ).fetchone() == (2,)
    before = _dump(empty_db_url)
    storage = _storage(empty_db_url)

    migrate.upgrade(empty_db_url, "head")

    _check_upgraded(empty_db_url, before, storage, fresh_head)


def test_a_stale_bound_left_by_an_earlier_run_gives_way(empty_db_url):
    # a constraint of an earlier, failed run whose month is (about to be) past would make
    # every audited write fail once it begins: the next run replaces it
    _populated_0002(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "alter table audit.action_log add constraint action_log_legacy_before_2000_01"
            " check (occurred_at < '2000-01-01 00:00:00+00') not valid"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into public.clients values (777777, 'refused')")
    migrate.upgrade(empty_db_url, "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute(
            "select count(*) from pg_constraint where conname like '%legacy_before%'"
        ).fetchone() == (0,)
        conn.execute("insert into public.clients values (777777, 'written')")
    assert _legacy_bound(empty_db_url) > "2026"


def _same_schema(got: dict[str, list], expected: dict[str, list]) -> None:
    for name in SCHEMA_FACTS:
        missing = [row for row in expected[name] if row not in got[name]]
        extra = [row for row in got[name] if row not in expected[name]]
        assert (name, missing, extra) == (name, [], [])


def _fresh_0002_schema(pg_superuser_url: str) -> dict[str, list]:
    name = f"fresh_0002_{next(_databases)}"
    with psycopg.connect(pg_superuser_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = pg_superuser_url.rsplit("/", 1)[0] + "/" + name
    try:
        migrate.upgrade(url, "0002")
        return _schema(url)
    finally:
        with psycopg.connect(pg_superuser_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def _write_into_months(url: str) -> None:
    """Actions (with items) in a month partition and the default one, as the superuser
    dates them."""
    with psycopg.connect(url) as conn:
        conn.execute("set role audit_owner")
        for at in ("2090-06-01 00:00:00+00",) + tuple(
            conn.execute(
                "select from_at::text from audit.log_partitions where kind = 'month'"
                " order by month limit 2"
            ).fetchall()[i][0]
            for i in range(2)
        ):
            (action_id,) = conn.execute(
                "insert into audit.action_log (occurred_at, action, action_type, actor_type,"
                " db_user, transaction_id, row_count) values (%s, 'Imported', 'import', 'system',"
                " 'me', 1, 2) returning id",
                (at,),
            ).fetchone()
            conn.execute(
                "insert into audit.action_item_chunk (action_id, occurred_at, first_item,"
                " item_count, resource_type, operation, items, resource_ids)"
                " values (%s, %s, 1, 2, 'client', 'INSERT', '[{\"id\": 1}, {\"id\": 2}]',"
                " '{1,2}')",
                (action_id, at),
            )
        conn.commit()


def test_the_downgrade_copies_the_months_back_into_one_table_and_loses_nothing(
    empty_db_url, pg_superuser_url, caplog
):
    _populated_0002(empty_db_url)
    migrate.upgrade(empty_db_url, "head")
    _write_into_months(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("select count(distinct tableoid) from audit.action_log").fetchone() == (
            4,
        )
    before = _dump(empty_db_url)
    storage = _storage(empty_db_url)

    with caplog.at_level(logging.WARNING, logger="audit_capture.sqlfiles"):
        migrate.downgrade(empty_db_url, "0002")

    assert migrate.current(empty_db_url) == "0002"
    assert _dump(empty_db_url) == before
    # said: the rows it copied
    assert [r.getMessage() for r in caplog.records] == [
        "revision 0003 downgrade: 3 rows of audit.action_log's month and default partitions"
        " copied into one table",
        "revision 0003 downgrade: 3 rows of audit.action_item_chunk's month and default"
        " partitions copied into one table",
    ]
    # the legacy partition is the table again (its file kept: not copied)
    assert _storage(empty_db_url)["action_log"] == storage["action_log_legacy"]
    _same_schema(_schema(empty_db_url), _fresh_0002_schema(pg_superuser_url))
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        last = before[0][-1][0]["id"]
        conn.execute("insert into public.clients values (888888, 'after the downgrade')")
        assert conn.execute("select max(id) from audit.action_log").fetchone()[0] > last
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("delete from audit.action_log")
    migrate.upgrade(empty_db_url, "head")  # and up again
    assert _dump(empty_db_url)[1] == _items(empty_db_url)


def test_a_log_installed_at_0003_downgrades_into_a_new_table(empty_db_url, pg_superuser_url):
    migrate.upgrade(empty_db_url, "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create table public.clients (id int primary key, name text)")
        conn.execute("select audit.track('public.clients', 'client', label_column => 'name')")
        conn.execute(
            "insert into public.clients select n, 'c' || n from generate_series(1, 2500) n"
        )
    _write_into_months(empty_db_url)
    before = _dump(empty_db_url)

    migrate.downgrade(empty_db_url, "0002")

    assert _dump(empty_db_url) == before
    _same_schema(_schema(empty_db_url), _fresh_0002_schema(pg_superuser_url))


def test_the_upgrade_sql_script_upgrades_an_existing_log_in_psql(empty_db_url, fresh_head, capsys):
    migrate.upgrade_sql("head", "0002")
    script = capsys.readouterr().out
    order = [
        "COMMIT;",
        "-- upgrade_concurrently/0003.sql: OUTSIDE a transaction, one statement at a time.",
        "set role audit_owner;",
        "do $$",
        "        add column if not exists occurred_at timestamptz not null default '-infinity';",
        "create unique index concurrently if not exists action_item_chunk_legacy_pkey",
        "create unique index concurrently if not exists action_log_legacy_pkey",
        "    execute format('alter table %s validate constraint %I', c.tbl, c.conname);",
        "reset role;",
        "BEGIN;",
        "-- upgrade/0003.sql",
        "-- sql/0001/00_roles.sql",
    ]
    at = [script.index("\n" + line) for line in order]
    assert at == sorted(at), script
    _populated_0002(empty_db_url)
    before = _dump(empty_db_url)
    storage = _storage(empty_db_url)
    # as a DBA runs it (psql, autocommit, stop at an error); with the server's DEBUG1
    # messages, which say that ATTACH PARTITION skipped its scan of each old table
    done = subprocess.run(
        [tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", empty_db_url],
        input=script,
        capture_output=True,
        text=True,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=debug1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for table in ("action_log_legacy", "action_item_chunk_legacy"):
        assert (
            f'partition constraint for table "{table}" is implied by existing constraints'
            in done.stderr
        ), done.stderr[-3000:]
    _check_upgraded(empty_db_url, before, storage, fresh_head)


def test_a_long_reader_of_the_log_never_queues_audited_writes_behind_the_upgrade(empty_db_url):
    # The upgrade's ACCESS EXCLUSIVE locks (the constraint added NOT VALID, the attach)
    # wait for a reader of the log; queued, they would block every audited write behind
    # them for as long. Taken under a short lock_timeout, again and again, they never sit
    # in the queue for long: a write meanwhile gets its lock (a generous lock_timeout, far
    # below the reader's time; without the retries it waits for the reader and fails).
    import threading

    _populated_0002(empty_db_url)
    failures: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrate.upgrade(empty_db_url, "head")
        except BaseException as exc:  # reported below
            failures.append(exc)

    reader = psycopg.connect(empty_db_url)
    reader.execute("select count(*) from audit.action_log")  # holds ACCESS SHARE
    migration = threading.Thread(target=upgrade)
    migration.start()
    try:
        with psycopg.connect(empty_db_url, autocommit=True) as watcher:
            tries = 0
            for _ in range(600):  # until the migration has tried the lock and given way
                tries = watcher.execute(
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    " and backend_type = 'client backend' and pid <> pg_backend_pid()"
                    " and pid <> %s and query like %s",
                    (reader.info.backend_pid, "-- The legacy bound: %"),
                ).fetchone()[0]
                if tries or failures:
                    break
                watcher.execute("select pg_sleep(0.1)")
            assert tries, failures
            with psycopg.connect(empty_db_url) as writer:
                for n in range(20):
                    writer.execute("set local lock_timeout = '5s'")
                    writer.execute(
                        "insert into public.clients values (%s, 'during')", (700_000 + n,)
                    )
                    writer.commit()
            assert migration.is_alive() and migrate.current(empty_db_url) == "0002"
    finally:
        reader.rollback()
        reader.close()
        migration.join(timeout=300)
    assert not migration.is_alive() and not failures, failures
    assert migrate.current(empty_db_url) == migrate.head()
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute(
            "select count(*) from audit.action_log where resource_label = 'during'"
        ).fetchone() == (20,)


def test_an_upgrade_that_fails_in_its_transaction_says_what_stays_and_a_rerun_finishes(
    empty_db_url, fresh_head
):
    # a table in the way of the rename: the transactional part fails after the
    # concurrent part's work is done (and stays: harmless for revision 0002's writes)
    _populated_0002(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create table audit.action_log_legacy (id int)")
    with pytest.raises(psycopg.errors.DuplicateTable) as raised:
        migrate.upgrade(empty_db_url, "head")
    assert (
        "upgrade_concurrently/0003.sql ran before, outside the transaction: what it did stays"
        " done (revision 0003 is not applied); run the upgrade again to finish it"
        in raised.value.__notes__
    )
    assert migrate.current(empty_db_url) == "0002"
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("insert into public.clients select n, 'after' from generate_series(1, 1500) n")
        conn.execute("drop table audit.action_log_legacy")
    before = _dump(empty_db_url)
    storage = _storage(empty_db_url)

    migrate.upgrade(empty_db_url, "head")

    _check_upgraded(empty_db_url, before, storage, fresh_head)


def test_an_action_dated_in_the_future_stays_in_the_legacy_partition_and_is_reported(
    empty_db_url, caplog
):
    # hostile or broken: a time far ahead. Nothing is rewritten, so the legacy partition
    # must reach past it, and the upgrade says what that costs
    _populated_0002(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "insert into audit.action_log (occurred_at, action, action_type, actor_type,"
            " db_user, transaction_id) values ('2090-06-15 10:00:00+00', 'From the future',"
            " 'create', 'system', 'me', 1)"
        )
    before = _dump(empty_db_url)

    with caplog.at_level(logging.WARNING, logger="audit_capture.sqlfiles"):
        migrate.upgrade(empty_db_url, "head")

    assert [r.getMessage() for r in caplog.records] == [
        "audit.action_log holds actions dated after next month (the latest at 2090-06-15"
        " 10:00:00 UTC): the legacy partition keeps them, up to 2090-07-01, and the months"
        " before that get no partition of their own"
    ]
    assert _legacy_bound(empty_db_url) == "2090-07-01 00:00:00+00"
    assert _dump(empty_db_url) == before
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("insert into public.clients values (123456, 'now')")
        (action_id,) = conn.execute("select max(id) from audit.action_log").fetchone()
        assert _partition_of(conn, action_id) == "audit.action_log_legacy"
