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
