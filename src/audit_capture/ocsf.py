"""Actions as OCSF events (Open Cybersecurity Schema Framework 1.7.0), for a SIEM.

``event(action)`` maps one action (the JSON object of ``audit-capture tail`` and of the
viewer's ``_format=ndjson``: every column of audit.action_log) to one OCSF event:

* create, update, delete, status_change: Entity Management (3004, category IAM 3),
  activity 1 Create, 3 Update, 4 Delete, 3 Update;
* login, logout: Authentication (3002, IAM), activity 1 Logon, 2 Logoff;
* import, export, send: API Activity (6003, Application Activity 6), activity
  1 Create, 2 Read, 99 Other named "Send"; ``api.operation`` says which.

Web Resources Activity (6001) has Import and Export activities, but no ``actor``
(only through the host profile): an audit event without its actor is worth little to a
SIEM, so the three go to API Activity, which requires one.

Every event carries the base attributes (time, metadata, severity, status, actor,
src_endpoint) and the class's required ones (Entity Management: ``entity``;
Authentication: ``user`` and a ``service``; API Activity: ``api``, with the resource in
``resources``); what OCSF has no attribute for goes into ``unmapped``. The README's
"OCSF" section has the table of each field's source; tests/test_ocsf.py checks every
class against the schema's required attributes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

OCSF_VERSION = "1.7.0"
PRODUCT_NAME = "audit_capture"

SEVERITY_INFORMATIONAL = 1
STATUS_SUCCESS = 1  # a logged action is one that committed

ENTITY_MANAGEMENT = (3004, "Entity Management")
AUTHENTICATION = (3002, "Authentication")
API_ACTIVITY = (6003, "API Activity")
CATEGORIES = {3: "Identity & Access Management", 6: "Application Activity"}

#: action_type -> (class_uid, class_name), activity_id, activity_name
CLASS_OF_ACTION: dict[str, tuple[tuple[int, str], int, str]] = {
    "create": (ENTITY_MANAGEMENT, 1, "Create"),
    "update": (ENTITY_MANAGEMENT, 3, "Update"),
    "delete": (ENTITY_MANAGEMENT, 4, "Delete"),
    "status_change": (ENTITY_MANAGEMENT, 3, "Update"),
    "login": (AUTHENTICATION, 1, "Logon"),
    "logout": (AUTHENTICATION, 2, "Logoff"),
    "import": (API_ACTIVITY, 1, "Create"),
    "export": (API_ACTIVITY, 2, "Read"),
    "send": (API_ACTIVITY, 99, "Send"),  # 99: Other (no sending activity)
}

#: actor_type -> OCSF user.type_id, user.type
USER_TYPE = {"admin": (2, "Admin"), "client": (1, "User"), "system": (3, "System")}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _product_version() -> str:
    try:
        return metadata.version("audit-capture")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "unknown"


PRODUCT_VERSION = _product_version()


def _compact(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without its None values (OCSF leaves an unknown attribute out)."""
    return {key: item for key, item in value.items() if item is not None}


def _user(action: dict[str, Any]) -> dict[str, Any]:
    type_id, type_name = USER_TYPE.get(action.get("actor_type") or "", (99, "Other"))
    return _compact(
        {
            "uid": action.get("actor_id"),
            # never empty (at least one of name and uid): the database role without context
            "name": action.get("actor_name") or action.get("db_user") or "unknown",
            "type_id": type_id,
            "type": type_name,
        }
    )


def _resource(action: dict[str, Any]) -> dict[str, Any]:
    """The thing acted on: its id, label and type, and the action's changes."""
    return _compact(
        {
            "uid": action.get("resource_id"),
            # a name always (at least one of name and uid): a bulk action names no row
            "name": action.get("resource_label")
            or action.get("resource_id")
            or action.get("resource_type")
            or action.get("action"),
            "type": action.get("resource_type"),
            "data": action.get("changes") or None,
        }
    )


def _time(occurred_at: str) -> tuple[int, int]:
    """Milliseconds since the epoch, and the offset in minutes, of an ISO 8601 time."""
    moment = datetime.fromisoformat(occurred_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset() or timedelta(0)
    return (moment - EPOCH) // timedelta(milliseconds=1), int(offset.total_seconds() // 60)


def event(action: dict[str, Any]) -> dict[str, Any]:
    """The OCSF event of one action (a dict with the keys of ``stream.ACTION_COLUMNS``)."""
    action_type = action["action_type"]
    (class_uid, class_name), activity_id, activity_name = CLASS_OF_ACTION[action_type]
    category_uid = class_uid // 1000
    time_ms, offset_minutes = _time(action["occurred_at"])
    user = _user(action)
    result: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": CATEGORIES[category_uid],
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "severity_id": SEVERITY_INFORMATIONAL,
        "severity": "Informational",
        "status_id": STATUS_SUCCESS,
        "status": "Success",
        "time": time_ms,
        "timezone_offset": offset_minutes,
        "message": action.get("action"),
        "metadata": _compact(
            {
                "version": OCSF_VERSION,
                "product": {
                    "name": PRODUCT_NAME,
                    "vendor_name": PRODUCT_NAME,
                    "version": PRODUCT_VERSION,
                },
                "uid": str(action["id"]),
                "original_time": action["occurred_at"],
                "correlation_uid": action.get("request_id"),
                "log_name": "audit.action_log",
                "event_code": action_type,
            }
        ),
        "actor": _compact({"user": user, "app_name": action.get("application_name")}),
    }
    # where it came from: the source (web, api, ai, mobile; "database" without context)
    # and the database client's address
    result["src_endpoint"] = _compact(
        {"name": action.get("source") or "database", "ip": action.get("client_addr")}
    )
    if class_uid == ENTITY_MANAGEMENT[0]:
        result["entity"] = _resource(action)
    elif class_uid == AUTHENTICATION[0]:
        result["user"] = user
        # the system logged into (an integration): what the resource names
        resource = _resource(action)
        result["service"] = _compact({"uid": resource.get("uid"), "name": resource["name"]})
    else:
        result["api"] = {"operation": action_type}
        result["resources"] = [_resource(action)]
    result["unmapped"] = _compact(
        {
            "action_type": action_type,
            "source": action.get("source"),
            "row_count": action.get("row_count"),
            "db_user": action.get("db_user"),
            "transaction_id": action.get("transaction_id"),
            "table_name": action.get("table_name"),
            "operation": action.get("operation"),
            "context": action.get("context"),
        }
    )
    return result
