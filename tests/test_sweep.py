"""bionn sweep: expansion, validation before work, Ray Tune runs, restart skips finished trials."""

import json
from pathlib import Path

import pytest

from bionn.experiment.cli import main
from bionn.experiment.config import ConfigError
from bionn.experiment.sweep import SweepConfig, expand, load_sweep

ROOT = Path(__file__).resolve().parents[1]
BASE = str(ROOT / "configs" / "ei_ctrnn_pdm.yaml")
TINY = ["model.n_hidden=16", "training.steps=3", "training.batch_size=8",
        "training.eval_trials=32", "training.eval_every=3", "training.checkpoint_every=3",
        "training.example_trials=1"]


def test_expand_grid_random_and_seeds():
    cfg = SweepConfig(base=BASE, grid={"training.lr": [0.1, 0.2], "model.n_hidden": [8]},
                      random={"training.weight_decay": {"loguniform": [1e-5, 1e-3]},
                              "model.activation": {"choice": ["relu", "tanh"]}},
                      samples=3, sampler_seed=4, seeds=[0, 1])
    trials = expand(cfg)
    assert len(trials) == 2 * 1 * 3 * 2
    assert len({t.id for t in trials}) == len(trials)
    wd = [t.overrides["training.weight_decay"] for t in trials]
    assert all(1e-5 <= w <= 1e-3 for w in wd)
    again = expand(SweepConfig(**cfg.model_dump()))
    assert [t.id for t in again] == [t.id for t in trials]  # stable ids: restart recognises them
    other = expand(SweepConfig(**{**cfg.model_dump(), "sampler_seed": 5}))
    assert [t.overrides for t in other] != [t.overrides for t in trials]


@pytest.mark.parametrize(("text", "words"), [
    ("grid: {training.lr: []}", ["grid.training.lr", "at least one"]),
    ("random: {training.lr: {uniform: [1, 0]}}", ["low < high"]),
    ("random: {training.lr: {normal: [0, 1]}}", ["normal", "unknown key", "loguniform"]),
    ("seeds: [0, 0]", ["distinct"]),
    ("bogus: 1", ["bogus"]),
])
def test_bad_sweep_files_name_the_field(tmp_path, text, words):
    path = tmp_path / "s.yaml"
    path.write_text(f"base: {BASE}\n{text}\n")
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_bad_trial_key_fails_before_any_run(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(f"base: {BASE}\ngrid: {{model.n_hiden: [8, 16]}}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 2
    assert "n_hiden" in capsys.readouterr().err and not out.exists()


def test_sweep_runs_on_ray_and_restart_skips_finished(tmp_path, capsys):
    pytest.importorskip("ray.tune", reason="bionn sweep runs on Ray Tune (pip install bionn[sweep])")
    path = tmp_path / "s.yaml"
    path.write_text(f"base: {BASE}\noverrides: {json.dumps(TINY)}\n"
                    "grid: {training.optimizer.lr: [0.001, 0.01]}\nseeds: [0, 1]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_trials"] == 4 and result["n_finished"] == 4 and result["n_skipped"] == 0
    assert result["best"]["training.optimizer.lr"] in (0.001, 0.01)
    for name in ("sweep.csv", "sweep.md", "sweep.png", "sweep.json"):
        assert (out / name).is_file(), name
    assert "| training.optimizer.lr | accuracy_mean |" in (out / "sweep.md").read_text()
    finals = sorted(out.glob("runs/*/final.json"))
    assert len(finals) == 4
    # an interrupted sweep: one trial lost its final.json; the restart runs only that one
    untouched = {f: f.stat().st_mtime_ns for f in finals[1:]}
    finals[0].unlink()
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["n_skipped"] == 3 and again["n_finished"] == 4 and finals[0].is_file()
    assert all(f.stat().st_mtime_ns == t for f, t in untouched.items())


def test_shipped_sweep_file_validates():
    cfg = load_sweep(ROOT / "configs" / "sweep_pdm_lr.yaml")
    assert len(expand(cfg)) >= 8


def test_submitit_example_dry_run_lists_unfinished_trials(tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["sweep_submitit.py", str(ROOT / "configs" / "sweep_pdm_lr.yaml"),
                                      "--out", str(tmp_path), "--dry-run"])
    runpy.run_path(str(ROOT / "examples" / "sweep_submitit.py"), run_name="__main__")
    jobs = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(jobs) == 8 and all(j["folder"].startswith(str(tmp_path)) for j in jobs)
