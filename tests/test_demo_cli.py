"""`audit-capture demo` end to end, as a newcomer runs it: it prepares, serves the viewer
on 127.0.0.1, an admin signs in with the printed credentials and browses the log, and a
stop signal shuts the viewer and PostgreSQL down, leaving nothing behind."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from processes import lines_until

AUDIT_CAPTURE = str(Path(sys.executable).with_name("audit-capture"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def temp_servers(parent: int | None = None) -> set[str]:
    """Data folders of the PostgreSQL servers running now; with ``parent``, only those
    that process started (other test runs on the machine start servers too)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    processes = [line.split(None, 2) for line in out.splitlines() if len(line.split(None, 2)) == 3]
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in processes:
        children.setdefault(int(ppid), []).append(int(pid))
    wanted = None
    if parent is not None:
        wanted, stack = set(), [parent]
        while stack:
            pid = stack.pop()
            wanted.add(pid)
            stack.extend(children.get(pid, []))
    return {
        found.group(1)
        for pid, _, args in processes
        if (wanted is None or int(pid) in wanted)
        and (found := re.search(r"postgres .*-D (\S+)", args))
    }


def test_demo_serves_the_viewer_and_cleans_up(tmp_path):
    port = free_port()
    before = temp_servers()
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_CAPTURE_DATABASE_URL"}
    err_path = tmp_path / "err"
    with open(err_path, "w") as err:
        demo = subprocess.Popen(
            [AUDIT_CAPTURE, "demo", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    try:
        # the banner comes once the viewer listens; its psql line is the last
        printed = lines_until(demo, "  psql   ")
        assert f"http://127.0.0.1:{port}/" in printed
        user = re.search(r"user\s+(\S+)", printed).group(1)
        password = re.search(r"password\s+(\S+)", printed).group(1)
        progress = err_path.read_text()
        assert "[1/4]" in progress and "[4/4]" in progress
        assert "[4/4] serving the viewer (Ctrl-C stops it and removes the demo)" in progress
        # one line a psql user copies as is, with what it needs to sign in
        psql_line = re.search(r"^  psql   (psql \S+)$", printed, re.M).group(1)
        count = subprocess.run(
            shlex.split(psql_line) + ["-Atc", "select count(*) from audit.action_log"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            env={**env, "PGCONNECT_TIMEOUT": "5"},
        )
        assert count.returncode == 0, count.stderr
        assert int(count.stdout) > 100
        ready = float(re.search(r"ready in ([0-9.]+) s", progress).group(1))
        assert ready < 20

        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        form = browser.open(f"{base}/sign-in").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode(
            {"username": user, "password": password, "csrf_token": token}
        ).encode()
        page = browser.open(f"{base}/sign-in", data=data).read().decode()
        assert "Batch client deletion" in page or "Single actions" in page
        listing = browser.open(f"{base}/?action_type=send").read().decode()
        assert "Batch send SMS" in listing and "Batch send Email" in listing
        servers = temp_servers(parent=demo.pid) - before
        assert len(servers) == 1, servers
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.communicate(timeout=30)
    assert demo.returncode == 0, err_path.read_text()
    assert "stopping the demo" in err_path.read_text()
    wait_for(lambda: not (temp_servers() & servers), 15, "the demo's PostgreSQL to stop")
    for data_dir in servers:
        assert not Path(data_dir).exists()


@pytest.fixture
def reachable_dir():
    """A folder that the server's user ('nobody' under root) can reach, removed after."""
    path = Path(tempfile.mkdtemp(prefix="audit-demo-", dir=tempfile.gettempdir()))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_keep_reuses_the_demo_database(reachable_dir):
    keep = reachable_dir / "demo-data"
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_CAPTURE_DATABASE_URL"}
    first = subprocess.run(
        [AUDIT_CAPTURE, "demo", "--keep", str(keep), "--prepare-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    assert "preparing the demo" in first.stderr and re.search(
        r"ready in [0-9.]+ s: \d+ actions", first.stderr
    )
    assert (keep / "data" / "PG_VERSION").exists()  # the data folder stays
    second = subprocess.run(
        [AUDIT_CAPTURE, "demo", "--keep", str(keep), "--prepare-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    assert "reusing the kept demo database" in second.stderr
    assert "preparing the demo" not in second.stderr

    # served, its banner says the data stays (and Ctrl-C keeps it: the next run reuses it)
    port = free_port()
    with open(reachable_dir / "err", "w") as err:
        served = subprocess.Popen(
            [AUDIT_CAPTURE, "demo", "--keep", str(keep), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    try:
        printed = lines_until(served, "  psql   ")
    finally:
        served.send_signal(signal.SIGINT)
        served.communicate(timeout=30)
    assert served.returncode == 0
    progress = (reachable_dir / "err").read_text()
    assert (
        f"[4/4] serving the viewer (Ctrl-C stops it; the demo database stays in {keep}"
        " for the next run)" in progress
    )
    assert "removes" not in progress
    assert re.search(r"^  psql   psql postgresql://postgres@127\.0\.0\.1:\d+/crm$", printed, re.M)
    assert (keep / "data" / "PG_VERSION").exists()


def test_an_unreachable_keep_folder_is_one_clear_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_CAPTURE_DATABASE_URL"}
    blocked = tmp_path / "blocked"
    blocked.mkdir(mode=0o700)
    result = subprocess.run(
        [AUDIT_CAPTURE, "demo", "--keep", str(blocked / "data"), "--prepare-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if os.geteuid() != 0:
        assert result.returncode == 0  # our own folder: reachable
        return
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Error: PostgreSQL did not start" in result.stderr and "nobody" in result.stderr


def test_a_port_in_use_is_one_clear_line():
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_CAPTURE_DATABASE_URL"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [AUDIT_CAPTURE, "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"Error: cannot serve on 127.0.0.1:{port}" in result.stderr


def test_a_given_database_keeps_the_demo_and_its_psql_line_hides_the_password():
    from audit_capture.cli import _demo_psql, _demo_stop_note

    assert _demo_stop_note(None, None) == "Ctrl-C stops it; the demo stays in the database you gave"
    assert (
        _demo_psql("postgresql://me:s3cret@db.example.com/demo", None)
        == "psql 'postgresql://me:***@db.example.com/demo'"
    )
