"""Tests of the NeuroGym adapter (bionn.tasks.NeuroGymTask)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

ngym = pytest.importorskip(
    "neurogym", reason="neurogym is not installed (pip install bionn[neurogym])"
)

from bionn.tasks import NeuroGymTask, make_task  # noqa: E402

ENV_IDS = ["PerceptualDecisionMaking-v0", "GoNogo-v0", "DelayMatchSample-v0"]
# PerceptualDecisionMaking with a random stimulus duration, so trials need padding
RANDOM_TIMING = {"timing": {"stimulus": ("uniform", (200, 600))}}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def raw_env(env_id: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ngym.make(env_id, dt=20, **kwargs).unwrapped


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_shapes_follow_env_spaces(env_id):
    task = NeuroGymTask(env_id, dt=20)
    env = raw_env(env_id)
    assert task.n_input == env.observation_space.shape[0]
    assert task.n_output == env.action_space.n
    b = task.sample(5, gen(0))
    n_t = b.inputs.shape[1]
    assert b.inputs.shape == (5, n_t, task.n_input)
    assert b.targets.shape == (5, n_t, task.n_output)
    assert b.mask.shape == (5, n_t) and b.labels.shape == (5,)
    assert b.inputs.dtype == b.targets.dtype == b.mask.dtype == torch.float32
    assert b.labels.dtype == torch.long
    assert "ground_truth" in b.info
    for key, value in b.info.items():
        assert value.shape == (5,), key


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_batch_matches_env_trials(env_id):
    """Replays the adapter's seeding: one int drawn from the generator seeds the env."""
    b = NeuroGymTask(env_id, dt=20).sample(6, gen(7))
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen(7)))
    env = raw_env(env_id)
    env.seed(seed)
    for i in range(6):
        trial = env.new_trial()
        n = env.ob.shape[0]
        assert int(b.info["trial_length"][i]) == n
        assert np.allclose(b.inputs[i, :n].numpy(), env.ob)
        assert np.array_equal(b.targets[i, :n].argmax(-1).numpy(), env.gt)
        assert int(b.labels[i]) == int(env.gt[-1])
        assert int(b.info["ground_truth"][i]) == int(trial["ground_truth"])


def test_padding_and_targets_one_hot():
    task = NeuroGymTask("PerceptualDecisionMaking-v0", dt=20, env_kwargs=RANDOM_TIMING)
    b = task.sample(32, gen(1))
    lengths = b.info["trial_length"]
    assert lengths.min() < lengths.max()  # padding happens
    valid = torch.arange(b.mask.shape[1]) < lengths[:, None]
    assert torch.equal(b.mask, valid.float())
    assert torch.equal(b.targets.sum(-1), valid.float())  # one-hot on steps, 0 on padding
    assert (b.inputs[~valid] == 0).all()
    # 100 ms fixation + 200-600 ms stimulus + 100 ms decision, dt = 20 ms
    assert lengths.min() >= 20 and lengths.max() <= 40


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reproducible_under_seed(env_id):
    task = NeuroGymTask(env_id, dt=20)
    a, b = task.sample(8, gen(3)), task.sample(8, gen(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.mask, b.mask)
    c = NeuroGymTask(env_id, dt=20).sample(8, gen(3))  # a fresh env too
    assert torch.equal(a.inputs, c.inputs) and torch.equal(a.labels, c.labels)
    d = task.sample(8, gen(4))
    assert a.inputs.shape != d.inputs.shape or not torch.equal(a.inputs, d.inputs)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("PerceptualDecisionMaking-v0", RANDOM_TIMING),
        ("GoNogo-v0", {}),
        ("DelayMatchSample-v0", {}),
    ],
)
def test_accuracy_oracle_and_constant(env_id, kwargs):
    task = NeuroGymTask(env_id, dt=20, env_kwargs=kwargs)
    b = task.sample(400, gen(5))
    assert task.accuracy(b.targets, b).all()  # scored at the last *valid* step
    const = torch.zeros_like(b.targets)
    const[..., 1] = 1.0
    acc = task.accuracy(const, b).float().mean().item()
    assert acc == pytest.approx((b.labels == 1).float().mean().item())
    assert acc == pytest.approx(0.5, abs=0.08)


