"""``bionn analyze RUN_DIR``: the analyses that apply to a finished run, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bionn.experiment.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trials", "40", "--initial", "16", "--quiet"]


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("analyze") / "run"
    assert main(["run", "--out", str(out), "--quiet", "training.steps=300", "training.eval_trials=40",
                 "training.eval_every=300", "model.n_hidden=32", "training.example_trials=2"]) == 0
    return out


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_rate_run_gets_trajectories_fixed_points_and_psychometric_curve(rate_run, capsys):
    capsys.readouterr()
    assert main(["analyze", str(rate_run), *FAST]) == 0
    s = _last_json(capsys)
    out = rate_run / "analysis"
    assert s["out"] == str(out) and json.loads((out / "analysis.json").read_text()) == s
    assert s["task"] == "perceptual_decision_making" and s["trials"] == 40
    assert s["pca"]["conditions"] == "signed coherence" and s["pca"]["n_conditions"] == 8
    assert 0 < s["pca"]["variance_explained_top3"] <= 1
    fp = s["fixed_points"]
    assert fp["input"][0] == 1.0  # the analysis input: fixation on, the stimulus period
    assert sum(fp["fixed"].values()) + fp["slow_points"] >= 1
    assert s["psychometric"]["trials"] > 0
    for name in ("pca_trajectories.png", "fixed_points.png", "psychometric.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    # the output folder policy: an existing analysis is not replaced without --overwrite
    before = (out / "analysis.json").read_bytes()
    assert main(["analyze", str(rate_run), *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "analysis.json").read_bytes() == before
    assert main(["analyze", str(rate_run), "--overwrite", *FAST]) == 0


def test_spiking_run_gets_trajectories_without_fixed_points(tmp_path, capsys):
    run = tmp_path / "spk"
    assert main(["run", str(ROOT / "configs" / "spiking_pdm.yaml"), "--out", str(run), "--quiet",
                 "training.steps=4", "training.eval_trials=16", "training.eval_every=4",
                 "model.n_hidden=20", "training.batch_size=8", "training.example_trials=2"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(run), "--out", str(tmp_path / "a"), *FAST]) == 0
    s = _last_json(capsys)
    assert s["fixed_points"] is None and "spiking" in s["fixed_points_note"]
    assert (tmp_path / "a" / "figures" / "pca_trajectories.png").exists()


@pytest.mark.parametrize("case, words", [
    ("missing", ["does not exist"]),
    ("not-a-run", ["not a bionn run folder", "config.yaml"]),
    ("trials", ["--trials"]),
])
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, rate_run, case, words):
    if case == "missing":
        argv = ["analyze", str(tmp_path / "nope")]
    elif case == "not-a-run":
        (tmp_path / "x").mkdir()
        argv = ["analyze", str(tmp_path / "x")]
    else:
        argv = ["analyze", str(rate_run), "--trials", "1", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("bionn analyze:")
    for w in words:
        assert w in err
    assert not (tmp_path / "o").exists()


def test_classification_run_is_refused(tmp_path, capsys):
    run = tmp_path / "cls"
    assert main(["run", str(ROOT / "configs" / "ca_digits_mlp.yaml"), "--out", str(run), "--quiet",
                 "training.epochs=1", "training.steps=2", "training.metrics.alignment_every=0"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(run), "--out", str(tmp_path / "a")]) == 2
    assert "classification run" in capsys.readouterr().err


def test_multitask_run_gets_unit_clusters_by_task_variance(tmp_path, capsys):
    run = tmp_path / "mt"
    assert main(["run", "--out", str(run), "--quiet", "task.name=multitask",
                 "task.params={tasks: [go_no_go, perceptual_decision_making, anti_saccade]}",
                 "training.steps=150", "training.eval_trials=30", "training.eval_every=150",
                 "model.n_hidden=32", "training.example_trials=2"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(run), "--out", str(tmp_path / "a"), "--trials", "60", "--initial", "8",
                 "--quiet"]) == 0
    s = _last_json(capsys)
    assert s["pca"]["conditions"] == "task" and s["pca"]["n_conditions"] == 3
    tv = s["task_variance"]
    assert tv["tasks"] == ["go_no_go", "perceptual_decision_making", "anti_saccade"]
    assert 2 <= tv["clusters"] <= tv["active_units"] - 1 and sum(tv["cluster_sizes"]) == tv["active_units"]
    for name in ("task_variance_map.png", "unit_clusters.png"):
        assert (tmp_path / "a" / "figures" / name).exists()
