"""Actions as OCSF events (src/audit_capture/ocsf.py), checked against the OCSF 1.7.0
schema that the pydantic-ocsf package ships (ocsf/schemas/v1_7_0.json, read as data):
every class emitted has its required attributes, its objects theirs, its constraints
("at least one of") met, no attribute the class or object does not define, and valid
ids (class, category, activity, type, severity, status)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from test_cli import run

from audit_capture import ActionType, importing, ocsf, record_action, set_context
from audit_capture.stream import ACTION_COLUMNS

README = Path(__file__).resolve().parents[1] / "README.md"

# -- the schema ------------------------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    version = ocsf.OCSF_VERSION.replace(".", "_")
    path = metadata.distribution("pydantic-ocsf").locate_file(f"ocsf/schemas/v{version}.json")
    data = json.loads(Path(str(path)).read_text(encoding="utf-8"))
    assert data["version"] == ocsf.OCSF_VERSION
    return data


def _chain(table: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """``name`` and what it extends, the most general first."""
    chain = []
    while name:
        entry = table[name]
        chain.insert(0, entry)
        name = entry.get("extends")
    return chain


def _merged(chain: list[dict[str, Any]]) -> tuple[dict[str, dict], list[dict]]:
    """The attributes of a class or object with those it inherits (the nearer
    definition wins, enums merged), and every level's constraints."""
    attributes: dict[str, dict] = {}
    constraints = []
    for entry in chain:
        for name, definition in entry.get("attributes", {}).items():
            if not isinstance(definition, dict):
                continue  # "$include": a profile's attributes, which we do not use
            merged = {**attributes.get(name, {}), **definition}
            if "enum" in attributes.get(name, {}) or "enum" in definition:
                merged["enum"] = {
                    **attributes.get(name, {}).get("enum", {}),
                    **definition.get("enum", {}),
                }
            attributes[name] = merged
        if entry.get("constraints"):
            constraints.append(entry["constraints"])
    return attributes, constraints


def event_class(class_uid: int) -> tuple[str, dict[str, dict], list[dict]]:
    """The class whose uid is ``class_uid``: its name, attributes and constraints."""
    categories = schema()["categories_meta"]["attributes"]
    for name, entry in schema()["events"].items():
        chain = _chain(schema()["events"], name)
        category = next((e["category"] for e in reversed(chain) if e.get("category")), None)
        if entry.get("uid") is None or category not in categories:
            continue
        if categories[category]["uid"] * 1000 + entry["uid"] == class_uid:
            return (entry["caption"], *_merged(chain))
    raise AssertionError(f"no OCSF {ocsf.OCSF_VERSION} class {class_uid}")


def _type_of(name: str, definition: dict) -> tuple[str, bool]:
    dictionary = schema()["dictionary"]["attributes"].get(name, {})
    kind = definition.get("type") or dictionary.get("type")
    assert kind, f"{name}: no type in the schema"
    return kind, bool(definition.get("is_array", dictionary.get("is_array")))


SCALARS = {
    "integer_t": int,
    "long_t": int,
    "timestamp_t": int,
    "boolean_t": bool,
    "float_t": (int, float),
}


DERIVED_IDS = frozenset({"class_uid", "category_uid", "type_uid"})


