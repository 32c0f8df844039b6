"""Signing in to the standalone viewer.

Users and their password hashes come from the settings (``USERS``: name -> werkzeug
hash). The sign-in form carries a CSRF token; failed attempts are counted per client
address and per name, and past ``SIGNIN_MAX_FAILURES`` within ``SIGNIN_WINDOW_SECONDS``
the form answers 429 until the window has passed. A signed-in session is a random id in
Flask's signed cookie, known to the server (``sessions.py``): signing out ends it for
every copy of the cookie, and it ends after ``SESSION_IDLE_MINUTES`` without a request
or ``PERMANENT_SESSION_LIFETIME`` after sign-in. A user removed from the settings is
signed out.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response as WerkzeugResponse

from audit_capture.resources import viewer_dir
from audit_capture.viewer import csrf, security
from audit_capture.viewer.ratelimit import FailureLimiter
from audit_capture.viewer.sessions import SessionRegistry

SESSION_USER = "audit_viewer_user"
SESSION_ID = "audit_viewer_session"
LIMITER = "audit_viewer_signin_limiter"
SESSIONS = "audit_viewer_sessions"
# checked against when the name is unknown, so that a wrong name costs as long as a wrong password
_DUMMY_HASH = generate_password_hash("not a password")

bp = Blueprint("audit_viewer_auth", __name__, template_folder=str(viewer_dir() / "templates"))
bp.after_request(security.add_headers)


def init_app(app) -> None:
    app.extensions[LIMITER] = FailureLimiter(
        int(app.config["SIGNIN_MAX_FAILURES"]), float(app.config["SIGNIN_WINDOW_SECONDS"])
    )
    app.extensions[SESSIONS] = SessionRegistry(
        idle=float(app.config["SESSION_IDLE_MINUTES"]) * 60,
        lifetime=app.permanent_session_lifetime.total_seconds(),
    )
    app.register_blueprint(bp)


def sessions() -> SessionRegistry:
    return current_app.extensions[SESSIONS]


def signed_in_user() -> str | None:
    """The signed-in user of this request, or None. The first call of a request looks
    the session up on the server (which extends it); later calls reuse the answer."""
    if "audit_viewer_user" not in g:
        user = sessions().touch(session.get(SESSION_ID))
        if (
            user is None
            or user != session.get(SESSION_USER)
            or user not in current_app.config["USERS"]
        ):
            user = None
        g.audit_viewer_user = user
    return g.audit_viewer_user


def is_signed_in() -> bool:
    """The viewer blueprint's ``authorize`` hook in the standalone app."""
    return signed_in_user() is not None


def to_sign_in() -> WerkzeugResponse:
    """The viewer blueprint's ``unauthorized`` hook: off to the sign-in page, then back."""
    return redirect(url_for("audit_viewer_auth.sign_in", next=request.full_path.rstrip("?")))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site.

    Browsers read a backslash as a slash and drop tabs and line breaks from a URL ("/",
    a tab, then "/evil.example" is "//evil.example"), so a target holding a backslash or
    any character that is not printable is refused too.
    """
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
    ):
        return target
    return url_for("audit_viewer.actions")


def limiter() -> FailureLimiter:
    return current_app.extensions[LIMITER]


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    next_url = safe_next(request.values.get("next"))
    if request.method in ("GET", "HEAD"):  # HEAD: as GET, Werkzeug drops the body
        if is_signed_in():
            return redirect(next_url)
        return render_template("audit_viewer/sign_in.html", next_url=next_url, error=None)

    csrf.check()
    name = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    keys = (f"addr:{request.remote_addr}", f"user:{name.lower()}")
    wait = limiter().retry_after(*keys)
    if wait:
        minutes = max(1, round(wait / 60))
        response = Response(
            render_template(
                "audit_viewer/sign_in.html",
                next_url=next_url,
                error=(
                    f"Too many failed sign-ins. Try again in {minutes} "
                    f"minute{'s' if minutes > 1 else ''}."
                ),
            ),
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response

    password_hash = current_app.config["USERS"].get(name)
    valid = check_password_hash(password_hash or _DUMMY_HASH, password)
    if not (password_hash and valid):
        limiter().fail(*keys)
        current_app.logger.warning(
            "audit viewer: failed sign-in for %r from %s", name, request.remote_addr
        )
        return render_template(
            "audit_viewer/sign_in.html",
            next_url=next_url,
            error="Wrong user name or password.",
            username=name,
        ), 401

    limiter().clear(keys[0])
    sessions().end(session.get(SESSION_ID))  # a session signed in again is a new one
    session.clear()  # a fresh session (and CSRF token) for the signed-in user
    session.permanent = True
    session[SESSION_USER] = name
    session[SESSION_ID] = sessions().start(name)
    g.pop("audit_viewer_user", None)
    return redirect(next_url)


@bp.route("/sign-out", methods=["POST"])
def sign_out():
    csrf.check()
    sessions().end(session.get(SESSION_ID))  # every copy of the cookie is signed out too
    session.clear()
    return redirect(url_for("audit_viewer_auth.sign_in"))


@bp.app_context_processor
def auth_helpers():
    return {"csrf_token": csrf.token, "signed_in_user": signed_in_user}
