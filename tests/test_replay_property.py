"""The log replays to the table: a stateful property (Hypothesis).

Random programs run against three tracked tables (replay_schema.py: a bigint key, a
composite text and int key that is deferrable, a uuid key; numeric, text with quotes and
unicode, text[] and int[], jsonb, json, timestamptz, bytea, an enum, domains, NULLs, a
redacted and an ignored column each). A step is one transaction: a single- or
multi-row INSERT, UPDATE (primary-key changes and key swaps included) or DELETE, an
upsert, MERGE, COPY FROM STDIN (replay_statements.py), with or without a context; a
batch (audit.batch: several statements, one action); an import (audit.action_type);
work rolled back to a savepoint inside a transaction that commits; TRUNCATE; or ALTER
TABLE adding, dropping or renaming a column. Each example runs in its own database
copied from a template, in the generated or the generic capture mode.

After every step each table is rebuilt from audit.action_log and audit.action_items()
alone (replay_log.py) and must equal the table's rows as to_jsonb() gives them, column
by column and number by number (ignored columns aside, redacted ones reading
"[redacted]"); and no redacted value may appear anywhere in the log.

By default (CI) the run is bounded and derandomized. A long run on demand:

    AUDIT_CAPTURE_REPLAY_EXAMPLES=500 AUDIT_CAPTURE_REPLAY_STEPS=40 \\
        .venv/bin/python -m pytest tests/test_replay_property.py -q -s -p no:cacheprovider

draws a random seed and prints it ("replay seed: N"); AUDIT_CAPTURE_REPLAY_SEED=N (with
the same counts) runs that seed again. A failure prints the shrunk program and a
@reproduce_failure blob.
"""

from __future__ import annotations

import itertools
import os
import random

import psycopg
import pytest
import replay_statements
from conftest import GENERIC_MODE_SQL, TEMPLATE_DB, _create_database, _drop_database
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql
from replay_log import Ddl, compare, rebuild, table_rows, use_exact_json
from replay_schema import (
    SQL_TYPES,
    TYPES_SQL,
    VALUES,
    Column,
    create_sql,
    initial_tables,
    track_sql,
)