def problems(value: dict, attributes: dict[str, dict], constraints: list[dict], where: str):
    """What is wrong with ``value`` against ``attributes`` and ``constraints``."""
    found = []
    for name, definition in attributes.items():
        if definition.get("requirement") == "required" and value.get(name) is None:
            found.append(f"{where}: {name} is required")
    for constraint in constraints:
        names = constraint.get("at_least_one", [])
        if names and not any(value.get(n) is not None for n in names):
            found.append(f"{where}: needs at least one of {names}")
    for name, item in value.items():
        if name not in attributes:
            found.append(f"{where}: {name} is no attribute of it")
            continue
        definition = attributes[name]
        # the raw schema's class, category and type ids are placeholders that its
        # compiler fills in: validate() checks them
        if (
            name not in DERIVED_IDS
            and "enum" in definition
            and item not in [int(k) for k in definition["enum"]]
        ):
            found.append(f"{where}: {name} {item!r} is not one of {list(definition['enum'])}")
        kind, is_array = _type_of(name, definition)
        items = item if is_array else [item]
        if is_array and not isinstance(item, list):
            found.append(f"{where}: {name} must be an array")
            continue
        for index, element in enumerate(items):
            here = f"{where}.{name}" + (f"[{index}]" if is_array else "")
            if kind == "object":  # free-form (unmapped)
                continue
            if kind in schema()["objects"]:
                if not isinstance(element, dict):
                    found.append(f"{here}: must be an object")
                    continue
                found += problems(element, *_merged(_chain(schema()["objects"], kind)), here)
            elif kind in SCALARS:
                if not isinstance(element, SCALARS[kind]) or isinstance(element, bool) != (
                    kind == "boolean_t"
                ):
                    found.append(f"{here}: {element!r} is not {kind}")
            elif kind != "json_t" and not isinstance(element, str):
                found.append(f"{here}: {element!r} is not {kind}")
    return found


def validate(event: dict) -> list[str]:
    """Every problem of one OCSF event, [] when it is valid."""
    class_name, attributes, constraints = event_class(event["class_uid"])
    found = problems(event, attributes, constraints, class_name)
    if event.get("category_uid") != event["class_uid"] // 1000:
        found.append(f"{class_name}: category_uid {event.get('category_uid')}")
    if event.get("type_uid") != event["class_uid"] * 100 + event.get("activity_id", -1):
        found.append(f"{class_name}: type_uid {event.get('type_uid')}")
    return found


# -- the events of real actions ------------------------------------------------------------------


def every_action_type(conn) -> None:
    """One action of each action type, through the sample CRM and record_action."""
    with conn.transaction():
        set_context(conn, actor_type="admin", actor_id="7", actor_name="Alice Admin", source="web")
        conn.execute("insert into campaigns (id, name) values (100, 'Mass tort 2026')")
        conn.execute("update campaigns set name = 'Mass tort 2027' where id = 100")
        conn.execute("update campaigns set status = 'active' where id = 100")
        conn.execute("insert into clients (name, email) values ('Jane Roe', 'j@x.io')")
        conn.execute("delete from clients")
    with conn.transaction():
        set_context(conn, actor_type="system", actor_name="Nightly import", source="api")
        with importing(conn):
            conn.execute(
                "insert into clients (name) select 'Lead ' || g from generate_series(1, 3) g"
            )
    with conn.transaction():
        set_context(
            conn, actor_type="client", actor_id="c-1", actor_name="Jane Roe", source="mobile"
        )
        lawruler = {"resource_type": "integration", "resource_id": "lawruler"}
        record_action(conn, ActionType.LOGIN, "LawRuler login", **lawruler)
        record_action(conn, ActionType.LOGOUT, "LawRuler logout", **lawruler)
        record_action(
            conn, ActionType.EXPORT, "Call export to file", resource_type="call", row_count=12
        )
        record_action(
            conn,
            ActionType.SEND,
            "Batch send SMS",
            resource_type="batch_job",
            resource_id="4",
            resource_label="Spring promo",
        )
    # no context at all: a direct database change, and an event naming nothing
    conn.execute("insert into campaigns (name) values ('By hand')")
    conn.execute("select audit.log_action('export', 'Export')")
    conn.commit()


@pytest.fixture
def reader_role_url(make_role):
    return make_role("grant audit_reader to {role}")


def test_every_action_type_is_a_valid_event_of_its_class(conn, reader_role_url):
    every_action_type(conn)
    result = run(reader_role_url, "tail", "--format", "ocsf")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["unmapped"]["action_type"] for e in events} == {t.value for t in ActionType}
    assert {e["class_uid"] for e in events} == {3004, 3002, 6003}
    for event in events:
        assert validate(event) == [], event
        expected = ocsf.CLASS_OF_ACTION[event["unmapped"]["action_type"]]
        assert (event["class_uid"], event["activity_id"]) == (expected[0][0], expected[1])


