"""CSRF tokens for the viewer's forms (sign-in and sign-out, its only POSTs).

One random token per session, in the signed session cookie; each form carries it in a
hidden ``csrf_token`` field and the POST must send it back. A form posted from another
site cannot know it.
"""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

FIELD = "csrf_token"
SESSION_KEY = "audit_viewer_csrf"


def token() -> str:
    """This session's token (made on first use)."""
    value = session.get(SESSION_KEY)
    if not value:
        value = secrets.token_urlsafe(32)
        session[SESSION_KEY] = value
    return value


def check() -> None:
    """Abort with 400 unless the POSTed form carries this session's token."""
    expected = session.get(SESSION_KEY)
    sent = request.form.get(FIELD, "")
    # compared as bytes: compare_digest refuses str holding anything but ASCII (a
    # TypeError), and a forged token may hold anything
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        abort(
            400,
            description=(
                "The form was missing its security token or it had expired. "
                "Reload the page and try again."
            ),
        )