def test_make_task_and_errors():
    task = make_task("neurogym", env_id="GoNogo-v0", dt=10)
    assert isinstance(task, NeuroGymTask) and task.n_output == 2
    with pytest.raises(ValueError, match="env_id"):
        NeuroGymTask("NoSuchTask-v0")
    with pytest.raises(ValueError, match="dt"):
        NeuroGymTask("GoNogo-v0", env_kwargs={"dt": 50})
    with pytest.raises(ValueError, match="dt"):
        NeuroGymTask("GoNogo-v0", dt=0)
    with pytest.raises(TypeError, match="foo"):
        NeuroGymTask("GoNogo-v0", env_kwargs={"foo": 1})
    b = task.sample(2, gen(0))
    with pytest.raises(ValueError, match="shape"):
        task.accuracy(b.targets[..., :1], b)


# --------------------------------------------------------------------------- every env
# Environments that cannot be built with their defaults: the keyword arguments they require.
REQUIRED_KWARGS = {"AnnubesEnv-v0": {"session": {"v": 0.5, "a": 0.5}, "catch_prob": 0.5}}
REWARD_ONLY = ["Bandit-v0", "DawTwoStep-v0", "EconomicDecisionMaking-v0"]
REGRESSION = {"ReachingDelayResponse-v0": "box", "SpatialSuppressMotion-v0": "box",
              "Reaching1D-v0": "angle", "Reaching1DWithSelfDistraction-v0": "angle"}


def all_env_ids() -> list[str]:
    from neurogym.envs.registration import all_envs

    return list(all_envs(collections=True))


def test_every_registered_env_works_or_is_refused_by_name():
    """Each registered id (52 with neurogym 2.3.1, collections included; ~0.2 s in all)
    samples finite, well-shaped, reproducible batches that accuracy/measures score, or
    is refused with a ValueError that names it."""
    works, refused = [], {}
    for env_id in all_env_ids():
        try:
            task = NeuroGymTask(env_id, dt=20, env_kwargs=REQUIRED_KWARGS.get(env_id))
            b = task.sample(2, gen(0))
        except ValueError as err:
            assert env_id in str(err), (env_id, str(err))
            refused[env_id] = str(err)
            continue
        n_t = b.inputs.shape[1]
        assert b.inputs.shape == (2, n_t, task.n_input), env_id
        assert b.targets.shape == (2, n_t, task.n_output), env_id
        assert b.mask.shape == (2, n_t) and b.labels.shape == (2,), env_id
        assert torch.isfinite(b.inputs).all() and torch.isfinite(b.targets).all(), env_id
        assert (b.mask.sum(1) > 0).all(), env_id
        out = torch.randn(b.targets.shape, generator=gen(1))
        assert task.accuracy(out, b).shape == (2,), env_id
        assert task.accuracy(b.targets, b).all(), env_id  # the targets themselves are right
        for name, value in task.measures(out, b).items():
            assert value.shape == (2,) and torch.isfinite(value).all(), (env_id, name)
        for names, n in [(task.input_names, task.n_input), (task.output_names, task.n_output)]:
            assert names is None or (len(names) == n and all(isinstance(s, str) for s in names))
        again = NeuroGymTask(env_id, dt=20, env_kwargs=REQUIRED_KWARGS.get(env_id)).sample(2, gen(0))
        assert torch.equal(again.inputs, b.inputs) and torch.equal(again.targets, b.targets)
        works.append(env_id)
    assert set(REWARD_ONLY) <= set(refused), sorted(refused)
    for env_id, message in refused.items():
        assert "no ground truth" in message, (env_id, message)
    assert set(REGRESSION) <= set(works)
    assert len(works) >= 40, (len(works), sorted(refused))


def test_env_missing_required_kwargs_is_named():
    with pytest.raises(TypeError, match="AnnubesEnv-v0.*catch_prob"):
        NeuroGymTask("AnnubesEnv-v0")


