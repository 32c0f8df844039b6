"""The Live view in a real browser (Debian's Chromium through Playwright, browser.py):
an action written while the page is open appears without a reload; Pause and Resume;
a poll answered by something that is no answer of the viewer says the connection was
lost and recovers; signing out elsewhere stops the view with a message. Every page
reports no console error (a CSP violation is one)."""

from __future__ import annotations

import pytest
from browser import artifacts_dir, chromium_page, sign_in, viewer_served_to_a_reader
from viewer_data import seed

pytestmark = pytest.mark.browser


@pytest.fixture
def viewer_url(conn, db_url):
    seed(conn, xss=False)
    with viewer_served_to_a_reader(conn, db_url, TIMEZONE="Europe/Paris") as base:
        yield base


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return artifacts_dir(tmp_path_factory)


def log_event(conn, label: str) -> None:
    conn.execute("select audit.log_action('login', %s, 'integration', 'lawruler')", (label,))
    conn.commit()


def open_live(page, base: str) -> None:
    sign_in(page, base)
    page.click("a.live-link")
    page.wait_for_url(base + "/live")
    page.locator(".live-status.on").wait_for()  # the script runs
    # a mark in the page's own window: gone if the page were loaded again
    page.evaluate("window.notReloaded = true")


def test_an_action_written_while_the_page_is_open_appears_without_a_reload(
    viewer_url, conn, artifacts
):
    with chromium_page() as page:
        open_live(page, viewer_url)
        before = page.locator("#live-rows tr").count()
        assert before > 10
        log_event(conn, "SmartAdvocate login")
        row = page.locator("#live-rows tr").first
        row.filter(has_text="SmartAdvocate login").wait_for()
        assert page.locator("#live-rows tr").count() == before + 1
        assert page.evaluate("window.notReloaded") is True
        page.screenshot(path=str(artifacts / "viewer-live.png"), full_page=False)
        # the row is the list's: its link opens the action
        assert row.locator("use").first.get_attribute("href") == "#icon-system"
        row.locator("a.action-name").click()
        page.wait_for_url("**/actions/*")
        assert page.locator("h1").inner_text().startswith("SmartAdvocate login")


def test_pause_resume_and_a_lost_connection(viewer_url, conn):
    with chromium_page() as page:
        open_live(page, viewer_url)
        page.click("#live-toggle")
        page.locator(".live-status.paused").wait_for()
        assert page.locator("#live-toggle").inner_text() == "Resume"
        log_event(conn, "Written while paused")
        page.click("#live-toggle")  # resuming asks at once
        page.locator("#live-rows tr").first.filter(has_text="Written while paused").wait_for()
        assert page.locator("#live-toggle").inner_text() == "Pause"

        # something between the browser and the viewer answers instead of it
        page.route(
            "**/live/poll*",
            lambda route: route.fulfill(status=200, content_type="text/html", body="<p>proxy</p>"),
        )
        page.locator(".live-status.lost", has_text="Connection lost").wait_for()
        page.unroute("**/live/poll*")
        log_event(conn, "Written while it was lost")
        page.locator("#live-rows tr").first.filter(has_text="Written while it was lost").wait_for()
        assert page.locator(".live-status.on").is_visible()
        assert page.evaluate("window.notReloaded") is True


def test_signing_out_elsewhere_stops_the_view_with_a_message(viewer_url):
    with chromium_page() as page:
        open_live(page, viewer_url)
        other = page.context.new_page()
        other.goto(viewer_url + "/")
        other.click("button:has-text('Sign out')")
        other.wait_for_url("**/sign-in*")
        ended = page.locator(".live-status.lost", has_text="Your session has ended")
        ended.wait_for()
        assert page.locator("#live-toggle").is_hidden()
        page.click(".live-status a:has-text('Reload the page')")
        page.wait_for_url("**/sign-in?next=/live")
