"""Rebuilding tracked tables from audit.action_log alone (test_replay_property.py).

The actions are read in id order, each with its items (audit.action_items()): a create
puts its whole new row under its resource_id, an update applies its changed columns to
the row its old values name (a key change moves the row to its new resource_id), a
delete removes the row, a TRUNCATE action empties its table. Between actions, the
ALTER TABLEs the test made (``Ddl``, noted with the last action id before them) rename,
drop or add columns in the rebuilt rows, as capture names them from then on.

JSON numbers are kept as their text (``Num``): 1.10 and 1.1 differ, as they do in the
table.
"""

from __future__ import annotations

import dataclasses
import json

import psycopg
from psycopg.types.json import set_json_loads
from replay_schema import Table, key_text

REDACTED = "[redacted]"


@dataclasses.dataclass(frozen=True)
class Num:
    """A JSON number, as its text."""

    text: str


def _loads(data: str | bytes) -> object:
    return json.loads(data, parse_float=Num, parse_int=Num, parse_constant=Num)


def use_exact_json(conn: psycopg.Connection) -> None:
    """json and jsonb read on ``conn`` keep numbers' text."""
    set_json_loads(_loads, conn)


@dataclasses.dataclass(frozen=True)
class Ddl:
    """An ALTER TABLE: after action ``mark``, column ``old`` of resource_type is
    renamed to ``new`` (rename), dropped (new None), or ``new`` is added with the JSON
    value ``default`` in every row (old None)."""

    mark: int
    resource_type: str
    old: str | None
    new: str | None
    default: object = None


def row_key(table_keys: list[str], row: dict) -> str:
    """resource_id of a row (parsed JSON) whose key columns are ``table_keys``."""
    parts = []
    for name in table_keys:
        value = row[name]
        parts.append(value.text if isinstance(value, Num) else str(value))
    return key_text(parts)


class Replay:
    """The tables as the log says they are."""

    def __init__(self, tables: list[Table]) -> None:
        self.rows: dict[str, dict[str, dict]] = {t.resource_type: {} for t in tables}
        self.keys = {t.resource_type: [c.name for c in t.keys] for t in tables}
        # an update of ignored columns alone is not logged: their values go stale
        self.ignored = {t.resource_type: set(t.names("ignored")) for t in tables}

    def alter(self, ddl: Ddl) -> None:
        rows, ignored = self.rows[ddl.resource_type], self.ignored[ddl.resource_type]
        if ddl.old in ignored:
            ignored.discard(ddl.old)
            if ddl.new is not None:
                ignored.add(ddl.new)
        if ddl.old is None:
            for row in rows.values():
                row[ddl.new] = ddl.default
        elif ddl.new is None:
            for row in rows.values():
                row.pop(ddl.old, None)
        else:
            for row in rows.values():
                row[ddl.new] = row.pop(ddl.old)
            self.keys[ddl.resource_type] = [
                ddl.new if k == ddl.old else k for k in self.keys[ddl.resource_type]
            ]

    def apply(self, action: dict, items: list[dict]) -> None:
        if action["operation"] == "TRUNCATE":
            assert not items, f"a TRUNCATE action has items: {action}"
            self.rows[action["resource_type"]].clear()
            return
        # rows an UPDATE's key change moved onto the key of a row that it moves too,
        # later in the same statement (a deferred key, or the items' order)
        displaced: dict[str, dict[str, dict]] = {t: {} for t in self.rows}
        for item in items:
            where = f"action {action['id']} item {item['item_no']}: {item}"
            rows, moved = self.rows[item["resource_type"]], displaced[item["resource_type"]]
            keys = self.keys[item["resource_type"]]
            rid, old, new = item["resource_id"], item["old"], item["new"]
            if old is None:  # a create
                assert row_key(keys, new) == rid, f"resource_id is not the row's key, {where}"
                assert rid not in rows, f"created twice, {where}"
                rows[rid] = dict(new)
            elif new is None:  # a delete
                assert row_key(keys, old) == rid, f"resource_id is not the row's key, {where}"
                row = moved.pop(rid) if rid in moved else rows.pop(rid, None)
                assert row is not None, f"deletes a row the log never created, {where}"
                self._check_old(row, old, self.ignored[item["resource_type"]], where)
            else:  # an update: its changed columns
                assert set(old) == set(new), f"old and new name other columns, {where}"
                source = self._source(rows, moved, keys, rid, old, new, where)
                row = moved.pop(source) if source in moved else rows.pop(source)
                self._check_old(row, old, set(), where)
                row.update(new)
                assert row_key(keys, row) == rid, f"resource_id is not the row's key, {where}"
                if rid in rows:
                    moved[rid] = rows.pop(rid)
                rows[rid] = row
        for resource_type, left in displaced.items():
            assert not left, f"action {action['id']}: {resource_type} rows {left} overwritten"

    @staticmethod
    def _source(rows, moved, keys, rid, old, new, where) -> str:
        """The resource_id the updated row had before the action's item."""
        if not any(k in old for k in keys):
            assert rid in moved or rid in rows, f"updates a row the log never created, {where}"
            return rid
        found = [
            k
            for k, row in [*moved.items(), *rows.items()]
            if all(row.get(c) == old[c] for c in keys if c in old)
            and row_key(keys, {**row, **new}) == rid
        ]
        assert found, f"a key change from no row the log holds, {where}"
        return found[0]

    @staticmethod
    def _check_old(row: dict, old: dict, ignored: set[str], where: str) -> None:
        for column, value in old.items():
            if column in ignored:
                continue
            assert row.get(column) == value, (
                f"old {column} is {value!r}, the rebuilt row holds {row.get(column)!r}, {where}"
            )