@pytest.mark.parametrize("env_id", REWARD_ONLY)
def test_reward_only_envs_are_refused(env_id):
    with pytest.raises(ValueError, match=f"{env_id}.*no ground truth.*reward-based training"):
        NeuroGymTask(env_id, dt=20)


# --------------------------------------------------------------------------- regression
def test_reaching_targets_are_the_reach_angle():
    """Reaching1D's gt is an angle in radians (NeuroGym stores it in an int array,
    truncated); the targets are (cos, sin) of the exact angle."""
    for env_id in ["Reaching1D-v0", "Reaching1DWithSelfDistraction-v0"]:
        task = NeuroGymTask(env_id, dt=20)
        assert task.target_kind == "angle" and task.n_output == 2 and task.loss == "mse"
        assert task.output_names == ("cos angle", "sin angle")
        b = task.sample(16, gen(2))
        # 500 ms fixation (start position pi) then 500 ms reach (the trial's angle)
        assert b.inputs.shape[1] == 50 and b.mask.eq(1).all()
        angle = torch.atan2(b.targets[..., 1], b.targets[..., 0])
        assert torch.allclose(angle[:, :25].abs(), torch.full((16, 25), torch.pi), atol=1e-5)
        gt = torch.remainder(b.info["ground_truth"], 2 * torch.pi)
        reach = torch.remainder(angle[:, 25:], 2 * torch.pi)
        assert torch.allclose(reach, gt[:, None].expand(-1, 25), atol=1e-4)
        assert b.labels.eq(0).all()
        err = task.measures(b.targets, b)["error"]
        assert err.max() < 1e-3 and task.accuracy(b.targets, b).all()
        # outputs rotated by 30 degrees (and scaled: only the direction counts)
        rot = torch.deg2rad(torch.tensor(30.0))
        c, s = torch.cos(rot), torch.sin(rot)
        y = 2 * torch.stack([c * b.targets[..., 0] - s * b.targets[..., 1],
                             s * b.targets[..., 0] + c * b.targets[..., 1]], -1)
        assert torch.allclose(task.measures(y, b)["error"], torch.full((16,), 30.0), atol=1e-3)
        assert not task.accuracy(y, b).any()  # default tolerance: 10 degrees
        assert NeuroGymTask(env_id, dt=20, tolerance=45).accuracy(y, b).all()


def test_box_targets_replay_the_env_gt():
    task = NeuroGymTask("ReachingDelayResponse-v0", dt=20)
    assert task.target_kind == "box" and task.loss == "mse" and task.tolerance == 0.1
    assert task.n_output == 2 and task.input_names == ("go", "stimulus")
    b = task.sample(6, gen(7))
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen(7)))
    env = raw_env("ReachingDelayResponse-v0")
    env.seed(seed)
    for i in range(6):
        trial = env.new_trial()
        n = env.ob.shape[0]
        assert int(b.info["trial_length"][i]) == n
        assert np.allclose(b.inputs[i, :n].numpy(), env.ob)
        assert np.allclose(b.targets[i, :n].numpy(), env.gt)
        assert b.targets[i, n - 1, 1].item() == pytest.approx(trial["ground_truth"])
        assert b.mask[i, :n].eq(1).all() and b.mask[i, n:].eq(0).all()
        assert b.targets[i, n:].eq(0).all() and b.inputs[i, n:].eq(0).all()
    assert task.measures(b.targets, b)["error"].abs().max() == 0
    # error = mean absolute error over the scored steps; padding does not count
    off = b.targets + 0.05 * b.mask[..., None]
    off[b.mask == 0] = 7.0
    assert torch.allclose(task.measures(off, b)["error"], torch.full((6,), 0.05), atol=1e-6)
    assert task.accuracy(off, b).all()
    assert not NeuroGymTask("ReachingDelayResponse-v0", tolerance=0.01).accuracy(off, b).any()

    motion = NeuroGymTask("SpatialSuppressMotion-v0", dt=20)
    assert motion.target_kind == "box" and motion.n_output == 4
    m = motion.sample(3, gen(0))
    assert m.targets.shape[-1] == 4 and ((m.targets >= 0) & (m.targets <= 1)).all()