def test_an_event_keeps_who_what_when_and_where(conn, reader_role_url):
    every_action_type(conn)
    result = run(reader_role_url, "tail")
    actions = {a["action"]: a for a in map(json.loads, result.stdout.splitlines())}
    status = ocsf.event(actions["Campaign status change"])
    assert (status["class_uid"], status["activity_id"], status["type_uid"]) == (3004, 3, 300403)
    assert status["entity"] == {
        "uid": "100",
        "name": "Mass tort 2027",
        "type": "campaign",
        "data": {"status": {"old": "draft", "new": "active"}},
    }
    assert status["actor"]["user"] == {
        "uid": "7",
        "name": "Alice Admin",
        "type_id": 2,
        "type": "Admin",
    }
    assert status["src_endpoint"]["name"] == "web"
    assert status["metadata"]["uid"] == str(actions["Campaign status change"]["id"])
    assert status["metadata"]["product"]["name"] == "audit_capture"
    occurred_at = datetime.fromisoformat(actions["Campaign status change"]["occurred_at"])
    assert status["time"] == (occurred_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )
    assert status["timezone_offset"] == 0  # tail reads in UTC
    login = ocsf.event(actions["LawRuler login"])
    assert login["user"]["name"] == "Jane Roe" and login["user"]["type"] == "User"
    assert login["service"] == {"uid": "lawruler", "name": "lawruler"}
    export = ocsf.event(actions["Call export to file"])
    assert export["resources"] == [{"name": "call", "type": "call"}]
    assert export["api"] == {"operation": "export"} and export["unmapped"]["row_count"] == 12
    by_hand = ocsf.event(actions["Export"])
    # no context: a direct database change, from the database client's address
    assert by_hand["src_endpoint"] == {"name": "database", "ip": "127.0.0.1"}
    assert by_hand["actor"]["user"]["type"] == "System"


def test_an_action_with_nothing_optional_is_still_a_valid_event():
    """The least an action can hold (no actor id, resource or source)."""
    for action_type in ActionType:
        bare = dict.fromkeys(ACTION_COLUMNS)
        bare.update(
            id=1,
            occurred_at="2026-12-03T10:00:00.5+01:00",
            action="X",
            action_type=action_type.value,
            actor_type="system",
            row_count=0,
            changes={},
        )
        event = ocsf.event(bare)
        assert validate(event) == [], (action_type, event)
        assert event["time"] == 1796288400500 and event["timezone_offset"] == 60


def test_the_check_finds_what_is_missing_or_unknown():
    """The validator itself: a required attribute removed, a constraint broken, an
    attribute the class has not, an activity it does not know are each found."""
    action = dict.fromkeys(ACTION_COLUMNS)
    action.update(
        id=1,
        occurred_at="2026-12-03T10:00:00+00:00",
        action="Client created",
        action_type="create",
        actor_type="admin",
        actor_name="A",
        row_count=1,
    )
    good = ocsf.event(action)
    assert validate(good) == []
    assert "Entity Management: entity is required" in validate({**good, "entity": None})
    assert any("needs at least one" in p for p in validate({**good, "entity": {"type": "x"}}))
    assert any("is no attribute" in p for p in validate({**good, "web_resources": []}))
    assert any(
        "activity_id 42" in p for p in validate({**good, "activity_id": 42, "type_uid": 300442})
    )
    assert any(
        "metadata: product is required" in p
        for p in validate({**good, "metadata": {"version": "1.7.0"}})
    )


# -- the README's table --------------------------------------------------------------------------


def test_the_readme_documents_the_mapping_of_every_action_type():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### OCSF") :]
    rows = re.findall(r"^\| `([a-z_]+)` \| (.+?) \((\d{4})\) \| (\d+) ", section, re.M)
    documented = {action_type: (int(uid), int(activity)) for action_type, _n, uid, activity in rows}
    assert documented == {
        t: (cls[0], activity) for t, (cls, activity, _name) in ocsf.CLASS_OF_ACTION.items()
    }
