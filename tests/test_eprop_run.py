"""e-prop as a method of the runner: `model.method: eprop` for `model.kind: spiking`, its
refusals before any work, a run through the CLI, exact resume and the adaptive B in the
checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bionn._core.errors import ConfigError
from bionn.experiment.cli import main
from bionn.experiment.runner import Runner, load_run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "spiking_cue_eprop.yaml")
# tiny: 12 neurons (beta given per neuron in the shipped config: one value here), short trials
TINY = ["model.n_hidden=12", "model.cell_options.beta=100.0", "task.params.delay=100",
        "task.params.n_cues=3", "task.params.population=2", "training.batch_size=4",
        "training.eval_trials=8", "training.eval_every=2", "training.checkpoint_every=2",
        "training.example_trials=1"]


def _cfg(*overrides: str):
    return load_run_config(CONFIG, [*TINY, *overrides])


def test_shipped_configs_differ_only_in_the_method():
    bptt = load_run_config(str(ROOT / "configs" / "spiking_cue_bptt.yaml")).model_dump()
    eprop = load_run_config(CONFIG).model_dump()
    assert bptt["model"].pop("method") == "bp" and eprop["model"].pop("method") == "eprop"
    bptt["experiment"].pop("name"), eprop["experiment"].pop("name")
    assert bptt == eprop


def test_shipped_config_is_eprop_rnns_model():
    """The cell options of the config are eprop_rnn's parametrization (at the task's dt)."""
    from bionn.experiment.models import build_rate_model
    from bionn.learning import eprop_rnn

    cfg = load_run_config(CONFIG)
    task = cfg.task.build()
    net = build_rate_model(cfg.model, task, seed=0)
    ref = eprop_rnn(task.n_input, 100, task.n_output, cell="ALIF", dt=task.dt, tau=20.0,
                    V_th=20.0, tau_a=2000.0, beta=100.0)
    a, b = net.cell, ref.cell
    assert (a.synapse, a.reset_mode, a.detach_reset, a.detach_jumps, a.adaptive_reset,
            a.refractory, a.scale) == (b.synapse, b.reset_mode, b.detach_reset, b.detach_jumps,
                                       b.adaptive_reset, b.refractory, b.scale)
    assert a.surrogate == b.surrogate
    for name in ("V_rest", "R", "V_reset", "V_th", "tau", "tau_a"):
        assert torch.allclose(getattr(a.neuron, name).float(), getattr(b.neuron, name).float()), name
    beta = a.neuron.beta.expand(100)
    assert (beta[:50] == 0).all() and (beta[50:] == 100.0).all()  # 50 LIF + 50 ALIF


@pytest.mark.parametrize("overrides, words", [
    (["model.cell=ExpIF", "model.cell_options={synapse: delta, t_refractory: 0.0}"],
     ["model.cell", "ExpIF", "LIF", "ALIF"]),
    (["model.cell_options.synapse=exponential"], ["model.cell_options.synapse", "delta"]),
    (["model.cell_options.t_refractory=20.0"], ["model.cell_options.t_refractory", "refractory"]),
    (["model.options={feedback: transpose}"], ["options.feedback", "symmetric", "random",
                                                "adaptive"]),
    (["model.options={init: kaiming}"], ["e-prop option", "init", "feedback"]),
])
def test_bad_eprop_configs_are_refused_before_any_work(overrides, words):
    with pytest.raises(ConfigError) as e:
        _cfg(*overrides)
    for word in words:
        assert word in str(e.value), str(e.value)


def test_eprop_is_refused_for_other_kinds_and_feedback_for_other_methods():
    with pytest.raises(ConfigError) as e:
        load_run_config(None, ["model.method=eprop"])
    assert "eprop" in str(e.value) and "spiking" in str(e.value) and "ctrnn" in str(e.value)
    with pytest.raises(ConfigError) as e:
        _cfg("model.method=fa", "model.options={feedback: random}")
    assert "feedback" in str(e.value) and "method: eprop" in str(e.value)


@pytest.mark.parametrize("overrides, field", [
    (["loss.rate_mean=0.1"], "loss.rate_mean"),
    (["training.bptt.mode=truncated", "training.bptt.chunk=5"], "training.bptt.mode"),
])
def test_what_eprop_cannot_apply_is_refused(tmp_path, overrides, field):
    with pytest.raises(ConfigError) as e:
        Runner(_cfg(*overrides), tmp_path / "r", progress=False)
    assert field in str(e.value) and "eprop" in str(e.value)
    assert not (tmp_path / "r").exists()


def test_eprop_run_through_the_cli(tmp_path):
    out = tmp_path / "run"
    assert main(["run", CONFIG, *TINY, "training.steps=2", "loss.l2={recurrent: 0.01}",
                 "--out", str(out), "--quiet"]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["method"] == "eprop" and final["status"] == "finished" and final["steps"] == 2
    assert 0.0 <= final["accuracy"] <= 1.0 and math.isfinite(final["loss"])
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "accuracy", "task", "l2_recurrent", "eval_accuracy", "eval_loss"} <= set(record)
    assert not any(k.startswith(("weight_angle", "grad_angle")) for k in record)


def test_eprop_step_gives_eprops_gradient():
    """The job's step puts EProp's gradient of the masked task loss into .grad."""
    from bionn.learning import eprop_gradients
    from bionn.losses import masked_cross_entropy

    r = Runner(_cfg("training.steps=1"), "/nonexistent-not-written", progress=False)
    model, job = r.model, r.job
    batch = job.sampler.batch(0)
    job.train_step(model, model, 0)
    got = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    eprop_gradients(model, batch.inputs, (batch.targets, batch.mask),
                    loss=lambda y, tm: masked_cross_entropy(y, *tm))
    want = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys() and all(torch.allclose(got[k], want[k]) for k in got)


@pytest.mark.parametrize("feedback", ["random", "adaptive"])
def test_eprop_run_resumes_exactly(tmp_path, feedback):
    opts = f"model.options={{feedback: {feedback}}}"
    full, half = tmp_path / "full", tmp_path / "half"
    Runner(_cfg(opts, "training.steps=4"), full, progress=False).fit()
    Runner(_cfg(opts, "training.steps=2"), half, progress=False).fit()
    Runner(_cfg(opts, "training.steps=4"), half, resume=True, progress=False).fit()

    def losses(folder: Path) -> list[float]:
        return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]

    assert losses(full) == losses(half)
    a, b = (torch.load(f / "checkpoint.pt", weights_only=True) for f in (full, half))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["job"]["eprop"]["feedback_weight"], b["job"]["eprop"]["feedback_weight"])


def test_adaptive_feedback_is_learned_and_checkpointed(tmp_path):
    out = tmp_path / "adaptive"
    cfg = _cfg("model.options={feedback: adaptive}", "training.steps=2")
    runner = Runner(cfg, out, progress=False)
    b0 = runner.job.rule.feedback_weight.detach().clone()
    w0 = runner.model.weight_out.detach().clone()
    runner.fit()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    b = state["job"]["eprop"]["feedback_weight"]
    assert not torch.equal(b, b0) and torch.equal(b, runner.job.rule.feedback_weight.detach())
    # B got exactly W_out's updates (same gradients after clipping, same Adam state; a weight
    # decay would differ, as B != W_out: that is what aligns them)
    assert torch.allclose(b - b0, runner.model.weight_out.detach() - w0, atol=1e-6)
    assert len(state["optimizer"]["param_groups"]) == 2
