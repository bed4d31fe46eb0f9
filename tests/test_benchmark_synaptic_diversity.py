"""Smoke test of ``benchmarks/synaptic_diversity.py --quick`` (no timing assertions)."""

import json

from benchmark_scripts import load_benchmark

TOP = ("ms_per_step", "plain_ms_per_step", "reference_ms_per_step")



def test_quick_run_prints_json_last(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        mod = load_benchmark("synaptic_diversity")
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
