"""A month of realistic CRM activity, driven through the sample CRM application.

Named admins, clients, the nightly scheduler and an AI intake agent act over Web, API,
AI and the mobile app, covering every event of DESIGN.md's table, plus one change made
directly in SQL with no context (it shows as "Database"). The requests run now; then
``spread_over_days`` moves the log's timestamps back across the last ``days`` days, in
order, as the demo's own data preparation, and the timestamps the activity wrote (the
CRM rows' own, those inside logged rows and diffs) with them.
"""

from __future__ import annotations

import bisect
import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import psycopg
from flask import Flask
from psycopg import sql
from psycopg.types.json import Jsonb

from audit_capture.database import one_value
from audit_capture.viewer.present import instant

FIRST_NAMES = [
    "Jane",
    "John",
    "Luis",
    "Amara",
    "Chen",
    "Fatima",
    "Noah",
    "Olivia",
    "Ravi",
    "Sofia",
    "Tomas",
    "Yara",
    "Ethan",
    "Mei",
    "Kwame",
    "Ines",
    "Marco",
    "Leila",
    "Sam",
    "Grace",
]
LAST_NAMES = [
    "Roe",
    "Doe",
    "Garcia",
    "Okafor",
    "Wei",
    "Khan",
    "Miller",
    "Brown",
    "Patel",
    "Rossi",
    "Novak",
    "Haddad",
    "Nguyen",
    "Lin",
    "Mensah",
    "Silva",
    "Bianchi",
    "Farah",
    "Lee",
    "Kim",
]
CAMPAIGNS = [
    ("Camp Lejeune outreach", "voice"),
    ("Hernia mesh intake", "sms"),
    ("Roundup follow-up", "email"),
    ("Truck accident leads", "voice"),
]
CONDITIONS = ["awaiting records", "medical review", "ready to file", "urgent"]

Step = Callable[[str], None]


class Driver:
    """Sends the CRM application's requests as a given user and source."""

    def __init__(self, app: Flask):
        self.client = app.test_client()

    def call(
        self,
        method: str,
        path: str,
        user: str | None,
        json: dict | None = None,
        source: str | None = None,
    ):
        headers = {}
        if user:
            headers["X-Demo-User"] = user
        if source in ("mobile", "ai"):
            headers["X-Audit-Source"] = source
        if source == "api":
            path = "/api" + path
        response = self.client.open(path, method=method, json=json or {}, headers=headers)
        if response.status_code >= 400:
            text = response.get_data(as_text=True)[:200]
            raise RuntimeError(f"{method} {path} failed: {response.status_code} {text}")
        return response.get_json(silent=True) or {}


