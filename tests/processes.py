"""Waiting on a server started as a subprocess for the line that says it listens."""

from __future__ import annotations

import subprocess
import threading


def first_line(process: subprocess.Popen, guard: float = 120) -> str:
    """The first line ``process`` writes to its stdout (a pipe, text mode), or '' when it
    exits without one. ``guard`` only keeps a hung process from hanging the suite: the
    line is the event waited for, whenever it comes."""
    assert process.stdout is not None, "start the process with stdout=subprocess.PIPE"
    read: list[str] = []
    reader = threading.Thread(target=lambda: read.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(guard)
    if reader.is_alive():
        process.kill()
        raise AssertionError(f"{process.args!r} printed no line in {guard:g} s: hung?")
    return read[0]


def lines_until(process: subprocess.Popen, last: str, guard: float = 120) -> str:
    """What ``process`` writes to its stdout up to and including the first line that
    contains ``last`` (the line is the event waited for; ``guard`` as in first_line)."""
    text = ""
    while True:
        line = first_line(process, guard)
        assert line, f"{process.args!r} ended before a line with {last!r}; it wrote:\n{text}"
        text += line
        if last in line:
            return text
