"""Bidirectional spoofing: text that users, applications and table owners write (names,
labels, ids, changed values, context) holding right-to-left overrides, isolates or
marks must not reorder what surrounds it, nor hide in the page: each such text is
isolated (``<bdi>``), and its control characters are shown as a visible, marked
``⟨U+202E⟩``. Through Flask's test client (the HTML), and once in Chromium (what is
drawn)."""

from __future__ import annotations

import re
from html import unescape

import pytest
from viewer_data import app_config, drop_role, make_reader, seed

from audit_capture import record_action, set_context
from audit_capture.viewer import create_app

RLO, PDF, LRI, PDI, RLM, ALM = "\u202e", "\u202c", "\u2066", "\u2069", "\u200f", "\u061c"
# every bidirectional control, as the issue lists them
BIDI_CONTROLS = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))] + [
    "\u200e",
    "\u200f",
    "\u061c",
]
RAW_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
# the viewer's own isolation of an option's text: FSI, text without controls, PDI
OPTION_ISOLATE = re.compile("\u2068[^\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]*\u2069")

SPOOFED = {
    "actor_name": f"Alice{RLO}nimdA",  # shows as "AliceAdmin" reversed
    "actor_id": f"7{RLM}",
    "action": f"LawRuler login{LRI}",  # an isolate never closed
    "resource_type": f"integration{ALM}",
    "resource_id": f"{RLO}42",
    "resource_label": f"LawRuler {RLO}fdp.exe",
    "request_id": f"req-{PDF}9",
}
HEBREW = "שלום"  # a right-to-left name, no control character


@pytest.fixture
def spoofed(conn):
    seed(conn, xss=False)
    conn.autocommit = True
    try:
        with conn.transaction():
            set_context(
                conn,
                actor_id=SPOOFED["actor_id"],
                actor_name=SPOOFED["actor_name"],
                actor_type="admin",
                source="web",
                request_id=SPOOFED["request_id"],
                context={"note": f"see {RLO}txt.exe"},
            )
            spoofed_id = record_action(
                conn,
                "login",
                SPOOFED["action"],
                resource_type=SPOOFED["resource_type"],
                resource_id=SPOOFED["resource_id"],
                resource_label=SPOOFED["resource_label"],
                changes={f"col{RLO}": {"old": f"{LRI}old", "new": f"new{RLO}"}},
            )
        with conn.transaction():
            set_context(
                conn, actor_id="h-1", actor_name=HEBREW, actor_type="client", source="mobile"
            )
            hebrew_id = record_action(
                conn,
                "logout",
                "LawRuler logout",
                resource_type="integration",
                resource_label=HEBREW,
            )
        with conn.transaction():
            set_context(
                conn, actor_id="8", actor_name="Bob Admin", actor_type="admin", source="web"
            )
            conn.execute(
                "insert into clients (name, email) select %s || n, 'b' || n || '@example.com'"
                " from generate_series(1, 2) n",
                (f"Lead {RLO}",),
            )
        bulk_id = conn.execute("select max(id) from audit.action_log").fetchone()[0]
    finally:
        conn.autocommit = False
    return {"spoofed": spoofed_id, "hebrew": hebrew_id, "bulk": bulk_id}


@pytest.fixture
def reader_url(conn, db_url):
    name, url = make_reader(conn, db_url)
    yield url
    drop_role(conn, name)


@pytest.fixture
def user(spoofed, reader_url):
    from test_viewer_app import sign_in

    client = create_app(app_config(reader_url)).test_client()
    assert sign_in(client).status_code == 302
    return client


def no_raw_controls(html: str) -> None:
    """No bidirectional control drawn in the page: none but the viewer's own option
    isolates, and the form's values (an option's value, the search box's text), which
    must go back to the server as they are and are drawn apart from the page's text."""
    html = OPTION_ISOLATE.sub("", re.sub(r' value="[^"]*"', "", html))
    leftover = [html[max(0, m.start() - 60) : m.end() + 20] for m in RAW_CONTROL.finditer(html)]
    assert not leftover, leftover


def marked(text: str) -> str:
    from audit_capture.viewer.present import user_text

    return str(user_text(text))


def test_user_text_isolates_and_shows_every_control():
    from audit_capture.viewer.present import isolated, user_text, visible

    for char in BIDI_CONTROLS:
        html = str(user_text(f"a{char}b"))
        assert html.startswith("<bdi>") and html.endswith("</bdi>")
        assert f"⟨U+{ord(char):04X}⟩</span>" in html and char not in html
        assert char not in visible(f"a{char}b") and char not in isolated(f"a{char}b")[1:-1]
    assert (
        str(user_text(f"{RLO}<b>"))
        == '<bdi><span class="ctl" title="RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span>&lt;b&gt;</bdi>'
    )
    assert (
        str(user_text("a\x07b"))
        == '<bdi>a<span class="ctl" title="control character">⟨U+0007⟩</span>b</bdi>'
    )
    assert str(user_text("line\nbreak\ttab")) == "<bdi>line\nbreak\ttab</bdi>"
    assert str(user_text(HEBREW)) == f"<bdi>{HEBREW}</bdi>"
    assert str(user_text("👩\u200d💻")) == "<bdi>👩\u200d💻</bdi>"  # joiners stay
    assert isolated(HEBREW) == f"\u2068{HEBREW}\u2069"