def generate(app: Flask, superuser_url: str, *, seed: int = 7, step: Step = lambda _: None) -> None:
    """Run the month of activity through ``app``."""
    rng = random.Random(seed)
    d = Driver(app)

    step("campaigns and integrations")
    campaigns = [
        d.call("POST", "/campaigns", "maria", {"name": n, "channel": c})["id"] for n, c in CAMPAIGNS
    ]
    with psycopg.connect(superuser_url) as conn:  # set up by the DBA, no context: "Database"
        conn.execute(
            "insert into integrations (provider, api_key, sync_config) values "
            "('LawRuler', 'lr-live-7f3a', '{\"every\": \"1h\"}'), "
            "('SmartAdvocate', 'sa-live-19bc', '{\"every\": \"6h\"}')"
        )
    d.call("POST", f"/campaigns/{campaigns[0]}/status", "maria", {"status": "active"})
    d.call("POST", f"/campaigns/{campaigns[1]}/status", "james", {"status": "active"})
    d.call(
        "PATCH",
        f"/campaigns/{campaigns[2]}",
        "priya",
        {"script": "Hello, this is the Roundup team..."},
    )

    step("clients")
    clients = []
    for i in range(40):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        user, source = rng.choice(
            [
                ("maria", "web"),
                ("james", "web"),
                ("intake-ai", "ai"),
                ("dana", "mobile"),
                ("priya", "api"),
            ]
        )
        clients.append(
            d.call(
                "POST",
                "/clients",
                user,
                {
                    "name": name,
                    "email": f"{name.lower().replace(' ', '.')}{i}@example.com",
                    "phone": f"555-01{i:02d}",
                    "ssn": f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-"
                    f"{rng.randint(1000, 9999)}",
                    "campaign_id": rng.choice(campaigns),
                },
                source,
            )["id"]
        )
    d.call(
        "POST",
        "/clients/import",
        "scheduler",
        {
            "rows": [
                {
                    "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                    "email": f"lead{i}@leads.example.com",
                    "phone": f"555-02{i:02d}",
                    "campaign_id": campaigns[0],
                }
                for i in range(25)
            ]
        },
        "api",
    )
    d.call(
        "POST",
        "/batch-jobs",
        "scheduler",
        {"kind": "import", "name": "leads-2026-11.csv", "recipients": 25},
        "api",
    )

    step("client updates")
    for client_id in rng.sample(clients, 15):
        user, source = rng.choice(
            [("maria", "web"), ("james", "web"), ("omar", "mobile"), ("intake-ai", "ai")]
        )
        d.call(
            "PATCH",
            f"/clients/{client_id}",
            user,
            rng.choice(
                [
                    {"email": f"updated{client_id}@example.com"},
                    {"phone": f"555-09{client_id % 100:02d}"},
                    {"notes": "Prefers a call after 5pm"},
                    {"status": "contacted"},
                    {"status": "qualified"},
                ]
            ),
            source,
        )

    step("cases and tasks")
    cases = [
        d.call(
            "POST",
            "/cases",
            "james",
            {
                "client_id": c,
                "title": f"Case {c}-{rng.randint(100, 999)}",
                "condition": rng.choice(CONDITIONS),
                "document_url": f"https://docs.example.com/{c}",
            },
        )["id"]
        for c in clients[:20]
    ]
    for case_id in cases[:8]:
        d.call(
            "POST",
            f"/cases/{case_id}/tasks",
            rng.choice(["maria", "priya"]),
            {
                "title": rng.choice(
                    ["Collect medical records", "Call the client back", "Request police report"]
                )
            },
            "web",
        )
    d.call("POST", "/cases/bulk-status", "priya", {"ids": cases[:10], "status": "in_review"}, "web")
    d.call(
        "POST",
        "/cases/bulk-condition",
        "james",
        {"ids": cases[5:15], "condition": "ready to file"},
        "api",
    )
    d.call("DELETE", f"/cases/{cases[19]}", "maria", source="web")
    d.call("POST", "/cases/batch-delete", "priya", {"ids": cases[16:19]}, "web")

    step("batch sends and exports")
    d.call(
        "POST",
        "/batch-jobs",
        "maria",
        {"kind": "sms", "name": "Appointment reminders", "recipients": 240},
        "web",
    )
    d.call(
        "POST",
        "/batch-jobs",
        "intake-ai",
        {"kind": "email", "name": "Document request follow-up", "recipients": 85},
        "ai",
    )
    d.call("POST", "/calls/export", "james", {"destination": "case_list", "calls": 37}, "web")
    d.call("POST", "/calls/export", "dana", {"destination": "file", "calls": 12}, "mobile")

    step("integrations")
    for provider, user in (("LawRuler", "maria"), ("SmartAdvocate", "james")):
        d.call("POST", f"/integrations/{provider}/login", user, source="web")
        d.call(
            "PATCH",
            f"/integrations/{provider}/sync",
            user,
            {"config": {"every": "15m", "cases": True}},
            "web",
        )
        d.call("POST", f"/integrations/{provider}/logout", user, source="web")

    step("clean-up")
    d.call(
        "PATCH",
        f"/campaigns/{campaigns[3]}",
        "priya",
        {"name": "Truck accident leads (archived)"},
        "web",
    )
    d.call("DELETE", f"/campaigns/{campaigns[3]}", "priya", source="web")
    d.call("DELETE", f"/clients/{clients[-1]}", "james", source="web")
    d.call("POST", "/clients/batch-delete", "maria", {"ids": clients[-6:-1]}, "web")
    with psycopg.connect(superuser_url) as conn:  # a DBA fixes a typo in psql: no context
        conn.execute(
            "update clients set notes = 'Name spelling checked by DBA' where id = %s", (clients[0],)
        )


