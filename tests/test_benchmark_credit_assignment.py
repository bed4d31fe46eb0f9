"""Smoke test of ``benchmarks/credit_assignment.py --quick`` (skipped without BioTorch)."""

import json

import pytest

from benchmark_scripts import load_benchmark

pytest.importorskip("biotorch.module.biomodule")

METHODS = ("bp", "fa", "dfa", "usf", "brsf", "frsf", "wm", "kp")
KEYS = {"ms_per_step", "plain_bp_ms_per_step", "biotorch_ms_per_step", "ratio_vs_plain",
        "ratio_vs_biotorch"}



def test_quick_run_prints_json_last(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        result = load_benchmark("credit_assignment").main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == result
    assert result["threads"] == 1 and result["biotorch"]
    for arch in ("lenet", "mlp"):
        assert set(result[arch]) == set(METHODS)
        for method, r in result[arch].items():
            assert set(r) == KEYS
            assert r["ms_per_step"] > 0 and r["plain_bp_ms_per_step"] > 0
            if method in ("wm", "kp"):  # not in BioTorch
                assert r["biotorch_ms_per_step"] is None and r["ratio_vs_biotorch"] is None
            else:
                assert r["biotorch_ms_per_step"] > 0 and r["ratio_vs_biotorch"] > 0
        every = result["wm_mirror_every"]
        assert every["every"] >= 1 and every[arch]["ms_per_step"] > 0
        assert every[arch]["ratio_vs_plain"] > 0 and every[arch]["mirror_update_ms"] > 0
