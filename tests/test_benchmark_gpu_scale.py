"""benchmarks/gpu_scale.py: the skip line without CUDA and the code path on CPU (no timing checks)."""


import pytest
import torch

from benchmark_scripts import load_benchmark


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the benchmark would run")
def test_says_it_skipped_without_cuda(capsys):
    result = load_benchmark("gpu_scale").main([])
    assert result["device"] is None and "CUDA" in result["skipped"]
    assert "skipped" in capsys.readouterr().out


def test_same_code_runs_on_cpu(capsys):
    threads = torch.get_num_threads()
    try:
        result = load_benchmark("gpu_scale").main(["--device", "cpu", "--quick", "--repeats", "2"])
    finally:
        torch.set_num_threads(threads)
    for key in ("coba_400", "coba_4k"):
        assert result[key]["sim_s_per_wall_s"] > 0 and 5 < result[key]["rate_hz"] < 100
    for key in ("connectome_optic_lobe", "connectome_optic_lobe_x10"):
        assert result[key]["bionn_ms"] > 0 and result[key]["gather_scatter_ms"] > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("{")
