"""Where the tests' throwaway servers and files live: in memory when the machine has room.

Every test copies a template database, and many start servers of their own (the demo,
the benchmarks, replication, crashes). On a disk, even with fsync off, CREATE DATABASE
from the suite's template takes ~0.4 s; on tmpfs it takes ~0.03 s. Measured on the CI
machine (2 cores), the whole suite went from 525 s to 328 s.

So when ``/dev/shm`` is a tmpfs with at least ``MIN_FREE_BYTES`` free, the session's
TMPDIR points there: ``tempfile``, pytest's ``tmp_path``, testing.postgresql's data
directories and every subprocess (which inherits TMPDIR) use it. Otherwise, or when
``AUDIT_CAPTURE_TEST_TMPDIR`` names a folder, nothing is in memory that was not before.
"""

from __future__ import annotations

import os
import tempfile

ENVVAR = "AUDIT_CAPTURE_TEST_TMPDIR"
MEMORY_DIR = "/dev/shm"
# Two workers' servers at their peak (the 100,000-row tests, WAL before a checkpoint)
# and a replication pair stay well below this; a container's default 64 MB /dev/shm
# does not qualify, and the suite stays on disk there.
MIN_FREE_BYTES = 4 * 1024**3


def memory_dir_with_room() -> str | None:
    """``/dev/shm`` when it is a writable tmpfs with room, else None."""
    try:
        stats = os.statvfs(MEMORY_DIR)
        with open("/proc/mounts", encoding="utf-8") as mounts:
            is_tmpfs = any(
                line.split()[1:3] == [MEMORY_DIR, "tmpfs"] for line in mounts if line.strip()
            )
    except OSError:
        return None
    free = stats.f_bavail * stats.f_frsize
    if not is_tmpfs or free < MIN_FREE_BYTES or not os.access(MEMORY_DIR, os.W_OK | os.X_OK):
        return None
    return MEMORY_DIR


def use_for_this_session() -> str:
    """Points TMPDIR (this process's and its children's) at the chosen folder and
    returns it: ``AUDIT_CAPTURE_TEST_TMPDIR`` when set, else memory with room, else the
    temp folder as it was."""
    chosen = os.environ.get(ENVVAR, "").strip() or memory_dir_with_room()
    if chosen:
        os.environ["TMPDIR"] = chosen
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    return tempfile.gettempdir()
