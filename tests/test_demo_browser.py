"""The demo as an admin meets it, in a real browser: sign in with the generated
credentials, find every event of the brief through the filters, open a bulk action and
see its items. The list's screenshot is the README's picture (docs/viewer.png)."""

from __future__ import annotations

import pytest
from browser import artifacts_dir, chromium_page, served, update_readme_picture
from test_demo import EVERY_EVENT

from audit_capture.demo import runner

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_url(empty_db_url):
    prepared = runner.prepare(empty_db_url)
    demo = runner.viewer_app(empty_db_url, prepared.viewer_url, timezone="America/New_York")
    with served(demo.app) as base:
        yield base, demo


def test_an_admin_browses_the_demo(demo_url, tmp_path_factory):
    base, demo = demo_url
    artifacts = artifacts_dir(tmp_path_factory)
    with chromium_page() as page:
        page.goto(base + "/")
        page.fill("#username", demo.username)
        page.fill("#password", demo.password)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        assert page.locator("table.log tbody tr").count() == 50  # a full first page
        page.screenshot(path=str(artifacts / "demo-list.png"))
        update_readme_picture(artifacts / "demo-list.png")

        # every event of the brief is one filter away
        for label, action_type, resource_type in EVERY_EVENT:
            page.goto(f"{base}/?action_type={action_type}&resource={resource_type}")
            labels = page.locator("table.log a.action-name").all_inner_texts()
            assert label in [text.strip() for text in labels], (label, labels)

        # a bulk action shows its items
        page.goto(f"{base}/?action_type=delete&resource=client")
        page.locator("table.log tbody tr", has_text="Batch client deletion").first.locator(
            "a.action-name"
        ).click()
        page.wait_for_url("**/actions/*")
        assert page.locator("#items table.items tbody tr").count() == 5
        page.screenshot(path=str(artifacts / "demo-bulk-action.png"), full_page=True)
