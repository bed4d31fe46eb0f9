"""Response-inhibition and rule-based motor tasks: go/no-go and anti-saccade."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from bionn.tasks._common import (
    Duration,
    PeriodTask,
    check_int,
    check_nonnegative,
    check_probability,
    check_sample_args,
)
from bionn.tasks.base import TrialBatch

__all__ = ["GoNoGo", "AntiSaccade"]


class GoNoGo(PeriodTask):
    r"""Delayed go/no-go (NeuroGym ``GoNogo``; Yang et al. 2019 Nat. Neurosci.
    22:297 "Go" family; response inhibition after Donders 1868).

    Trial: ``fixation`` (100 ms) -> ``stimulus`` (300 ms) -> ``delay``
    (200-500 ms, uniform) -> ``decision`` (300 ms).

    Inputs (``n_input = 3``): 0 fixation cue (1 until the decision period,
    0 in it, on both trial types), 1 go cue, 2 no-go cue (one of the two is 1
    during ``stimulus``), plus noise :math:`\frac{\sigma}{\sqrt{dt}}\xi` on
    channels 1-2 over the whole trial if ``sigma > 0``.

    Outputs (``n_output = 2``): 0 fixation, 1 go. ``labels`` = 1 on go trials,
    0 on no-go trials (the correct response is to keep fixating). Targets:
    fixation channel 1 until the decision; in the decision period go trials
    target (0, 1) and no-go trials (1, 0).

    ``info``: ``go`` (long, 1 = go trial), plus ``decision_start``,
    ``decision_end``, ``trial_length``.

    Accuracy: a go trial is correct iff the argmax of the output averaged over
    the decision period is channel 1 (go); a no-go trial is correct iff the
    fixation output is strictly the largest at *every* step of the decision
    period.

    Args:
        dt: time step in ms.
        go_probability: probability of a go trial, in (0, 1).
        sigma: input noise scale (0 = noiseless).
        timing: overrides for ``fixation``, ``stimulus``, ``delay``, ``decision`` (ms).
        decision_weight: mask weight of the decision period.

    Example:
        >>> import torch
        >>> task = GoNoGo(dt=20)
        >>> batch = task.sample(8, torch.Generator().manual_seed(0))
        >>> batch.targets.shape[2]
        2
        >>> bool((batch.labels == batch.info["go"]).all())
        True
    """

    name = "go_no_go"
    n_input = 3
    n_output = 2
    input_names = ("fixation", "go cue", "no-go cue")
    output_names = ("fixation", "go")
    default_timing: dict[str, Duration] = {
        "fixation": 100.0,
        "stimulus": 300.0,
        "delay": (200.0, 500.0),
        "decision": 300.0,
    }
    required_periods = ("stimulus", "decision")

    def __init__(
        self,
        dt: float = 20.0,
        go_probability: float = 0.5,
        sigma: float = 0.0,
        timing: Mapping[str, Duration] | None = None,
        decision_weight: float = 1.0,
    ) -> None:
        super().__init__(dt, timing, decision_weight)
        self.go_probability = check_probability(
            "go_probability", go_probability, open_interval=True
        )
        self.sigma = check_nonnegative("sigma", sigma)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        lay = self._layout(b, generator)
        go = (torch.rand(b, generator=generator) < self.go_probability).long()
        cue = torch.nn.functional.one_hot(1 - go, 2).float()  # channel 1 go, 2 no-go
        inputs = torch.zeros(b, lay.n_steps, self.n_input)
        inputs[..., 1:3] = lay.period("stimulus").float()[..., None] * cue[:, None, :]
        inputs[..., 1:3] += self._noise((b, lay.n_steps, 2), self.sigma, generator)
        return self._finish(lay, inputs, go.clone(), {"go": go})

    def accuracy(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """Go: argmax of the decision-period mean is 1. No-go: fixation output
        strictly largest at every decision step."""
        mean = self._decision_mean(outputs, batch)
        t = torch.arange(outputs.shape[1], device=outputs.device)
        start = batch.info["decision_start"].to(outputs.device)
        end = batch.info["decision_end"].to(outputs.device)
        in_dec = (t >= start[:, None]) & (t < end[:, None])
        fix_wins = (outputs[..., 0] > outputs[..., 1]) | ~in_dec
        labels = batch.labels.to(outputs.device)
        return torch.where(labels == 1, mean.argmax(-1) == 1, fix_wins.all(1))


class AntiSaccade(PeriodTask):
    r"""Memory pro/anti-saccade (Hallett 1978, Vision Res. 18:1279; Munoz &
    Everling 2004; RNN version Yang et al. 2019 ``antiMemoryGo``).

    A target flashes at one of ``n_directions`` equally spaced directions
    :math:`\theta_k = 2\pi k / n`; a rule cue says pro (look at it) or anti
    (look opposite, :math:`\theta_k + \pi`, i.e. direction ``k + n/2 mod n``).
    The saccade is made when the fixation cue goes off.

    Trial: ``fixation`` (100 ms) -> ``stimulus`` (300 ms) -> ``delay``
    (100-500 ms, uniform) -> ``decision`` (300 ms).

    Inputs (``n_input = n_directions + 3``): 0 fixation cue (1 until the
    decision period), ``1..n_directions`` the target direction, one-hot, during
    ``stimulus`` (plus noise :math:`\frac{\sigma}{\sqrt{dt}}\xi` over the trial
    if ``sigma > 0``), ``n_directions + 1`` pro cue, ``n_directions + 2`` anti
    cue (rule cue one-hot, on for the whole trial).

    Outputs (``n_output = n_directions + 1``): 0 fixation, ``1 + k`` saccade
    to direction ``k``. ``labels`` = ``1 + direction`` on pro trials and
    ``1 + (direction + n/2) % n`` on anti trials.

    ``info``: ``direction`` (stimulus direction index, long), ``theta``
    (its angle in rad, float), ``rule`` (long, 0 = pro, 1 = anti), ``response``
    (correct direction index, long), plus ``decision_start``,
    ``decision_end``, ``trial_length``.

    Accuracy: argmax over all outputs of the decision-period mean == label.

    Args:
        dt: time step in ms.
        n_directions: number of directions, even and >= 2.
        anti_probability: probability of an anti trial, in [0, 1].
        sigma: input noise scale (0 = noiseless).
        timing: overrides for ``fixation``, ``stimulus``, ``delay``, ``decision`` (ms).
        decision_weight: mask weight of the decision period.

    Example:
        >>> import torch
        >>> task = AntiSaccade(dt=20, n_directions=8)
        >>> batch = task.sample(8, torch.Generator().manual_seed(0))
        >>> batch.inputs.shape[2], batch.targets.shape[2]
        (11, 9)
        >>> anti = batch.info["rule"] == 1
        >>> bool((batch.info["response"][anti] == (batch.info["direction"][anti] + 4) % 8).all())
        True
    """

    name = "anti_saccade"
    default_timing: dict[str, Duration] = {
        "fixation": 100.0,
        "stimulus": 300.0,
        "delay": (100.0, 500.0),
        "decision": 300.0,
    }
    required_periods = ("stimulus", "decision")

    def __init__(
        self,
        dt: float = 20.0,
        n_directions: int = 8,
        anti_probability: float = 0.5,
        sigma: float = 0.0,
        timing: Mapping[str, Duration] | None = None,
        decision_weight: float = 1.0,
    ) -> None:
        super().__init__(dt, timing, decision_weight)
        self.n_directions = check_int("n_directions", n_directions, 2)
        if self.n_directions % 2:
            raise ValueError(
                f"n_directions must be even so that each direction has an opposite, got {n_directions!r}"
            )
        self.anti_probability = check_probability("anti_probability", anti_probability)
        self.sigma = check_nonnegative("sigma", sigma)
        self.n_input = self.n_directions + 3
        self.n_output = self.n_directions + 1
        angles = [f"{360 * k / self.n_directions:g}°" for k in range(self.n_directions)]
        self.input_names = ("fixation", *(f"direction {a}" for a in angles), "pro cue", "anti cue")
        self.output_names = ("fixation", *(f"saccade {a}" for a in angles))

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        lay = self._layout(b, generator)
        n = self.n_directions
        direction = torch.randint(n, (b,), generator=generator)
        rule = (torch.rand(b, generator=generator) < self.anti_probability).long()
        response = (direction + rule * (n // 2)) % n
        onehot = torch.nn.functional.one_hot
        inputs = torch.zeros(b, lay.n_steps, self.n_input)
        inputs[..., 1 : n + 1] = (
            lay.period("stimulus").float()[..., None] * onehot(direction, n).float()[:, None, :]
        )
        inputs[..., 1 : n + 1] += self._noise((b, lay.n_steps, n), self.sigma, generator)
        inputs[..., n + 1 :] = onehot(rule, 2).float()[:, None, :]
        info = {
            "direction": direction,
            "theta": direction.float() * (2 * math.pi / n),
            "rule": rule,
            "response": response,
        }
        return self._finish(lay, inputs, 1 + response, info)