def spread_over_days(superuser_url: str, days: int = 30, *, after: int = 0) -> int:
    """Move the log's timestamps back over the last ``days`` days, keeping their order
    (more recent days busier), and every timestamp the activity wrote with them: the
    CRM rows' own (created_at, updated_at, ...) and those inside logged rows and diffs,
    each moved as far as the action that wrote it, so that a client created in an
    action dated 27 Oct says created_at 27 Oct. Demo data preparation only: it needs a
    superuser, which may switch the log's append-only triggers off (and, for the CRM
    tables, the audit triggers) for its own session. Only the actions after id ``after``
    move (the generated history before them stays where it is); returns the count of
    all the log's actions."""
    with psycopg.connect(superuser_url) as conn:
        conn.execute("set session_replication_role = replica")
        count = one_value(conn, "select count(*) from audit.action_log")
        moves = conn.execute(
            """
            with ranked as (
              select id, occurred_at, row_number() over (order by id) as n,
                     count(*) over () as total
              from audit.action_log where id > %(after)s),
            moved as (
              update audit.action_log l
              set occurred_at = now() - make_interval(days => %(days)s)
                                * power(1 - (r.n - 0.5) / r.total, 1.6)
                                + make_interval(secs => (l.id * 7919) %% 3600)
              from ranked r where r.id = l.id
              returning r.occurred_at as before, l.occurred_at as after)
            select before, after from moved order by before""",
            {"days": days, "after": after},
        ).fetchall()
        # a chunk carries its action's time (the log is partitioned by month): it moves too
        conn.execute(
            "update audit.action_item_chunk c set occurred_at = l.occurred_at"
            " from audit.action_log l"
            " where l.id = c.action_id and l.id > %(after)s and c.occurred_at <> l.occurred_at",
            {"after": after},
        )
        if moves:
            _move_written_timestamps(conn, moves, after)
        return count


def _moved(
    moves: list[tuple[datetime, datetime]], starts: list[datetime], moment: datetime
) -> datetime:
    """Where ``moment`` goes: as far as the first action logged at or after it (a row's
    now() is its transaction's start, the action's time a statement of that transaction),
    or as far as the last action when it is newer than all of them. ``starts``: the
    actions' old times, ``moves``' first column."""
    index = min(bisect.bisect_left(starts, moment), len(moves) - 1)
    before, after = moves[index]
    return moment + (after - before)


def _move_in_json(value, move):
    """``value`` (loaded JSON) with every timestamp string that lies within the activity
    moved by ``move``; other values as they are."""
    if isinstance(value, dict):
        return {key: _move_in_json(item, move) for key, item in value.items()}
    if isinstance(value, list):
        return [_move_in_json(item, move) for item in value]
    moment = instant(value)
    return value if moment is None else move(moment).isoformat()


def _move_written_timestamps(
    conn: psycopg.Connection, moves: list[tuple[datetime, datetime]], after: int
) -> None:
    starts = [before for before, _ in moves]
    first, last = starts[0] - timedelta(hours=1), starts[-1] + timedelta(hours=1)

    def move(moment: datetime) -> datetime:
        return _moved(moves, starts, moment) if first <= moment <= last else moment

    for table, column in conn.execute("""
            select c.table_name, c.column_name from information_schema.columns c
            join audit.tracked_table t
              on t.relation
                 = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))::regclass
            where c.data_type = 'timestamp with time zone'""").fetchall():
        rows = conn.execute(
            sql.SQL("select ctid, {} from {} where {} is not null").format(
                sql.Identifier(column), sql.Identifier(table), sql.Identifier(column)
            )
        ).fetchall()
        for ctid, moment in rows:
            conn.execute(
                sql.SQL("update {} set {} = %s where ctid = %s").format(
                    sql.Identifier(table), sql.Identifier(column)
                ),
                (move(moment), ctid),
            )
    for action_id, changes, context in conn.execute(
        "select id, changes, context from audit.action_log where id > %s", (after,)
    ).fetchall():
        conn.execute(
            "update audit.action_log set changes = %s, context = %s where id = %s",
            (
                Jsonb(_move_in_json(changes, move)),
                None if context is None else Jsonb(_move_in_json(context, move)),
                action_id,
            ),
        )
    for action_id, first_item, items in conn.execute(
        "select action_id, first_item, items from audit.action_item_chunk where action_id > %s",
        (after,),
    ).fetchall():
        conn.execute(
            "update audit.action_item_chunk set items = %s"
            " where action_id = %s and first_item = %s",
            (json.dumps(_move_in_json(json.loads(items), move)), action_id, first_item),
        )
