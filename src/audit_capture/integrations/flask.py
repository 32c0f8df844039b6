"""Flask (the host application): each request states the ambient audit context.

    audit = AuditContext(
        app,
        current_actor=lambda: Actor(id=current_user.id, name=current_user.name,
                                    type="admin" if current_user.is_staff else "client"),
        api_prefixes=("/api/",),             # these paths are the API
    )

For each request the extension decides the source (``source=`` a callable taking the
request, else the rules below) and the request id (``X-Request-ID`` when the client sent
a sensible one, a new one otherwise, echoed in the response) when the request starts,
and states the ambient context for the request. Who acts is asked of the application
(``current_actor``: any callable returning an ``Actor``, a mapping with id/name/type, or
None for nobody signed in: then the system acts) only when a statement needs the
context (the SQLAlchemy integration before a statement, ``audit_capture.apply_context``),
and again at later statements while it answers None; once it names an actor the request
keeps it. So the order of the application's hooks does not matter: a user loaded into
``g`` by a ``before_request`` registered after ``AuditContext`` (or by a blueprint's,
which runs after the application's) is the actor of what the views write. Queries that
``current_actor`` makes itself (loading the user) carry the system as the actor. No
login library is assumed.

Source rules, first match wins: the ``X-Audit-Source`` header, only where the
application trusts it (below), a blueprint in ``api_blueprints`` or a path under
``api_prefixes`` is ``api``, everything else ``web``.

Any client can send a header, so ``X-Audit-Source`` is ignored unless
``trust_source_header`` says otherwise: ``True`` when every request reaches the
application through a proxy or gateway that sets the header itself (and drops the
client's), or a callable taking the request and returning whether this request's header
is to be believed (a check of the address of your gateway, of an API key that
identifies the mobile backend...). A browser user then cannot label their own actions
``ai`` or ``mobile``. An ignored header is logged once (a warning, so a mobile client
that sends it in vain is noticed). A trusted header naming no source (``webb``) is
refused: the request is a 400 whose description names the header and the allowed
values, before the view runs.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, abort, g, request

from audit_capture.context import LIMITS, ambient_variables, deferred_context, stated_variables
from audit_capture.enums import ActorType, Source, coerce
from audit_capture.errors import InvalidContextValue

log = logging.getLogger(__name__)

SOURCE_HEADER = "X-Audit-Source"
REQUEST_ID_HEADER = "X-Request-ID"
# a request id from a client is kept only when it looks like one
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Actor:
    """Who acts: an id, a display name, and admin, client or system."""

    id: object
    name: str | None
    type: ActorType | str | None


class AuditContext:
    """The Flask extension. ``AuditContext(app, ...)`` or ``init_app(app)`` later."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        current_actor: Callable[[], Actor | Mapping[str, Any] | None] | None = None,
        source: Callable[[Request], Source | str] | None = None,
        api_prefixes: tuple[str, ...] = ("/api/",),
        api_blueprints: tuple[str, ...] = (),
        context: Callable[[Request], Mapping[str, Any] | None] | None = None,
        trust_source_header: bool | Callable[[Request], bool] = False,
    ):
        if not (isinstance(trust_source_header, bool) or callable(trust_source_header)):
            raise TypeError(
                "trust_source_header must be True, False or a callable taking the request, "
                f"not {trust_source_header!r}"
            )
        self.trust_source_header = trust_source_header
        self._warned_untrusted = False
        self.current_actor = current_actor or (lambda: None)
        self.source = source or self.default_source
        self.api_prefixes = api_prefixes
        self.api_blueprints = api_blueprints
        self.context = context
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.before_request(self._enter)
        app.after_request(self._echo_request_id)
        app.teardown_request(self._exit)
        app.extensions["audit_capture"] = self

    def default_source(self, req: Request) -> str:
        stated = self.stated_source(req)
        if stated is not None:
            return stated
        if req.blueprint in self.api_blueprints or req.path.startswith(self.api_prefixes):
            return Source.API.value
        return Source.WEB.value

    def stated_source(self, req: Request) -> str | None:
        """The source the ``X-Audit-Source`` header names, when the request carries one
        and the application trusts it; None otherwise. A trusted header naming no
        source aborts the request with a 400."""
        raw = req.headers.get(SOURCE_HEADER)
        if raw is None or not raw.strip():
            return None
        trusted = self.trust_source_header
        if callable(trusted):
            trusted = trusted(req)
        if not trusted:
            if not self._warned_untrusted:
                self._warned_untrusted = True
                log.warning(
                    "%s ignored: this application does not trust it (a client could claim "
                    "any source); pass AuditContext(..., trust_source_header=...) when a "
                    "proxy you control sets it (logged once)",
                    SOURCE_HEADER,
                )
            return None
        value = raw.strip()
        try:
            return coerce(Source, SOURCE_HEADER, value.lower())
        except InvalidContextValue as exc:
            shown = value if len(value) <= 40 else value[:40] + "..."
            abort(
                400,
                description=f"{SOURCE_HEADER} is {shown!r}; expected one of "
                f"{', '.join(exc.allowed)}",
            )

    def values_for(self, req: Request) -> dict[str, Any]:
        """The context keywords for one request (asks ``current_actor`` now)."""
        return {**self.request_values(req), **self.actor_values(req)}

    def request_values(self, req: Request) -> dict[str, Any]:
        """The keywords fixed at the start of a request: its source and request id."""
        stated = (req.headers.get(REQUEST_ID_HEADER) or "").strip()
        return {
            "source": self.source(req),
            "request_id": stated if _REQUEST_ID.match(stated) else uuid.uuid4().hex,
        }

    def actor_values(self, req: Request) -> dict[str, Any]:
        """The keywords that depend on who acts: the actor and the ``context`` metadata."""
        actor = self.current_actor()
        if isinstance(actor, Mapping):
            actor = Actor(actor.get("id"), actor.get("name"), actor.get("type"))
        values: dict[str, Any] = {}
        if actor is None:
            values.update(actor_type=ActorType.SYSTEM.value)
        else:
            values.update(
                actor_id=actor.id, actor_name=_display_name(actor.name), actor_type=actor.type
            )
        if self.context is not None:
            extra = self.context(req)
            if extra is not None:
                values["context"] = extra
        return values

    def _enter(self) -> None:
        fixed = self.request_values(request)  # a bad trusted source header: a 400 now
        stack = ExitStack()
        # flask types its request proxy as a Request; it is a werkzeug LocalProxy
        current = request._get_current_object()  # type: ignore[attr-defined]
        resolve = _RequestContext(self, current, fixed, ambient_variables())
        stack.enter_context(deferred_context(resolve))
        g._audit_capture_context = stack
        g.audit_request_id = fixed["request_id"]

    def _echo_request_id(self, response):
        request_id = g.get("audit_request_id")
        if request_id:
            response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response

    def _exit(self, exc: BaseException | None) -> None:
        stack = g.pop("_audit_capture_context", None)
        if stack is not None:
            stack.close()