def test_the_list_isolates_user_text_and_shows_controls(user, spoofed):
    html = user.get("/").text
    no_raw_controls(html)
    row = re.search(
        rf'<tr>(?:(?!</tr>).)*href="/actions/{spoofed["spoofed"]}"(?:(?!</tr>).)*</tr>', html, re.S
    ).group(0)
    for field in ("action", "actor_name", "resource_label", "resource_id"):
        assert marked(SPOOFED[field]) in row, field
    assert marked("Integration\u061cs") in row  # the resource type, as labelled
    assert f"<bdi>{HEBREW}</bdi>" in html
    # the filter's options take no markup: isolated with FSI/PDI, controls shown (the
    # actors are no option list any more: a text field searches them, issue 12)
    assert ">\u2068Integration⟨U+061C⟩s\u2069</option>" in html


def test_the_action_page_isolates_user_text_and_shows_controls(user, spoofed):
    html = user.get(f"/actions/{spoofed['spoofed']}").text
    no_raw_controls(html)
    for field in (
        "action",
        "actor_name",
        "actor_id",
        "resource_label",
        "resource_id",
        "request_id",
    ):
        assert marked(SPOOFED[field]) in html, field
    assert f"<h1>{marked(SPOOFED['action'])}</h1>" in html
    assert "<title>LawRuler login⟨U+2066⟩" in html
    assert marked(f"col{RLO}") in html  # a changed column's name
    # an event's changes are shown as JSON: one isolated value, its controls shown
    text = unescape(re.sub(r"<[^>]+>", "", html))
    assert '"old": "⟨U+2066⟩old"' in text and '"new": "new⟨U+202E⟩"' in text
    assert '"note": "see ⟨U+202E⟩txt.exe"' in text  # the context
    assert '<span class="ctl" title="RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span>' in html


def test_items_isolate_labels_and_values(user, spoofed):
    html = user.get(f"/actions/{spoofed['bulk']}").text
    no_raw_controls(html)
    assert marked(f"Lead {RLO}1") in html and 'title="Lead ⟨U+202E⟩1"' in html


def test_filter_sentences_and_chips_isolate_the_value(user, spoofed):
    for query, shown in [
        ({"actor": f"id:{SPOOFED['actor_id']}"}, SPOOFED["actor_name"]),
        ({"q": f"x{RLO}y"}, f"x{RLO}y"),
        ({"actor": f"name:{HEBREW}"}, HEBREW),
    ]:
        response = user.get("/", query_string=query)
        assert response.status_code == 200, response.text
        html = response.text
        no_raw_controls(html)
        sentence = re.search(
            r'<span class="sentence">(.*?)</span>\s*<span class="chip">', html, re.S
        ).group(1)
        assert marked(shown) in sentence, sentence
        chip = re.search(r'<span class="chip">(.*?)<a ', html, re.S).group(1)
        assert marked(shown) in chip, chip


# -- in a browser ----------------------------------------------------------------------


@pytest.mark.browser
def test_an_override_in_a_name_reverses_nothing_in_a_browser(spoofed, reader_url):
    from browser import chromium_page, served
    from test_viewer_browser import sign_in

    with served(create_app(app_config(reader_url))) as base, chromium_page() as page:
        sign_in(page, base)
        row = page.locator(
            "table.log tbody tr", has=page.locator(f"a[href='/actions/{spoofed['spoofed']}']")
        )
        # what is drawn: the text after the override reads in its logical order ("nimdA",
        # not the "Admin" it was meant to pose as), and the badge after it too
        positions = """([element, word]) => {
            const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
            let node;
            while ((node = walker.nextNode()) && !node.data.includes(word)) {}
            const start = node.data.indexOf(word);
            const at = (i) => { const r = document.createRange(); r.setStart(node, i);
                                r.setEnd(node, i + 1); return r.getBoundingClientRect().x; };
            return [at(start), at(start + word.length - 1)];
        }"""
        first, last = page.evaluate(
            positions, [row.locator(".actor-name").element_handle(), "nimdA"]
        )
        assert first < last, (first, last)
        first, last = page.evaluate(
            positions, [row.locator(".actor .badge").element_handle(), "Admin"]
        )
        assert first < last, (first, last)
        first, last = page.evaluate(
            positions, [row.locator("td[data-label=Resource] a").element_handle(), "fdp.exe"]
        )
        assert first < last, (first, last)
        assert row.locator(".actor-name").inner_text() == "Alice⟨U+202E⟩nimdA"
        assert row.locator(".actor-name .ctl").is_visible()
        # and the resource cell reads in its logical order
        assert row.locator("td[data-label=Resource] a").inner_text() == "LawRuler ⟨U+202E⟩fdp.exe"
