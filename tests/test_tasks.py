"""Tests of the built-in cognitive tasks (bionn.tasks)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from bionn.tasks import (
    ROMO_PAIRS,
    TASKS,
    AntiSaccade,
    ContextDependentIntegration,
    DelayedMatchToSample,
    GoNoGo,
    NeuroGymTask,
    ParametricWorkingMemory,
    PerceptualDecisionMaking,
    Task,
    TrialBatch,
    make_task,
)

BUILTIN = {
    "perceptual_decision_making": PerceptualDecisionMaking,
    "context_dependent_integration": ContextDependentIntegration,
    "delayed_match_to_sample": DelayedMatchToSample,
    "parametric_working_memory": ParametricWorkingMemory,
    "go_no_go": GoNoGo,
    "anti_saccade": AntiSaccade,
}
# probability that the correct answer is output channel 1 under the defaults
P_CHANNEL_1 = {
    "perceptual_decision_making": 0.5,
    "context_dependent_integration": 0.5,
    "delayed_match_to_sample": 0.5,
    "parametric_working_memory": 0.5,
    "go_no_go": 0.5,
    "anti_saccade": 1 / 8,
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def valid_steps(batch: TrialBatch) -> torch.Tensor:
    t = torch.arange(batch.mask.shape[1])
    return t < batch.info["trial_length"][:, None]


def decision_steps(batch: TrialBatch) -> torch.Tensor:
    t = torch.arange(batch.mask.shape[1])
    return (t >= batch.info["decision_start"][:, None]) & (t < batch.info["decision_end"][:, None])


def period_steps(task, batch: TrialBatch, name: str) -> torch.Tensor:
    """Recover a period's steps from the timing for fixed-timing tasks (tests only)."""
    start = 0
    for period, (lo, hi) in task.timing.items():
        assert lo == hi, "period_steps needs fixed timing"
        n = math.floor(lo / task.dt + 1e-9)
        if period == name:
            t = torch.arange(batch.mask.shape[1])
            return ((t >= start) & (t < start + n)).expand(len(batch), -1)
        start += n
    raise KeyError(name)


# --------------------------------------------------------------------------- registry
def test_registry_names():
    assert set(TASKS) == set(BUILTIN) | {"neurogym", "evidence_accumulation", "flip_flop", "multitask"}
    assert TASKS["neurogym"] is NeuroGymTask
    for name, cls in BUILTIN.items():
        assert TASKS[name] is cls
        assert issubclass(cls, Task)
        assert cls.name == name


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_make_task_builds_each(name):
    task = make_task(name, dt=10)
    assert isinstance(task, BUILTIN[name])
    assert task.dt == 10.0


def test_make_task_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match="nope") as err:
        make_task("nope")
    for name in TASKS:
        assert name in str(err.value)


def test_make_task_unknown_parameter():
    with pytest.raises(TypeError, match="colour_noise") as err:
        make_task("perceptual_decision_making", colour_noise=1.0)
    assert "coherences" in str(err.value)  # lists the allowed parameters


def test_make_task_invalid_value():
    with pytest.raises(ValueError, match="dt"):
        make_task("go_no_go", dt=0)


def test_neurogym_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "neurogym", None)  # makes `import neurogym` fail
    with pytest.raises(ImportError, match=r"pip install bionn\[neurogym\]"):
        NeuroGymTask("GoNogo-v0")


