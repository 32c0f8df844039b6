"""The viewer in a real browser: Playwright drives Debian's Chromium against the viewer
served by waitress from a thread on 127.0.0.1.

Sign in, filter through the controls, follow a row to its action, download a CSV, and
screenshots of the list and of actions in tests/artifacts/ (see browser.py).
"""

from __future__ import annotations

import csv
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from browser import artifacts_dir, chromium_page, sign_in, viewer_served_to_a_reader
from viewer_data import old_action, seed

pytestmark = pytest.mark.browser


@pytest.fixture
def viewer_url(conn, db_url):
    """The viewer, served by waitress in a thread, over a realistic log."""
    seed(conn, xss=False)
    # some history, so the list has older pages and dates that differ
    start = datetime.now(UTC) - timedelta(days=3)
    for n, (name, actor, source) in enumerate(
        [
            ("Bulk case status update", "Alice Admin", "web"),
            ("Campaign status change", "Bob Ortiz", "web"),
            ("Case updated", "Intake agent", "ai"),
            ("Client updated", "LawRuler sync", "api"),
        ]
        * 5
    ):
        old_action(
            conn,
            start - timedelta(hours=7 * n),
            name,
            actor_name=actor,
            actor_id=actor.split()[0].lower(),
            source=source,
            actor_type="system" if source in ("ai", "api") else "admin",
        )
    with viewer_served_to_a_reader(conn, db_url, TIMEZONE="Europe/Paris") as base:
        yield base


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return artifacts_dir(tmp_path_factory)


@pytest.fixture
def page(viewer_url):
    """A Chromium tab, closed before the server stops."""
    with chromium_page() as tab:
        yield tab


def test_sign_in_filter_open_an_action_and_export(page, viewer_url, artifacts):
    sign_in(page, viewer_url)
    assert page.locator("table.log tbody tr").count() > 20
    page.screenshot(path=str(artifacts / "viewer-list.png"), full_page=False)

    # filter through the controls: choosing a value applies it (a little JS) ...
    page.select_option("#f-source", "web")
    page.wait_for_url("**/?source=web")
    assert page.locator(".active-filters .sentence").inner_text() == "Source is Web"
    sources = page.locator("table.log td[data-label=Source]").all_inner_texts()
    assert sources and {s.strip() for s in sources} == {"Web"}

    # ... and the Apply button sends the other fields, empty ones left out
    page.fill("#f-q", "client")
    page.click("button[type=submit]:has-text('Apply')")
    page.wait_for_url("**/?source=web&q=client")
    assert (
        page.locator(".active-filters .sentence").inner_text()
        == "Source is Web, Text matches “client”"
    )
    page.select_option("#f-actor_type", "admin")
    page.wait_for_url("**/?actor_type=admin&source=web&q=client")

    # one click clears a filter
    page.click("a[aria-label='Clear Text']")
    page.wait_for_url("**/?actor_type=admin&source=web")
    assert "Text matches" not in page.locator(".active-filters").inner_text()

    # download what is shown as CSV
    shown = page.locator("table.log tbody tr").count()
    with page.expect_download() as download_info:
        page.click("a.button:has-text('CSV')")
    download = download_info.value
    assert download.suggested_filename.startswith("audit-actions_actor_type-admin_source-web_")
    path = artifacts / "export.csv"
    download.save_as(str(path))
    with path.open(newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == shown
    assert {r["source"] for r in exported} == {"web"}

    # follow a row to its action
    page.click("a[aria-label='Clear Actor type']")
    page.wait_for_url("**/?source=web")
    page.locator("table.log tbody tr", has_text="Clients imported").locator("a.action-name").click()
    page.wait_for_url("**/actions/*")
    assert page.locator("h1").inner_text().startswith("Clients imported")
    assert page.locator("#items table.items tbody tr").count() == 50
    page.click("a:has-text('Next items')")
    page.wait_for_url("**items_after=50*")
    assert page.locator("#items table.items tbody tr").count() == 10
    page.click("a:has-text('Previous items')")
    assert page.locator("#items table.items tbody tr").count() == 50


def test_screenshot_of_an_action(page, viewer_url, artifacts):
    sign_in(page, viewer_url)
    page.locator("table.log tbody tr", has_text="Client updated").filter(
        has_text="Alice Admin"
    ).first.locator("a.action-name").click()
    page.wait_for_url("**/actions/*")
    assert page.locator("table.changes").is_visible()
    assert page.locator(".badge.redacted").count() >= 1
    page.screenshot(path=str(artifacts / "viewer-action.png"), full_page=True)

    page.goto(viewer_url + "/")
    page.locator("table.log tbody tr", has_text="Bulk client status update").first.locator(
        "a.action-name"
    ).click()
    page.wait_for_url("**/actions/*")
    page.screenshot(path=str(artifacts / "viewer-bulk-action.png"), full_page=True)


def test_small_screen(page, viewer_url, artifacts):
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, viewer_url)
    assert page.locator("table.log tbody tr").first.is_visible()
    page.screenshot(path=str(artifacts / "viewer-mobile.png"), full_page=False)


