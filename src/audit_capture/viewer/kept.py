"""A value read from the database and kept for a while, shared by a viewer's threads.

``Kept.get(read)`` gives the kept value, or ``read()``'s when there is none or it is
older than ``lifetime`` seconds. One thread reads while the others wait for its result;
a read that fails is not kept (the next call tries again). With a ``background`` reader
(one that takes a connection of its own), a value past its lifetime is read again in a
thread while the callers go on with the old one: the filter options (30-50 ms at ten
million actions) and the actor directory (~80 ms) cost a page or a keystroke nothing
when they are refreshed. ``clock`` (seconds, monotonic) is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Kept(Generic[T]):
    """A value kept ``lifetime`` seconds (0: read at every call); see the module doc."""

    def __init__(
        self, lifetime: float, *, clock: Callable[[], float] = time.monotonic, name: str = "kept"
    ) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self.name = name  # of the refreshing thread
        self._lock = threading.Lock()
        self._value: T | None = None
        self._read_at = 0.0
        self._refreshing = False

    def get(
        self,
        read: Callable[[], T],
        *,
        refresh: bool = False,
        background: Callable[[], T] | None = None,
    ) -> T:
        """The kept value, or ``read()``'s when there is none, ``refresh`` asks for a
        fresh one, or it is too old and there is no ``background`` reader (with one, the
        old value, while a thread reads the new one)."""
        with self._lock:
            now = self.clock()
            stale = now - self._read_at >= self.lifetime
            if (
                refresh
                or self._value is None
                or (stale and (background is None or not self.lifetime))
            ):
                self._value = read()
                self._read_at = now
            elif stale and not self._refreshing:
                assert background is not None
                self._refreshing = True
                threading.Thread(
                    target=self._read_apart, args=(background,), name=self.name, daemon=True
                ).start()
            return self._value

    def _read_apart(self, background: Callable[[], T]) -> None:
        """Read a new value in this thread; a failure keeps the old one (the next call
        past its lifetime tries again)."""
        try:
            value: T | None = background()
        except Exception:  # noqa: BLE001 - the callers still have the old value
            value = None
        with self._lock:
            if value is not None:
                self._value, self._read_at = value, self.clock()
            self._refreshing = False

    def clear(self) -> None:
        with self._lock:
            self._value = None
