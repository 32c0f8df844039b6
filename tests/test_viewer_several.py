"""Several values per filter (issue 16): ``?source=web&source=api`` is "web or api".

Against a real PostgreSQL, through a role granted only audit_reader: every filter of
several values pages (forward and back, across equal timestamps), counts and exports
exactly the rows of a plain SQL query of the same meaning (``col in (...)``, the
actor's id and name forms, ``source is null`` for database); one value keeps the
statement it had; a bad value among good ones, a comma list, too many values and
hostile values are 400s that say so; the sentence, the chips (removing one value keeps
the others), the form's "Several…" boxes and the exports over HTTP; an anonymous
visitor gets nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
from html import unescape
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import psycopg
import pytest
from viewer_data import app_config, drop_role, make_reader, sign_in
from werkzeug.datastructures import MultiDict

from audit_capture.viewer import create_app
from audit_capture.viewer.actor_search import describe, describe_many, newest_on_page
from audit_capture.viewer.app import close
from audit_capture.viewer.errors import BadRequest
from audit_capture.viewer.export import export_csv, export_json
from audit_capture.viewer.filters import (
    ACTOR_MAX_VALUES,
    FILTERS,
    MAX_VALUES,
    SEVERAL_PARAMS,
    parse_filters,
)
from audit_capture.viewer.pages import list_page
from audit_capture.viewer.rows import LogRow, actor_branches

UTC = ZoneInfo("UTC")
ROWS = 3_000
# actor ids of the log: a comma and a quote are part of an id, never separators
ACTOR_IDS = ["7", "8", "a,b", "q'uote", "svc-1"]
# actors known by their name alone (database roles): one with a bidi override
ROLE_NAMES = ["postgres", 'crm "app" \u202e']


@pytest.fixture
def several_log(conn, db_url):
    """3,000 actions, three at each instant, over every action type, resource, actor
    type, source and none, five actors with an id and two roles without; analyzed.
    Yields a connection of a role granted only audit_reader."""
    conn.execute(
        """
        insert into audit.action_log (occurred_at, action, action_type, resource_type,
          resource_id, resource_label, row_count, actor_id, actor_name, actor_type, source,
          changes, db_user, transaction_id, operation, table_name)
        select now() - interval '1 hour' - (n / 3) * interval '1 minute',
          'Action ' || (n %% 7),
          (array['create','update','delete','status_change','import','login','logout',
                 'export','send'])[1 + n %% 9],
          (array['client','campaign','case','case_task','batch_job'])[1 + (n * 7) %% 5],
          n::text, 'Label ' || n, 1,
          case when n %% 11 = 0 then null else (%(ids)s::text[])[1 + (n * 3) %% 5] end,
          case when n %% 11 = 0 then (%(roles)s::text[])[1 + n %% 2]
               else 'Name ' || ((n * 3) %% 5) end,
          (array['admin','client','system'])[1 + (n * 5) %% 3],
          case when n %% 11 = 0 then null
               else (array['web','api','ai','mobile',null])[1 + (n + n / 3) %% 5] end,
          '{}', 'crm_app', n, 'UPDATE', 'public.clients'
        from generate_series(1, %(rows)s) n
        """,
        {"ids": ACTOR_IDS, "roles": ROLE_NAMES, "rows": ROWS},
    )
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()
    role, url = make_reader(conn, db_url)
    try:
        with psycopg.connect(url) as reader:
            yield reader
    finally:
        drop_role(conn, role)


def plain_ids(conn, where: str, params=None, direction: str = "next") -> list[int]:
    order = "occurred_at desc, id desc" if direction == "next" else "occurred_at, id"
    query = f"select id from audit.action_log where {where} order by {order}"
    return [r[0] for r in conn.execute(query, params or {})]


# each filter of several values, and plain SQL of the same meaning, written apart
CASES = {
    "source=web&source=api": "source in ('web', 'api')",
    "source=web&source=database": "(source = 'web' or source is null)",
    "source=database&source=mobile&source=ai": "(source in ('mobile', 'ai') or source is null)",
    "action_type=create&action_type=delete": "action_type in ('create', 'delete')",
    "actor_type=admin&actor_type=system": "actor_type in ('admin', 'system')",
    "resource=client&resource=case&resource=batch_job": (
        "resource_type in ('client', 'case', 'batch_job')"
    ),
    "actor=id:7&actor=id:8": "actor_id in ('7', '8')",
    "actor=id:a,b&actor=id:q'uote&actor=name:postgres": (
        "(actor_id in ('a,b', 'q''uote') or (actor_id is null and actor_name = 'postgres'))"
    ),
    "actor=name:postgres&actor=name:" + ROLE_NAMES[1]: (
        "actor_id is null and actor_name in ('postgres', 'crm \"app\" \u202e')"
    ),
    "actor=id:7&actor=id:8&source=web&source=database": (
        "actor_id in ('7', '8') and (source = 'web' or source is null)"
    ),
    "actor=id:7&actor=id:svc-1&source=api": "actor_id in ('7', 'svc-1') and source = 'api'",
    "actor=id:7&source=web&source=api": "actor_id = '7' and source in ('web', 'api')",
    "actor=name:postgres&actor=id:8&action_type=update&action_type=login": (
        "(actor_id = '8' or (actor_id is null and actor_name = 'postgres'))"
        " and action_type in ('update', 'login')"
    ),
    "source=web&source=api&action_type=update&action_type=create&actor_type=admin": (
        "source in ('web', 'api') and action_type in ('update', 'create') and actor_type = 'admin'"
    ),
    # a rare combination: the kind probe's few rows, through action_log_kind_idx
    "resource=client&resource=case&source=ai&source=database&actor_type=system": (
        "resource_type in ('client', 'case') and (source = 'ai' or source is null)"
        " and actor_type = 'system'"
    ),
    "actor=id:7&actor=id:a,b&q=3": (
        "actor_id in ('7', 'a,b') and to_tsvector('simple', action || ' ' ||"
        " coalesce(actor_name, '') || ' ' || coalesce(resource_label, ''))"
        " @@ to_tsquery('simple', '3')"
    ),
    "source=api&source=mobile&q=action": "source in ('api', 'mobile')",
    "source=web&source=api&from=2000-01-01&to=2999-12-31": "source in ('web', 'api')",
}


def _filters(query: str):
    return parse_filters(MultiDict(parse_qsl(query)), UTC)


def _pages(reader, filters, size: int) -> tuple[list[int], list]:
    """Every page forward (the ids in order), and the pages."""
    pages = [list_page(reader, filters, size=size)]
    while pages[-1].next_cursor:
        pages.append(list_page(reader, filters, cursor=pages[-1].next_cursor, size=size))
    return [r.id for p in pages for r in p.rows], pages


@pytest.mark.parametrize("query", CASES)
def test_several_values_are_plain_sql_s_any_of_them(several_log, query):
    reader = several_log
    expected = plain_ids(reader, CASES[query])
    assert expected, "every case matches some rows of the log"
    filters = _filters(query)
    assert any(a.several for a in filters.active)
    # every page, forward, across equal timestamps (pages of 37 meet inside a tie)
    got, pages = _pages(reader, filters, 37)
    assert got == expected
    # and back from the last page
    if len(pages) > 2:
        back = list_page(reader, filters, cursor=pages[-1].prev_cursor, direction="prev", size=37)
        assert [r.id for r in back.rows] == [r.id for r in pages[-2].rows]
    # the count: exact up to 1,000
    count = list_page(reader, filters, size=10).count
    if len(expected) <= 1_000:
        assert (count.how, count.value) == ("exact", len(expected))
    else:
        assert count.how != "exact" or count.value == len(expected)
    # the exports hold the same rows in the same order
    data = b"".join(export_csv(reader, filters)).decode()
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(data))] == expected
    assert [r["id"] for r in json.loads(b"".join(export_json(reader, filters)))] == expected


def test_one_value_is_the_statement_it_was(several_log):
    """A single value keeps its own condition and parameter (the planner's estimates,
    the plan tests of test_viewer_actor_pages): only several values take ``any``."""
    reader = several_log
    for param, value, condition in (
        ("source", "web", "source = %(f_source)s"),
        ("action_type", "update", "action_type = %(f_action_type)s"),
        ("actor", "id:7", "actor_id = %(f_actor)s"),
    ):
        (one,) = parse_filters(MultiDict([(param, value), (param, "")]), UTC).active
        assert not one.several and one.values == (value,)
        assert one.condition.as_string(reader) == condition
    (several,) = _filters("source=web&source=api").active
    assert several.condition.as_string(reader) == '"source" = any(%(f_source)s)'
    assert several.params == {"f_source": ["web", "api"]}
    # the same value twice is once
    (twice,) = _filters("source=web&source=web").active
    assert not twice.several and twice.values == ("web",)


def test_an_actor_s_values_are_read_one_branch_each(several_log):
    """Two actors with an id: one branch per actor and source, each on its own
    parameter; an actor by name: one branch (the name index, any source)."""
    branches = actor_branches(_filters("actor=id:7&actor=id:8"))
    assert branches is not None and len(branches) == 10
    branches = actor_branches(_filters("actor=id:7&actor=name:postgres&source=web&source=api"))
    assert branches is not None and len(branches) == 3
    # an id's branches: the source a literal of each; the name's: the sources bound
    assert [b.where()[1] for b in branches] == [
        {"f_actor_0": "7"},
        {"f_actor_0": "7"},
        {"f_actor_1": "postgres", "f_source": ["web", "api"]},
    ]
    assert [b.get("source").values for b in branches] == [("web",), ("api",), ("web", "api")]
    assert actor_branches(_filters("actor=name:postgres")) is None  # as before


BAD = {
    # one bad value among good ones: named
    "source=web&source=webb&source=api": "source is 'webb'; expected one of web, api",
    "action_type=create&action_type=explode": "action_type is 'explode'",
    "actor=id:7&actor=7": "actor is '7'; expected id:<actor id> or name:<actor name>",
    "actor_type=admin&actor_type=robot": "actor_type is 'robot'",
    "resource=client&resource=Planet!": "resource is 'Planet!'",
    # a comma list: a clear 400 saying how to ask
    "source=web,api": (
        "source is 'web,api'; expected one of web, api, ai, mobile, database"
        " (for several values, repeat the parameter: source=web&source=api)"
    ),
    "action_type=create, delete": "repeat the parameter: action_type=create&action_type=delete",
    "resource=client,case": "repeat the parameter: resource=client&resource=case",
    # the hint never shows the user's characters but inside repr()
    "source=%E2%80%AEweb,api": (
        r"source is '\u202eweb,api'; expected one of web, api, ai, mobile, database"
        " (for several values, repeat the parameter: source=...&source=...)"
    ),
    # a NUL in the second value
    "actor=id:7&actor=id:a%00b": "actor holds a NUL character",
    # the other parameters are still given once
    "from=2025-01-01&from=2025-02-01": "from is given 2 times",
    "q=a&q=b": "q is given 2 times ('a', 'b'); expected it once",
    # too many values
    "&".join(f"resource=r{n}" for n in range(MAX_VALUES + 1)): (
        f"resource is given {MAX_VALUES + 1} times; it takes at most {MAX_VALUES} values"
    ),
    "&".join(f"actor=id:{n}" for n in range(ACTOR_MAX_VALUES + 1)): (
        f"actor is given {ACTOR_MAX_VALUES + 1} times; it takes at most 10 values"
    ),
    "source=web&" * 100_000: "source is given 100000 times; it takes at most 20 values",
}


@pytest.mark.parametrize("query", BAD, ids=lambda q: q[:60])
def test_bad_values_among_good_ones_are_named(query):
    with pytest.raises(BadRequest) as raised:
        parse_filters(MultiDict(parse_qsl(query, keep_blank_values=True)), UTC)
    assert BAD[query] in str(raised.value)


def test_several_actors_are_named_as_each_alone(several_log, conn):
    """The sentence's names of several actors (``describe_many``: the ids in one
    statement or two) are ``describe``'s of each, in the URL's order; an actor with no
    recent row is found in the older months; an unknown one is None."""
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " actor_id, actor_name, actor_type, db_user, transaction_id)"
        " values (now() - interval '400 days', 'Client updated', 'update', 'client',"
        " 'gone', 'Gus Gone', 'admin', 'crm_app', 1)"
    )
    conn.commit()
    keys = ["id:svc-1", "name:postgres", "id:nobody", "id:q'uote", "id:gone", "id:a,b", "x"]
    many = describe_many(several_log, keys)
    assert many == [describe(several_log, key) for key in keys]
    assert [a.name if a else None for a in many] == [
        "Name 4",
        "postgres",
        None,
        "Name 3",
        "Gus Gone",
        "Name 2",
        None,
    ]


def _row(actor_id, actor_name, actor_type="admin", source="web") -> LogRow:
    return LogRow(1, None, "Action", "update", None, None, None, 1, actor_id, actor_name,
                  actor_type, source)  # fmt: skip


def test_a_first_page_names_each_actor_by_its_first_row():
    """``newest_on_page``: each wanted actor's first row on the page (its newest, on the
    first page of a filter by the actors alone); a role's row without source is a
    database role's; an actor without a row on the page is left to ``describe``."""
    rows = [
        _row("7", "Nora New", "client"),
        _row(None, "postgres", "system", None),
        _row("7", "Old Name"),
        _row("8", "Not Asked"),
    ]
    found = newest_on_page(["id:7", "name:postgres", "id:9"], rows)
    assert set(found) == {"id:7", "name:postgres"}
    assert (found["id:7"].name, found["id:7"].kind) == ("Nora New", "Client")
    assert found["name:postgres"].database_role and found["name:postgres"].kind == "Database role"


