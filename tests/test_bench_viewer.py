"""bench/viewer_speed.py runs: a tiny log, both layers, no timing asserted.

The bench starts its own PostgreSQL and ``audit-capture viewer`` (waitress), signs in
over HTTP and checks every HTTP page's action ids against the query layer's; here it
runs on 2,000 actions, and what is asserted is that it works: it exits 0, prints the
table with the query and HTTP columns of each whole run, and no case failed (a failed
case is a wrong page, an error page or an export missing rows, whatever its time).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "viewer_speed.py"

sys.path.insert(0, str(BENCH.parent))

import viewer_speed  # noqa: E402


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_the_bench_runs_over_http_and_at_the_query_layer_side_by_side(tmp_path):
    results = tmp_path / "results.json"
    done = run_bench("--rows", "2000", "--runs", "1", "--json", str(results))
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout.splitlines()
    header = table[0].split()
    for column in ("query #1", "HTTP #1", "db / render #1"):
        assert column in table[0], table[0]
    assert header[0] == "case"
    cases = {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in table[2:])}
    for name in (
        "no filter",
        "source=database",
        "_size=200 (no filter)",
        "text prefix + word: q=mari* smith",
        "text 2 words: q=portal login",
        "text + 2 filters: q=garcia + actor_type=client + resource=case",
        "matches nothing: admin-0 (busiest) + source=database",
        "keyset page 1,800 rows deep",
        "HTTP floor: GET /static/viewer.css (no database)",
    ):
        assert name in cases, (name, done.stdout)
    assert any(name.startswith("CSV export") for name in cases), done.stdout
    # a record's history (issue 16), its rows picked from the log: one of single-row
    # actions only, a client in bulk actions too and its deepest Older link (every
    # page's ids were checked against the query layer's)
    history = {n: cells for n, cells in cases.items() if n.startswith("history: ")}
    single = [n for n in history if n.endswith("(single-row actions only)")]
    bulk = [n for n in history if n.endswith("(in bulk actions too)")]
    deep = [n for n in history if "its deepest Older link" in n]
    assert len(single) == len(bulk) == len(deep) == 1, done.stdout
    assert history[single[0]][1] != "0" and "0 of them bulk" in history[single[0]][-1]
    assert history[bulk[0]][1] != "0" and "0 of them bulk" not in history[bulk[0]][-1]
    assert re.search(r"page [0-9]+;", history[deep[0]][-1]), history[deep[0]]
    # every page showed the query layer's rows, the export all of them; only a case the
    # tiny log cannot hold (page 21 of a search) is skipped, and says so
    assert "ERROR" not in done.stdout, done.stdout
    assert "skipped: text: q=smith, page 21" in done.stdout
    assert "run #1: HTTP pages within 50 ms" in done.stdout
    assert "viewer process: peak RSS" in done.stdout
    # a few pages really have rows (an empty log would compare equal too)
    assert cases["no filter"][1] == "50", cases["no filter"]
    assert cases["_size=200 (no filter)"][1] == "200", cases["_size=200 (no filter)"]
    # each HTTP page's Server-Timing, its query layer and template: "0.9 / 3.2"
    columns = re.split(r"\s{2,}", table[0])
    parts = cases["no filter"][columns.index("db / render #1")]
    assert re.fullmatch(r"[0-9]+\.[0-9] / [0-9]+\.[0-9]", parts), cases["no filter"]
    assert (
        cases["HTTP floor: GET /static/viewer.css (no database)"][columns.index("db / render #1")]
        == "-"
    )
    assert re.search(r"its Server-Timing: db [0-9.]+ ms, render [0-9.]+ ms", done.stdout)
    assert results.exists()


def test_whole_runs_are_reported_side_by_side():
    """--repeat N: N query columns and N HTTP columns, one summary line per run."""
    runs = [[5.0, 7.0], [30.0, 60.0]]
    results = [
        viewer_speed.Result(
            "no filter",
            "page",
            query=[viewer_speed.Timing([1.0, 2.0]), viewer_speed.Timing([1.5, 9.0])],
            http=[
                viewer_speed.Timing(runs[0], db_ms=[1.0, 3.0], render_ms=[2.0, 4.0]),
                viewer_speed.Timing(runs[1]),
            ],
            rows=50,
        )
    ]
    facts = {
        "repeat": 2,
        "runs": 2,
        "rows": 1000,
        "table_bytes": 0,
        "fill_s": {"actions": 1.0, "items": 1.0},
        "index_build_s": 1.0,
        "indexes": {},
    }
    text = viewer_speed.report(results, facts)
    header = re.split(r"\s{2,}", text.splitlines()[0])
    assert header[:6] == ["case", "rows", "query #1", "query #2", "HTTP #1", "HTTP #2"]
    row = re.split(r"\s{2,}", text.splitlines()[2])
    assert row[:6] == ["no filter", "50", "1.5 / 2.0", "5.2 / 9.0", "6.0 / 7.0", "45.0 / 60.0"]
    # the second run's worst page is over 50 ms: the case is not met
    assert row[7] == "NO"
    # then each run's db / render medians (Server-Timing), "-" where the viewer sent none
    assert header[8:11] == ["db / render #1", "db / render #2", "count / note"]
    assert row[8:10] == ["2.0 / 3.0", "-"]
    assert (
        "median page HTTP 6.0 ms (target < 20), query 1.5 ms; "
        "its Server-Timing: db 2.0 ms, render 3.0 ms" in text
    )
    assert "run #1: HTTP pages within 50 ms (worst): 1/1; median page HTTP 6.0 ms" in text
    assert "run #2: HTTP pages within 50 ms (worst): 0/1; median page HTTP 45.0 ms" in text


def test_a_page_showing_other_rows_is_a_failed_case():
    """The HTTP check compares ids, not just the status: a page with a row too many, a
    row missing or rows in another order fails the case."""

    class Server:
        def __init__(self, body: bytes):
            self.body = body

        def get(self, params, path="/"):
            return 200, self.body

    def page(*ids: int) -> bytes:
        rows = "".join(
            f'<tr><a href="/actions/{i}">x</a><a href="/actions/{i}">y</a></tr>' for i in ids
        )
        return f"<table>{rows}</table>".encode()

    case = viewer_speed.Case("c", {})
    for shown, met in (
        (page(3, 2, 1), True),
        (page(3, 2), False),
        (page(3, 2, 1, 0), False),
        (page(2, 3, 1), False),
    ):
        result = viewer_speed.Result("c", "page")
        viewer_speed.time_http_page(Server(shown), case, None, 1, result, [3, 2, 1])
        assert (result.http[0].error is None) is met, (shown, result.http[0].error)


def test_an_error_page_is_a_failed_case():
    class Server:
        def get(self, params, path="/"):
            return 400, b'<p class="message">q is too long</p>'

    result = viewer_speed.Result("c", "page")
    viewer_speed.time_http_page(Server(), viewer_speed.Case("c", {}), None, 1, result, [])
    assert result.http[0].error == "HTTP 400: q is too long"
    assert not result.met


@pytest.mark.parametrize("rows", ["10", "0", "-5"])
def test_too_few_rows_is_refused_naming_the_value(rows):
    done = run_bench("--rows", rows)
    assert done.returncode == 2
    assert "--rows" in done.stderr and rows in done.stderr, done.stderr


def test_the_render_bench_runs_and_reads_the_pages_server_timing():
    """bench/viewer_render.py: the list page in process at 50 and 200 rows, its total,
    db and render medians (Server-Timing) and its bytes; no timing asserted."""
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "viewer_render.py"), "--rows", "1000", "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["page", "rows", "total", "ms", "db", "ms", "render", "ms", "bytes"]
    for line, size in zip(lines[1:3], ("50", "200"), strict=True):
        cells = line.split()
        assert cells[0] == f"_size={size}" and cells[1] == size, line
        assert all(re.fullmatch(r"[0-9]+\.[0-9]{2}", cell) for cell in cells[2:5]), line
        assert re.fullmatch(r"[0-9,]+", cells[5]), line
