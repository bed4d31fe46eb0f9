"""``bionn simulate RUN_DIR``: a trained spiking network handed to the simulator, with the
same spikes over a trial as the trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bionn.experiment.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPIKING = [str(ROOT / "configs" / "spiking_pdm.yaml"), "--quiet", "training.steps=6",
           "training.eval_trials=16", "training.eval_every=6", "model.n_hidden=30",
           "training.batch_size=8", "training.example_trials=2"]


@pytest.fixture(scope="module")
def spiking_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("handoff") / "run"
    assert main(["run", *SPIKING, "--out", str(out)]) == 0
    return out


def test_the_simulator_reproduces_the_trained_spikes(spiking_run, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "sim"
    assert main(["simulate", str(spiking_run), "--out", str(out), "--quiet", "run.batch=3"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    h = m["handoff"]
    assert h["same_spikes_over_trial"] and h["mismatched_spikes"] == 0
    assert h["trained_spikes"] > 50  # the comparison means something: the network spikes
    assert h["compared_steps"] == h["trial_steps"] == m["simulation"]["n_steps"]
    with np.load(out / "spikes.npz") as z:
        assert int(z["batch"]) == 3 and len(z["hidden.step"]) == h["trained_spikes"]
    assert (out / "figures" / "raster.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "measures.json").read_text())["handoff"] == h


def test_a_longer_simulation_continues_after_the_trial(spiking_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["simulate", str(spiking_run), "--out", str(tmp_path / "long"), "--quiet",
                 "run.duration=5000", "run.batch=2"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["simulation"]["n_steps"] == 500 > m["handoff"]["trial_steps"]
    assert m["handoff"]["same_spikes_over_trial"]


@pytest.mark.parametrize("case, words", [
    ("rate-run", ["CTRNN", "only a trained spiking network"]),
    ("subtract-reset", ["reset='value'", "subtract"]),
    ("bad-key", ["network.name", "run.duration"]),
])
def test_what_cannot_be_handed_over_is_refused(tmp_path, capsys, spiking_run, case, words):
    run = spiking_run
    extra: list[str] = []
    if case == "rate-run":
        run = tmp_path / "rate"
        assert main(["run", "--out", str(run), "--quiet", "training.steps=2", "training.eval_trials=8",
                     "training.eval_every=2", "model.n_hidden=8"]) == 0
    elif case == "subtract-reset":
        run = tmp_path / "sub"
        assert main(["run", *SPIKING, "--out", str(run), "training.steps=2",
                     "model.cell_options={tau: 20.0, synapse: exponential, tau_syn: 50.0, "
                     "t_refractory: 0.0, reset: subtract}"]) == 0
    else:
        extra = ["network.name=coba"]
    capsys.readouterr()
    assert main(["simulate", str(run), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for w in words:
        assert w in err
    assert not (tmp_path / "o").exists()