def test_the_sentence_names_each_actor_by_its_newest_row_on_any_page(viewer, conn):
    """An actor renamed in its newest action is named so on every page: taken from the
    rows on the first page of the actors alone, from ``describe`` on a later page and
    beside another filter (whose newest match still has the old name); an actor with no
    row on the first page is found in the older months."""
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " actor_id, actor_name, actor_type, source, db_user, transaction_id) values"
        " (now(), 'Portal login', 'login', 'client', '7', 'Nora New', 'client', 'web',"
        "  'crm_app', 1),"
        " (now() - interval '400 days', 'Client updated', 'update', 'client', 'gone',"
        "  'Gus Gone', 'admin', 'web', 'crm_app', 1)"
    )
    conn.commit()
    client = viewer.test_client()
    sign_in(client)
    sentence = "Actor is <bdi>Nora New</bdi> (Client) or <bdi>Gus Gone</bdi> (Admin)"
    first = client.get("/?actor=id:7&actor=id:gone&_size=10")
    assert first.status_code == 200 and sentence in first.text
    later = re.search(r'href="(/\?[^"]*_cursor=[^"]*)"', first.text)
    assert later is not None
    assert sentence in client.get(unescape(later.group(1))).text
    updates = client.get("/?actor=id:7&actor=id:gone&action_type=update")
    assert updates.status_code == 200
    assert "Actor is <bdi>Nora New</bdi> (Client) or <bdi>Gus Gone</bdi> (Admin)" in updates.text


