"""Every event of DESIGN.md's table, performed the way the CRM does it, gives exactly
the log row the table describes."""

from __future__ import annotations

import pytest
from audit_log import actions, items

from audit_capture import ActionType, batch, importing, record_action, set_context

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")

ADMIN = dict(actor_id="7", actor_name="Alice Admin", actor_type="admin", source="web")


@pytest.fixture
def crm(conn):
    """A CRM with one campaign, two clients, a case with a task, and both integrations."""
    with conn.transaction():
        set_context(conn, actor_type="system", actor_name="seed")
        conn.execute(
            "insert into campaigns (id, name, status) values (1, 'Mass tort 2026', 'draft')"
        )
        conn.execute(
            "insert into clients (id, name, email, ssn, campaign_id) values "
            "(1, 'Jane Roe', 'jane@example.com', '123-45-6789', 1),"
            "(2, 'John Doe', 'john@example.com', null, 1)"
        )
        conn.execute(
            "insert into cases (id, client_id, title, status) values (1, 1, 'Roe v. Acme', 'open')"
        )
        conn.execute(
            "insert into integrations (id, provider, api_key) values "
            "(1, 'LawRuler', 'lr-secret'), (2, 'SmartAdvocate', 'sa-secret')"
        )
        conn.execute(
            "select setval(pg_get_serial_sequence(t, 'id'), 100) from unnest("
            "array['campaigns','clients','cases','case_tasks','batch_jobs','integrations']) t"
        )
        seeded = conn.execute("select max(id) from audit.action_log").fetchone()[0]
    conn.seeded_up_to = seeded
    return conn


def new_action(conn, **where):
    """The one action logged after the seed that matches ``where``."""
    found = [a for a in actions(conn, **where) if a["id"] > conn.seeded_up_to]
    assert len(found) == 1, f"expected one new action matching {where}, got {found}"
    return found[0]


def as_admin(conn, **overrides):
    set_context(conn, **{**ADMIN, **overrides})


def assert_actor(action, actor=ADMIN):
    assert (action["actor_id"], action["actor_name"], action["actor_type"], action["source"]) == (
        actor["actor_id"],
        actor["actor_name"],
        actor["actor_type"],
        actor["source"],
    )


def test_campaign_created(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute("insert into campaigns (id, name, channel) values (2, 'Hernia mesh', 'sms')")
    action = new_action(crm, action="Campaign created")
    assert action["action_type"] == "create"
    assert action["resource_type"] == "campaign"
    assert (action["resource_id"], action["resource_label"], action["row_count"]) == (
        "2",
        "Hernia mesh",
        1,
    )
    assert action["changes"]["name"] == "Hernia mesh" and action["changes"]["channel"] == "sms"
    assert_actor(action)


def test_campaign_updated(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute("update campaigns set script = 'Hello', updated_at = now() where id = 1")
    action = new_action(crm, action="Campaign updated")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "update",
        "campaign",
        "1",
    )
    # only the changed columns; updated_at is ignored for campaigns
    assert action["changes"] == {"script": {"old": None, "new": "Hello"}}
    assert_actor(action)


def test_campaign_status_change(crm):
    with crm.transaction():
        as_admin(crm, source="ai")
        crm.execute("update campaigns set status = 'active' where id = 1")
    action = new_action(crm, action="Campaign status change")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "status_change",
        "campaign",
        "1",
    )
    assert action["changes"] == {"status": {"old": "draft", "new": "active"}}
    assert action["source"] == "ai"


def test_campaign_deleted(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute("delete from campaigns where id = 1")
    action = new_action(crm, action="Campaign deleted")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "delete",
        "campaign",
        "1",
    )
    assert action["resource_label"] == "Mass tort 2026"
    assert action["changes"]["name"] == "Mass tort 2026"  # the old row
    assert_actor(action)


