"""benchmarks/sparse_connectome.py --quick runs and prints the JSON line (no timing assertions)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "sparse_connectome.py"
KEYS = {"nnz", "bionn_ms", "torch_csr_ms", "torch_coo_ms", "gather_scatter_ms", "peak_mb", "needed_mb"}


def test_quick_run_prints_json():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for part in (res, res["threads_all"]):
        for size in ("optic_lobe", "optic_lobe_x10"):
            assert KEYS <= set(part[size])
            assert part[size]["bionn_ms"] > 0 and part[size]["agree"]
    # ten copies (synthetic) or the template on a ~10x wider eye (flyvis)
    assert 8 <= res["optic_lobe_x10"]["nnz"] / res["optic_lobe"]["nnz"] <= 12
    for size in ("optic_lobe", "optic_lobe_x10"):  # the step pass by pass
        assert res["passes"][size]["nnz"] == res[size]["nnz"]
        assert res["passes"][size]["forward_ns_per_synapse"] > 0
