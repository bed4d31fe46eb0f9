"""bionn.load_run: every kind of run loads back in one call, with the model it trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import bionn
from bionn._core.errors import ConfigError
from bionn.experiment.runner import Runner, load_run_config
from bionn.experiment.runs import LoadedRun, load_run
from bionn.spiking import SpikingRNN

ROOT = Path(__file__).resolve().parents[1]
RATE = ["training.steps=6", "training.eval_trials=40", "training.eval_every=3",
        "training.checkpoint_every=3", "model.n_hidden=16", "training.example_trials=2"]
SPIKING = ["training.steps=4", "training.eval_trials=20", "training.eval_every=2",
           "training.checkpoint_every=2", "model.n_hidden=20", "training.batch_size=8",
           "training.example_trials=2"]
DIGITS = ["training.epochs=1", "training.steps=4", "training.batch_size=32",
          "training.metrics.alignment_every=0"]


def _train(tmp_path: Path, config: str | None, overrides: list[str]) -> Path:
    out = tmp_path / "run"
    cfg = load_run_config(None if config is None else ROOT / "configs" / config, overrides)
    Runner(cfg, out, progress=False).fit()
    return out


def test_rate_task_run_loads_with_the_model_it_evaluated(tmp_path):
    out = _train(tmp_path, None, RATE)
    rng = torch.get_rng_state()
    run = bionn.load_run(out)
    assert torch.equal(torch.get_rng_state(), rng)  # the global random state is untouched
    assert isinstance(run, LoadedRun) and run.kind == "task" and run.data is None
    assert isinstance(run.model, bionn.CTRNN) and not run.model.training
    assert run.step == 6 and run.finished and run.metrics[-1]["step"] == 6
    assert run.task.name == run.config.task.name == "perceptual_decision_making"
    # the loaded model is the trained one: its evaluation reproduces final.json
    assert run.job._evaluate(run.model)["eval_accuracy"] == run.final["accuracy"]
    out_, rates = run.model(run.task.sample(3).inputs)
    assert rates.shape[:2] == out_.shape[:2]


def test_feedback_alignment_run_loads_its_converted_model(tmp_path):
    out = _train(tmp_path, None, [*RATE, "model.method=fa"])
    run = load_run(out)
    assert run.model.credit_assignment  # the fa rule and its B matrix came back
    assert run.job._evaluate(run.model)["eval_accuracy"] == run.final["accuracy"]


def test_spiking_run_loads(tmp_path):
    out = _train(tmp_path, "spiking_pdm.yaml", SPIKING)
    run = load_run(out)
    assert isinstance(run.model, SpikingRNN) and run.kind == "task"
    assert run.job._evaluate(run.model)["eval_accuracy"] == run.final["accuracy"]
    w = run.model.connection_weights()["recurrent"]
    assert (w[:, :16] >= 0).all() and (w[:, 16:] <= 0).all()  # Dale's law, 80 % E


def test_classification_run_loads_with_its_dataset(tmp_path):
    from bionn.experiment.classify import _accuracy

    out = _train(tmp_path, "ca_digits_mlp.yaml", DIGITS)
    run = load_run(out)
    assert run.kind == "classification" and run.task is None
    assert run.data.x_test.shape[0] > 0
    acc = _accuracy(run.model, run.data.x_test, run.data.y_test, torch.device("cpu"))
    assert acc == run.final["test_accuracy"]


def test_unfinished_run_loads_from_its_checkpoint(tmp_path):
    out = _train(tmp_path, None, RATE)
    (out / "final.json").unlink()
    run = load_run(out)
    assert run.final is None and not run.finished and run.step == 6


@pytest.mark.parametrize("case, words", [
    ("missing", ["does not exist"]),
    ("no-checkpoint", ["checkpoint.pt", "not a bionn run folder"]),
    ("no-config", ["config.yaml", "not a bionn run folder"]),
])
def test_bad_run_folders_are_refused_by_name(tmp_path, case, words):
    folder = tmp_path / "x"
    if case != "missing":
        folder.mkdir()
        (folder / ("config.yaml" if case == "no-checkpoint" else "checkpoint.pt")).write_text("x")
    with pytest.raises(ConfigError) as e:
        load_run(folder)
    for w in words:
        assert w in str(e.value)
    assert str(folder) in str(e.value)
