"""Signed-in sessions of the standalone viewer, kept on the server.

The session cookie (signed by Flask) holds a random session id; this registry holds,
for each live id, who signed in, when, and when the session was last used. A request is
signed in only while its id is here, so:

- signing out removes the id: a copy of the cookie taken before is refused after;
- a session unused for ``idle`` seconds ends (each signed-in request extends it), and
  any session ends ``lifetime`` seconds after its sign-in, however active;
- a cookie signed with the secret key but naming no live id (forged by someone who
  learned the key) signs nobody in.

The registry lives in the server process (``audit-capture viewer`` is one process with
threads; a lock guards it). A restart forgets it, which signs everyone out; several
processes behind one address would each know only their own sessions (use sticky
sessions there, or one process). Time is ``time.monotonic()``, so a change of the
wall clock neither ends nor extends a session.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Session:
    user: str
    signed_in: float
    last_seen: float


class SessionRegistry:
    #: sessions kept at most; past it, signing in ends the least recently used one
    MAX_SESSIONS = 10_000

    def __init__(self, idle: float, lifetime: float, clock: Callable[[], float] = time.monotonic):
        self.idle = idle
        self.lifetime = lifetime
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen >= self.idle or now - session.signed_in >= self.lifetime

    def start(self, user: str) -> str:
        """A new session for ``user`` (who has just given the right password); its id."""
        now = self.clock()
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
                del self._sessions[key]
            while len(self._sessions) >= self.MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_seen)
                del self._sessions[oldest]
            self._sessions[session_id] = Session(user, now, now)
        return session_id

    def touch(self, session_id: object) -> str | None:
        """The user of a live session, which this use extends; None (and the session
        ended) when it is unknown, idle too long or past its lifetime."""
        if not isinstance(session_id, str):
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.last_seen = now
            return session.user

    def end(self, session_id: object) -> None:
        """Sign-out: the session's cookie, and every copy of it, signs nobody in again."""
        if isinstance(session_id, str):
            with self._lock:
                self._sessions.pop(session_id, None)