def test_import_does_not_import_neurogym():
    code = "import sys, bionn.tasks; assert 'neurogym' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- generic contract
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_shapes_and_dtypes(name):
    task = BUILTIN[name]()
    b = task.sample(7, gen(0))
    n_t = b.inputs.shape[1]
    assert b.inputs.shape == (7, n_t, task.n_input)
    assert b.targets.shape == (7, n_t, task.n_output)
    assert b.mask.shape == (7, n_t)
    assert b.labels.shape == (7,)
    for x in (b.inputs, b.targets, b.mask):
        assert x.dtype == torch.float32 and x.device.type == "cpu"
    assert b.labels.dtype == torch.long
    assert len(b) == 7
    for key, value in b.info.items():
        assert value.shape == (7,), key
    assert int(b.info["trial_length"].max()) == n_t
    lo, hi = task.n_steps_range()
    assert lo <= int(b.info["trial_length"].min()) and n_t <= hi
    assert ((b.labels >= 0) & (b.labels < task.n_output)).all()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_reproducible_under_seed(name):
    task = BUILTIN[name](sigma=0.5)
    a, b = task.sample(16, gen(3)), task.sample(16, gen(3))
    torch.manual_seed(123)  # the global RNG must play no role
    c = task.sample(16, gen(3))
    for x in (b, c):
        assert torch.equal(a.inputs, x.inputs)
        assert torch.equal(a.targets, x.targets)
        assert torch.equal(a.mask, x.mask)
        assert torch.equal(a.labels, x.labels)
        assert a.info.keys() == x.info.keys()
        for k in a.info:
            assert torch.equal(a.info[k], x.info[k]), k
    d = task.sample(16, gen(4))
    assert a.inputs.shape != d.inputs.shape or not torch.equal(a.inputs, d.inputs)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_padding_and_encoding(name):
    task = BUILTIN[name]()
    b = task.sample(64, gen(1))
    valid, dec = valid_steps(b), decision_steps(b)
    pre = torch.arange(b.mask.shape[1]) < b.info["decision_start"][:, None]
    # padding: nothing scored, no input, no target
    assert (b.mask[~valid] == 0).all()
    assert (b.inputs[~valid] == 0).all()
    assert (b.targets[~valid] == 0).all()
    assert (b.mask[valid] > 0).all()
    # decision period: at least one step, ends the trial
    assert (b.info["decision_end"] > b.info["decision_start"]).all()
    assert torch.equal(b.info["decision_end"], b.info["trial_length"])
    # fixation cue on before the decision, off in it
    assert (b.inputs[..., 0][pre] == 1).all()
    assert (b.inputs[..., 0][dec] == 0).all()
    # targets: fixate (1, 0, ..., 0) before, one-hot(label) in the decision period
    fix = torch.zeros(task.n_output)
    fix[0] = 1
    assert (b.targets[pre] == fix).all()
    onehot = torch.nn.functional.one_hot(b.labels, task.n_output).float()
    expect = onehot[:, None, :].expand_as(b.targets)
    assert (b.targets[dec] == expect[dec]).all()


def test_random_timing_pads_trials():
    b = DelayedMatchToSample().sample(64, gen(2))
    lengths = b.info["trial_length"]
    assert lengths.min() < lengths.max()
    assert (b.mask.sum(1) == lengths.float()).all()  # decision_weight 1 -> mask counts steps


def test_decision_weight_in_mask():
    task = PerceptualDecisionMaking(decision_weight=5.0)
    b = task.sample(8, gen(0))
    dec = decision_steps(b)
    assert (b.mask[dec] == 5.0).all()
    assert (b.mask[valid_steps(b) & ~dec] == 1.0).all()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_oracle_scores_one_and_constant_scores_chance(name):
    task = BUILTIN[name]()
    b = task.sample(3000, gen(5))
    assert task.accuracy(b.targets, b).all()
    assert task.accuracy(b.targets, b).dtype == torch.bool
    # always answer channel 1: correct on the trials whose label is 1
    const = torch.zeros_like(b.targets)
    const[..., 1] = 1.0
    acc = task.accuracy(const, b).float().mean().item()
    assert acc == pytest.approx(P_CHANNEL_1[name], abs=0.04)
    # a network that never leaves fixation is wrong on every choice trial
    fixate = torch.zeros_like(b.targets)
    fixate[..., 0] = 1.0
    acc_fix = task.accuracy(fixate, b).float()
    assert torch.equal(acc_fix.bool(), b.labels == 0)


def test_accuracy_uses_decision_period_mean():
    task = PerceptualDecisionMaking()
    b = task.sample(32, gen(0))
    out = b.targets.clone()
    dec = decision_steps(b)
    # the fixation output lingers at 0.4 in the decision period: still correct
    out[..., 0] = torch.where(dec, 0.4, out[..., 0])
    assert task.accuracy(out, b).all()
    # a wrong choice output larger than the right one on average: incorrect
    wrong = 3 - b.labels  # the other choice channel
    bad = b.targets.clone()
    bad.scatter_(2, wrong[:, None, None].expand(-1, bad.shape[1], 1), 2.0 * dec[..., None].float())
    assert not task.accuracy(bad, b).any()
    # outside the decision period nothing counts
    noisy = b.targets.clone()
    noisy[~dec] = torch.randn_like(noisy[~dec]) * 10
    assert task.accuracy(noisy, b).all()


