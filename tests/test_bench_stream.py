"""bench/stream.py runs end to end on a small log and reports both formats (the figures
themselves are never asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import stream as stream_bench  # noqa: E402


def test_the_stream_bench_tails_the_whole_log_in_both_formats(capsys):
    assert stream_bench.main(["--rows", "3000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("audit-capture tail over 3,000 actions, PG ")
    assert out[1].startswith("  ndjson: ") and "actions/s" in out[1]
    assert out[2].startswith("  ocsf  : ") and "actions/s" in out[2]
