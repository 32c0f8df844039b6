"""`audit-capture demo` end to end, as a newcomer runs it: it prepares, serves the viewer
on 127.0.0.1, an admin signs in with the printed credentials and browses the log, and a
stop signal shuts the viewer and PostgreSQL down, leaving nothing behind."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg

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


def temp_servers() -> set[str]:
    """Data folders of the PostgreSQL servers running now."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return set(re.findall(r"postgres .*-D (\S+)", out))


def test_demo_serves_the_viewer_and_cleans_up(tmp_path):
    port = free_port()
    before = temp_servers()
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_CAPTURE_DATABASE_URL"}
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        demo = subprocess.Popen([AUDIT_CAPTURE, "demo", "--port", str(port)], stdout=out, stderr=err,
                                env=env, stdin=subprocess.DEVNULL)
    try:
        printed = wait_for(lambda: "password" in out_path.read_text() and out_path.read_text(), 60,
                           "the demo to print its credentials")
        assert f"http://127.0.0.1:{port}/" in printed
        user = re.search(r"user\s+(\S+)", printed).group(1)
        password = re.search(r"password\s+(\S+)", printed).group(1)
        progress = err_path.read_text()
        assert "[1/4]" in progress and "[4/4]" in progress
        ready = float(re.search(r"ready in ([0-9.]+) s", progress).group(1))
        assert ready < 20

        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        form = browser.open(f"{base}/sign-in").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode({"username": user, "password": password, "csrf_token": token}).encode()
        page = browser.open(f"{base}/sign-in", data=data).read().decode()
        assert "Batch client deletion" in page or "Single actions" in page
        listing = browser.open(f"{base}/?action_type=send").read().decode()
        assert "Batch send SMS" in listing and "Batch send Email" in listing
        servers = temp_servers() - before
        assert len(servers) == 1
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=30)
    assert demo.returncode == 0, err_path.read_text()
    assert "stopping the demo" in err_path.read_text()
    wait_for(lambda: not (temp_servers() - before), 15, "the demo's PostgreSQL to stop")
    for data_dir in servers:
        assert not Path(data_dir).exists()
