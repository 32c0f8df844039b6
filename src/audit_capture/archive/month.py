"""A calendar month in UTC, as the log's partitions count them (``2024-11``).

A month holds the actions with ``occurred_at >= its first instant and < the next
month's``, both at ``+00``, whatever the server's or the client's TimeZone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from audit_capture.archive.errors import ArchiveError

_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str, *, option: str = "month") -> Month:
        """``'2024-11'`` as a Month; anything else (``2024-1``, ``2024-13``, ``2024-11-05``,
        ``yesterday``) raises ArchiveError naming ``option`` and the value."""
        found = _MONTH.fullmatch(text.strip()) if isinstance(text, str) else None
        if (
            found is None
            or not 1 <= int(found.group(2)) <= 12
            or not 1 <= int(found.group(1)) <= 9998  # its next month is a date too
        ):
            raise ArchiveError(f"{option} is {text!r}; expected a month as YYYY-MM, e.g. 2025-01")
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def of(cls, value: Month | date | datetime | str) -> Month:
        """A Month from a Month, a date or datetime (its UTC month), or ``'YYYY-MM'``."""
        if isinstance(value, Month):
            return value
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC)
            return cls(value.year, value.month)
        if isinstance(value, date):
            return cls(value.year, value.month)
        return cls.parse(value)

    @property
    def start(self) -> datetime:
        """The month's first instant, UTC (included)."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The next month's first instant, UTC (excluded)."""
        return self.next().start

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"