def test_client_created_manually(crm):
    with crm.transaction():
        as_admin(crm, source="mobile")
        crm.execute("insert into clients (id, name, phone) values (3, 'Ann Lee', '555-0101')")
    action = new_action(crm, action="Client created")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "create",
        "client",
        "3",
    )
    assert action["resource_label"] == "Ann Lee"
    assert action["changes"]["phone"] == "555-0101"
    assert action["source"] == "mobile"


def test_clients_created_by_an_import(crm):
    with crm.transaction():
        as_admin(crm, actor_type="system", actor_id=None, actor_name="Nightly import", source="api")
        with importing(crm):
            crm.execute(
                "insert into clients (name) select 'Imported ' || i from generate_series(1, 12) i"
            )
    action = new_action(crm, action="Clients imported (12)")
    assert (action["action_type"], action["resource_type"]) == ("import", "client")
    assert action["resource_id"] is None and action["row_count"] == 12
    assert action["actor_name"] == "Nightly import" and action["actor_type"] == "system"
    assert len(items(crm, action["id"])) == 12


def test_client_updated(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute("update clients set email = 'jane@roe.example' where id = 1")
    action = new_action(crm, action="Client updated")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "update",
        "client",
        "1",
    )
    assert action["resource_label"] == "Jane Roe"
    assert action["changes"] == {"email": {"old": "jane@example.com", "new": "jane@roe.example"}}


def test_client_deleted(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute("delete from clients where id = 2")
    action = new_action(crm, action="Client deleted")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "delete",
        "client",
        "2",
    )
    assert action["resource_label"] == "John Doe"
    assert action["changes"]["email"] == "john@example.com"


def test_batch_client_deletion_in_one_statement(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute("delete from clients where id in (1, 2)")
    action = new_action(crm, action="Batch client deletion")
    assert (action["action_type"], action["resource_type"]) == ("delete", "client")
    assert action["resource_id"] is None and action["row_count"] == 2
    assert sorted(i["resource_id"] for i in items(crm, action["id"])) == ["1", "2"]


def test_batch_client_deletion_one_statement_per_row(crm):
    """An ORM deleting one row per statement, inside batch(), still logs one action."""
    with crm.transaction():
        as_admin(crm)
        with batch(crm, "Batch client deletion"):
            crm.execute("delete from clients where id = 1")
            crm.execute("delete from clients where id = 2")
    action = new_action(crm, action="Batch client deletion")
    # Jane's case goes with her (ON DELETE CASCADE): a tracked change of the same
    # transaction, so it joins the batch too
    assert (action["action_type"], action["resource_type"], action["row_count"]) == (
        "delete",
        "client",
        3,
    )
    assert action["resource_id"] is None
    assert sorted((i["resource_type"], i["resource_id"]) for i in items(crm, action["id"])) == [
        ("case", "1"),
        ("client", "1"),
        ("client", "2"),
    ]
    assert [i["item_no"] for i in items(crm, action["id"])] == [1, 2, 3]


def test_case_deleted(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute("delete from cases where id = 1")
    action = new_action(crm, action="Case deleted")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "delete",
        "case",
        "1",
    )
    assert action["resource_label"] == "Roe v. Acme"


def test_batch_case_deletion(crm):
    with crm.transaction():
        crm.execute(
            "insert into cases (client_id, title)"
            " select 2, 'Case ' || i from generate_series(1, 3) i"
        )
        as_admin(crm)
        crm.execute("delete from cases where client_id = 2")
    action = new_action(crm, action="Batch case deletion")
    assert (action["action_type"], action["resource_type"], action["row_count"]) == (
        "delete",
        "case",
        3,
    )


def test_case_task_created(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute(
            "insert into case_tasks (id, case_id, title) values (5, 1, 'Collect medical records')"
        )
    action = new_action(crm, action="Case task created")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "create",
        "case_task",
        "5",
    )
    assert action["resource_label"] == "Collect medical records"


def test_bulk_case_status_update(crm):
    with crm.transaction():
        crm.execute(
            "insert into cases (client_id, title)"
            " select 2, 'Case ' || i from generate_series(1, 4) i"
        )
        as_admin(crm)
        crm.execute("update cases set status = 'in_review' where client_id = 2")
    action = new_action(crm, action="Bulk case status update")
    assert (action["action_type"], action["resource_type"], action["row_count"]) == (
        "status_change",
        "case",
        4,
    )
    assert action["resource_id"] is None
    assert action["changes"] == {"rows": 4, "changed_columns": ["status"]}


def test_bulk_case_condition_update(crm):
    with crm.transaction():
        crm.execute(
            "insert into cases (client_id, title)"
            " select 2, 'Case ' || i from generate_series(1, 4) i"
        )
        as_admin(crm)
        crm.execute("update cases set condition = 'urgent', updated_at = now() where client_id = 2")
    action = new_action(crm, action="Bulk case condition update")
    assert (action["action_type"], action["resource_type"], action["row_count"]) == (
        "update",
        "case",
        4,
    )


@pytest.mark.parametrize("kind, label", [("sms", "Batch send SMS"), ("email", "Batch send Email")])
def test_batch_send(crm, kind, label):
    with crm.transaction():
        as_admin(crm)
        crm.execute(
            "insert into batch_jobs (id, kind, name, recipients) values (9, %s, 'Reminder', 250)",
            (kind,),
        )
    action = new_action(crm, action=label)
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "send",
        "batch_job",
        "9",
    )
    assert action["changes"]["recipients"] == 250


