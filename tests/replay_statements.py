"""The statements the replay property (test_replay_property.py) runs on one tracked table:
each draws its rows and values with Hypothesis (``data``), looks at the table's keys as
they are inside the running transaction, and never writes a duplicate key, so that every
statement it runs must succeed.
"""

from __future__ import annotations

import psycopg
from hypothesis import strategies as st
from psycopg import sql
from replay_schema import Column, Table, key_strategy, normal_key, placeholder, value_strategy

I = sql.Identifier  # noqa: E741 - read as a name


def existing_keys(conn: psycopg.Connection, table: Table) -> list[tuple]:
    query = sql.SQL("select {} from {} order by 1").format(
        sql.SQL(", ").join(I(c.name) for c in table.keys), I(table.name)
    )
    return [tuple(r) for r in conn.execute(query).fetchall()]


def fresh_keys(data, table: Table, taken: list[tuple], most: int) -> list[tuple]:
    """Up to ``most`` keys that no row has (the table's or among themselves)."""
    drawn = data.draw(st.lists(key_strategy(table), min_size=1, max_size=most), label="keys")
    seen = {normal_key(table, k) for k in taken}
    fresh = []
    for key in drawn:
        if normal_key(table, key) not in seen:
            seen.add(normal_key(table, key))
            fresh.append(key)
    return fresh


def some_columns(data, table: Table, label: str, min_size: int = 0) -> list[Column]:
    others = table.others
    if len(others) < min_size:
        return []
    chosen = data.draw(
        st.lists(st.sampled_from(others), min_size=min_size, max_size=4, unique_by=id),
        label=label,
    )
    return sorted(chosen, key=table.columns.index)


def values(data, columns: list[Column], label: str) -> list:
    return [data.draw(value_strategy(c), label=f"{label} {c.name}") for c in columns]


def row_placeholders(columns: list[Column]) -> sql.Composed:
    return sql.SQL("({})").format(sql.SQL(", ").join(placeholder(c) for c in columns))


def names(columns: list[Column], prefix: str = "") -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL(prefix) + I(c.name) if prefix else I(c.name) for c in columns)


def key_match(table: Table, left: str, right_names: list[str]) -> sql.Composed:
    return sql.SQL(" and ").join(
        sql.SQL("{}.{} = {}.{}").format(I(left), I(c.name), I("v"), I(r))
        for c, r in zip(table.keys, right_names, strict=True)
    )


# -- the statements ---------------------------------------------------------------------


def insert(conn, data, table: Table) -> None:
    """INSERT of one or several new rows (columns left out are null)."""
    keys = fresh_keys(data, table, existing_keys(conn, table), 4)
    if not keys:
        return
    columns = table.keys + some_columns(data, table, "columns")
    rows = [list(k) + values(data, columns[len(table.keys) :], "value") for k in keys]
    query = sql.SQL("insert into {} ({}) values {}").format(
        I(table.name),
        names(columns),
        sql.SQL(", ").join(row_placeholders(columns) for _ in rows),
    )
    conn.execute(query, [v for row in rows for v in row])


def copy(conn, data, table: Table) -> None:
    """COPY FROM STDIN of new rows."""
    keys = fresh_keys(data, table, existing_keys(conn, table), 4)
    if not keys:
        return
    columns = table.keys + some_columns(data, table, "columns")
    query = sql.SQL("copy {} ({}) from stdin").format(I(table.name), names(columns))
    with conn.cursor() as cur, cur.copy(query) as copying:
        for key in keys:
            copying.write_row(list(key) + values(data, columns[len(table.keys) :], "value"))


