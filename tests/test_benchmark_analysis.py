"""Smoke test of ``benchmarks/analysis.py --quick``: it runs and its last stdout line is the JSON
result with the expected keys (no timing checks)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "analysis.py"


def test_quick_run_prints_json_last():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True,
                          timeout=300, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "analysis" and result["config"]["quick"] is True
    assert result["threads"] == 1 and result["threads_all_count"] >= 1
    assert set(result["versions"]) == {"torch", "bionn"}
    assert {"fixed_points_settings", "force_data", "scaling"} <= set(result["notes"])
    fp, fo = result["fixed_points_16"], result["force_40"]
    for case in (fp, fo):
        assert case["threads_1_s"] > 0 and case["threads_all_s"] > 0
    assert fp["points_found"] == sum(fp["counts"].values()) >= 0
    assert set(fp["counts"]) == {"stable", "saddle", "unstable"}
    assert fo["pvar_train"] <= 1.0 and fo["recorded"] == 10
    scaling = result["scaling"]
    assert set(scaling) == {"fixed_points", "force", "fixed_points_found", "force_pvar"}
    for block in scaling.values():
        assert set(block) == {"16", "32"}
    assert all(s > 0 for s in (*scaling["fixed_points"].values(), *scaling["force"].values()))
