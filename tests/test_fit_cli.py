"""``bionn fit CONFIG.yaml``: the shipped config, a .npz recording fitted by BPTT, counts,
and the refusals (exit 2, the field or file named, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bionn.experiment import cli
from bionn.experiment.fit import TeacherSection, teacher_recording

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "configs" / "fit_teacher.yaml"
KEYS = {"method", "loss", "model", "n_hidden", "n_neurons", "n_trials", "train_trials",
        "held_out_trials", "pvar_train", "pvar_test", "r2_train", "r2_test", "curve_length",
        "wall_s", "device", "figures", "out"}


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def write_npz(folder: Path, *, trials: int = 8, steps: int = 40, recorded: int = 6,
              dt: float = 10.0) -> Path:
    """A teacher's rates stored neurons x time x trials, with dt and the inputs."""
    rec = teacher_recording(3, TeacherSection(n_units=30, n_recorded=recorded, trials=trials,
                                              steps=steps), dt)
    path = folder / "rec.npz"
    np.savez(path, data=rec.data.permute(2, 1, 0).numpy(), inputs=rec.inputs.permute(2, 1, 0).numpy(),
             dt=np.float64(dt), layout=np.str_("neurons x time x trials"))
    return path


def write_config(folder: Path, text: str, name: str = "fit.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


NPZ_CONFIG = """\
experiment: {name: npz, seed: 0, device: cpu}
data: {path: rec.npz}
model: {kind: ctrnn, n_hidden: 20, activation: tanh, tau: 50.0}
fit: {method: bptt, steps: 150, lr: 0.03, train_trials: 6}
"""


def test_shipped_config_runs(tmp_path):
    """The shipped config (teacher:0, no file) through ``python -m bionn``, few steps."""
    proc = subprocess.run([sys.executable, "-m", "bionn", "fit", str(SHIPPED), "fit.steps=5",
                           "--out", "o", "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    out = tmp_path / "o"
    saved = json.loads((out / "fit.json").read_text())
    assert last == saved and KEYS <= set(saved)
    assert saved["method"] == "bptt" and saved["curve_length"] == 5 and saved["out"] == "o"
    assert saved["n_neurons"] == 15 and saved["train_trials"] == 12 and len(saved["held_out_trials"]) == 4
    assert -np.inf < saved["pvar_train"] <= 1 and -np.inf < saved["pvar_test"] <= 1
    for name in ("config.yaml", "model.pt", "figures/fit_curve.png", "figures/fit_examples.png"):
        assert (out / name).is_file(), name
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["weight_rec"].shape == (50, 50)
    # the resolved config runs again as it is; --overwrite replaces the earlier fit
    assert cli.main(["fit", str(out / "config.yaml"), "fit.steps=2", "--out", str(out),
                     "--overwrite", "--quiet"]) == 0
    assert json.loads((out / "fit.json").read_text())["curve_length"] == 2


def test_shipped_spiking_config_runs(tmp_path, capsys):
    cfg = ROOT / "configs" / "fit_spiking.yaml"
    assert cli.main(["fit", str(cfg), "fit.steps=2", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["model_class"], s["spiking"], s["steps_per_bin"], s["n_hidden"]) == ("SpikingRNN", True, 10, 100)
    assert s["curve_length"] == 2 and s["dt"] == 10.0 and len(s["held_out_trials"]) == 4


def test_npz_recording_fitted_by_bptt(tmp_path, capsys):
    write_npz(tmp_path)
    cfg = write_config(tmp_path, NPZ_CONFIG)
    out = tmp_path / "o"
    assert cli.main(["fit", str(cfg), "--out", str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_neurons"] == 6 and summary["n_trials"] == 8 and summary["n_input"] == 2
    assert summary["train_trials"] == 6 and len(summary["held_out_trials"]) == 2
    assert summary["pvar_test"] > 0.8, summary
    resolved = (out / "config.yaml").read_text()
    assert str((tmp_path / "rec.npz").resolve()) in resolved  # the absolute file


def test_counts_fitted_with_poisson_loss(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    rate = 20.0 * (1.0 + torch.sin(torch.linspace(0, 6, 30)))[None, :, None].expand(6, 30, 4)
    counts = torch.poisson(rate * 0.01, generator=g)  # dt 10 ms
    np.savez(tmp_path / "spikes.npz", counts=counts.numpy(), dt=np.float64(10.0))
    cfg = write_config(tmp_path, "data: {path: spikes.npz}\n"
                                 "model: {kind: ctrnn, n_hidden: 8, activation: softplus, tau: 20.0}\n"
                                 "fit: {steps: 3, rate_scale: 20.0}\n")
    assert cli.main(["fit", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["kind"] == "counts" and summary["loss"] == "poisson"
    assert "bits_per_spike_train" in summary and "bits_per_spike_test" in summary


def test_spiking_model_fitted_to_a_teachers_spike_counts(tmp_path, capsys):
    cfg = write_config(tmp_path, """\
experiment: {name: spk, seed: 0, device: cpu}
data:
  path: teacher:1
  kind: counts
  teacher: {n_units: 20, n_recorded: 4, trials: 6, steps: 12, max_rate: 50.0}
model: {kind: spiking, n_hidden: 16, e_fraction: 0.75, cell_options: {t_refractory: 0.0}}
fit: {steps: 3, lr: 0.05, steps_per_bin: 5, rate_tau: 20.0}
""")
    assert cli.main(["fit", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["spiking"] is True and s["model_class"] == "SpikingRNN"
    assert (s["kind"], s["loss"], s["steps_per_bin"], s["rate_tau"]) == ("counts", "poisson", 5, 20.0)
    assert s["curve_length"] == 3 and "bits_per_spike_test" in s
    resolved = (tmp_path / "o" / "config.yaml").read_text()
    assert "steps_per_bin: 5" in resolved and "max_rate: 50.0" in resolved
    rec = teacher_recording(1, TeacherSection(n_units=20, n_recorded=4, trials=6, steps=12,
                                              max_rate=50.0), kind="counts")
    assert rec.kind == "counts" and torch.equal(rec.data, rec.data.round()) and rec.data.sum() > 0
    for overrides, words in ((["fit.method=force", "data.kind=rates", "fit.steps_per_bin=1"], ["fit.method", "spiking"]),
                             (["fit.initial_state=data"], ["fit.initial_state", "spiking"])):
        assert cli.main(["fit", str(cfg), *overrides, "--out", str(tmp_path / "r"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), err
        assert not (tmp_path / "r").exists()


REFUSALS = [
    ("missing-data-file", ["data.path=absent.npz"], ["data.path", "absent.npz"]),
    ("units-out-of-range", ["fit.units=[0,1,2,3,4,99]"], ["fit.units", "99", "[0, 20)"]),
    ("recorded-units-out-of-range", ["data.units=[0,7]"], ["data.units", "7", "6 neurons"]),
    ("unknown-key", ["fit.stepz=3"], ["fit.stepz", "unknown key", "steps"]),
    ("n-hidden-too-small", ["model.n_hidden=4"], ["model.n_hidden", "4 units", "6 neurons"]),
    ("dt-mismatch", ["data.dt=5"], ["data.dt", "rec.npz", "10 ms"]),
    ("steps-per-bin-force", ["fit.method=force", "fit.steps_per_bin=2"], ["fit.steps_per_bin", "force"]),
    ("teacher-counts-without-rate", ["data.path=teacher:0", "data.kind=counts"],
     ["data.kind", "max_rate"]),
    ("poisson-on-rates", ["fit.loss=poisson"], ["fit.loss", "rates"]),
    ("force-on-dale-ctrnn", ["fit.method=force", "model.e_fraction=0.8"], ["fit.method", "Dale"]),
]


@pytest.mark.parametrize("overrides,words", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_exit_2_and_write_nothing(tmp_path, capsys, monkeypatch, overrides, words):
    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path)
    cfg = write_config(tmp_path, NPZ_CONFIG)
    before = snapshot(tmp_path)
    assert cli.main(["fit", str(cfg), *overrides, "--out", "o", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bionn fit: ")
    for word in words:
        assert word in err, f"{word!r} not in {err}"
    assert snapshot(tmp_path) == before


def test_non_empty_out_is_refused_without_overwrite(tmp_path, capsys):
    write_npz(tmp_path)
    cfg = write_config(tmp_path, NPZ_CONFIG)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "fit.json").write_text("{}\n")
    before = snapshot(tmp_path)
    assert cli.main(["fit", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err
    assert snapshot(tmp_path) == before


def test_missing_data_file_names_the_resolved_path(tmp_path, capsys):
    """A relative data.path is read from the config's folder, not the current one."""
    sub = tmp_path / "cfgs"
    sub.mkdir()
    cfg = write_config(sub, NPZ_CONFIG)
    assert cli.main(["fit", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(sub / "rec.npz") in err and not (tmp_path / "o").exists()