def test_box_mask_scores_only_steps_with_a_target():
    """Steps where the environment sets no gt are not scored (mask 0, target 0)."""
    import gymnasium
    from neurogym.envs.native.reachingdelayresponse import ReachingDelayResponse

    class DecisionOnly(ReachingDelayResponse):
        def _new_trial(self, **kwargs):
            trial = {"ground_truth": self.rng.uniform(self.lowbound, self.highbound)}
            self.add_period(["stimulus", "delay", "decision"])
            self.add_ob(trial["ground_truth"], "stimulus", where="stimulus")
            self.set_groundtruth([1, trial["ground_truth"]], "decision")
            return trial

    env_id = "BionnTestDecisionOnlyGt-v0"
    if env_id not in gymnasium.envs.registry:
        gymnasium.register(env_id, entry_point=DecisionOnly)
    task = NeuroGymTask(env_id, dt=20, env_kwargs={"timing": {"delay": 200}})
    b = task.sample(4, gen(0))
    # stimulus 500 ms, delay 200 ms (not scored), decision 500 ms (scored)
    assert b.inputs.shape[1] == 60
    assert b.mask[:, :35].eq(0).all() and b.mask[:, 35:].eq(1).all()
    assert b.targets[:, :35].eq(0).all() and b.targets[:, 35:, 0].eq(1).all()
    y = b.targets.clone()
    y[:, :35] = 5.0  # unscored steps do not count
    assert task.measures(y, b)["error"].eq(0).all()


def test_channel_names_from_the_env_spaces():
    task = NeuroGymTask("PerceptualDecisionMaking-v0", dt=20)
    assert task.input_names == ("fixation", "stimulus 1", "stimulus 2")
    assert task.output_names == ("fixation", "choice 1", "choice 2")
    dms = NeuroGymTask("DelayMatchSample-v0", dt=20)
    assert dms.output_names == ("fixation", "match", "non-match")
    reach = NeuroGymTask("Reaching1D-v0", dt=20)  # names given out of channel order
    assert reach.input_names[:2] == ("target 1", "target 2")
    assert reach.input_names[16:18] == ("self 1", "self 2") and len(reach.input_names) == 32
    unnamed = NeuroGymTask("MotorTiming-v0", dt=20)  # NeuroGym gives no names
    assert unnamed.input_names is None and unnamed.output_names is None


def test_tolerance_checks():
    with pytest.raises(ValueError, match="tolerance"):
        NeuroGymTask("GoNogo-v0", tolerance=0.1)  # one-hot targets are scored by argmax
    with pytest.raises(ValueError, match="tolerance"):
        NeuroGymTask("ReachingDelayResponse-v0", tolerance=0)
    assert NeuroGymTask("Reaching1D-v0").tolerance == 10.0
    one_hot = NeuroGymTask("GoNogo-v0")
    b = one_hot.sample(2, gen(0))
    assert one_hot.loss is None and one_hot.measures(b.targets, b) == {}


def test_box_regression_trains_through_the_runner(tmp_path):
    """A run on a Box env with loss.task mse logs eval_error and writes it to final.json."""
    import json

    from bionn.experiment import Runner, load_config
    from bionn.experiment.checkpoint import read_jsonl

    cfg = load_config(None, [
        "task.name=neurogym", "task.params={env_id: ReachingDelayResponse-v0, tolerance: 0.2}",
        "loss.task=mse", "model.n_hidden=16", "training.batch_size=8",
        "training.eval_trials=16", "training.eval_every=3", "training.checkpoint_every=3",
        "training.example_trials=2", "training.steps=6",
    ])
    Runner(cfg, tmp_path / "r", progress=False).fit()
    records = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    evals = [r for r in records if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [3, 6]
    for r in evals:
        assert np.isfinite(r["eval_error"]) and r["eval_error"] > 0
        assert 0 <= r["eval_accuracy"] <= 1
    final = json.loads((tmp_path / "r" / "final.json").read_text())
    assert final["status"] == "finished" and final["error"] == pytest.approx(evals[-1]["eval_error"])