def test_long_filter_values_wrap_instead_of_widening_the_page(page, viewer_url):
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, viewer_url)
    word = "x" * 190
    # the sentence and chip of a long search or actor
    for path in (f"/?q={word[:100]}", f"/?actor=name:{word}"):
        page.goto(viewer_url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path


def test_the_panels_of_an_action_do_not_touch(page, viewer_url):
    sign_in(page, viewer_url)
    page.locator("table.log tbody tr", has_text="Clients imported").locator("a.action-name").click()
    page.wait_for_url("**/actions/*")
    boxes = [
        page.locator(selector).bounding_box()
        for selector in ("section[aria-labelledby=h-summary]", ".two-col", "#items")
    ]
    for upper, lower in itertools.pairwise(boxes):
        assert lower["y"] >= upper["y"] + upper["height"] + 10


def test_a_filter_list_stepped_through_with_the_keyboard_waits_for_enter(page, viewer_url):
    sign_in(page, viewer_url)
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    # counted after viewer.js's own listeners, which run first (registration order): once
    # both changes are counted, a submit they caused would have been dispatched already
    page.evaluate(
        """() => {
        window.seen = {changes: 0, submits: 0};
        document.querySelector("form.filter-form")
          .addEventListener("submit", () => { window.seen.submits += 1; });
        document.querySelector("#f-source")
          .addEventListener("change", () => { window.seen.changes += 1; });
    }"""
    )
    page.focus("#f-source")
    page.keyboard.press("ArrowDown")  # each arrow key is a change: it must not reload the page
    page.keyboard.press("ArrowDown")
    # both changes handled, or a new page (without window.seen) loaded instead
    page.wait_for_function("!window.seen || window.seen.changes === 2")
    assert navigations == [] and page.url == viewer_url + "/"
    assert page.evaluate("window.seen") == {"changes": 2, "submits": 0}
    assert page.evaluate("document.activeElement.id") == "f-source"
    page.keyboard.press("Enter")
    page.wait_for_url("**/?source=api")
    assert len(navigations) == 1, navigations


def test_keyboard_focus_is_outlined_in_the_accent_colour(page, viewer_url):
    sign_in(page, viewer_url)
    page.keyboard.press("Tab")  # keyboard focus: :focus-visible applies
    for _ in range(12):
        if page.evaluate("document.activeElement.id") == "f-source":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-source"
    style = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.outlineColor]; })()"
    )
    assert style == ["solid", "2px", "rgb(47, 91, 211)"]  # --accent, not the pale tint