def rebuild(conn: psycopg.Connection, tables: list[Table], ddls: list[Ddl]) -> Replay:
    """The tables rebuilt from the log, ALTER TABLEs replayed between actions."""
    replay = Replay(tables)
    types = [t.resource_type for t in tables]
    cur = conn.execute(
        "select l.id, l.operation, l.resource_type, l.row_count, l.changes,"
        " i.item_no, i.resource_type as item_type, i.resource_id, i.old, i.new"
        " from audit.action_log l"
        " left join lateral audit.action_items(l.id) i on true"
        # (a batch action is named after its first statement's table)
        " where l.resource_type = any (%s)"
        " order by l.id, i.item_no",
        (types,),
    )
    by_action: dict[int, tuple[dict, list[dict]]] = {}
    for row in cur.fetchall():
        (action_id, operation, resource_type, row_count, changes, item_no, item_type) = row[:7]
        action = {"id": action_id, "operation": operation, "resource_type": resource_type}
        action["row_count"], action["changes"] = row_count, changes
        entry = by_action.setdefault(action_id, (action, []))
        if item_no is not None:
            resource_id, old, new = row[7:]
            entry[1].append(
                {
                    "item_no": item_no,
                    "resource_type": item_type,
                    "resource_id": resource_id,
                    "old": old,
                    "new": new,
                }
            )
    pending = sorted(ddls, key=lambda d: d.mark)
    for action_id in sorted(by_action):
        while pending and pending[0].mark < action_id:
            replay.alter(pending.pop(0))
        action, items = by_action[action_id]
        assert action["operation"] == "TRUNCATE" or len(items) == action["row_count"], (
            f"action {action_id} covers {action['row_count']} rows but has {len(items)} items"
        )
        replay.apply(action, items)
    for ddl in pending:
        replay.alter(ddl)
    return replay


def table_rows(conn: psycopg.Connection, table: Table) -> dict[str, dict]:
    """The table's rows as to_jsonb() gives them, by resource_id."""
    from psycopg import sql

    keys = [c.name for c in table.keys]
    rows = conn.execute(
        sql.SQL("select to_jsonb(t) from {} t").format(sql.Identifier(table.name))
    ).fetchall()
    return {row_key(keys, r[0]): r[0] for r in rows}


def compare(table: Table, rebuilt: dict[str, dict], real: dict[str, dict]) -> None:
    """The rebuilt rows are the table's, but for ignored columns (an update of those
    alone is not logged) and redacted ones (the log holds "[redacted]")."""
    name = table.name
    assert sorted(rebuilt) == sorted(real), f"{name}: the log has rows {sorted(rebuilt)}"
    ignored, redacted = set(table.names("ignored")), set(table.names("redacted"))
    for key, row in real.items():
        again = rebuilt[key]
        assert set(again) == set(row), f"{name} {key}: the log has columns {sorted(again)}"
        for column, value in row.items():
            if column in ignored:
                continue
            if column in redacted:
                assert again[column] == REDACTED, f"{name} {key}: {column} is {again[column]!r}"
                continue
            assert again[column] == value, (
                f"{name} {key}: {column} is {value!r}, the log says {again[column]!r}"
            )
