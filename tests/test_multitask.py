"""MultiTask: several tasks in one network with a rule input per task (Yang et al. 2019)."""

from __future__ import annotations

import math

import pytest
import torch

from bionn.experiment.runner import Runner, load_run_config
from bionn.tasks import GoNoGo, MultiTask, PerceptualDecisionMaking, make_task


def test_layout_rule_inputs_and_targets_per_task():
    mt = MultiTask(dt=20, tasks=["perceptual_decision_making", "go_no_go"])
    assert (mt.n_input, mt.n_output) == (3 + 3 + 2, 3)
    assert mt.input_names[-2:] == ("rule: perceptual_decision_making", "rule: go_no_go")
    b = mt.sample(40, torch.Generator().manual_seed(0))
    which = b.info["task"]
    assert set(which.tolist()) == {0, 1}
    for k, (lo, hi) in enumerate([(0, 3), (3, 6)]):
        on = which == k
        assert bool((b.inputs[on, :, 6 + k] == 1).all()) and bool((b.inputs[~on, :, 6 + k] == 0).all())
        assert float(b.inputs[~on, :, lo:hi].abs().sum()) == 0  # other tasks' blocks stay silent
    go = which == 1
    assert float(b.targets[go, :, 2].abs().sum()) == 0  # go/no-go uses 2 of the 3 outputs
    coh = b.info["perceptual_decision_making.coherence"]
    assert bool((coh[go] == -1).all()) and bool((coh[~go].abs() < 1).all())


def test_accuracy_scores_each_trial_by_its_own_task():
    mt = MultiTask(dt=20, tasks=["perceptual_decision_making", "go_no_go", "anti_saccade"])
    b = mt.sample(60, torch.Generator().manual_seed(1))
    assert bool(mt.accuracy(b.targets, b).all())
    # wrong answers on the go/no-go trials only: exactly those trials fail
    out = b.targets.clone()
    go = b.info["task"] == 1
    out[go] = out[go].flip(-1)
    ok = mt.accuracy(out, b)
    assert bool(ok[~go].all()) and not bool(ok[go].any())
    m = mt.measures(out, b)
    assert set(m) == {f"accuracy_{n}" for n in mt.task_names}
    assert float(torch.nanmean(m["accuracy_go_no_go"])) == 0.0
    assert float(torch.nanmean(m["accuracy_anti_saccade"])) == 1.0
    assert math.isnan(float(m["accuracy_go_no_go"][~go][0]))
    # the same scores as each task scoring its own batch
    k_trials = mt.sample_task("go_no_go", 8, torch.Generator().manual_seed(2))
    assert bool((k_trials.info["task"] == 1).all())


def test_weights_registry_and_refusals():
    mt = make_task("multitask", dt=20, tasks=["go_no_go", {"name": "perceptual_decision_making",
                                                           "coherences": [0.5]}], weights=[0, 1])
    b = mt.sample(20, torch.Generator().manual_seed(0))
    assert bool((b.info["task"] == 1).all())
    assert bool((b.info["perceptual_decision_making.coherence"].abs() == 0.5).all())
    for kwargs, words in [
        ({"tasks": ["go_no_go"]}, "at least 2"),
        ({"tasks": ["go_no_go", "nope"]}, "tasks[1]"),
        ({"tasks": ["go_no_go", {"name": "go_no_go", "dt": 5}]}, "dt is the multitask's"),
        ({"tasks": ["go_no_go", "anti_saccade"], "weights": [1]}, "weights"),
        ({"tasks": ["go_no_go", "multitask"]}, "cannot contain a multitask"),
    ]:
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            MultiTask(dt=20, **kwargs)
    assert isinstance(mt.tasks[0], GoNoGo) and isinstance(mt.tasks[1], PerceptualDecisionMaking)


def test_neurogym_yang19_collection_through_the_adapter():
    pytest.importorskip("neurogym", reason="neurogym is an optional extra")
    mt = MultiTask(dt=100, tasks=[{"name": "neurogym", "env_id": "yang19.go-v0"},
                                  {"name": "neurogym", "env_id": "yang19.dm1-v0"}])
    assert mt.task_names == ["yang19.go-v0", "yang19.dm1-v0"]
    b = mt.sample(16, torch.Generator().manual_seed(0))
    assert b.inputs.shape[-1] == mt.n_input and bool(mt.accuracy(b.targets, b).all())


def test_a_run_reports_each_tasks_held_out_accuracy(tmp_path):
    cfg = load_run_config(None, ["task.name=multitask", "task.params={tasks: [go_no_go, perceptual_decision_making]}",
                                 "training.steps=6", "training.eval_trials=40", "training.eval_every=3",
                                 "model.n_hidden=24", "training.example_trials=2"])
    summary = Runner(cfg, tmp_path / "run", progress=False).fit()
    for name in ("go_no_go", "perceptual_decision_making"):
        assert 0.0 <= summary[f"accuracy_{name}"] <= 1.0
    assert (tmp_path / "run" / "figures" / "training_curve.png").exists()