def upsert(conn, data, table: Table) -> None:
    """INSERT ... ON CONFLICT DO UPDATE over new and existing keys (a deferrable key,
    which ON CONFLICT refuses, gets a plain INSERT)."""
    if table.deferrable:
        return insert(conn, data, table)
    taken = existing_keys(conn, table)
    old = (
        data.draw(st.lists(st.sampled_from(taken), max_size=3, unique=True), label="old keys")
        if taken
        else []
    )
    keys = old + fresh_keys(data, table, taken, 2)
    columns = some_columns(data, table, "columns", min_size=1)
    if not columns or not keys:
        return insert(conn, data, table)
    updated = data.draw(
        st.lists(st.sampled_from(columns), min_size=1, unique_by=id), label="updated"
    )
    query = sql.SQL("insert into {} ({}) values {} on conflict ({}) do update set {}").format(
        I(table.name),
        names(table.keys + columns),
        sql.SQL(", ").join(row_placeholders(table.keys + columns) for _ in keys),
        names(table.keys),
        sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(I(c.name)) for c in updated),
    )
    params = [v for key in keys for v in [*key, *values(data, columns, "value")]]
    conn.execute(query, params)


def update(conn, data, table: Table) -> None:
    """UPDATE of some rows: the same values for all, each row its own (a join with
    VALUES), or every row of the table."""
    taken = existing_keys(conn, table)
    columns = some_columns(data, table, "columns", min_size=1)
    if not taken or not columns:
        return
    how = data.draw(st.sampled_from(["same", "each", "all"]), label="rows")
    chosen = data.draw(st.lists(st.sampled_from(taken), min_size=1, max_size=4, unique=True))
    if how == "all":
        query = sql.SQL("update {} set {}").format(
            I(table.name),
            sql.SQL(", ").join(
                sql.SQL("{} = {}").format(I(c.name), placeholder(c)) for c in columns
            ),
        )
        conn.execute(query, values(data, columns, "value"))
    elif how == "same":
        query = sql.SQL("update {} set {} where ({}) in ({})").format(
            I(table.name),
            sql.SQL(", ").join(
                sql.SQL("{} = {}").format(I(c.name), placeholder(c)) for c in columns
            ),
            names(table.keys),
            sql.SQL(", ").join(row_placeholders(table.keys) for _ in chosen),
        )
        conn.execute(query, values(data, columns, "value") + [v for k in chosen for v in k])
    else:
        slots = [f"key {i}" for i in range(len(table.keys))] + [
            f"value {i}" for i in range(len(columns))
        ]
        query = sql.SQL("update {} t set {} from (values {}) v({}) where {}").format(
            I(table.name),
            sql.SQL(", ").join(
                sql.SQL("{} = v.{}").format(I(c.name), I(f"value {i}"))
                for i, c in enumerate(columns)
            ),
            sql.SQL(", ").join(row_placeholders(table.keys + columns) for _ in chosen),
            sql.SQL(", ").join(I(s) for s in slots),
            key_match(table, "t", slots[: len(table.keys)]),
        )
        conn.execute(query, [v for k in chosen for v in [*k, *values(data, columns, "value")]])


def rekey(conn, data, table: Table) -> None:
    """UPDATE that changes primary keys (and maybe another column): to new keys, or,
    where the key is deferrable, among the rows themselves (a swap)."""
    taken = existing_keys(conn, table)
    if not taken:
        return
    chosen = data.draw(st.lists(st.sampled_from(taken), min_size=1, max_size=3, unique=True))
    if table.deferrable and data.draw(st.booleans(), label="swap"):
        targets = data.draw(st.permutations(chosen), label="swapped")
    else:
        targets = fresh_keys(data, table, taken, len(chosen))
        chosen = chosen[: len(targets)]
    after = {normal_key(table, k) for k in taken if k not in chosen}
    if not chosen or any(normal_key(table, k) in after for k in targets):
        return
    also = some_columns(data, table, "also", min_size=0)[:1]
    width = len(table.keys)
    slots = (
        [f"old {i}" for i in range(width)]
        + [f"new {i}" for i in range(width)]
        + [f"value {i}" for i in range(len(also))]
    )
    sets = [sql.SQL("{} = v.{}").format(I(c.name), I(f"new {i}")) for i, c in enumerate(table.keys)]
    sets += [sql.SQL("{} = v.{}").format(I(c.name), I(f"value {i}")) for i, c in enumerate(also)]
    query = sql.SQL("update {} t set {} from (values {}) v({}) where {}").format(
        I(table.name),
        sql.SQL(", ").join(sets),
        sql.SQL(", ").join(row_placeholders(table.keys + table.keys + also) for _ in chosen),
        sql.SQL(", ").join(I(s) for s in slots),
        key_match(table, "t", slots[:width]),
    )
    params = [
        v
        for o, n in zip(chosen, targets, strict=True)
        for v in [*o, *n, *values(data, also, "value")]
    ]
    conn.execute(query, params)