def test_accuracy_rejects_bad_shape():
    task = PerceptualDecisionMaking()
    b = task.sample(4, gen(0))
    with pytest.raises(ValueError, match="shape"):
        task.accuracy(b.targets[..., :2], b)


def test_trial_batch_to():
    b = GoNoGo().sample(3, gen(0))
    c = b.to("cpu")
    assert torch.equal(c.inputs, b.inputs) and c.info.keys() == b.info.keys()


# --------------------------------------------------------------------------- dt and timing
def test_dt_sets_number_of_steps():
    # ParametricWorkingMemory has fixed timing: 100 + 500 + 1000 + 500 + 300 ms
    for dt, n in [(20, 120), (10, 240), (50, 48)]:
        b = ParametricWorkingMemory(dt=dt).sample(2, gen(0))
        assert b.inputs.shape[1] == n
        assert (b.info["decision_end"] - b.info["decision_start"] == round(300 / dt)).all()
    # durations are floored to whole steps: 100 ms at dt = 30 ms is 3 steps
    task = PerceptualDecisionMaking(dt=30, timing={"stimulus": 600})
    b = task.sample(2, gen(0))
    assert b.inputs.shape[1] == 3 + 20 + 0 + 10
    assert (b.info["decision_start"] == 23).all()


def test_uniform_timing_range_in_ms():
    task = PerceptualDecisionMaking(dt=10, timing={"stimulus": (200, 400)})
    b = task.sample(500, gen(0))
    stim_steps = b.info["decision_start"] - 10  # fixation 100 ms = 10 steps, no delay
    assert stim_steps.min() >= 20 and stim_steps.max() <= 40
    assert len(stim_steps.unique()) > 10


