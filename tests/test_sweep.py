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
    assert main(["sweep", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["n_skipped"] == 3 and again["n_finished"] == 4 and finals[0].is_file()
    assert all(f.stat().st_mtime_ns == t for f, t in untouched.items())
    assert not (out / "sweep.lock").exists()  # the lock is removed at the end
    from bionn.experiment.sweep import METRICS

    final = json.loads(finals[0].read_text())
    assert set(METRICS["rate"]) <= set(final)  # what `metric` may name is what a run writes


def _sweep_file(tmp_path, overrides=TINY, extra=""):
    path = tmp_path / "s.yaml"
    path.write_text(f"base: {BASE}\noverrides: {json.dumps(overrides)}\n"
                    f"grid: {{training.optimizer.lr: [0.001]}}\n{extra}")
    return path


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_unknown_metric_refused_before_any_trial(tmp_path, capsys):
    path = _sweep_file(tmp_path, extra="metric: accuracyy\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "accuracyy" in err and "accuracy, loss, train_loss" in err and not out.exists()


def test_a_second_sweep_on_a_locked_folder_is_refused(tmp_path, capsys):
    import os
    import socket

    path = _sweep_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    lock = out / "sweep.lock"  # a live sweep (this process) holds the folder
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert main(["sweep", str(path), "--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "sweep.lock" in err and f"pid {os.getpid()}" in err
    assert sorted(p.name for p in out.iterdir()) == ["sweep.lock"]  # nothing else touched


def test_lock_is_atomic_stale_lock_replaced_and_released(tmp_path, capsys):
    import os
    import socket

    from bionn.experiment.sweep import _acquire_lock, _release_lock

    lock = _acquire_lock(tmp_path)
    assert json.loads(lock.read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        _acquire_lock(tmp_path)
    _release_lock(lock)
    assert not lock.exists()
    dead = _dead_pid()
    lock.write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    assert _acquire_lock(tmp_path) == lock
    assert f"stale lock {lock} (pid {dead}" in capsys.readouterr().err
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    _release_lock(lock)


def test_failing_trial_exits_1_naming_it_after_replacing_a_stale_lock(tmp_path, capsys):
    import socket

    pytest.importorskip("ray.tune", reason="bionn sweep runs on Ray Tune (pip install bionn[sweep])")
    from bionn.experiment.sweep import load_sweep, plan

    path = _sweep_file(tmp_path)
    path.write_text(path.read_text().replace("[0.001]", "[0.001, 0.01]"))
    out = tmp_path / "out"
    _, trials, pending = plan(load_sweep(path), out)
    bad = pending[1][2]  # a damaged checkpoint makes this trial fail when it resumes
    bad.mkdir(parents=True)
    (bad / "checkpoint.pt").write_bytes(b"not a checkpoint")
    dead = _dead_pid()
    (out / "sweep.lock").write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    assert main(["sweep", str(path), "--out", str(out), "--resume", "--quiet"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["n_trials"] == 2 and result["n_finished"] == 1 and result["n_failed"] == 1
    assert [f["trial"] for f in result["failed"]] == [trials[1].id]
    assert f"trial {trials[1].id}" in captured.err and "failed" in captured.err
    assert "checkpoint" in result["failed"][0]["error"]
    assert "stale lock" in captured.err and f"pid {dead}" in captured.err
    assert not (out / "sweep.lock").exists()
    assert "failed" in (out / "sweep.csv").read_text()


def test_changed_fixed_override_reruns_instead_of_reporting_old_result(tmp_path, capsys):
    pytest.importorskip("ray.tune", reason="bionn sweep runs on Ray Tune (pip install bionn[sweep])")
    path = _sweep_file(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["n_finished"] == 1 and first["n_skipped"] == 0
    old = {p.name for p in (out / "runs").iterdir()}
    changed = [o.replace("training.steps=3", "training.steps=6") for o in TINY]
    path = _sweep_file(tmp_path, overrides=changed)
    assert main(["sweep", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["n_skipped"] == 0 and again["n_finished"] == 1  # not the stale result
    new = {p.name for p in (out / "runs").iterdir()} - old
    assert len(new) == 1 and old <= {p.name for p in (out / "runs").iterdir()}  # nothing lost
    final = json.loads((out / "runs" / new.pop() / "final.json").read_text())
    assert final["steps"] == 6


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
