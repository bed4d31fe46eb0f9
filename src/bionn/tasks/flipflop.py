r"""The n-bit flip-flop task (Sussillo & Barak 2013, Neural Comput. 25:626).

A network holds ``n_bits`` binary memories. Each input channel ``k`` carries brief pulses of
``+1`` or ``-1``; output ``k`` must hold the sign of the last pulse on channel ``k`` until the
next one flips it. A network that solves it has ``2^n_bits`` stable fixed points (one per
memory) and saddle points between neighbouring memories, each with one unstable mode: the
standard test of a fixed-point finder.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bionn.tasks._common import check_int, check_outputs, check_positive, check_sample_args
from bionn.tasks.base import Task, TrialBatch

__all__ = ["FlipFlop"]


class FlipFlop(Task):
    r"""The n-bit flip-flop (Sussillo & Barak 2013).

    Trial: ``duration`` ms. At the first step every channel receives a pulse (so every
    memory is set); afterwards each channel receives a pulse with probability
    ``pulse_rate dt / 1000`` per step. A pulse lasts one step and is ``+1`` or ``-1`` with
    equal probability. Inputs ``(batch, time, n_bits)``: the pulses (plus Gaussian noise
    :math:`\frac{\sigma}{\sqrt{dt}}\xi` if ``sigma > 0``). Targets ``(batch, time, n_bits)``:
    the sign of the last pulse on each channel (``+1`` / ``-1``; MSE loss). Mask: 1 except in
    the ``settle`` ms after the first step's pulses.

    ``labels``: the final memory as an integer, ``sum_k [target_k > 0] 2^k``. ``info``:
    ``n_pulses`` and ``n_flips`` (per trial). Accuracy: a trial is correct iff the sign of
    every output equals its target at every step after the first ``settle`` ms and more
    than ``settle`` ms after any flip of a memory.

    Args:
        dt: time step (ms).
        n_bits: number of memories.
        duration: trial length (ms).
        pulse_rate: pulses per second per channel after the first step (Hz).
        settle: time a network may take to flip (ms), not scored after a pulse.
        sigma: input noise scale (0: noiseless).

    Example:
        >>> task = FlipFlop(dt=10)
        >>> b = task.sample(4, torch.Generator().manual_seed(0))
        >>> b.inputs.shape, b.targets.shape, bool(task.accuracy(b.targets, b).all())
        (torch.Size([4, 100, 3]), torch.Size([4, 100, 3]), True)
    """

    name = "flip_flop"

    def __init__(self, dt: float = 10.0, n_bits: int = 3, duration: float = 1000.0,
                 pulse_rate: float = 5.0, settle: float = 20.0, sigma: float = 0.0) -> None:
        self.dt = check_positive("dt", dt)
        self.n_bits = check_int("n_bits", n_bits, 1)
        self.n_input = self.n_output = self.n_bits
        self.duration = check_positive("duration", duration)
        self.n_steps = int(round(self.duration / self.dt))
        if self.n_steps < 2:
            raise ValueError(f"duration ({duration!r} ms) must be at least two steps of dt={dt!r} ms")
        self.pulse_rate = float(pulse_rate)
        if not 0 <= self.pulse_rate * self.dt / 1000.0 <= 1:
            raise ValueError(f"pulse_rate must lie in [0, 1000 / dt] = [0, {1000.0 / self.dt:g}] Hz; "
                             f"got {pulse_rate!r}")
        self.settle = float(settle)
        if not 0 <= self.settle < self.duration:
            raise ValueError(f"settle must lie in [0, duration) ms; got {settle!r}")
        self.sigma = float(sigma)
        if not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0; got {sigma!r}")
        self.input_names = tuple(f"pulse {k + 1}" for k in range(self.n_bits))
        self.output_names = tuple(f"memory {k + 1}" for k in range(self.n_bits))

    def _scored(self, targets: Tensor) -> Tensor:
        """``(batch, time)``: the steps after the first ``settle`` ms and more than
        ``settle`` ms after a memory flipped."""
        flip = torch.zeros(targets.shape[:2], dtype=torch.bool, device=targets.device)
        flip[:, 0] = True
        flip[:, 1:] = (targets[:, 1:] != targets[:, :-1]).any(-1)
        settle = int(round(self.settle / self.dt))
        scored = torch.ones_like(flip)
        for k in range(settle + 1):  # unscored: a flip at t - k for k = 0..settle
            scored[:, k:] &= ~flip[:, : flip.shape[1] - k]
        return scored

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials (see the class docstring)."""
        n = check_sample_args(batch_size, generator)
        T, K = self.n_steps, self.n_bits
        p = self.pulse_rate * self.dt / 1000.0
        pulse = torch.rand(n, T, K, generator=generator) < p
        pulse[:, 0] = True
        sign = torch.where(torch.rand(n, T, K, generator=generator) < 0.5, -1.0, 1.0)
        pulses = pulse.float() * sign
        # the memory: the sign of the last pulse so far (carried forward step by step)
        targets = torch.empty(n, T, K)
        state = pulses[:, 0]
        for t in range(T):
            state = torch.where(pulse[:, t], sign[:, t], state)
            targets[:, t] = state
        inputs = pulses
        if self.sigma > 0:
            noise = torch.randn(n, T, K, generator=generator) * (self.sigma / self.dt ** 0.5)
            inputs = inputs + noise
        mask = torch.ones(n, T)
        mask[:, : int(round(self.settle / self.dt)) + 1] = 0.0
        bits = (targets[:, -1] > 0).long()
        labels = (bits * (2 ** torch.arange(K))).sum(-1)
        flips = (targets[:, 1:] != targets[:, :-1]).any(-1).sum(1)
        return TrialBatch(inputs, targets, mask, labels,
                          {"n_pulses": pulse.sum((1, 2)).long(), "n_flips": flips.long()})

    def accuracy(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """Per trial: every output has the sign of its target at every scored step."""
        check_outputs(outputs, batch, self.n_output)
        targets = batch.targets.to(outputs.device)
        scored = self._scored(targets)
        agree = ((outputs > 0) == (targets > 0)).all(-1)
        return (agree | ~scored).all(-1)