def test_the_actor_field_suggests_and_the_keyboard_chooses(page, viewer_url):
    """Issue 12, item 4: type a few letters of a name, step through the suggestions with
    the arrow keys (an ARIA combobox), Enter lands on the list filtered by that actor."""
    sign_in(page, viewer_url)
    field = page.locator("#f-actor")
    assert field.get_attribute("role") == "combobox"
    assert field.get_attribute("aria-expanded") == "false"
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))

    field.press_sequentially("al")  # Alice Admin twice: id 7 (seeded) and id alice (history)
    options = page.locator("#f-actor-list li[role=option]")
    options.nth(1).wait_for()
    assert options.count() == 2
    assert field.get_attribute("aria-expanded") == "true"
    assert options.nth(0).inner_text().startswith("Alice Admin")

    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert options.nth(1).get_attribute("aria-selected") == "true"
    assert field.get_attribute("aria-activedescendant") == options.nth(1).get_attribute("id")
    page.keyboard.press("ArrowUp")  # and back to the first, then the second again
    page.keyboard.press("ArrowDown")
    assert "id alice" in options.nth(1).inner_text()

    page.keyboard.press("Enter")
    page.wait_for_url("**/?actor=id:alice")
    assert page.locator(".active-filters .sentence").inner_text() == "Actor is Alice Admin (Admin)"
    actors = page.locator("table.log td[data-label=Actor] .actor-name").all_inner_texts()
    assert actors and set(actors) == {"Alice Admin"}
    assert field.input_value() == "Alice Admin"

    # Escape closes the list; a system actor is found by a later word of its name
    field.fill("")
    field.press_sequentially("sync")
    options.first.wait_for()
    assert options.first.inner_text().startswith("LawRuler sync")
    page.keyboard.press("Escape")
    page.locator("#f-actor-list").wait_for(state="hidden")
    assert field.get_attribute("aria-expanded") == "false"
    assert errors == []  # no CSP violation, no script error


def test_every_row_badge_draws_its_icon_under_the_csp(page, viewer_url):
    """The list draws each badge icon once and every row refers to it (<use>): under
    the viewer's Content-Security-Policy each reference finds its drawing, drawn at
    the badge's icon size as inline icons were, and nothing is refused."""
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    sign_in(page, viewer_url)
    icons = page.locator("table.log tbody .badge svg")
    assert icons.count() == 2 * page.locator("table.log tbody tr").count() > 40
    drawn = page.evaluate(
        """() => Array.from(document.querySelectorAll("table.log tbody .badge svg use"),
            use => {
              const symbol = document.querySelector(use.getAttribute("href"));
              const box = use.getBBox();  // the drawing's own extent: empty if unresolved
              return [use.getAttribute("href"), symbol && symbol.tagName, box.width > 0,
                      use.closest("svg").getBoundingClientRect().width];
            })"""
    )
    assert drawn and all(symbol == "symbol" and has_box for _, symbol, has_box, _ in drawn), drawn
    # the size .badge svg gives (12 px), as the inline icons had
    assert {round(width) for *_, width in drawn} == {12}
    assert not refused, refused


def test_two_sources_picked_in_the_form(page, viewer_url, artifacts):
    """Issue 16: the Source list's "Several…" box picks Web and API; Apply lists both
    (the sentence "Source is Web or API", a chip each), a chip's × keeps the other, and
    picking one value in the list is that value alone again."""
    sign_in(page, viewer_url)
    page.click("#f-source-several summary")
    page.check("#f-source-several input[value=web]")
    page.check("#f-source-several input[value=api]")
    assert page.url == viewer_url + "/"  # checking boxes applies nothing yet
    page.click("button[type=submit]:has-text('Apply')")
    page.wait_for_url("**/?source=web&source=api")
    assert page.locator(".active-filters .sentence").inner_text() == "Source is Web or API"
    sources = page.locator("table.log td[data-label=Source]").all_inner_texts()
    assert {s.strip() for s in sources} == {"Web", "API"}
    assert page.locator("#f-source option:checked").inner_text() == "2 sources"
    assert page.locator("#f-source-several input:checked").count() == 2
    page.click("#f-source-several summary")
    page.screenshot(path=str(artifacts / "viewer-several-sources.png"), full_page=False)
    page.click("#f-source-several summary")
    # one chip per value: removing Web keeps API
    page.click("a[aria-label='Clear Source: Web']")
    page.wait_for_url("**/?source=api")
    assert page.locator(".active-filters .sentence").inner_text() == "Source is API"
    # back to both, then one picked in the list: that one alone
    page.goto(viewer_url + "/?source=web&source=api")
    page.select_option("#f-source", "ai")
    page.wait_for_url("**/?source=ai")
    assert page.locator(".active-filters .sentence").inner_text() == "Source is AI"