# a long run, random (a seed given: that seed), on demand; CI's is derandomized
LONG_RUN = bool(
    os.environ.get("AUDIT_CAPTURE_REPLAY_EXAMPLES") or os.environ.get("AUDIT_CAPTURE_REPLAY_SEED")
)
SETTINGS = settings(
    max_examples=int(os.environ.get("AUDIT_CAPTURE_REPLAY_EXAMPLES") or 25),
    stateful_step_count=int(os.environ.get("AUDIT_CAPTURE_REPLAY_STEPS") or 15),
    deadline=None,
    derandomize=not LONG_RUN,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TABLES = [t.name for t in initial_tables()]
# the names a column is renamed to or added under; some are words the capture queries
# use themselves (aliases, template slots)
COLUMN_NAMES = [
    "renamed",
    'Ünï "q" col',
    "n",
    "o",
    "k",
    "c",
    "i",
    "r",
    "x",
    "audit.key",
    "changed 1",
    "{{label}}",
    "select",
]
ADDED_KINDS = ["text", "numeric", "jsonb", "int[]", "mood", "timestamptz", "bytea"]

contexts = st.none() | st.fixed_dictionaries(
    {
        "actor_id": st.none() | st.sampled_from(["u-1", "O'Brien"]),
        "actor_type": st.none() | st.sampled_from(["admin", "client", "system"]),
        "source": st.none() | st.sampled_from(["web", "api", "ai", "mobile"]),
        "request_id": st.none() | st.just("req-1"),
        "context": st.none() | st.just('{"ticket": 42, "note": "ünï"}'),
    }
)
writes = st.sampled_from(sorted(replay_statements.WRITES))
step_kinds = st.sampled_from(sorted(replay_statements.STEPS))
tables = st.sampled_from(TABLES)
# a batch's statements on one table (so TRUNCATE meets rows written before and after it
# in the same batch), or on any
batch_steps = st.one_of(
    tables.flatmap(lambda t: st.lists(st.tuples(st.just(t), step_kinds), min_size=2, max_size=4)),
    st.lists(st.tuples(tables, step_kinds), min_size=2, max_size=4),
)
_database_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def replay_template(pg_server, template_db_url):
    """audit_template plus the three tables, tracked."""
    name = "replay_template"
    url = _create_database(pg_server, name, TEMPLATE_DB)
    try:
        with psycopg.connect(url) as conn, conn.transaction():
            conn.execute(TYPES_SQL)
            for table in initial_tables():
                conn.execute(create_sql(table))
                conn.execute(*track_sql(table))
        yield name
    finally:
        _drop_database(pg_server, name)


def replay_machine(pg_server, template: str) -> type[RuleBasedStateMachine]:
    class ReplayMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.database = f"replay_{next(_database_numbers)}"
            url = _create_database(pg_server, self.database, template)
            # one session writes and reads: timestamptz renders in its time zone
            self.conn = psycopg.connect(url, options="-c TimeZone=Asia/Kolkata")
            use_exact_json(self.conn)
            self.tables = {t.name: t for t in initial_tables()}
            self.ddls: list[Ddl] = []
            self.names = itertools.count(1)

        def teardown(self) -> None:
            self.conn.close()
            _drop_database(pg_server, self.database)

        # -- steps ------------------------------------------------------------------

        @initialize(mode=st.sampled_from(["generated", "generic"]))
        def capture_mode(self, mode):
            if mode == "generic":
                with self.conn.transaction():
                    self.conn.execute(GENERIC_MODE_SQL)

        def begin(self, context) -> None:
            if context is None:
                return
            if context["actor_type"] == "admin":  # the variables one by one
                for name, value in context.items():
                    if value is not None:
                        self.conn.execute(
                            "select set_config(%s, %s, true)", (f"audit.{name}", value)
                        )
            else:
                self.conn.execute(
                    "select audit.set_context(actor_id => %s, actor_type => %s, source => %s,"
                    " request_id => %s, context => %s::jsonb)",
                    [
                        context[k]
                        for k in ("actor_id", "actor_type", "source", "request_id", "context")
                    ],
                )

        def write(self, data, table: str, write: str) -> None:
            replay_statements.STEPS[write](self.conn, data, self.tables[table])

        @rule(table=tables, write=writes, context=contexts, data=st.data())
        def statement(self, table, write, context, data):
            with self.conn.transaction():
                self.begin(context)
                self.write(data, table, write)

        @rule(
            steps=batch_steps,
            label=st.sampled_from(["Nightly sync", "Ünïcödé 'batch'"]),
            context=contexts,
            data=st.data(),
        )
        def batch(self, steps, label, context, data):
            with self.conn.transaction():
                self.begin(context)
                self.conn.execute("select set_config('audit.batch', %s, true)", (label,))
                for table, write in steps:
                    self.write(data, table, write)

        @rule(
            table=tables,
            write=st.sampled_from(["insert", "copy", "upsert", "merge"]),
            data=st.data(),
        )
        def import_rows(self, table, write, data):
            with self.conn.transaction():
                self.conn.execute("select set_config('audit.action_type', 'import', true)")
                self.write(data, table, write)

        @rule(
            kept=st.lists(st.tuples(tables, step_kinds), max_size=2),
            undone=st.lists(st.tuples(tables, step_kinds), min_size=1, max_size=2),
            after=st.lists(st.tuples(tables, step_kinds), max_size=2),
            batch=st.none() | st.just("Savepoint batch"),
            data=st.data(),
        )
        def savepoint(self, kept, undone, after, batch, data):
            with self.conn.transaction():
                if batch:
                    self.conn.execute("select set_config('audit.batch', %s, true)", (batch,))
                for table, write in kept:
                    self.write(data, table, write)
                self.conn.execute("savepoint undone")
                for table, write in undone:
                    self.write(data, table, write)
                self.conn.execute("rollback to savepoint undone")
                for table, write in after:
                    self.write(data, table, write)

        @rule(table=tables, context=contexts)
        def truncate(self, table, context):
            with self.conn.transaction():
                self.begin(context)
                replay_statements.truncate(self.conn, None, self.tables[table])

        # -- ALTER TABLE ------------------------------------------------------------

        def alter(self, table, query, old, new, default=None) -> None:
            with self.conn.transaction():
                self.conn.execute(query)
                mark = self.conn.execute(
                    "select coalesce(max(id), 0) from audit.action_log"
                ).fetchone()[0]
            self.ddls.append(Ddl(mark, table.resource_type, old, new, default))

        def new_name(self, data, table) -> str:
            """One of COLUMN_NAMES, numbered when the table has a column of that name."""
            name = data.draw(st.sampled_from(COLUMN_NAMES), label="name")
            if any(c.name == name for c in table.columns):
                return f"{name} {next(self.names)}"
            return name

        @rule(
            table=tables,
            kind=st.sampled_from(ADDED_KINDS),
            with_default=st.booleans(),
            data=st.data(),
        )
        def add_column(self, table, kind, with_default, data):
            table = self.tables[table]
            column = Column(self.new_name(data, table), kind)
            type_sql = sql.SQL(SQL_TYPES[kind])
            default = data.draw(VALUES[kind], label="default") if with_default else None
            literal = sql.SQL("{}::{}").format(sql.Literal(default), type_sql)
            query = sql.SQL("alter table {} add column {} {}{}").format(
                sql.Identifier(table.name),
                sql.Identifier(column.name),
                type_sql,
                sql.SQL(" default ") + literal if with_default else sql.SQL(""),
            )
            with self.conn.transaction():
                as_json = self.conn.execute(
                    sql.SQL("select to_jsonb({})").format(literal)
                ).fetchone()[0]
            self.alter(table, query, None, column.name, as_json)
            table.columns.append(column)

        @rule(table=tables, data=st.data())
        def drop_column(self, table, data):
            table = self.tables[table]
            if not table.others:
                return
            column = data.draw(st.sampled_from(table.others), label="dropped")
            query = sql.SQL("alter table {} drop column {}").format(
                sql.Identifier(table.name), sql.Identifier(column.name)
            )
            self.alter(table, query, column.name, None)
            table.columns.remove(column)

        @rule(table=tables, data=st.data())
        def rename_column(self, table, data):
            table = self.tables[table]
            column = data.draw(st.sampled_from(table.columns), label="renamed")
            new = self.new_name(data, table)
            query = sql.SQL("alter table {} rename column {} to {}").format(
                sql.Identifier(table.name), sql.Identifier(column.name), sql.Identifier(new)
            )
            self.alter(table, query, column.name, new)
            column.name = new

        # -- the property -----------------------------------------------------------

        @invariant()
        def log_replays_to_the_tables(self):
            with self.conn.transaction():
                replay = rebuild(self.conn, initial_tables(), self.ddls)
                for table in self.tables.values():
                    real = table_rows(self.conn, table)
                    compare(table, replay.rows[table.resource_type], real)

        @invariant()
        def no_redacted_value_in_the_log(self):
            with self.conn.transaction():
                found = self.conn.execute(
                    "select l::text from audit.action_log l where strpos(l::text, 'SECRET-') > 0"
                    " union all select c::text from audit.action_item_chunk c"
                    " where strpos(c::text, 'SECRET-') > 0"
                ).fetchall()
            assert not found, f"a redacted value is in the log: {found[0][0]}"

    return ReplayMachine


def test_the_log_replays_to_the_tables(pg_server, replay_template):
    machine = replay_machine(pg_server, replay_template)
    if LONG_RUN:
        chosen = int(os.environ.get("AUDIT_CAPTURE_REPLAY_SEED") or random.randrange(2**32))
        print(f"replay seed: {chosen} (AUDIT_CAPTURE_REPLAY_SEED={chosen} runs it again)")
        machine = seed(chosen)(machine)
    run_state_machine_as_test(machine, settings=SETTINGS)
