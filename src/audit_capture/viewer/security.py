"""Security headers on every viewer response.

The pages load only their own CSS and script files: the Content-Security-Policy allows
nothing inline (no inline script, no ``style=`` attribute), no other origin, no framing.
A host application that already set one of these headers keeps its own value.
"""

from __future__ import annotations

from flask import Response

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def add_headers(response: Response) -> Response:
    """``after_request`` hook: the security headers, and no caching of log pages."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype != "text/css" and response.mimetype != "text/javascript":
        response.headers.setdefault("Cache-Control", "no-store")
    return response
