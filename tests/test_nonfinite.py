"""A state that becomes NaN or infinite stops ``Network.run``, ``run_to_disk`` and
``bionn simulate`` with a message naming the group, the variable, the time and a neuron."""

import json
import subprocess
import sys

import pytest
import torch

from bionn.spiking import LIF, Network, NonFiniteStateError, coba, cuba, run_to_disk


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _first_bad_by_hand(net: Network, n_steps: int, seed: int = 0) -> tuple[int, set[str]]:
    g = torch.Generator().manual_seed(seed)
    state = net.initial_state(1, dt=0.1, generator=g)
    ctx = net.context(0.1, generator=g)
    for i in range(n_steps):
        state = net.step(state, ctx.at(i * 0.1))
        bad = {f"{o}.{v}" for o, s in state.items() for v, x in s.items()
               if x.is_floating_point() and not bool(torch.isfinite(x).all())}
        if bad:
            return i, bad
    raise AssertionError("the state stayed finite")


def test_huge_weight_stops_at_the_first_bad_step():
    net = cuba(400, we=1.0e38, generator=torch.Generator().manual_seed(0))
    step, bad = _first_bad_by_hand(net, 500)
    for every in (True, 1, 7, 1000):  # the check's interval does not move the step found
        with pytest.raises(NonFiniteStateError) as info:
            net.run(50.0, dt=0.1, seed=0, progress=False, check_finite=every)
        e = info.value
        assert e.step == step and e.time_ms == pytest.approx((step + 1) * 0.1)
        assert f"{e.owner}.{e.variable}" in bad and e.group == "P"
        assert e.index[0] == 0 and 0 <= e.index[1] < 320
        msg = str(e)
        assert "'P'" in msg and repr(e.variable) in msg and f"t = {e.time_ms:g} ms" in msg
        assert f"step {step}" in msg and "neuron" in msg


def test_nan_parameter_set_by_hand():
    net = Network({"E": LIF(5)}, inputs={"E": 20.0})
    with torch.no_grad():
        net.groups["E"].tau.fill_(float("nan"))  # a parameter set by hand after building
    with pytest.raises(NonFiniteStateError, match=r"group 'E': state variable 'V'.*t = 0.1 ms \(step 0\)"
                       r".*trial 0, neuron 0") as info:
        net.run(10.0, progress=False)
    assert info.value.kind == "group" and info.value.variable == "V" and info.value.step == 0


def test_nan_initial_state():
    net = Network({"E": LIF(3, V_rest=float("nan"))}, inputs={"E": 1.0})
    with pytest.raises(NonFiniteStateError, match="initial state") as info:
        net.run(10.0, progress=False)
    assert info.value.step is None and info.value.group == "E"


def test_normal_run_unchanged_by_the_check():
    net = coba(400, generator=torch.Generator().manual_seed(0))
    a = net.run(100.0, dt=0.1, seed=3, progress=False)
    b = net.run(100.0, dt=0.1, seed=3, progress=False, check_finite=False)
    assert a.spikes["P"].count() > 0
    for x, y in ((a.spikes["P"].step, b.spikes["P"].step), (a.spikes["P"].neuron, b.spikes["P"].neuron)):
        assert torch.equal(x, y)
    assert torch.equal(a.state["P"]["V"], b.state["P"]["V"])
    with pytest.raises(ValueError, match="check_finite"):
        net.run(1.0, progress=False, check_finite=-1)


def test_run_to_disk_counts_steps_from_the_start(tmp_path):
    net = cuba(400, we=1.0e38, generator=torch.Generator().manual_seed(0))
    step, _ = _first_bad_by_hand(net, 500)
    assert step >= 5
    with pytest.raises(NonFiniteStateError) as info:
        run_to_disk(net, 50.0, tmp_path, chunk_ms=0.5, seed=0, progress=False)
    assert info.value.step == step and info.value.time_ms == pytest.approx((step + 1) * 0.1)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["chunks"] and all(c["first_step"] + c["n_steps"] <= step for c in index["chunks"])


def test_cli_exits_1_and_writes_no_measures(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "measures.json").write_text('{"earlier": true}\n')
    (out / "config.yaml").write_text("earlier: true\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bionn", "simulate", "cuba", "network.params.n=400",
         "network.params.we=1.0e38", "run.duration=20", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300)
    # a folder holding an earlier run is refused before any work (the output-folder policy)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert (out / "measures.json").read_text() == '{"earlier": true}\n'
    assert (out / "config.yaml").read_text() == "earlier: true\n"
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "measures.json"]
    fresh = tmp_path / "fresh"
    proc = subprocess.run(
        [sys.executable, "-m", "bionn", "simulate", "cuba", "network.params.n=400",
         "network.params.we=1.0e38", "run.duration=20", "--out", str(fresh), "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "'P'" in proc.stderr and "'syn.s'" in proc.stderr and " ms (step " in proc.stderr
    assert "network.params.we" in proc.stderr
    assert sorted(p.name for p in fresh.iterdir()) == ["config.yaml"]  # the resolved config only


def test_cli_chunked_recording_stops_too(tmp_path, capsys):
    from bionn.experiment.cli import main

    out = tmp_path / "run"
    assert main(["simulate", "cuba", "network.params.n=400", "network.params.we=1.0e38",
                 "run.duration=20", "run.record_chunk_ms=0.2", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "'syn.s'" in err and "recording/ holds only the chunks before" in err
    assert not (out / "measures.json").exists() and not (out / "spikes.npz").exists()
