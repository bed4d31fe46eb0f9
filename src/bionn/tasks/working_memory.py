"""Working-memory tasks: delayed match-to-sample and parametric working memory
(Romo's vibrotactile frequency comparison)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from bionn.tasks._common import (
    Duration,
    PeriodTask,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    check_sample_args,
)
from bionn.tasks.base import TrialBatch

__all__ = ["DelayedMatchToSample", "ParametricWorkingMemory"]


class DelayedMatchToSample(PeriodTask):
    r"""Delayed match-to-sample with discrete stimuli (Miller, Erickson &
    Desimone 1996, J. Neurosci. 16:5154; NeuroGym ``DelayMatchSample``).

    Trial: ``fixation`` (100 ms) -> ``sample`` (300 ms) -> ``delay``
    (200-600 ms, uniform) -> ``test`` (300 ms) -> ``decision`` (300 ms).

    Stimuli are ``n_stimuli`` discrete, mutually orthogonal patterns: stimulus
    ``k`` is the one-hot vector on input channel ``1 + k``. The sample is drawn
    uniformly; with probability ``match_probability`` the test equals the
    sample, otherwise it is drawn uniformly from the other ``n_stimuli - 1``.

    Inputs (``n_input = 1 + n_stimuli``): 0 fixation cue (1 until the decision
    period), ``1..n_stimuli`` the stimulus, on during ``sample`` and ``test``
    only, plus noise :math:`\frac{\sigma}{\sqrt{dt}}\xi` on the stimulus
    channels over the whole trial when ``sigma > 0``.

    Outputs (``n_output = 3``): 0 fixation, 1 match, 2 non-match.
    ``labels`` = 1 on match trials, 2 on non-match trials. Targets: fixation
    channel 1 until the decision, then the one-hot of the label.

    ``info``: ``sample``, ``test`` (stimulus indices, long), ``match`` (long,
    1 = match), plus ``decision_start``, ``decision_end``, ``trial_length``.

    Accuracy: argmax over all outputs of the decision-period mean == label.

    Args:
        dt: time step in ms.
        n_stimuli: number of distinct stimuli (>= 2).
        match_probability: probability of a match trial, in (0, 1).
        sigma: input noise scale (0 = noiseless).
        timing: overrides for ``fixation``, ``sample``, ``delay``, ``test``,
            ``decision`` (ms).
        decision_weight: mask weight of the decision period.

    Example:
        >>> import torch
        >>> task = DelayedMatchToSample(dt=20)
        >>> batch = task.sample(8, torch.Generator().manual_seed(0))
        >>> batch.inputs.shape[2], batch.targets.shape[2]
        (5, 3)
        >>> bool(((batch.labels == 1) == (batch.info["sample"] == batch.info["test"])).all())
        True
    """

    name = "delayed_match_to_sample"
    n_output = 3
    output_names = ("fixation", "match", "non-match")
    default_timing: dict[str, Duration] = {
        "fixation": 100.0,
        "sample": 300.0,
        "delay": (200.0, 600.0),
        "test": 300.0,
        "decision": 300.0,
    }
    required_periods = ("sample", "test", "decision")

    def __init__(
        self,
        dt: float = 20.0,
        n_stimuli: int = 4,
        match_probability: float = 0.5,
        sigma: float = 0.0,
        timing: Mapping[str, Duration] | None = None,
        decision_weight: float = 1.0,
    ) -> None:
        super().__init__(dt, timing, decision_weight)
        self.n_stimuli = check_int("n_stimuli", n_stimuli, 2)
        self.match_probability = check_probability(
            "match_probability", match_probability, open_interval=True
        )
        self.sigma = check_nonnegative("sigma", sigma)
        self.n_input = 1 + self.n_stimuli
        self.input_names = ("fixation", *(f"stimulus {k}" for k in range(self.n_stimuli)))

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        lay = self._layout(b, generator)
        n = self.n_stimuli
        sample = torch.randint(n, (b,), generator=generator)
        match = (torch.rand(b, generator=generator) < self.match_probability).long()
        offset = 1 + torch.randint(n - 1, (b,), generator=generator)  # non-match shift
        test = torch.where(match.bool(), sample, (sample + offset) % n)
        onehot = torch.nn.functional.one_hot
        stim = lay.period("sample").float()[..., None] * onehot(sample, n).float()[:, None, :]
        stim = stim + lay.period("test").float()[..., None] * onehot(test, n).float()[:, None, :]
        inputs = torch.zeros(b, lay.n_steps, self.n_input)
        inputs[..., 1:] = stim + self._noise((b, lay.n_steps, n), self.sigma, generator)
        labels = torch.where(match.bool(), 1, 2)
        return self._finish(lay, inputs, labels, {"sample": sample, "test": test, "match": match})


#: Romo et al. (1999) frequency pairs (f1, f2) in Hz, as used by Song et al. (2016).
ROMO_PAIRS: tuple[tuple[float, float], ...] = (
    (18.0, 10.0),
    (22.0, 14.0),
    (26.0, 18.0),
    (30.0, 22.0),
    (34.0, 26.0),
    (10.0, 18.0),
    (14.0, 22.0),
    (18.0, 26.0),
    (22.0, 30.0),
    (26.0, 34.0),
)


class ParametricWorkingMemory(PeriodTask):
    r"""Parametric working memory: vibrotactile frequency comparison (Romo,
    Brody, Hernández & Lemus 1999, Nature 399:470; RNN version Song, Yang &
    Wang 2016).

    Trial: ``fixation`` (100 ms) -> ``f1`` (500 ms) -> ``delay`` (1000 ms)
    -> ``f2`` (500 ms) -> ``decision`` (300 ms).

    A pair ``(f1, f2)`` in Hz is drawn uniformly from ``pairs`` (default: the
    ten Romo pairs, 10-34 Hz, ``f1 - f2 = ±8``). A frequency is encoded by a
    positive amplitude on one input channel,
    :math:`a(f) = 0.2 + 0.8\,(f - f_{min})/(f_{max} - f_{min})`, with
    :math:`f_{min}, f_{max}` the smallest and largest frequency in ``pairs``
    (so ``a`` is in ``[0.2, 1]`` and never confused with "no stimulus").

    Inputs (``n_input = 2``): 0 fixation cue (1 until the decision period),
    1 the amplitude, ``a(f1)`` during ``f1`` and ``a(f2)`` during ``f2``, plus
    noise :math:`\frac{\sigma}{\sqrt{dt}}\xi` over the whole trial if ``sigma > 0``.

    Outputs (``n_output = 3``): 0 fixation, 1 "f1 > f2", 2 "f1 < f2".
    ``labels`` = 1 if f1 > f2 else 2.

    ``info``: ``f1``, ``f2`` (Hz, float), plus ``decision_start``,
    ``decision_end``, ``trial_length``.

    Accuracy: argmax over all outputs of the decision-period mean == label.

    Args:
        dt: time step in ms.
        pairs: ``(f1, f2)`` pairs in Hz, ``f1 != f2``, both > 0.
        sigma: input noise scale (0 = noiseless).
        timing: overrides for ``fixation``, ``f1``, ``delay``, ``f2``,
            ``decision`` (ms).
        decision_weight: mask weight of the decision period.

    Example:
        >>> import torch
        >>> task = ParametricWorkingMemory(dt=20)
        >>> batch = task.sample(8, torch.Generator().manual_seed(0))
        >>> tuple(batch.inputs.shape)
        (8, 120, 2)
        >>> bool(((batch.labels == 1) == (batch.info["f1"] > batch.info["f2"])).all())
        True
    """

    name = "parametric_working_memory"
    n_input = 2
    n_output = 3
    input_names = ("fixation", "frequency")
    output_names = ("fixation", "f1 > f2", "f1 < f2")
    default_timing: dict[str, Duration] = {
        "fixation": 100.0,
        "f1": 500.0,
        "delay": 1000.0,
        "f2": 500.0,
        "decision": 300.0,
    }
    required_periods = ("f1", "f2", "decision")

    def __init__(
        self,
        dt: float = 20.0,
        pairs: Sequence[tuple[float, float]] = ROMO_PAIRS,
        sigma: float = 0.0,
        timing: Mapping[str, Duration] | None = None,
        decision_weight: float = 1.0,
    ) -> None:
        super().__init__(dt, timing, decision_weight)
        self.pairs = self._check_pairs(pairs)
        self.sigma = check_nonnegative("sigma", sigma)
        freqs = [f for pair in self.pairs for f in pair]
        self.f_min, self.f_max = min(freqs), max(freqs)

    @staticmethod
    def _check_pairs(pairs: object) -> tuple[tuple[float, float], ...]:
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or len(pairs) == 0:
            raise ValueError(f"pairs must be a non-empty sequence of (f1, f2) in Hz, got {pairs!r}")
        out = []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, Sequence) or len(pair) != 2:
                raise ValueError(f"pairs[{i}] must be a pair (f1, f2) in Hz, got {pair!r}")
            f1 = check_positive(f"pairs[{i}][0]", pair[0])
            f2 = check_positive(f"pairs[{i}][1]", pair[1])
            if f1 == f2:
                raise ValueError(f"pairs[{i}] = {tuple(pair)!r}: f1 and f2 must differ")
            out.append((f1, f2))
        return tuple(out)

    def amplitude(self, f: torch.Tensor) -> torch.Tensor:
        """Input amplitude ``a(f) = 0.2 + 0.8 (f - f_min) / (f_max - f_min)``."""
        return 0.2 + 0.8 * (f - self.f_min) / (self.f_max - self.f_min)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        lay = self._layout(b, generator)
        pairs = torch.tensor(self.pairs, dtype=torch.float32)
        f1, f2 = pairs[torch.randint(len(pairs), (b,), generator=generator)].unbind(-1)
        inputs = torch.zeros(b, lay.n_steps, self.n_input)
        inputs[..., 1] = (
            lay.period("f1").float() * self.amplitude(f1)[:, None]
            + lay.period("f2").float() * self.amplitude(f2)[:, None]
            + self._noise((b, lay.n_steps), self.sigma, generator)
        )
        labels = torch.where(f1 > f2, 1, 2)
        return self._finish(lay, inputs, labels, {"f1": f1.clone(), "f2": f2.clone()})
