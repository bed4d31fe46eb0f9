"""``bionn simulate``: configs checked before any output, outputs complete, exit 2 on bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bionn.experiment import ConfigError
from bionn.experiment.cli import main
from bionn.experiment.simulate import load_sim_config, validate_sim_config
from bionn.spiking.networks import NETWORKS

ROOT = Path(__file__).parents[1]
SIM_CONFIGS = sorted((ROOT / "configs").glob("sim_*.yaml"))
TINY = ["network.name=ei_balanced", "network.params={n_e: 40, n_i: 40}", "run.duration=50",
        "measures.t_start=10"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread is as fast, and stays fast on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write(tmp_path: Path, overrides: list[str]) -> Path:
    from bionn.experiment.config import apply_overrides

    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(apply_overrides({"experiment": {"name": "tiny"}}, overrides)))
    return path


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_tiny_config_end_to_end(tmp_path, capsys):
    cfg = _write(tmp_path, TINY)
    out = tmp_path / "run"
    assert main(["simulate", str(cfg), "--out", str(out), "--quiet"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["out"] == str(out)
    for name in ("config.yaml", "spikes.npz", "traces.npz", "measures.json",
                 "figures/raster.png", "figures/traces_E_V.png", "figures/rate_histogram.png"):
        assert (out / name).is_file(), name
    assert not list(out.glob("**/.*.tmp"))
    with np.load(out / "spikes.npz", allow_pickle=False) as z:
        assert z["groups"].tolist() == ["E", "I"]
        assert float(z["dt"]) == 0.1 and int(z["n_steps"]) == 500
        assert len(z["E.trial"]) == len(z["E.step"]) == len(z["E.neuron"]) > 0
        assert int(z["E.n_neurons"]) == 40 and z["E.neuron"].max() < 40 and z["E.step"].max() < 500
    with np.load(out / "traces.npz", allow_pickle=False) as z:
        assert z["E.V"].shape == (1, 500, 5) and z["time_ms"].shape == (500,)
        assert z["E.neurons"].tolist() == [0, 1, 2, 3, 4]
    measures = json.loads((out / "measures.json").read_text())
    assert measures["E"]["mean_rate_hz"] == summary["E"]["mean_rate_hz"] > 0
    assert measures["E"]["t_start_ms"] == 10.0 and measures["simulation"]["n_steps"] == 500
    # the resolved config validates again to the same settings
    again = validate_sim_config(yaml.safe_load((out / "config.yaml").read_text()))
    assert again == load_sim_config(cfg)


def test_spikes_recorded_for_the_groups_named(tmp_path, capsys):
    cfg = _write(tmp_path, [*TINY, "run.record_spikes=[I]"])
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    summary = _last_json(capsys.readouterr().out)
    with np.load(tmp_path / "o" / "spikes.npz", allow_pickle=False) as z:
        assert z["groups"].tolist() == ["I"] and "E.step" not in z
    assert "I" in summary and "E" not in summary and (tmp_path / "o" / "figures/raster.png").is_file()
    assert load_sim_config(cfg).run.record_spikes == ["I"]


def test_same_seed_same_spikes(tmp_path, capsys):
    cfg = _write(tmp_path, TINY)
    for name in ("a", "b"):
        assert main(["simulate", str(cfg), "--out", str(tmp_path / name), "--quiet"]) == 0
    capsys.readouterr()
    with np.load(tmp_path / "a/spikes.npz") as a, np.load(tmp_path / "b/spikes.npz") as b:
        assert np.array_equal(a["E.step"], b["E.step"])
        assert np.array_equal(a["I.neuron"], b["I.neuron"])


def test_cann_by_network_name_writes_bump(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "cann", "network.params.n=64", "run.duration=25", "--quiet"]) == 0
    summary = _last_json(capsys.readouterr().out)
    out = Path(summary["out"])
    assert out.parent == Path("runs") and out.name.startswith("cann-")
    assert (out / "figures/bump_cann.png").is_file() and not (out / "figures/raster.png").exists()
    assert summary["cann"]["bump_position_end"] == pytest.approx(0.0, abs=0.1)
    with np.load(out / "traces.npz", allow_pickle=False) as z:
        assert z["cann.u"].shape == (1, 500, 64)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["run.foo=1"], ["run.foo", "unknown key", "duration"]),
        (["bogus=1"], ["bogus", "unknown key", "network"]),
        (["network.name=vogels"], ["network.name", "vogels", "brunel", "coba", "wang_buzsaki"]),
        (["network.params.bogus=1"], ["network.params", "bogus", "n_e", "allowed"]),
        (["network.params.n_e=abc"], ["network.params.n_e", "int", "'abc'"]),
        (["network.params.p=1.5"], ["network.params", "p must be in (0, 1]"]),
        (["run.dt=0"], ["run.dt", "greater than 0"]),
        (["run.duration=-5"], ["run.duration", "greater than 0"]),
        (["run.batch=0"], ["run.batch", "greater than or equal to 1"]),
        (["experiment.device=tpu"], ["experiment.device", "cpu", "tpu"]),
        (["dtype=float16"], ["dtype", "float32", "float16"]),
        (["figures=[bump]"], ["figures", "bump", "raster"]),
        (["measures.t_start=50"], ["measures.t_start", "run.duration"]),
        (["run.record={X: [V]}"], ["run.record", "'X'", "groups"]),
        (["run.record={E: [W]}"], ["run.record.E", "W", "allowed", "V"]),
        (["run.record_neurons={E: [99]}"], ["run.record_neurons.E", "99", "40"]),
        (["run.record_spikes=[X]"], ["run.record_spikes", "'X'", "groups"]),
    ],
)
def test_bad_configs_exit_2_naming_the_field(tmp_path, capsys, overrides, expected):
    cfg = _write(tmp_path, TINY + overrides)
    out = tmp_path / "never"
    assert main(["simulate", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bionn simulate: ") and "Traceback" not in err
    for piece in expected:
        assert piece in err, f"{piece!r} missing from: {err}"
    assert not out.exists()


def test_unstable_hh_euler_is_refused_before_any_output(tmp_path, capsys):
    cfg = _write(tmp_path, ["network.name=cobahh", "network.params={n: 100, method: euler}",
                            "run.dt=0.1", "run.duration=10"])
    out = tmp_path / "never"
    assert main(["simulate", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "run.dt" in err and "unstable" in err and "exp_euler" in err
    assert not out.exists()


def test_missing_file_and_bad_override_exit_2(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nope.yaml"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    cfg = _write(tmp_path, TINY)
    assert main(["simulate", str(cfg), "run.duration", "--quiet"]) == 2
    assert "key.path=value" in capsys.readouterr().err


def test_risky_dt_warns_but_runs(tmp_path, capsys):
    cfg = _write(tmp_path, TINY + ["run.dt=0.25", "figures=[raster]"])
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "run.dt=0.25" in err


def test_defaults_come_from_the_network():
    cfg = load_sim_config(None, ["network.name=wang_buzsaki"])
    spec = NETWORKS["wang_buzsaki"]
    assert cfg.run.duration == spec.duration and cfg.run.dt == spec.dt
    assert cfg.measures.t_start == spec.t_start
    assert cfg.run.record == {"I": ["V"]} and cfg.figures == list(spec.figures)
    with pytest.raises(ConfigError, match="network"):
        load_sim_config(None, [])


def test_sim_configs_are_shipped_for_every_network():
    assert {load_sim_config(p).network.name for p in SIM_CONFIGS} == set(NETWORKS)


@pytest.mark.parametrize("path", SIM_CONFIGS, ids=lambda p: p.stem)
def test_shipped_sim_config_validates_and_runs_briefly(path, tmp_path, capsys):
    cfg = load_sim_config(path)
    assert cfg.run.duration <= 1000.0
    short = ["run.duration=" + str(4 * cfg.run.dt), "measures.t_start=0"]
    assert main(["simulate", str(path), *short, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert Path(summary["out"]) == tmp_path / "run" and summary["simulation"]["n_steps"] == 4


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_simulation_exits_130_without_traceback(tmp_path, sig):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sim"
    proc = subprocess.Popen([sys.executable, "-m", "bionn", "simulate", "coba", "run.duration=60000",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "config.yaml").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err


def test_a_shipped_config_by_name_and_unknown_names_listed(tmp_path, capsys, monkeypatch):
    from bionn.experiment.cli import main

    monkeypatch.chdir(tmp_path)  # configs/ found through the source tree
    assert main(["simulate", "sim_cuba", "run.duration=120", "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    assert (tmp_path / "a" / "measures.json").is_file()
    capsys.readouterr()
    assert main(["simulate", "nope", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "networks: brunel, cann, coba" in err and "sim_cuba" in err and not (tmp_path / "b").exists()


def test_compiled_backend_same_spikes_and_refusals(tmp_path, capsys, monkeypatch):
    from bionn._core import native

    if native.compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("BIONN_CACHE_DIR", str(tmp_path / "cache"))
    base = [*TINY, "run.record_every=3"]
    for name, backend in (("t", "torch"), ("c", "cpp")):
        cfg = _write(tmp_path, [*base, f"run.backend={backend}"])
        assert main(["simulate", str(cfg), "--out", str(tmp_path / name), "--quiet"]) == 0
    capsys.readouterr()
    with np.load(tmp_path / "t/spikes.npz") as a, np.load(tmp_path / "c/spikes.npz") as b:
        assert len(a["E.step"]) > 0
        for k in ("E.step", "E.neuron", "I.step", "I.neuron"):
            assert np.array_equal(a[k], b[k]), k
    for name, backend in (("t", "torch"), ("c", "cpp")):
        measures = json.loads((tmp_path / name / "measures.json").read_text())
        assert measures["simulation"]["backend"] == backend
    with np.load(tmp_path / "t/traces.npz") as a, np.load(tmp_path / "c/traces.npz") as b:
        assert a["E.V"].shape[1] > 0 and np.array_equal(a["E.V"], b["E.V"])
        assert np.array_equal(a["time_ms"], b["time_ms"])
    # a network the compiled step does not cover is refused before anything is written
    cfg = _write(tmp_path, [*TINY, "run.backend=cpp", "network.name=cann",
                            "network.params={n: 32}"])
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "run.backend" in capsys.readouterr().err and not (tmp_path / "r").exists()