#: True while ``current_actor`` runs: statements it makes itself (loading the user)
#: carry the request's context with the system as the actor, instead of recursing.
_resolving: ContextVar[bool] = ContextVar("audit_capture_flask_resolving", default=False)


class _RequestContext:
    """One request's audit variables, worked out when a statement needs them.

    The source and request id are fixed when the request starts. The actor is asked
    for at each statement until ``current_actor`` names someone, and kept from then on:
    an application that loads its user in a hook registered after ``AuditContext``
    (or in a blueprint's hook, which runs after the application's) is still the actor
    of everything its views write.
    """

    def __init__(
        self,
        extension: AuditContext,
        req: Request,
        fixed: Mapping[str, Any],
        outer: Mapping[str, str] | None,
    ):
        self.extension = extension
        self.request = req
        self.fixed = dict(fixed)
        self.outer = dict(outer or {})
        self.known: dict[str, str] | None = None

    def __call__(self) -> Mapping[str, str]:
        if self.known is not None:
            return self.known
        if _resolving.get():
            return self._variables({"actor_type": ActorType.SYSTEM.value})
        token = _resolving.set(True)
        try:
            actor = self.extension.actor_values(self.request)
        finally:
            _resolving.reset(token)
        variables = self._variables(actor)
        if "actor_id" in actor:
            self.known = variables
        return variables

    def _variables(self, actor: Mapping[str, Any]) -> dict[str, str]:
        return {**self.outer, **stated_variables(**{**self.fixed, **actor})}


def _display_name(name: Any) -> Any:
    """A user's display name as the log can hold it: cut to its limit with "…". The name
    is the user's own data (a 300-character name is the user's choice, not a bug), so
    it never makes their requests fail; an id that long is the application's bug, and
    set_context refuses it."""
    most = LIMITS["audit.actor_name"]
    if isinstance(name, str) and len(name) > most:
        return name[: most - 1] + "…"
    return name
