"""The shared task interface: every task yields batch-first trials.

A task draws a :class:`TrialBatch` of ``(inputs, targets, mask)`` tensors shaped
``(batch, time, ...)`` and scores a network's outputs per trial with
:meth:`Task.accuracy`. Time is in milliseconds; ``dt`` sets the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class TrialBatch:
    """One batch of trials, batch-first.

    Attributes:
        inputs: ``(batch, time, n_input)`` float inputs.
        targets: ``(batch, time, n_output)`` float targets (for an MSE loss).
        mask: ``(batch, time)`` float weight of each time step in the loss
            (0 where the output is not scored, e.g. padding after a short trial).
        labels: ``(batch,)`` long ground-truth response per trial, the index of
            the correct output channel (tasks define what each index means).
        info: per-trial conditions (coherence, context, ...) as tensors of
            shape ``(batch,)``, for analysis and psychometric curves.
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor
    labels: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> TrialBatch:
        """Return a copy with every tensor on ``device``."""
        return TrialBatch(
            self.inputs.to(device),
            self.targets.to(device),
            self.mask.to(device),
            self.labels.to(device),
            {k: v.to(device) for k, v in self.info.items()},
        )

    def __len__(self) -> int:
        return self.inputs.shape[0]


class Task:
    """Base class of cognitive tasks.

    Subclasses set ``n_input``, ``n_output`` and ``dt`` (ms) and implement
    :meth:`sample` and :meth:`accuracy`. Sampling takes an explicit
    ``torch.Generator`` so that trials are reproducible under a seed and
    independent of the global RNG.
    """

    name: str = "task"
    n_input: int
    n_output: int
    dt: float
    #: a name per input / output channel (e.g. ``("fixation", "choice 1", "choice 2")``),
    #: used to label figures; None when the task has no names for them
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` independent trials."""
        raise NotImplementedError

    def accuracy(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """Per-trial correctness, a ``(batch,)`` bool tensor, from ``outputs``
        shaped ``(batch, time, n_output)``."""
        raise NotImplementedError

    def measures(self, outputs: Tensor, batch: TrialBatch) -> dict[str, Tensor]:
        """Further per-trial measures, ``name -> (batch,)`` float tensors, that a run
        averages into its evaluation metrics as ``eval_<name>`` (e.g. a reaching task's
        angular ``error`` in degrees). None by default."""
        return {}
