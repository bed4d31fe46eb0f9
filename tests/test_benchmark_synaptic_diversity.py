"""Smoke test of ``benchmarks/synaptic_diversity.py --quick`` (no timing assertions)."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "synaptic_diversity.py"
TOP = ("ms_per_step", "plain_ms_per_step", "reference_ms_per_step")


def _load():
    spec = importlib.util.spec_from_file_location("_bench_synaptic_diversity", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_run_prints_json_last(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        mod = _load()
        result = mod.main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == result
    assert set(TOP) <= set(result) and result["threads"] == 1
    assert set(result["models"]) == {"mlp", "lenet"}
    has_reference = mod.RefConverter is not None
    for r in [result, *result["models"].values()]:
        assert r["ms_per_step"] > 0 and r["plain_ms_per_step"] > 0
        assert (r["reference_ms_per_step"] is not None) == has_reference
