"""Shared by the browser tests: Debian's Chromium driven by Playwright, and a WSGI app
served by waitress from a thread on 127.0.0.1.

A test that opens a browser is marked ``@pytest.mark.browser`` (the version legs of
scripts/test-versions leave those out with ``-m "not browser"``); ``chromium_page()``
fails in a test without the mark, so none is forgotten."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import running_test

CHROMIUM = os.environ.get("AUDIT_CAPTURE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
README_SCREENSHOT = REPO_ROOT / "docs" / "viewer.png"

if not Path(CHROMIUM).exists():
    pytest.fail(
        f"{CHROMIUM} not found: scripts/test installs chromium (apt-get install chromium)",
        pytrace=False,
    )

from playwright import sync_api  # noqa: E402 - after the check that says what is missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(app) -> Iterator[str]:
    """``app`` served by waitress on 127.0.0.1 from a thread; its base URL."""
    from waitress.server import create_server

    port = free_port()
    server = create_server(app, host="127.0.0.1", port=port, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        thread.join(timeout=10)


@contextmanager
def viewer_served_to_a_reader(conn, db_url: str, **settings) -> Iterator[str]:
    """The standalone viewer over ``db_url``, connecting as a new audit_reader role (as in
    production), served by waitress; its base URL. The role is dropped afterwards."""
    from viewer_data import app_config, drop_role, make_reader

    from audit_capture.viewer import create_app

    role, url = make_reader(conn, db_url)
    try:
        with served(create_app(app_config(url, **settings))) as base:
            yield base
    finally:
        drop_role(conn, role)


def sign_in(page: sync_api.Page, base: str) -> None:
    """Sign in as the viewer's user (viewer_data.app_config's) through the sign-in form
    the viewer redirects an anonymous visitor to."""
    from viewer_data import PASSWORD

    page.goto(base + "/")
    assert page.url.startswith(base + "/sign-in")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


@contextmanager
def chromium_page() -> Iterator[sync_api.Page]:
    """A Chromium tab; fails when the page reports a JavaScript or console error."""
    if not running_test.marked_browser:
        pytest.fail("a test that opens a browser is marked @pytest.mark.browser", pytrace=False)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1360, "height": 900}, accept_downloads=True
        )
        tab = context.new_page()
        tab.set_default_timeout(15_000)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        try:
            yield tab
        finally:
            context.close()
            browser.close()
        assert errors == [], f"the browser reported errors: {errors}"


def artifacts_dir(tmp_path_factory) -> Path:
    """tests/artifacts/, or a temporary folder where the checkout is read-only."""
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        probe = ARTIFACTS / ".writable"
        probe.touch()
        probe.unlink()
        return ARTIFACTS
    except OSError:
        return tmp_path_factory.mktemp("artifacts")


def update_readme_picture(screenshot: Path) -> None:
    """docs/viewer.png: written when missing or when AUDIT_CAPTURE_UPDATE_DOCS=1, so a
    test run does not leave a changed picture behind each time."""
    if README_SCREENSHOT.exists() and os.environ.get("AUDIT_CAPTURE_UPDATE_DOCS") != "1":
        return
    try:
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, README_SCREENSHOT)
    except OSError:
        pass  # a read-only checkout keeps its picture