# --------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (PerceptualDecisionMaking, {"dt": 0}, "dt"),
        (PerceptualDecisionMaking, {"dt": -20}, "dt"),
        (PerceptualDecisionMaking, {"dt": float("nan")}, "dt"),
        (PerceptualDecisionMaking, {"coherences": [0.1, 1.5]}, "coherences"),
        (PerceptualDecisionMaking, {"coherences": []}, "coherences"),
        (PerceptualDecisionMaking, {"sigma": -1}, "sigma"),
        (PerceptualDecisionMaking, {"timing": {"delay": -100}}, "delay"),
        (PerceptualDecisionMaking, {"timing": {"stimulus": (500, 100)}}, "stimulus"),
        (PerceptualDecisionMaking, {"timing": {"foo": 100}}, "foo"),
        (PerceptualDecisionMaking, {"timing": {"decision": 10}}, "decision"),
        (PerceptualDecisionMaking, {"decision_weight": 0}, "decision_weight"),
        (ContextDependentIntegration, {"coherences": [-0.1]}, "coherences"),
        (DelayedMatchToSample, {"n_stimuli": 1}, "n_stimuli"),
        (DelayedMatchToSample, {"match_probability": 1.0}, "match_probability"),
        (ParametricWorkingMemory, {"pairs": [(20, 20)]}, "pairs"),
        (ParametricWorkingMemory, {"pairs": [(20, -4)]}, "pairs"),
        (ParametricWorkingMemory, {"pairs": []}, "pairs"),
        (GoNoGo, {"go_probability": 0}, "go_probability"),
        (AntiSaccade, {"n_directions": 7}, "n_directions"),
        (AntiSaccade, {"anti_probability": 2}, "anti_probability"),
    ],
)
def test_bad_arguments_name_the_parameter(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_argument_types():
    with pytest.raises(TypeError, match="dt"):
        PerceptualDecisionMaking(dt="20")
    with pytest.raises(TypeError, match="n_directions"):
        AntiSaccade(n_directions=8.0)
    task = GoNoGo()
    with pytest.raises(ValueError, match="batch_size"):
        task.sample(0, gen(0))
    with pytest.raises(TypeError, match="generator"):
        task.sample(4, 0)


# --------------------------------------------------------------------------- task specifics
def ideal_observer_accuracy(task: PerceptualDecisionMaking, n: int, seed: int) -> float:
    """Integrate x1 - x2 over the stimulus period, choose the sign."""
    b = task.sample(n, gen(seed))
    evidence = (b.inputs[..., 1] - b.inputs[..., 2]).sum(1)
    choice = torch.where(evidence > 0, 1, 2)
    return (choice == b.labels).float().mean().item()


def test_pdm_ideal_observer_default_difficulty():
    acc = ideal_observer_accuracy(PerceptualDecisionMaking(), 2000, seed=11)
    assert 0.95 <= acc <= 0.995  # learnable to >= 90 %, yet not trivial
    chance = ideal_observer_accuracy(PerceptualDecisionMaking(coherences=[0.0]), 2000, seed=12)
    assert chance == pytest.approx(0.5, abs=0.05)


def test_pdm_noise_is_dt_independent():
    # Phi(c sqrt(T) / (sqrt(2) sigma)) with c = 0.064, T = 600 ms, sigma = 1: 0.866
    expect = 0.5 * (1 + math.erf(0.064 * math.sqrt(600) / 2))
    for dt in (10, 20, 50):
        task = PerceptualDecisionMaking(dt=dt, coherences=[0.064], timing={"stimulus": 600})
        assert ideal_observer_accuracy(task, 4000, seed=dt) == pytest.approx(expect, abs=0.025)
    b = PerceptualDecisionMaking(dt=20, coherences=[0.0]).sample(200, gen(0))
    stim = b.inputs[..., 1][(b.inputs[..., 0] == 1) & (b.inputs[..., 1] != 0)]
    assert stim.std().item() == pytest.approx(1 / math.sqrt(20), rel=0.05)


def test_pdm_labels_follow_coherence_and_stimulus_means():
    task = PerceptualDecisionMaking(sigma=0.0)
    b = task.sample(200, gen(0))
    coh = b.info["coherence"]
    assert coh.abs().unique().tolist() == pytest.approx(sorted(task.coherences))
    assert torch.equal(b.labels == 1, coh > 0) and torch.equal(b.labels == 2, coh < 0)
    for i in range(20):
        on = b.inputs[i, :, 1] != 0
        x1, x2 = b.inputs[i, on, 1], b.inputs[i, on, 2]
        assert torch.allclose(x1, (1 + coh[i]) / 2) and torch.allclose(x2, (1 - coh[i]) / 2)
        assert int(b.labels[i]) == (1 if x1.mean() > x2.mean() else 2)
    assert (b.labels == 1).float().mean() == pytest.approx(0.5, abs=0.1)


def test_cdi_label_follows_cued_modality():
    task = ContextDependentIntegration(sigma=0.0)
    b = task.sample(400, gen(0))
    ctx = b.info["context"]
    cued = torch.where(ctx == 0, b.info["coherence_motion"], b.info["coherence_color"])
    other = torch.where(ctx == 0, b.info["coherence_color"], b.info["coherence_motion"])
    assert torch.equal(b.labels, torch.where(cued > 0, 1, 2))
    # the irrelevant modality disagrees on about half the trials
    assert ((cued > 0) != (other > 0)).float().mean() == pytest.approx(0.5, abs=0.1)
    # context cue: one-hot, on for the whole trial
    valid = valid_steps(b)
    assert torch.equal(b.inputs[..., 5][valid], (ctx[:, None] == 0).expand_as(valid)[valid].float())
    assert torch.equal(b.inputs[..., 6][valid], (ctx[:, None] == 1).expand_as(valid)[valid].float())
    # stimulus means
    stim = period_steps(task, b, "stimulus")
    m = b.info["coherence_motion"][:, None].expand_as(stim)[stim]
    c = b.info["coherence_color"][:, None].expand_as(stim)[stim]
    assert torch.allclose(b.inputs[..., 1][stim], (1 + m) / 2)
    assert torch.allclose(b.inputs[..., 2][stim], (1 - m) / 2)
    assert torch.allclose(b.inputs[..., 3][stim], (1 + c) / 2)
    assert torch.allclose(b.inputs[..., 4][stim], (1 - c) / 2)


def test_dms_match_and_stimuli():
    task = DelayedMatchToSample(n_stimuli=5, timing={"delay": 400})
    b = task.sample(500, gen(0))
    match = b.info["match"] == 1
    assert torch.equal(match, b.info["sample"] == b.info["test"])
    assert torch.equal(b.labels, torch.where(match, 1, 2))
    assert match.float().mean() == pytest.approx(0.5, abs=0.07)
    onehot = torch.nn.functional.one_hot
    for period, key in [("sample", "sample"), ("test", "test")]:
        steps = period_steps(task, b, period)
        want = onehot(b.info[key], 5).float()[:, None, :].expand(-1, b.inputs.shape[1], -1)
        assert torch.equal(b.inputs[..., 1:][steps], want[steps])
    delay = period_steps(task, b, "delay")
    assert (b.inputs[..., 1:][delay] == 0).all()
    # every non-matching test stimulus occurs
    assert set(b.info["test"][~match].tolist()) == set(range(5))


def test_pwm_labels_and_amplitude():
    task = ParametricWorkingMemory()
    b = task.sample(300, gen(0))
    f1, f2 = b.info["f1"], b.info["f2"]
    assert torch.equal(b.labels, torch.where(f1 > f2, 1, 2))
    assert set(zip(f1.tolist(), f2.tolist(), strict=True)) <= set(ROMO_PAIRS)
    assert ((f1 - f2).abs() == 8).all()
    for period, f in [("f1", f1), ("f2", f2)]:
        steps = period_steps(task, b, period)
        amp = b.inputs[..., 1][steps].view(len(b), -1)
        assert torch.allclose(amp, task.amplitude(f)[:, None].expand_as(amp))
    assert (b.inputs[..., 1][period_steps(task, b, "delay")] == 0).all()
    # amplitude: positive, increasing in frequency, spans [0.2, 1]
    a = task.amplitude(torch.tensor([10.0, 22.0, 34.0]))
    assert torch.allclose(a, torch.tensor([0.2, 0.6, 1.0]))


def test_go_no_go_labels_and_fixation_rule():
    task = GoNoGo()
    b = task.sample(400, gen(0))
    go = b.info["go"] == 1
    assert torch.equal(b.labels, go.long())
    stim = period_steps(task, b, "stimulus")
    assert torch.equal(b.inputs[..., 1][stim].view(len(b), -1)[:, 0], go.float())
    assert torch.equal(b.inputs[..., 2][stim].view(len(b), -1)[:, 0], (~go).float())
    dec = decision_steps(b)
    # no-go trials target fixation in the decision period
    assert (b.targets[~go][dec[~go]] == torch.tensor([1.0, 0.0])).all()
    # a brief go blip on a no-go trial is a false alarm, even if fixation wins on average
    out = b.targets.clone()
    first = b.info["decision_start"]
    out[torch.arange(len(b)), first, 1] = 2.0
    acc = task.accuracy(out, b)
    assert not acc[~go].any()
    assert acc[go].all()  # go trials still go on average


def test_anti_saccade_directions():
    task = AntiSaccade(n_directions=8)
    b = task.sample(400, gen(0))
    d, rule = b.info["direction"], b.info["rule"]
    anti = rule == 1
    assert torch.equal(b.labels[~anti], 1 + d[~anti])
    assert torch.equal(b.labels[anti], 1 + (d[anti] + 4) % 8)
    assert torch.equal(b.labels, 1 + b.info["response"])
    assert torch.allclose(b.info["theta"], d.float() * 2 * math.pi / 8)
    assert anti.float().mean() == pytest.approx(0.5, abs=0.08)
    stim = period_steps(task, b, "stimulus")
    first = stim.float().argmax(1)
    shown = b.inputs[torch.arange(len(b)), first, 1:9].argmax(-1)
    assert torch.equal(shown, d)
    # rule cue: pro on channel 9, anti on channel 10, for the whole trial
    valid = valid_steps(b)
    assert torch.equal(b.inputs[..., 10][valid], anti[:, None].expand_as(valid)[valid].float())
    assert torch.equal(b.inputs[..., 9][valid], (~anti)[:, None].expand_as(valid)[valid].float())
    assert AntiSaccade(n_directions=4, anti_probability=1.0).sample(50, gen(1)).info["rule"].all()
