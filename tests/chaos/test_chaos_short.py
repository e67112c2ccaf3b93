"""`scripts/chaos.py --short` as CI runs it: a fault-free baseline, then 20,000 messages delivered by 2 worker
processes while each is SIGKILLed once (1 s apart) and restarted at once, each run on fresh PostgreSQL and Valkey.

The assertion is the invariant (every message in exactly one terminal state, counters equal to rows, the campaign
completed once, nothing lost) and exit status 0. The time and duplicate targets are printed, not asserted: they
depend on the machine's load, and `make chaos` (all scenarios, 100,000 messages) is where they are judged.
Deselect with `-m 'not chaos'`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "chaos.py"

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


def test_short_run_holds_the_invariant(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--short", "--json", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=220, check=False)  # fmt: skip
    print(done.stdout)  # the figures, with `pytest -s` or in a failure's report
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    results = {r["scenario"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"baseline", "kill"}
    kill = results["kill"]
    assert kill["problem"] is None
    assert [c["name"] for c in kill["invariant"] if not c["ok"]] == []
    assert kill["invariant_ok"] and results["baseline"]["invariant_ok"]
    kills = [f for f in kill["faults"] if f["what"].startswith("SIGKILL")]
    assert len(kills) >= 1, kill["faults"]
    # Every sent message reached the (counting) mock: the duplicate figure counts what it claims to.
    assert kill["calls"]["sent_without_a_counted_call"] == 0
    assert kill["calls"]["messages"] == kill["messages"]
