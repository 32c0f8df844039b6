"""The viewer's errors: what every layer raises, and the one place a database error
becomes one of them.

* ``BadRequest``: a bad input from the URL (a 400 page saying what was wrong);
* ``NotFound``: the URL names something the log cannot have (a 404 page saying what);
* ``TooBroad``: a query cancelled by the connection's statement_timeout (a page asking
  to narrow the filter);
* ``translate_errors()``: the block inside which a statement_timeout cancellation
  becomes ``TooBroad``.

The bottom layer of the viewer: it imports nothing from the viewer, so any module may
import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg


class BadRequest(Exception):
    """A bad input from the URL. ``str(exc)`` is one sentence for a person, naming the
    bad value and what was expected: "source is 'webb'; expected one of web, api, ai,
    mobile, database". The app shows it on a 400 page."""


class NotFound(Exception):
    """The URL names something that cannot exist: a resource type nothing tracks.
    ``str(exc)`` is one sentence for a person; the app shows it on a 404 page."""


class TooBroad(Exception):
    """A query hit the connection's statement_timeout. The app shows a 400 page titled
    ``title``, saying ``str(exc)``."""

    MESSAGE = "This filter took too long; narrow it (a date range or an actor) and try again."
    TITLE = "Filter too broad"

    def __init__(self, message: str = MESSAGE, title: str = TITLE):
        super().__init__(message)
        self.title = title


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn a statement_timeout cancellation into TooBroad."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        raise TooBroad() from exc
