"""Application events that are no table change: logins, logouts, exports, sends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg

from audit_capture.context import as_text, check_value, require_sync_connection
from audit_capture.database import one_value
from audit_capture.enums import ActionType, coerce

#: The longest action label and resource type an event may have, in characters (the
#: log indexes them); as ``audit.value_limits()`` in SQL. A longer resource_label is
#: not refused: the log keeps its first 500 characters, the last one "…".
LIMITS = {"action": 200, "resource_type": 100}


#: The call of audit.log_action, with the named parameters of log_action_arguments().
LOG_ACTION_SQL = (
    "select audit.log_action(%(action_type)s, %(action)s, %(resource_type)s, %(resource_id)s, "
    "%(resource_label)s, %(changes)s::jsonb, %(context)s::jsonb, %(row_count)s)"
)


def record_action(
    conn: psycopg.Connection, action_type: ActionType | str, action: str, **details: Any
) -> int:
    """Record one application event with the transaction's audit context; its id.

        record_action(conn, ActionType.LOGIN, "LawRuler login",
                      resource_type="integration", resource_id=3, resource_label="LawRuler")

    ``details``: resource_type, resource_id, resource_label, changes (a mapping),
    context (a mapping merged over audit.context), row_count (default 0). The action
    type is this call's own: ``audit.action_type`` (``importing()``) does not apply to
    events. ``action`` is at most 200 characters and ``resource_type`` 100 (ValueError
    otherwise); a longer ``resource_label`` is kept to its first 500 characters.
    """
    require_sync_connection(conn)
    return one_value(conn, LOG_ACTION_SQL, log_action_arguments(action_type, action, **details))


def log_action_arguments(
    action_type: ActionType | str,
    action: str,
    *,
    resource_type: object = None,
    resource_id: object = None,
    resource_label: object = None,
    changes: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    row_count: int = 0,
) -> dict[str, Any]:
    """The validated arguments of ``audit.log_action``, JSON as text."""
    kind = coerce(ActionType, "action_type", action_type)
    if kind is None:
        raise ValueError("action_type is required")
    if not action or not str(action).strip():
        raise ValueError("action (the label) must not be empty")
    arguments = {
        "action_type": kind,
        "action": str(action),
        "resource_type": as_text(resource_type),
        "resource_id": as_text(resource_id),
        "resource_label": as_text(resource_label),
        "changes": json.dumps(dict(changes or {}), default=str),
        "context": None if context is None else json.dumps(dict(context), default=str),
        "row_count": row_count,
    }
    for name, value in arguments.items():
        if isinstance(value, str):  # InvalidContextValue (a ValueError) naming the argument
            check_value(name, value, LIMITS, json_variables=("changes", "context"))
    return arguments
