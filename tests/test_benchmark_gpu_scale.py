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
    for key in ("snn_ff_64", "ctrnn_32", "ctrnn_64"):
        assert result[key]["bionn_ms"] > 0 and result[key]["floor_ms"] > 0
        # CUDA graphs are measured on a CUDA device only, and say why not here
        assert result[key]["bionn_cuda_graph_ms"] is None
        assert "CUDA" in result[key]["skipped"]["bionn_cuda_graph"]
    assert result["snn_ff_64"]["bionn_over_floor"] > 0
    assert result["ctrnn_64"]["bionn_ratio_vs_floor"] > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("{")
