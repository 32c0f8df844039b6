"""The tracked tables of the replay property (test_replay_property.py): their columns,
the SQL that creates and tracks them, the values Hypothesis writes into each column, and
a row's key as capture writes it into ``resource_id``.

A table is a ``Table`` the state machine keeps in step with ALTER TABLE (columns added,
dropped, renamed): its columns carry their role in the tracking settings, which capture
follows through a rename and forgets with a drop.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from decimal import Decimal

from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

# the types the tables' columns take; the key: how capture renders the column's value
SQL_TYPES = {
    "bigint": "bigint",
    "int": "integer",
    "uuid": "uuid",
    "text": "text",
    "numeric": "numeric",
    "text[]": "text[]",
    "int[]": "integer[]",
    "jsonb": "jsonb",
    "json": "json",
    "timestamptz": "timestamptz",
    "bytea": "bytea",
    "mood": "replay_mood",  # an enum
    "email": "replay_email",  # a domain over text
    "phase": "replay_phase",  # a domain over the enum
}

TYPES_SQL = """
create type replay_mood as enum ('calm', 'it''s fine', 'ünïcödé', 'big "bad"');
create domain replay_email as text check (value like '%@%');
create domain replay_phase as replay_mood;
"""


@dataclasses.dataclass
class Column:
    name: str
    kind: str
    role: str | None = None  # key, label, status, redacted, ignored


@dataclasses.dataclass
class Table:
    name: str
    resource_type: str
    columns: list[Column]
    # a deferrable key lets one UPDATE swap keys between rows; ON CONFLICT refuses it
    deferrable: bool = False

    @property
    def keys(self) -> list[Column]:
        return [c for c in self.columns if c.role == "key"]

    @property
    def others(self) -> list[Column]:
        return [c for c in self.columns if c.role != "key"]

    def names(self, role: str) -> list[str]:
        return [c.name for c in self.columns if c.role == role]

    def column(self, name: str) -> Column:
        (found,) = [c for c in self.columns if c.name == name]
        return found

    def copy(self) -> Table:
        return dataclasses.replace(self, columns=[dataclasses.replace(c) for c in self.columns])


def initial_tables() -> list[Table]:
    C = Column
    return [
        Table(
            "accounts",
            "account",
            [
                C("id", "bigint", "key"),
                C("name", "text", "label"),
                C("balance", "numeric"),
                C("tags", "text[]"),
                C("scores", "int[]"),
                C("profile", "jsonb"),
                C("raw", "json"),
                C("seen_at", "timestamptz"),
                C("avatar", "bytea"),
                C("mood", "mood", "status"),
                C("email", "email"),
                C("secret", "text", "redacted"),
                C("touched", "int", "ignored"),
            ],
        ),
        Table(
            "ledger",
            "ledger_entry",
            [
                C("region", "text", "key"),
                C("seq", "int", "key"),
                C("amount", "numeric"),
                C("note", "text", "label"),
                C("phase", "phase", "status"),
                C("payload", "jsonb"),
                C("blob", "bytea"),
                C("pin", "text", "redacted"),
                C("cache", "text", "ignored"),
            ],
            deferrable=True,
        ),
        Table(
            "documents",
            "document",
            [
                C("id", "uuid", "key"),
                C("title", "text", "label"),
                C("body", "json"),
                C("codes", "int[]"),
                C("words", "text[]"),
                C("at", "timestamptz"),
                C("size", "numeric"),
                C("kind", "mood"),
                C("token", "text", "redacted"),
                C("views", "int", "ignored"),
            ],
        ),
    ]


def create_sql(table: Table) -> sql.Composed:
    columns = [
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(SQL_TYPES[c.kind]))
        for c in table.columns
    ]
    key = sql.SQL("primary key ({}){}").format(
        sql.SQL(", ").join(sql.Identifier(c.name) for c in table.keys),
        sql.SQL(" deferrable initially deferred" if table.deferrable else ""),
    )
    return sql.SQL("create table {} ({})").format(
        sql.Identifier(table.name), sql.SQL(", ").join([*columns, key])
    )


def track_sql(table: Table) -> tuple[str, tuple]:
    return (
        "select audit.track(%s::regclass, %s, label_column => %s, status_columns => %s,"
        " ignored_columns => %s, redacted_columns => %s)",
        (
            table.name,
            table.resource_type,
            (table.names("label") or [None])[0],
            table.names("status"),
            table.names("ignored"),
            table.names("redacted"),
        ),
    )


# -- values ----------------------------------------------------------------------------

# NUL is refused by text (and by jsonb inside strings); lone surrogates cannot be encoded
_chars = st.characters(codec="utf-8", exclude_characters="\x00")
SPECIAL_TEXT = ["O'Brien, Pat", 'say "hi"', "back\\slash", "ünïcödé 日本 🚀", "", " ", "a,b(c)"]
texts = st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(_chars, max_size=8))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
# json keeps its text: duplicate keys, spacing, number spelling (jsonb holds none of it).
# Left out: "\u0000" and numbers beyond numeric's range, which capture logs as a JSON
# string of the text (audit.loggable_json()) where to_jsonb() of the row fails outright.
RAW_JSON = [
    '{"a": 1, "a": 2}',
    "[1, 1.50, -0, 1e3, 2E-2]",
    '  {"b" :[ ] , "c":{}}  ',
    '"caf\\u00e9 \\"q\\""',
    "null",
    "12345678901234567890.000",
]
raw_json = st.one_of(st.sampled_from(RAW_JSON), json_values.map(json.dumps))
numerics = st.one_of(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**9), max_value=10**9
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=0),
    st.sampled_from([Decimal("NaN"), Decimal("1.10"), Decimal("-0.000001"), Decimal("1E+30")]),
)
timestamps = st.one_of(
    st.datetimes(
        min_value=datetime.datetime(1900, 1, 1),
        max_value=datetime.datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [
                datetime.UTC,
                datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
                datetime.timezone(datetime.timedelta(hours=-8)),
            ]
        ),
    ),
    st.sampled_from(["infinity", "-infinity"]),
)
int4 = st.integers(-(2**31), 2**31 - 1)
MOODS = ["calm", "it's fine", "ünïcödé", 'big "bad"']

VALUES = {
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "int": int4,
    "uuid": st.uuids(),
    "text": texts,
    "numeric": numerics,
    "text[]": st.lists(st.none() | texts, max_size=3),
    "int[]": st.lists(st.none() | int4, max_size=3),
    "jsonb": json_values.map(Jsonb),
    "json": raw_json,
    "timestamptz": timestamps,
    "bytea": st.binary(max_size=6),
    "mood": st.sampled_from(MOODS),
    "email": st.builds(lambda a, b: f"{a}@{b}", texts, texts),
    "phase": st.sampled_from(MOODS),
}
# a redacted value carries a marker that must never be found in the log
secrets = st.builds(lambda n, tail: f"SECRET-{n}{tail}", st.integers(0, 10**6), texts)

# keys: a few values, so that upserts and MERGE meet existing rows
REGIONS = ["north", "O'Brien, Pat", "a b", 'x"y\\z', "ü", ""]
KEY_VALUES = {
    "bigint": st.one_of(st.integers(1, 40), st.just(2**62)),
    "int": st.integers(1, 8),
    "text": st.sampled_from(REGIONS),
    "uuid": st.uuids(),
}


def value_strategy(column: Column) -> st.SearchStrategy:
    if column.role == "redacted":
        return st.none() | secrets
    return st.none() | VALUES[column.kind]


def key_strategy(table: Table) -> st.SearchStrategy[tuple]:
    return st.tuples(*(KEY_VALUES[c.kind] for c in table.keys))


def placeholder(column: Column) -> sql.Composable:
    """``%s::type``: every value is sent with its column's type."""
    return sql.SQL("%s::{}").format(sql.SQL(SQL_TYPES[column.kind]))


def normal_key(table: Table, key: tuple) -> tuple:
    """A key as read back from the table (uuid strings as uuid.UUID)."""
    return tuple(
        uuid.UUID(str(v)) if c.kind == "uuid" else v for c, v in zip(table.keys, key, strict=True)
    )


# -- a row's key as capture writes it ----------------------------------------------------


def _record_field(text: str) -> str:
    # record_out(): quoted when empty or holding a quote, backslash, parenthesis, comma
    # or ASCII space; quotes and backslashes doubled inside
    if text == "" or any(ch in '"\\(),' or ch in " \t\n\r\v\f" for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'
    return text


def key_text(parts: list[str]) -> str:
    """resource_id of a row whose key columns' values print as ``parts``: the value
    itself for a one-column key, a row literal such as (3,"a b") for a composite one."""
    if len(parts) == 1:
        return parts[0]
    return "(" + ",".join(_record_field(p) for p in parts) + ")"
