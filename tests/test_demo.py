"""The demo's preparation, run headless to completion: the log it produces holds every
event of DESIGN.md's table, from several actors over all four sources and Database."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from audit_capture.demo.runner import prepare

# DESIGN.md, "Every event of the product brief": (action label, action_type, resource_type)
EVERY_EVENT = [
    ("Campaign created", "create", "campaign"),
    ("Campaign updated", "update", "campaign"),
    ("Campaign deleted", "delete", "campaign"),
    ("Campaign status change", "status_change", "campaign"),
    ("Client created", "create", "client"),
    ("Clients imported (25)", "import", "client"),
    ("Client updated", "update", "client"),
    ("Client deleted", "delete", "client"),
    ("Batch client deletion", "delete", "client"),
    ("Case deleted", "delete", "case"),
    ("Batch case deletion", "delete", "case"),
    ("Case task created", "create", "case_task"),
    ("Bulk case status update", "status_change", "case"),
    ("Bulk case condition update", "update", "case"),
    ("Batch send SMS", "send", "batch_job"),
    ("Batch send Email", "send", "batch_job"),
    ("Call export to case list", "export", "call"),
    ("Call export to file", "export", "call"),
    ("Data import", "import", "batch_job"),
    ("LawRuler login", "login", "integration"),
    ("LawRuler logout", "logout", "integration"),
    ("SmartAdvocate login", "login", "integration"),
    ("SmartAdvocate logout", "logout", "integration"),
    ("LawRuler sync configuration update", "update", "integration"),
    ("SmartAdvocate sync configuration update", "update", "integration"),
]


def test_demo_preparation_covers_every_event(empty_db_url):
    steps = []
    prepared = prepare(empty_db_url, step=steps.append)
    assert prepared.actions > 100 and steps  # it said what it was doing
    with psycopg.connect(empty_db_url) as conn:
        present = set(
            conn.execute(
                "select action, action_type, resource_type from audit.action_log"
            ).fetchall()
        )
        assert [e for e in EVERY_EVENT if e not in present] == []
        sources = {s for (s,) in conn.execute("select distinct source from audit.action_log")}
        assert sources == {"web", "api", "ai", "mobile", None}
        actor_types = {
            t for (t,) in conn.execute("select distinct actor_type from audit.action_log")
        }
        assert actor_types == {"admin", "client", "system"}
        named = conn.execute(
            "select count(distinct actor_name) from audit.action_log where actor_type <> 'system'"
        ).fetchone()[0]
        assert named >= 4
        span = conn.execute(
            "select max(occurred_at) - min(occurred_at) from audit.action_log"
        ).fetchone()[0]
        assert span.days >= 25
        # the timestamps the activity wrote moved with their actions: a client created in an
        # action of 27 Oct says created_at 27 Oct, in its row and in the logged row
        created = conn.execute(
            "select l.occurred_at, (l.changes ->> 'created_at')::timestamptz, c.created_at"
            " from audit.action_log l join clients c on c.id = l.resource_id::bigint"
            " where l.action = 'Client created'"
        ).fetchall()
        assert created
        for occurred, logged, row in created:
            assert abs(logged - occurred) < timedelta(seconds=5) and row == logged
        # bulk actions keep their items; redacted values stay redacted
        batch = conn.execute(
            "select id, row_count from audit.action_log where action = 'Batch client deletion'"
        ).fetchone()
        assert (
            conn.execute("select count(*) from audit.action_items(%s)", (batch[0],)).fetchone()[0]
            == batch[1]
        )
        assert (
            conn.execute(
                "select count(*) from audit.action_log where changes::text ~ '\\d{3}-\\d{2}-\\d{4}'"
            ).fetchone()[0]
            == 0
        )
    # the viewer's role reads and cannot write
    with psycopg.connect(prepared.viewer_url) as viewer:
        assert (
            viewer.execute("select count(*) from audit.action_log").fetchone()[0]
            == prepared.actions
        )
        try:
            viewer.execute("insert into clients (name) values ('x')")
            raise AssertionError("the viewer role could write")
        except psycopg.errors.ReadOnlySqlTransaction:
            pass
