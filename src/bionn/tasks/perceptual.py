"""Evidence-integration tasks: random-dots perceptual decision making and
context-dependent integration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from bionn.tasks._common import (
    Duration,
    PeriodTask,
    check_coherences,
    check_nonnegative,
    check_sample_args,
)
from bionn.tasks.base import TrialBatch

__all__ = ["PerceptualDecisionMaking", "ContextDependentIntegration"]


class _CoherenceTask(PeriodTask):
    """Shared constructor of the noisy-evidence tasks: stimulus strengths drawn
    from ``coherences`` (each in [0, 1]), Gaussian noise of std ``sigma / sqrt(dt)``."""

    def __init__(
        self,
        dt: float = 20.0,
        coherences: Sequence[float] = (0.064, 0.128, 0.256, 0.512),
        sigma: float = 1.0,
        timing: Mapping[str, Duration] | None = None,
        decision_weight: float = 1.0,
    ) -> None:
        super().__init__(dt, timing, decision_weight)
        self.coherences = check_coherences("coherences", coherences)
        self.sigma = check_nonnegative("sigma", sigma)


class PerceptualDecisionMaking(_CoherenceTask):
    r"""Two-alternative random-dots motion discrimination (Britten et al. 1992,
    J. Neurosci. 12:4745; Newsome et al. 1989), in NeuroGym's encoding.

    Trial: ``fixation`` (100 ms) -> ``stimulus`` (600-800 ms, uniform per trial)
    -> ``delay`` (0 ms by default) -> ``decision`` (300 ms).

    Inputs (``n_input = 3``):
        0. fixation cue: 1 before the decision period, 0 in it;
        1, 2. stimulus channels, during ``stimulus`` only:
           :math:`x_{1,2}(t) = (1 \pm c)/2 + \frac{\sigma}{\sqrt{dt}}\,\xi_{1,2}(t)`,
           :math:`\xi \sim \mathcal N(0, 1)`, with signed coherence ``c``
           (``c > 0`` favours choice 1). The noise of :math:`\int x\,dt` does
           not depend on ``dt``: an ideal observer that integrates
           :math:`x_1 - x_2` over a stimulus of duration ``T`` ms is correct
           with probability :math:`\Phi(|c|\sqrt{T}/(\sqrt2\,\sigma))`.

    Outputs (``n_output = 3``): 0 fixation, 1 choice 1, 2 choice 2.
    Targets: channel 0 = 1 and choices 0 before the decision; in the decision
    period the one-hot of the label. ``labels`` is 1 if channel 1 carries the
    larger mean, else 2 (random when ``|c| = 0``).

    ``mask``: 1 on valid steps, ``decision_weight`` in the decision period, 0 on
    padding. ``info``: ``coherence`` (signed, float), ``decision_start``,
    ``decision_end``, ``trial_length`` (steps, long).

    Accuracy: correct iff the argmax over the three output channels of the
    output averaged over the decision period is the label.

    With the defaults (coherences 6.4-51.2 %, ``sigma = 1``, 600-800 ms
    stimulus) the ideal observer scores about 97 %.

    Args:
        dt: time step in ms.
        coherences: coherence magnitudes in ``[0, 1]``, drawn uniformly per trial;
            the sign (which channel wins) is drawn independently.
        sigma: noise scale (per-step std ``sigma / sqrt(dt)``).
        timing: per-period durations in ms overriding the defaults, each a
            number or a ``(low, high)`` uniform range; periods ``fixation``,
            ``stimulus``, ``delay``, ``decision``.
        decision_weight: mask weight of the decision period.

    Example:
        >>> import torch
        >>> task = PerceptualDecisionMaking(dt=20)
        >>> batch = task.sample(16, torch.Generator().manual_seed(0))
        >>> batch.inputs.shape[0], batch.inputs.shape[2], batch.targets.shape[2]
        (16, 3, 3)
        >>> bool(task.accuracy(batch.targets, batch).all())
        True
    """

    name = "perceptual_decision_making"
    n_input = 3
    n_output = 3
    input_names = ("fixation", "stimulus 1", "stimulus 2")
    output_names = ("fixation", "choice 1", "choice 2")
    default_timing: dict[str, Duration] = {
        "fixation": 100.0,
        "stimulus": (600.0, 800.0),
        "delay": 0.0,
        "decision": 300.0,
    }
    required_periods = ("stimulus", "decision")

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        lay = self._layout(b, generator)
        cohs = torch.tensor(self.coherences)
        coh = cohs[torch.randint(len(cohs), (b,), generator=generator)]
        choice = torch.randint(2, (b,), generator=generator)
        signed = (1 - 2 * choice).float() * coh
        stim = lay.period("stimulus").float()[..., None]
        means = torch.stack([(1 + signed) / 2, (1 - signed) / 2], -1)[:, None, :]
        noise = self._noise((b, lay.n_steps, 2), self.sigma, generator)
        inputs = torch.zeros(b, lay.n_steps, self.n_input)
        inputs[..., 1:3] = stim * (means + noise)
        return self._finish(lay, inputs, 1 + choice, {"coherence": signed})


class ContextDependentIntegration(_CoherenceTask):
    r"""Context-dependent integration of motion or colour (Mante, Sussillo,
    Shenoy & Newsome 2013, Nature 503:78).

    Each trial shows two noisy evidence streams at once, motion and colour,
    each with its own signed coherence, plus a context cue saying which one to
    report. Trial: ``fixation`` (100 ms) -> ``stimulus`` (750 ms) -> ``delay``
    (0 ms) -> ``decision`` (300 ms).

    Inputs (``n_input = 7``):
        0. fixation cue (1 before the decision, 0 in it);
        1, 2. motion pair :math:`(1 \pm c_m)/2 + \frac{\sigma}{\sqrt{dt}}\xi`,
           during ``stimulus``;
        3, 4. colour pair :math:`(1 \pm c_c)/2 + \frac{\sigma}{\sqrt{dt}}\xi`,
           during ``stimulus``;
        5, 6. context cue, one-hot (5 = motion, 6 = colour), on for the whole trial.

    Outputs (``n_output = 3``): 0 fixation, 1 choice 1 (cued coherence > 0),
    2 choice 2 (cued coherence < 0). Targets as in
    :class:`PerceptualDecisionMaking`. The two coherences and their signs are
    drawn independently, so the irrelevant modality agrees with the relevant
    one on half of the trials.

    ``info``: ``coherence_motion``, ``coherence_color`` (signed floats),
    ``context`` (long, 0 = motion, 1 = colour), plus ``decision_start``,
    ``decision_end``, ``trial_length``.

    Accuracy: argmax over all outputs of the decision-period mean == label.

    Args:
        dt: time step in ms.
        coherences: coherence magnitudes in ``[0, 1]`` for both modalities.
        sigma: noise scale (per-step std ``sigma / sqrt(dt)``).
        timing: overrides for ``fixation``, ``stimulus``, ``delay``, ``decision`` (ms).
        decision_weight: mask weight of the decision period.

    Example:
        >>> import torch
        >>> task = ContextDependentIntegration(dt=20)
        >>> batch = task.sample(8, torch.Generator().manual_seed(0))
        >>> tuple(batch.inputs.shape)
        (8, 57, 7)
        >>> batch.info["context"].shape
        torch.Size([8])
    """

    name = "context_dependent_integration"
    n_input = 7
    n_output = 3
    input_names = ("fixation", "motion 1", "motion 2", "colour 1", "colour 2",
                   "context: motion", "context: colour")
    output_names = ("fixation", "choice 1", "choice 2")
    default_timing: dict[str, Duration] = {
        "fixation": 100.0,
        "stimulus": 750.0,
        "delay": 0.0,
        "decision": 300.0,
    }
    required_periods = ("stimulus", "decision")

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        lay = self._layout(b, generator)
        cohs = torch.tensor(self.coherences)
        mag = cohs[torch.randint(len(cohs), (b, 2), generator=generator)]
        choice = torch.randint(2, (b, 2), generator=generator)  # per modality
        signed = (1 - 2 * choice).float() * mag  # (b, 2): motion, colour
        context = torch.randint(2, (b,), generator=generator)
        stim = lay.period("stimulus").float()[..., None]
        means = torch.stack(
            [
                (1 + signed[:, 0]) / 2,
                (1 - signed[:, 0]) / 2,
                (1 + signed[:, 1]) / 2,
                (1 - signed[:, 1]) / 2,
            ],
            -1,
        )[:, None, :]
        noise = self._noise((b, lay.n_steps, 4), self.sigma, generator)
        inputs = torch.zeros(b, lay.n_steps, self.n_input)
        inputs[..., 1:5] = stim * (means + noise)
        inputs[..., 5:7] = torch.nn.functional.one_hot(context, 2).float()[:, None, :]
        labels = 1 + choice.gather(1, context[:, None]).squeeze(1)
        info = {
            "coherence_motion": signed[:, 0].clone(),
            "coherence_color": signed[:, 1].clone(),
            "context": context,
        }
        return self._finish(lay, inputs, labels, info)
