"""The sample CRM as a Flask application, wired like a real one.

Every route acts through SQLAlchemy on an instrumented engine, inside the request's
ambient audit context stated by ``AuditContext``: who acts comes from the ``X-Demo-User``
header (the demo's stand-in for a login session), the source from the path (``/api/``)
or the ``X-Audit-Source`` header (mobile and AI clients; trusted here, see below).
Nothing here writes the log itself: the triggers do, plus ``record_action`` for the
events that change no row.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, jsonify, request

from audit_capture.enums import ActionType
from audit_capture.integrations.flask import Actor, AuditContext
from audit_capture.integrations.sqlalchemy import batch, importing, instrument, record_action

#: The people and programs that use the CRM, by the key the demo sends as X-Demo-User.
ACTORS = {
    "maria": Actor("adm-1", "Maria Lopez", "admin"),
    "james": Actor("adm-2", "James Carter", "admin"),
    "priya": Actor("adm-3", "Priya Shah", "admin"),
    "dana": Actor("cli-17", "Dana Whitfield", "client"),
    "omar": Actor("cli-23", "Omar Haddad", "client"),
    "intake-ai": Actor("ai-intake", "Intake Agent", "system"),
    "scheduler": Actor("sys-scheduler", "Nightly scheduler", "system"),
}


def make_crm_app(engine: sa.Engine) -> Flask:
    """The CRM application over ``engine`` (which it instruments)."""
    instrument(engine)
    app = Flask("sample_crm")
    # the demo's only client is its own scripted activity (activity.py), which plays the
    # gateway that sets X-Audit-Source: a real application trusts only its gateway
    AuditContext(
        app,
        current_actor=lambda: ACTORS.get(request.headers.get("X-Demo-User", "")),
        api_prefixes=("/api/",),
        trust_source_header=True,
    )
    routes = _routes(engine)
    app.register_blueprint(routes, url_prefix="/")
    app.register_blueprint(routes, url_prefix="/api", name="api")
    return app


def _routes(engine: sa.Engine) -> Blueprint:
    bp = Blueprint("crm", __name__)

    def run(sql: str, **params):
        with engine.begin() as conn:
            return conn.execute(sa.text(sql), params)

    def body() -> dict:
        return request.get_json(force=True) or {}

    # -- campaigns -------------------------------------------------------------------
    @bp.post("campaigns")
    def create_campaign():
        d = body()
        new_id = run(
            "insert into campaigns (name, channel, script)"
            " values (:name, :channel, :script) returning id",
            name=d["name"],
            channel=d.get("channel", "voice"),
            script=d.get("script"),
        ).scalar()
        return jsonify(id=new_id), 201

    @bp.patch("campaigns/<int:campaign_id>")
    def update_campaign(campaign_id):
        d = body()
        run(
            "update campaigns set script = coalesce(:script, script),"
            " name = coalesce(:name, name), updated_at = now() where id = :id",
            script=d.get("script"),
            name=d.get("name"),
            id=campaign_id,
        )
        return "", 204

    @bp.post("campaigns/<int:campaign_id>/status")
    def campaign_status(campaign_id):
        run(
            "update campaigns set status = :status, updated_at = now() where id = :id",
            status=body()["status"],
            id=campaign_id,
        )
        return "", 204

    @bp.delete("campaigns/<int:campaign_id>")
    def delete_campaign(campaign_id):
        run("delete from campaigns where id = :id", id=campaign_id)
        return "", 204

    # -- clients ---------------------------------------------------------------------
    @bp.post("clients")
    def create_client():
        d = body()
        new_id = run(
            "insert into clients (name, email, phone, ssn, campaign_id) "
            "values (:name, :email, :phone, :ssn, :campaign_id) returning id",
            name=d["name"],
            email=d.get("email"),
            phone=d.get("phone"),
            ssn=d.get("ssn"),
            campaign_id=d.get("campaign_id"),
        ).scalar()
        return jsonify(id=new_id), 201

    @bp.post("clients/import")
    def import_clients():
        rows = body()["rows"]
        with engine.begin() as conn, importing(conn):
            conn.execute(
                sa.text(
                    "insert into clients (name, email, phone, campaign_id) "
                    "select r.name, r.email, r.phone, r.campaign_id "
                    "from jsonb_to_recordset(cast(:rows as jsonb)) "
                    "as r(name text, email text, phone text, campaign_id bigint)"
                ),
                {"rows": json.dumps(rows)},
            )
        return jsonify(imported=len(rows)), 201

    @bp.patch("clients/<int:client_id>")
    def update_client(client_id):
        d = body()
        assignments = {k: d[k] for k in ("email", "phone", "status", "notes") if k in d}
        if not assignments:
            abort(400)
        sets = ", ".join(f"{column} = :{column}" for column in assignments)  # fixed column names
        run(
            f"update clients set {sets}, updated_at = now() where id = :id",
            id=client_id,
            **assignments,
        )
        return "", 204

    @bp.delete("clients/<int:client_id>")
    def delete_client(client_id):
        run("delete from clients where id = :id", id=client_id)
        return "", 204

    @bp.post("clients/batch-delete")
    def batch_delete_clients():
        # the way an ORM deletes: one statement per row, grouped into one action
        with engine.begin() as conn, batch(conn, "Batch client deletion"):
            for client_id in body()["ids"]:
                conn.execute(sa.text("delete from clients where id = :id"), {"id": client_id})
        return "", 204

    # -- cases -----------------------------------------------------------------------
    @bp.post("cases")
    def create_case():
        d = body()
        new_id = run(
            "insert into cases (client_id, title, condition, document_url) "
            "values (:client_id, :title, :condition, :url) returning id",
            client_id=d["client_id"],
            title=d["title"],
            condition=d.get("condition"),
            url=d.get("document_url"),
        ).scalar()
        return jsonify(id=new_id), 201

    @bp.delete("cases/<int:case_id>")
    def delete_case(case_id):
        run("delete from cases where id = :id", id=case_id)
        return "", 204

    @bp.post("cases/batch-delete")
    def batch_delete_cases():
        run("delete from cases where id = any(:ids)", ids=body()["ids"])
        return "", 204

    @bp.post("cases/bulk-status")
    def bulk_case_status():
        d = body()
        run(
            "update cases set status = :status, updated_at = now() where id = any(:ids)",
            status=d["status"],
            ids=d["ids"],
        )
        return "", 204

    @bp.post("cases/bulk-condition")
    def bulk_case_condition():
        d = body()
        run(
            "update cases set condition = :condition, updated_at = now() where id = any(:ids)",
            condition=d["condition"],
            ids=d["ids"],
        )
        return "", 204

    @bp.post("cases/<int:case_id>/tasks")
    def create_task(case_id):
        d = body()
        new_id = run(
            "insert into case_tasks (case_id, title, due_on) values (:case_id, :title, "
            "current_date + cast(:days as integer)) returning id",
            case_id=case_id,
            title=d["title"],
            days=d.get("due_in_days", 7),
        ).scalar()
        return jsonify(id=new_id), 201

    # -- batch jobs ------------------------------------------------------------------
    @bp.post("batch-jobs")
    def create_batch_job():
        d = body()
        new_id = run(
            "insert into batch_jobs (kind, name, recipients, payload) "
            "values (:kind, :name, :recipients, cast(:payload as jsonb)) returning id",
            kind=d["kind"],
            name=d["name"],
            recipients=d.get("recipients", 0),
            payload=json.dumps(d.get("payload", {})),
        ).scalar()
        return jsonify(id=new_id), 201

    # -- calls -----------------------------------------------------------------------
    @bp.post("calls/export")
    def export_calls():
        d = body()
        label = {"case_list": "Call export to case list", "file": "Call export to file"}[
            d["destination"]
        ]
        with engine.begin() as conn:
            record_action(
                conn,
                ActionType.EXPORT,
                label,
                resource_type="call",
                row_count=0,
                changes={"calls": d["calls"], "destination": d["destination"]},
            )
        return "", 204

    # -- integrations ----------------------------------------------------------------
    @bp.post("integrations/<provider>/<event>")
    def integration_event(provider, event):
        if event not in ("login", "logout"):
            abort(404)
        with engine.begin() as conn:
            integration_id = conn.execute(
                sa.text("select id from integrations where provider = :p"), {"p": provider}
            ).scalar()
            if integration_id is None:
                abort(404)
            record_action(
                conn,
                event,
                f"{provider} {event}",
                resource_type="integration",
                resource_id=integration_id,
                resource_label=provider,
            )
        return "", 204

    @bp.patch("integrations/<provider>/sync")
    def integration_sync(provider):
        run(
            "update integrations set sync_config = cast(:config as jsonb), updated_at = now() "
            "where provider = :p",
            config=json.dumps(body()["config"]),
            p=provider,
        )
        return "", 204

    return bp