def delete(conn, data, table: Table) -> None:
    """DELETE of some rows by key, of the rows where a column is null, or of all."""
    taken = existing_keys(conn, table)
    how = data.draw(st.sampled_from(["keys", "null", "all"]), label="rows")
    if how == "all":
        conn.execute(sql.SQL("delete from {}").format(I(table.name)))
    elif how == "null" and table.others:
        column = data.draw(st.sampled_from(table.others), label="null column")
        conn.execute(
            sql.SQL("delete from {} where {} is null").format(I(table.name), I(column.name))
        )
    elif taken:
        chosen = data.draw(st.lists(st.sampled_from(taken), min_size=1, max_size=4, unique=True))
        query = sql.SQL("delete from {} where ({}) in ({})").format(
            I(table.name),
            names(table.keys),
            sql.SQL(", ").join(row_placeholders(table.keys) for _ in chosen),
        )
        conn.execute(query, [v for k in chosen for v in k])


def merge(conn, data, table: Table) -> None:
    """MERGE: existing rows updated or deleted, new ones inserted, in one statement."""
    taken = existing_keys(conn, table)
    old = (
        data.draw(st.lists(st.sampled_from(taken), max_size=3, unique=True), label="old keys")
        if taken
        else []
    )
    keys = old + fresh_keys(data, table, taken, 2)
    if not keys:
        return
    columns = some_columns(data, table, "columns", min_size=1)
    acts = [data.draw(st.sampled_from(["update", "delete"]), label="merge") for _ in old]
    acts += ["insert"] * (len(keys) - len(old))
    width = len(table.keys)
    slots = [f"key {i}" for i in range(width)] + [f"value {i}" for i in range(len(columns))]
    slots.append("merge action")
    matched_update = (
        sql.SQL("update set {}").format(
            sql.SQL(", ").join(
                sql.SQL("{} = v.{}").format(I(c.name), I(f"value {i}"))
                for i, c in enumerate(columns)
            )
        )
        if columns
        else sql.SQL("do nothing")
    )
    query = sql.SQL(
        "merge into {} t using (values {}) v({}) on {}"
        " when matched and v.{} = 'delete' then delete"
        " when matched then {}"
        " when not matched then insert ({}) values ({})"
    ).format(
        I(table.name),
        sql.SQL(", ").join(
            sql.SQL("({}, %s::text)").format(
                sql.SQL(", ").join(placeholder(c) for c in table.keys + columns)
            )
            for _ in keys
        ),
        sql.SQL(", ").join(I(s) for s in slots),
        key_match(table, "t", slots[:width]),
        I("merge action"),
        matched_update,
        names(table.keys + columns),
        sql.SQL(", ").join(sql.SQL("v.{}").format(I(s)) for s in slots[:-1]),
    )
    params = [
        v
        for k, act in zip(keys, acts, strict=True)
        for v in [*k, *values(data, columns, "value"), act]
    ]
    conn.execute(query, params)


def truncate(conn, data, table: Table) -> None:
    if table.deferrable:
        # PostgreSQL refuses to truncate a table with pending deferred key checks
        conn.execute("set constraints all immediate")
    conn.execute(sql.SQL("truncate {}").format(I(table.name)))
    if table.deferrable:
        conn.execute("set constraints all deferred")  # as the key is declared


WRITES = {
    "insert": insert,
    "copy": copy,
    "upsert": upsert,
    "update": update,
    "rekey": rekey,
    "delete": delete,
    "merge": merge,
}
# inside a batch or a savepoint, TRUNCATE too
STEPS = {**WRITES, "truncate": truncate}
