"""Smoke test of ``benchmarks/snn_train.py``: its functions at tiny sizes and the JSON structure."""

import importlib.util
import json

import pytest
import torch

from benchmark_scripts import load_benchmark

PEERS = ("snntorch", "norse", "spikingjelly")
INSTALLED = {
    "snntorch": importlib.util.find_spec("snntorch") is not None,
    "norse": importlib.util.find_spec("norse") is not None,
    "spikingjelly": importlib.util.find_spec("spikingjelly") is not None,
}
LIBS = ("bionn", *PEERS)
CASE_KEYS = {
    *(f"{v}_ms" for v in (*LIBS, "floor")),
    *(f"{v}_peak_mb" for v in (*LIBS, "floor")),
    *(f"{v}_beyond_floor_ms" for v in LIBS),
    "bionn_over_floor", "spike_rate", "targets", "threads", "rounds",
}
TARGETS = {"faster_than_every_peer", "beyond_floor_at_most_tenth_of_snntorch", "beyond_floor_below_norse",
           "beyond_floor_below_spikingjelly", "within_1_2x_floor"}


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("snn_train")


def _available(bench, lib: str, recurrent: bool) -> bool:
    if lib == "spikingjelly" and recurrent:
        return False  # no recurrent LIF layer in SpikingJelly
    return lib == "bionn" or getattr(bench, {"snntorch": "snntorch", "norse": "LIFBoxCell",
                                             "spikingjelly": "sj_neuron"}[lib]) is not None


@pytest.mark.parametrize("lib", (*LIBS, "floor"))
def test_steps_run_at_tiny_sizes(bench, lib):
    if lib in PEERS and not INSTALLED[lib]:
        pytest.skip(f"{lib} not installed")
    ff = bench.ff_step(lib, 12, 2, 6)
    assert ff is not None
    rate = ff()
    assert 0.0 <= rate <= 1.0
    rec = bench.rec_step(lib, 10, 3, 2, 6)
    if lib == "spikingjelly":
        assert rec is None
    else:
        assert 0.0 <= rec() <= 1.0


def test_measure_peak_in_process(bench):
    threads = torch.get_num_threads()
    try:
        peak = bench.measure_peak({"kind": "ff", "n": 8, "batch": 2, "steps": 4}, "bionn", 1)
    finally:
        torch.set_num_threads(threads)
    assert peak is None or peak >= 0.0


def test_quick_run_prints_json_last(bench, capsys):
    threads = torch.get_num_threads()
    try:
        result = bench.main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == result
    assert result["benchmark"] == "snn_train" and result["threads"] == 1
    assert set(result["versions"]) == {"torch", "bionn", *PEERS}
    for peer in PEERS:
        assert (result["versions"][peer] is not None) == _available(bench, peer, False)
    assert "dale" in result["notes"] and "loss" in result["notes"]
    for block in (result, result["threads_all"]):
        names = {k for k in block if k.startswith(("ff_", "recurrent_"))}
        assert names == {"ff_32", "recurrent_40"}
        for name in names:
            r = block[name]
            assert set(r) == CASE_KEYS
            assert set(r["targets"]) == TARGETS
            recurrent = name.startswith("recurrent")
            assert r["bionn_ms"] > 0 and r["floor_ms"] > 0 and r["bionn_over_floor"] > 0
            assert r["floor_peak_mb"] >= 0 and r["bionn_peak_mb"] >= 0
            for lib in LIBS:
                if _available(bench, lib, recurrent):
                    assert r[f"{lib}_ms"] > 0 and r[f"{lib}_peak_mb"] >= 0
                    assert r[f"{lib}_beyond_floor_ms"] == pytest.approx(r[f"{lib}_ms"] - r["floor_ms"],
                                                                       abs=2e-3)
                    assert 0.0 <= r["spike_rate"][lib] <= 1.0
                else:
                    assert r[f"{lib}_ms"] is None and r[f"{lib}_peak_mb"] is None
                    assert r[f"{lib}_beyond_floor_ms"] is None