@pytest.mark.parametrize(
    "destination, label",
    [("case_list", "Call export to case list"), ("file", "Call export to file")],
)
def test_call_export(crm, destination, label):
    with crm.transaction():
        as_admin(crm)
        action_id = record_action(
            crm,
            ActionType.EXPORT,
            label,
            resource_type="call",
            changes={"calls": 42, "destination": destination},
        )
    action = new_action(crm, action=label)
    assert action["id"] == action_id
    assert (action["action_type"], action["resource_type"], action["row_count"]) == (
        "export",
        "call",
        0,
    )
    assert action["changes"] == {"calls": 42, "destination": destination}
    assert_actor(action)


def test_data_import(crm):
    with crm.transaction():
        as_admin(crm)
        crm.execute("insert into batch_jobs (id, kind, name) values (10, 'import', 'leads.csv')")
    action = new_action(crm, action="Data import")
    assert (action["action_type"], action["resource_type"], action["resource_id"]) == (
        "import",
        "batch_job",
        "10",
    )


@pytest.mark.parametrize("provider, integration_id", [("LawRuler", 1), ("SmartAdvocate", 2)])
@pytest.mark.parametrize("event", ["login", "logout"])
def test_integration_login_logout(crm, provider, integration_id, event):
    label = f"{provider} {event}"
    with crm.transaction():
        as_admin(crm)
        record_action(
            crm,
            event,
            label,
            resource_type="integration",
            resource_id=integration_id,
            resource_label=provider,
        )
    action = new_action(crm, action=label)
    assert (action["action_type"], action["resource_type"]) == (event, "integration")
    assert (action["resource_id"], action["resource_label"]) == (str(integration_id), provider)


@pytest.mark.parametrize("provider, integration_id", [("LawRuler", 1), ("SmartAdvocate", 2)])
def test_integration_sync_configuration_update(crm, provider, integration_id):
    with crm.transaction():
        as_admin(crm)
        crm.execute(
            'update integrations set sync_config = \'{"every": "15m"}\', updated_at = now() '
            "where id = %s",
            (integration_id,),
        )
    action = new_action(crm, action=f"{provider} sync configuration update")
    assert (action["action_type"], action["resource_type"]) == ("update", "integration")
    assert action["resource_id"] == str(integration_id)
    assert action["changes"] == {"sync_config": {"old": {}, "new": {"every": "15m"}}}
