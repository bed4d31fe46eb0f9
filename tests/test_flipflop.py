"""The n-bit flip-flop task (Sussillo & Barak 2013)."""

import pytest
import torch

from bionn.tasks import FlipFlop, make_task


def test_targets_hold_the_sign_of_the_last_pulse_per_channel():
    task = FlipFlop(dt=10, n_bits=2, duration=300, pulse_rate=20)
    b = task.sample(16, torch.Generator().manual_seed(0))
    assert b.inputs.shape == b.targets.shape == (16, 30, 2)
    assert bool((b.inputs[:, 0].abs() == 1).all())  # every memory is set at the start
    for n in range(16):
        for k in range(2):
            last = None
            for t in range(30):
                if b.inputs[n, t, k] != 0:
                    last = float(b.inputs[n, t, k])
                assert float(b.targets[n, t, k]) == last
    bits = (b.targets[:, -1] > 0).long()
    assert torch.equal(b.labels, bits[:, 0] + 2 * bits[:, 1])
    assert float(b.mask[:, :3].sum()) == 0 and bool((b.mask[:, 3:] == 1).all())


def test_accuracy_ignores_only_the_settling_steps_after_a_flip():
    task = FlipFlop(dt=10, duration=400, pulse_rate=10, settle=20)
    b = task.sample(32, torch.Generator().manual_seed(1))
    assert bool(task.accuracy(b.targets, b).all())
    assert not bool(task.accuracy(-b.targets, b).any())
    lagged = torch.cat([b.targets[:, :1], b.targets[:, :-1]], 1)  # one step late: allowed
    assert bool(task.accuracy(lagged, b).all())
    late = torch.cat([b.targets[:, :4], b.targets[:, :-4]], 1)  # four steps late: not allowed
    flipped = b.info["n_flips"] > 0
    assert not bool(task.accuracy(late, b)[flipped].any())


def test_registry_and_bad_arguments():
    assert isinstance(make_task("flip_flop", dt=20), FlipFlop)
    with pytest.raises(ValueError, match="pulse_rate"):
        FlipFlop(dt=10, pulse_rate=200)
    with pytest.raises(ValueError, match="duration"):
        FlipFlop(dt=10, duration=10)
    with pytest.raises(ValueError, match="settle"):
        FlipFlop(settle=-1)
