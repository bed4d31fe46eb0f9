r"""The evidence (cue) accumulation task of Bellec et al. 2020, with spike inputs."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bionn.tasks._common import (
    Duration,
    check_int,
    check_nonnegative,
    check_outputs,
    check_positive,
    check_probability,
    check_sample_args,
)
from bionn.tasks.base import Task, TrialBatch
from bionn.tasks.encoders import poisson_spikes

__all__ = ["EvidenceAccumulation"]

_EPS = 1e-9


class EvidenceAccumulation(Task):
    r"""Evidence (cue) accumulation with Poisson spike inputs (Bellec et al. 2020,
    Nat. Commun. 11:3625, Fig. 3; after the mouse task of Morcos & Harvey 2016).

    A trial shows ``n_cues`` (7) cues, each on the left or the right, then a delay, then a
    recall cue; the network must report the side that had more cues, during the recall cue.

    Timeline (defaults, ms; ``dt`` = 1 ms): cue ``k = 0..6`` is on during
    :math:`[s + k\,T_c,\ s + k\,T_c + d_c)` with cue spacing :math:`T_c` = ``cue_interval`` =
    150, cue duration :math:`d_c` = ``cue_duration`` = 100 and a leading silence
    :math:`s = T_c - d_c` = 50 (so a 50 ms gap precedes every cue); the cue period ends at
    :math:`n_{cues} T_c` = 1050, the ``delay`` lasts 1050 and the recall cue
    ``recall_duration`` = 150, so a trial lasts 2250 ms (the authors' code:
    ``seq_len = 7 * 150 + 1200``). A ``(low, high)`` delay is drawn per trial; shorter trials
    are padded at the end (zero inputs, targets and mask).

    Inputs (``n_input = 4 * population``, 40 by default), four populations of ``population``
    (10) neurons, in this order: left cue, right cue, recall cue, noise. Each neuron fires
    Poisson spikes (Bernoulli with :math:`p = r\,dt/1000` per step): the left (right)
    population at ``rate`` = 40 Hz while a left (right) cue is on, the recall population at
    40 Hz during the recall cue, the noise population at ``noise_rate`` = 10 Hz for the whole
    trial (``rate / 4`` in the authors' code); silent otherwise.

    Cues: per trial a favoured side is drawn (left or right, 1/2 each), and each cue falls on
    it with probability ``p_favoured`` = 0.7 (the authors' ``p_group = 0.3`` for the other
    side), independently. ``labels``: 0 = left, 1 = right, the side with more cues
    (``n_cues`` is odd, so there is no tie).

    Outputs (``n_output = 2``): 0 = left, 1 = right. ``targets``: the one-hot label during the
    recall cue, 0 elsewhere. ``mask``: 1 during the recall cue only (the authors' loss reads
    the output in the last 150 ms), 0 elsewhere. ``info``: ``n_left``, ``n_right`` (long),
    ``evidence`` = ``n_right - n_left`` (float), ``favoured`` (0/1), and ``decision_start``,
    ``decision_end`` (the recall period, steps), ``trial_length`` (steps).

    Accuracy: correct iff the argmax of the output averaged over the recall period is the
    label (the authors' rule).

    Args:
        dt: time step in ms (the paper's 1 ms); every duration must be a whole number of steps
            or it is floored.
        n_cues: number of cues, odd (7).
        cue_duration: ms a cue is on (100).
        cue_interval: ms from one cue onset to the next (150); ``>= cue_duration``.
        delay: ms from the end of the cue period to the recall cue (1050), or a
            ``(low, high)`` range drawn per trial.
        recall_duration: ms of the recall cue, the scored period (150).
        rate: Hz of the cue and recall populations when on (40).
        noise_rate: Hz of the noise population (10).
        population: neurons per population (10).
        p_favoured: probability that a cue falls on the trial's favoured side, in [0.5, 1].

    Example:
        >>> import torch
        >>> task = EvidenceAccumulation()
        >>> batch = task.sample(4, torch.Generator().manual_seed(0))
        >>> tuple(batch.inputs.shape), task.n_input, task.n_output
        ((4, 2250, 40), 40, 2)
        >>> bool(((batch.info["n_right"] > batch.info["n_left"]).long() == batch.labels).all())
        True
        >>> bool(task.accuracy(batch.targets, batch).all())
        True
    """

    name = "evidence_accumulation"
    n_output = 2
    output_names = ("left", "right")

    def __init__(
        self,
        dt: float = 1.0,
        n_cues: int = 7,
        cue_duration: float = 100.0,
        cue_interval: float = 150.0,
        delay: Duration = 1050.0,
        recall_duration: float = 150.0,
        rate: float = 40.0,
        noise_rate: float = 10.0,
        population: int = 10,
        p_favoured: float = 0.7,
    ) -> None:
        self.dt = check_positive("dt", dt)
        self.n_cues = check_int("n_cues", n_cues, 1)
        if self.n_cues % 2 == 0:
            raise ValueError(f"n_cues must be odd (so that one side has more cues), got {n_cues}")
        self.cue_duration = check_positive("cue_duration", cue_duration)
        self.cue_interval = check_positive("cue_interval", cue_interval)
        if self.cue_interval < self.cue_duration:
            raise ValueError(
                f"cue_interval ({cue_interval} ms, onset to onset) must be >= cue_duration "
                f"({cue_duration} ms)"
            )
        if isinstance(delay, (tuple, list)):
            if len(delay) != 2:
                raise ValueError(f"delay must be a duration in ms or a (low, high) range, got {delay!r}")
            lo = check_nonnegative("delay[0]", delay[0])
            hi = check_nonnegative("delay[1]", delay[1])
            if hi < lo:
                raise ValueError(f"delay = {tuple(delay)!r}: the range (low, high) needs low <= high")
            self.delay: tuple[float, float] = (lo, hi)
        else:
            d = check_nonnegative("delay", delay)
            self.delay = (d, d)
        self.recall_duration = check_positive("recall_duration", recall_duration)
        self.rate = check_nonnegative("rate", rate)
        self.noise_rate = check_nonnegative("noise_rate", noise_rate)
        for arg, value in (("rate", self.rate), ("noise_rate", self.noise_rate)):
            if value * self.dt / 1000.0 > 1.0:
                raise ValueError(
                    f"{arg} * dt / 1000 must be <= 1 (at most one spike per step), got "
                    f"{arg} = {value} Hz with dt = {self.dt} ms"
                )
        self.population = check_int("population", population, 1)
        self.p_favoured = check_probability("p_favoured", p_favoured)
        if self.p_favoured < 0.5:
            raise ValueError(f"p_favoured must be in [0.5, 1], got {p_favoured!r}")
        self.n_input = 4 * self.population
        self.input_names = tuple(
            f"{group} {i + 1}"
            for group in ("left", "right", "recall", "noise")
            for i in range(self.population)
        )
        for arg, ms in (("cue_duration", self.cue_duration), ("recall_duration", self.recall_duration)):
            if self._steps(ms) < 1:
                raise ValueError(f"{arg} = {ms} ms is shorter than dt = {self.dt} ms")

    def _steps(self, ms: float | Tensor) -> int:
        return math.floor(float(ms) / self.dt + _EPS)

    def n_steps_range(self) -> tuple[int, int]:
        """Shortest and longest possible trial, in steps of ``dt``."""
        base = self._steps(self.n_cues * self.cue_interval) + self._steps(self.recall_duration)
        return base + self._steps(self.delay[0]), base + self._steps(self.delay[1])

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        favoured = torch.randint(2, (b,), generator=generator)
        other = torch.rand(b, self.n_cues, generator=generator) >= self.p_favoured
        sides = torch.where(other, 1 - favoured[:, None], favoured[:, None])  # (b, n_cues)
        lo, hi = self.delay
        if hi > lo:
            ms = lo + (hi - lo) * torch.rand(b, generator=generator, dtype=torch.float64)
        else:
            ms = torch.full((b,), lo, dtype=torch.float64)
        delay_steps = torch.floor(ms / self.dt + _EPS).long()
        cue_end = self._steps(self.n_cues * self.cue_interval)
        recall_start = cue_end + delay_steps
        length = recall_start + self._steps(self.recall_duration)
        n_steps = int(length.max())
        t = torch.arange(n_steps)

        rates = torch.zeros(b, n_steps, 4)
        silence = self.cue_interval - self.cue_duration
        for k in range(self.n_cues):
            on = self._steps(silence + k * self.cue_interval)
            off = on + self._steps(self.cue_duration)
            rates[torch.arange(b), on:off, sides[:, k]] = self.rate
        recall = (t >= recall_start[:, None]) & (t < length[:, None])
        valid = t < length[:, None]
        rates[..., 2] = recall.float() * self.rate
        rates[..., 3] = valid.float() * self.noise_rate
        rates = rates.repeat_interleave(self.population, dim=-1)
        inputs = poisson_spikes(rates, self.dt, generator)

        n_right = sides.sum(1)
        n_left = self.n_cues - n_right
        labels = (n_right > n_left).long()
        onehot = torch.nn.functional.one_hot(labels, 2).float()
        targets = recall.float()[..., None] * onehot[:, None, :]
        info = {
            "n_left": n_left,
            "n_right": n_right,
            "evidence": (n_right - n_left).float(),
            "favoured": favoured,
            "decision_start": recall_start,
            "decision_end": length.clone(),
            "trial_length": length,
        }
        return TrialBatch(inputs.contiguous(), targets.contiguous(), recall.float(), labels, info)

    def _decision_mean(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """``(batch, n_output)``: the output averaged over each trial's recall period."""
        check_outputs(outputs, batch, self.n_output)
        t = torch.arange(outputs.shape[1], device=outputs.device)
        start = batch.info["decision_start"].to(outputs.device)
        end = batch.info["decision_end"].to(outputs.device)
        w = ((t >= start[:, None]) & (t < end[:, None])).to(outputs.dtype)
        return (outputs * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)

    def accuracy(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """Correct iff the argmax of the output averaged over the recall period is the label."""
        return self._decision_mean(outputs, batch).argmax(-1) == batch.labels.to(outputs.device)

    def __repr__(self) -> str:
        return (
            f"EvidenceAccumulation(dt={self.dt}, n_cues={self.n_cues}, delay={self.delay}, "
            f"rate={self.rate}, noise_rate={self.noise_rate}, population={self.population})"
        )
