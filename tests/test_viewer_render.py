"""How the viewer's pages are built: the Server-Timing header each page sends (where its
time went: the query layer, the template), and the list page's markup.

Through Flask's test client, against the seeded log (conftest.py: ``user`` is a client
signed in to the standalone viewer; the viewer reads as a role granted audit_reader).
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from viewer_data import sign_in

from audit_capture.viewer import make_blueprint

# "db;dur=2.41, render;dur=7.90": milliseconds, and nothing else
PAGE_TIMING = re.compile(r"db;dur=[0-9]+\.[0-9]{2}, render;dur=[0-9]+\.[0-9]{2}")


def durations(header: str) -> dict[str, float]:
    return {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([0-9.]+)", header)}


# -- Server-Timing ---------------------------------------------------------------------


def test_every_page_says_where_its_time_went(user, seeded):
    for path in (
        "/",
        "/?source=web&_size=10",
        "/?q=client&actor_type=admin",
        "/?actor=id:7&resource=client",
        f"/actions/{seeded['bulk']}",
        f"/actions/{seeded['bulk']}?items_after=50",
        "/?_actor=a",  # several actors match: the page to choose one
    ):
        page = user.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        header = page.headers.get("Server-Timing")
        assert header is not None, path
        assert PAGE_TIMING.fullmatch(header), (path, header)
        parts = durations(header)
        # the page did read the log, and did render a template
        assert parts["db"] > 0 and parts["render"] > 0, (path, header)
    assert "Choose an actor" in page.text


def test_an_export_says_how_long_its_first_rows_took(user, seeded):
    for export_format in ("csv", "json"):
        response = user.get(f"/?_format={export_format}&source=web")
        assert response.status_code == 200
        header = response.headers["Server-Timing"]
        assert re.fullmatch(r"db;dur=[0-9]+\.[0-9]{2}", header), header
        assert response.data  # the stream still carries the whole file
        response.close()


@pytest.mark.parametrize(
    "path, status",
    [
        ("/?source=nowhere", 400),  # a bad filter value: the query layer refused it
        ("/?_size=100000", 400),
        ("/actions/999999999", 404),  # read the log, found nothing
        ("/actions/abc", 400),
        ("/nowhere", 404),
        ("/?_format=xml", 400),
    ],
)
def test_an_error_page_sends_no_server_timing(user, seeded, path, status):
    """An error page is not a page whose parts mean anything: no header (and never a
    half-measured one from the view that failed)."""
    page = user.get(path)
    assert page.status_code == status, page.text[:300]
    assert "Server-Timing" not in page.headers
    assert '<p class="message">' in page.text


def test_a_redirect_and_the_sign_in_page_send_no_server_timing(client, seeded):
    assert "Server-Timing" not in client.get("/sign-in").headers
    assert "Server-Timing" not in client.get("/").headers  # not signed in: to the sign-in
    sign_in(client)
    one_actor = client.get("/?_actor=7")  # one actor matches: to the list, filtered
    assert one_actor.status_code == 302
    assert "Server-Timing" not in one_actor.headers


def test_a_visitor_turned_away_learns_no_timing(reader_url, seeded):
    """The host's authorize hook says no: the 403 page says nothing of the log's time."""
    host = Flask("timing_host")
    host.register_blueprint(
        make_blueprint(lambda: False, database_url=reader_url), url_prefix="/audit"
    )
    for path in ("/audit/", f"/audit/actions/{seeded['bulk']}", "/audit/?_format=csv"):
        denied = host.test_client().get(path)
        assert denied.status_code == 403
        assert "Server-Timing" not in denied.headers


def test_the_blueprint_in_a_host_sends_it_too(reader_url, seeded):
    host = Flask("timing_host_allowed")
    host.register_blueprint(
        make_blueprint(lambda: True, database_url=reader_url), url_prefix="/audit"
    )
    page = host.test_client().get("/audit/?resource=client")
    assert page.status_code == 200
    assert PAGE_TIMING.fullmatch(page.headers["Server-Timing"])
