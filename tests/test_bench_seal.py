"""bench/seal.py runs end to end on a small log and reports its three figures (the
figures themselves are never asserted: rule 5)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import seal as seal_bench  # noqa: E402


def test_the_seal_bench_seals_verifies_and_measures_writes_beside(capsys):
    assert seal_bench.main(["--rows", "3000", "--write-seconds", "0.5", "--rounds", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("seal and verify, 3,000 actions (")
    assert out[1].startswith("  seal: ") and "actions/s (3 blocks)" in out[1]
    assert out[2].startswith("  verify: ") and out[2].endswith("actions/s")
    assert out[3].startswith("  audited events/s (median of 2 rounds): alone ")
    assert "(ratio " in out[3]
