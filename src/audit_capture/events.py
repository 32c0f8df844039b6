"""Application events that are no table change: logins, logouts, exports, sends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from audit_capture.enums import ActionType, coerce


def record_action(
    conn: psycopg.Connection,
    action_type: ActionType | str,
    action: str,
    *,
    resource_type: str | None = None,
    resource_id: object = None,
    resource_label: str | None = None,
    changes: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    row_count: int = 0,
) -> int:
    """Record one application event with the transaction's audit context; its id.

        record_action(conn, ActionType.LOGIN, "LawRuler login",
                      resource_type="integration", resource_id=3, resource_label="LawRuler")
    """
    kind = coerce(ActionType, "action_type", action_type)
    if kind is None:
        raise ValueError("action_type is required")
    if not action or not str(action).strip():
        raise ValueError("action (the label) must not be empty")
    row = conn.execute(
        "select audit.log_action(%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            kind,
            action,
            resource_type,
            None if resource_id is None else str(resource_id),
            resource_label,
            Jsonb(dict(changes or {})),
            None if context is None else Jsonb(dict(context)),
            row_count,
        ),
    ).fetchone()
    return row[0]
