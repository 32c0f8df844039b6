"""Keyset cursors: a position in the log, (occurred_at, id), as an opaque URL-safe string.

A page is "the rows before (or after) this position", found by an index seek on
(occurred_at DESC, id DESC): page 100,000 costs what page 1 costs, where OFFSET would
read and throw away every row in front of it. ``id`` breaks ties between actions of the
same instant, so no row is lost or repeated at a page boundary.

The string is base64url of 17 bytes: a version byte, occurred_at in microseconds since
the Unix epoch (signed 64-bit), id (unsigned 64-bit), and a 6-byte BLAKE2b checksum of
those. Decoding checks all of it: a garbled, truncated or hand-edited cursor is a
BadRequest, never a database error; so is a position in the first or last year of
Python's calendar (years 1 and 9999), where the pages' arithmetic of days and months
around the position (text_search's windows of days: the day after, the month's last
day) would run off it. (The checksum has no secret: it catches mistakes
and edits, not a determined forger. A forged cursor is only a position, so it can show
nothing that the filter does not already allow.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from datetime import UTC, datetime, timedelta

from audit_capture.viewer.errors import BadRequest

VERSION = 1
_PAYLOAD = struct.Struct(">BqQ")
_CHECK_SIZE = 6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_ID = 2**63 - 1
#: the positions a cursor may name (module doc); no action is logged beyond them
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_SIZE, person=b"audit-cursor").digest()


def encode(occurred_at: datetime, action_id: int) -> str:
    """The cursor of the row (occurred_at, id)."""
    delta = occurred_at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    payload = _PAYLOAD.pack(VERSION, micros, action_id)
    return base64.urlsafe_b64encode(payload + _check(payload)).decode("ascii").rstrip("=")


def decode(cursor: str) -> tuple[datetime, int]:
    """(occurred_at as an aware UTC datetime, id) of a cursor; BadRequest when it is not
    one this module made."""
    bad = BadRequest(
        f"_cursor is {cursor[:40]!r}, which is not a page position of this "
        "viewer; go back to the first page"
    )
    if not isinstance(cursor, str) or not 20 <= len(cursor) <= 40:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    if len(raw) != _PAYLOAD.size + _CHECK_SIZE:
        raise bad
    payload, check = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
    if check != _check(payload):
        raise bad
    version, micros, action_id = _PAYLOAD.unpack(payload)
    if version != VERSION or not 0 < action_id <= _MAX_ID:
        raise bad
    try:
        occurred_at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise bad from None
    if not EARLIEST <= occurred_at < LATEST:
        raise bad
    return occurred_at, action_id