def test_a_comma_in_an_actor_is_part_of_its_id():
    (actor,) = _filters("actor=id:a,b").active
    assert actor.values == ("id:a,b",) and actor.params == {"f_actor": "a,b"}


def test_the_filters_that_take_several_values():
    assert SEVERAL_PARAMS == ("action_type", "actor", "actor_type", "source", "resource")
    assert {f.param: f.most for f in FILTERS if f.most > 1}["actor"] == ACTOR_MAX_VALUES


# -- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def viewer(several_log, conn, db_url):
    role, url = make_reader(conn, db_url)
    app = create_app(app_config(url))
    try:
        yield app
    finally:
        close(app)
        drop_role(conn, role)


def _ids_of(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a class="action-name" href="/actions/(\d+)"', html)]


def test_the_page_says_any_of_them_and_each_chip_removes_one(viewer, conn):
    client = viewer.test_client()
    sign_in(client)
    page = client.get("/?source=web&source=api&actor=id:7&actor=name:postgres&_size=200")
    assert page.status_code == 200, page.text
    html = page.text
    assert (
        '<span class="sentence">Actor is <bdi>Name 0</bdi> (Client) or <bdi>postgres</bdi>'
        " (Database role), Source is <bdi>Web</bdi> or <bdi>API</bdi></span>"
    ) in html
    assert "Source is <bdi>Web</bdi> or <bdi>API</bdi>" in html
    expected = plain_ids(
        conn,
        "(actor_id = '7' or (actor_id is null and actor_name = 'postgres'))"
        " and source in ('web', 'api')",
    )
    assert _ids_of(html)[: len(expected)] == expected[:200]
    # one chip per value; its × keeps the others
    assert 'aria-label="Clear Source: Web"' in html and 'aria-label="Clear Source: API"' in html
    links = dict(re.findall(r'<a href="([^"]+)" title="Clear ([^"]+)"', html.replace("&amp;", "&")))
    assert {title: sorted(parse_qsl(urlsplit(href).query)) for href, title in links.items()} == {
        "Actor: Name 0": [("actor", "name:postgres"), ("source", "api"), ("source", "web")],
        "Actor: postgres": [("actor", "id:7"), ("source", "api"), ("source", "web")],
        "Source: Web": [("actor", "id:7"), ("actor", "name:postgres"), ("source", "api")],
        "Source: API": [("actor", "id:7"), ("actor", "name:postgres"), ("source", "web")],
    }
    # the form: the list shows "2 sources", the boxes of the two are checked, the
    # actors are kept as hidden fields
    assert '<option value="" selected disabled>2 sources</option>' in html
    assert '<input type="checkbox" name="source" value="web" checked>' in html
    assert '<input type="checkbox" name="source" value="mobile">' in html
    assert '<input type="hidden" name="actor" value="id:7">' in html
    assert '<input type="hidden" name="actor" value="name:postgres">' in html
    # the exports carry every value
    csv_url = re.search(r'href="([^"]+_format=csv[^"]*)"', html).group(1).replace("&amp;", "&")
    assert sorted(parse_qsl(urlsplit(csv_url).query)).count(("source", "web")) == 1
    exported = client.get(csv_url)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [int(r["id"]) for r in rows] == expected
    assert (
        'filename="audit-actions_actor-id-7-name-postgres_source-web-api_'
        in (exported.headers["Content-Disposition"])
    )


def test_the_actor_field_adds_an_actor_to_several(viewer):
    client = viewer.test_client()
    sign_in(client)
    response = client.get("/?actor=id:7&actor=id:8&_actor=svc-1&actor=")
    assert response.status_code == 302
    assert sorted(parse_qsl(urlsplit(response.location).query)) == [
        ("actor", "id:7"),
        ("actor", "id:8"),
        ("actor", "id:svc-1"),
    ]
    # a suggestion chosen (viewer.js puts its key in the form beside the others): that
    # actor, whatever else the text matches
    response = client.get("/?actor=id:7&actor=id:8&actor=id:svc-1&_actor=Name 4")
    assert response.status_code == 302
    assert sorted(parse_qsl(urlsplit(response.location).query)) == [
        ("actor", "id:7"),
        ("actor", "id:8"),
        ("actor", "id:svc-1"),
    ]
    # an empty field keeps them (without JavaScript the form sends it)
    response = client.get("/?actor=id:7&actor=id:8&_actor=&source=web&source=api")
    assert response.status_code == 302
    assert sorted(parse_qsl(urlsplit(response.location).query)) == [
        ("actor", "id:7"),
        ("actor", "id:8"),
        ("source", "api"),
        ("source", "web"),
    ]


def test_hostile_values_over_http_are_clear_400s(viewer):
    client = viewer.test_client()
    sign_in(client)
    for path, words in (
        ("/?source=web&source=%27%3B%20drop%20table", 'source is "\'; drop table"'),
        # the override is shown escaped, never drawn
        ("/?actor=id:7&actor=uid:%E2%80%AE", r"actor is 'uid:\u202e'"),
        ("/?resource=client&resource=case%00", "resource holds a NUL character"),
        ("/?source=web&source=api&_format=csv&_format=json", "_format is given 2 times"),
        ("/?" + "source=web&" * 5_000, "source is given 5000 times; it takes at most 20"),
        ("/?" + "actor=id:x&" * 11 + "_format=json", "actor is given 11 times"),
    ):
        response = client.get(path)
        assert response.status_code == 400, (path[:80], response.status_code)
        assert "Traceback" not in response.text
        assert words in unescape(response.text), (path[:80], words)


def test_an_anonymous_visitor_gets_no_rows_of_several_values(viewer):
    client = viewer.test_client()
    for path in ("/?source=web&source=api", "/?source=web&source=api&_format=csv"):
        response = client.get(path)
        assert response.status_code == 302
        assert urlsplit(response.location).path.endswith("/sign-in")
        assert "Action 1" not in response.text
