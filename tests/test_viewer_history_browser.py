"""A record's history in a real browser (Debian's Chromium through Playwright,
browser.py): open an action, follow its resource to the row's history, see the bulk
action that included the row, page to older actions, follow one back to its page; and
from a bulk action's item to that row's history. Every page reports no console error
(a CSP violation is one)."""

from __future__ import annotations

import re

import pytest
from browser import artifacts_dir, chromium_page, sign_in, viewer_served_to_a_reader
from viewer_data import seed

from audit_capture import set_context

pytestmark = pytest.mark.browser

PHONE_CHANGES = 12


@pytest.fixture
def viewer_url(conn, db_url):
    """The seeded morning, then a busy afternoon for client Jane Roe: twelve phone
    changes by the API, then one bulk status update of every client; ten rows a page."""
    seeded = seed(conn, xss=False)
    for n in range(PHONE_CHANGES):
        with conn.transaction():
            set_context(
                conn,
                actor_id="svc-12",
                actor_name="LawRuler sync",
                actor_type="system",
                source="api",
            )
            conn.execute(
                "update clients set phone = %s where id = %s",
                (f"+1 555 02{n:02}", seeded["client_id"]),
            )
        conn.commit()
    with conn.transaction():
        set_context(conn, actor_id="7", actor_name="Alice Admin", actor_type="admin", source="web")
        conn.execute("update clients set status = 'qualified'")
    conn.commit()
    with viewer_served_to_a_reader(conn, db_url, PAGE_SIZE=10) as base:
        yield base


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return artifacts_dir(tmp_path_factory)


@pytest.fixture
def page(viewer_url):
    with chromium_page() as tab:
        yield tab


def test_from_an_action_to_its_rows_history_and_back(page, viewer_url, artifacts):
    sign_in(page, viewer_url)
    # an action of Jane Roe's: one of the phone changes
    page.locator("table.log tbody tr", has_text="Client updated").filter(
        has_text="LawRuler sync"
    ).first.locator("a.action-name").click()
    page.wait_for_url("**/actions/*")
    page.click("a.history-link:has-text('History of this client')")
    page.wait_for_url("**/history/client?id=1")
    assert page.locator("h1").inner_text() == "History of Client Jane Roe #1"
    assert page.title() == "History of Client Jane Roe #1 · Audit log"

    rows = page.locator("table.history tbody tr")
    assert rows.count() == 10
    # newest first: the bulk status update that included her, with her row's change
    bulk = rows.first
    assert bulk.locator("a.action-name").inner_text() == "Bulk client status update"
    assert "61 rows" in bulk.inner_text()
    changed = bulk.locator("td[data-label='What changed']").inner_text()
    assert re.search(r"status\s+new\s*→\s*qualified", changed), changed
    page.screenshot(path=str(artifacts / "viewer-history.png"), full_page=True)

    # older: the rest of the afternoon and the morning, the creation last
    page.click("a[rel=next]:has-text('Older')")
    page.wait_for_url("**_cursor=*")
    assert rows.count() == 4 + PHONE_CHANGES + 1 - 10
    assert page.locator("a[rel=next]").count() == 0  # the last page
    created = rows.last
    assert created.locator("a.action-name").inner_text() == "Client created"
    assert "Alice Admin" in created.inner_text()
    # the redacted SSN is shown as redacted
    assert created.locator(".badge.redacted").count() == 1

    # back to that action's page
    created.locator("a.action-name").click()
    page.wait_for_url("**/actions/*")
    assert page.locator("h1").inner_text() == "Client created"

    # and the way back to the newest page of the history
    page.go_back()
    page.click("a:has-text('Newest')")
    page.wait_for_url("**/history/client?id=1")
    assert rows.first.locator("a.action-name").inner_text() == "Bulk client status update"


def test_from_a_bulk_actions_item_to_its_rows_history_and_back_to_the_item(page, viewer_url):
    sign_in(page, viewer_url)
    page.locator("table.log tbody tr", has_text="Bulk client status update").first.locator(
        "a.action-name"
    ).click()
    page.wait_for_url("**/actions/*")
    bulk_url = page.url
    item = page.locator("#items table.items tbody tr", has_text="#35")
    item.locator("a.history-link").click()
    page.wait_for_url("**/history/client?id=35")
    # named by its items: a lead only ever changed in bulk, created by the import
    assert page.locator("h1").inner_text() == "History of Client Lead 34 #35"
    rows = page.locator("table.history tbody tr")
    assert [r.locator("a.action-name").inner_text() for r in rows.all()] == [
        "Bulk client status update",
        "Bulk client status update",
        "Clients imported (60)",
    ]
    # the newest action's link opens the bulk action at this row's item
    rows.first.locator("a.action-name").click()
    page.wait_for_url(re.compile(r".*/actions/\d+\?items_after=\d+#item-\d+$"))
    assert page.url.split("?")[0] == bulk_url.split("?")[0]
    target = page.url.rsplit("#", 1)[1]
    assert "#35" in page.locator(f"tr#{target}").inner_text()


def test_the_history_fits_a_small_screen(page, viewer_url, artifacts):
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, viewer_url)
    page.goto(viewer_url + "/history/client?id=1")
    assert page.locator("table.history tbody tr").first.is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(artifacts / "viewer-history-mobile.png"), full_page=False)
