"""Shared machinery of the built-in tasks: argument checks, trial timing and
the NeuroGym-style target encoding.

Every built-in task is a sequence of named *periods* (``fixation``,
``stimulus``, ..., ``decision``). A period lasts either a fixed time or a time
drawn per trial from a uniform range, both in milliseconds; the duration is
floored to a whole number of ``dt`` steps. Trials in a batch are padded to the
longest one; padded steps have zero inputs, zero targets and zero mask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor

from bionn.tasks.base import Task, TrialBatch

#: A period duration in ms: a fixed time, or ``(low, high)`` for a uniform draw per trial.
Duration = float | tuple[float, float]

_EPS = 1e-9


# --------------------------------------------------------------------------- checks
def check_real(name: str, value: object) -> float:
    """``value`` as a finite float, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def check_positive(name: str, value: object) -> float:
    """A finite float ``> 0``."""
    out = check_real(name, value)
    if out <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return out


def check_nonnegative(name: str, value: object) -> float:
    """A finite float ``>= 0``."""
    out = check_real(name, value)
    if out < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return out


def check_probability(name: str, value: object, *, open_interval: bool = False) -> float:
    """A float in ``[0, 1]`` (or ``(0, 1)`` with ``open_interval``)."""
    out = check_real(name, value)
    if open_interval and not 0.0 < out < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    if not 0.0 <= out <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return out


def check_int(name: str, value: object, minimum: int) -> int:
    """An integer ``>= minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_coherences(name: str, values: object) -> tuple[float, ...]:
    """A non-empty sequence of coherences, each in ``[0, 1]``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | Tensor):
        raise TypeError(f"{name} must be a non-empty sequence of floats in [0, 1], got {values!r}")
    vals = [v.item() for v in values] if isinstance(values, Tensor) else list(values)
    if len(vals) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of floats in [0, 1], got {values!r}")
    return tuple(check_probability(f"{name}[{i}]", v) for i, v in enumerate(vals))


def check_sample_args(batch_size: object, generator: object) -> int:
    """Validate the arguments of :meth:`Task.sample`."""
    n = check_int("batch_size", batch_size, 1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return n


def check_outputs(outputs: Tensor, batch: TrialBatch, n_output: int) -> None:
    """Raise a ValueError unless ``outputs`` is ``(batch, time, n_output)`` like ``batch``."""
    if not isinstance(outputs, Tensor):
        raise TypeError(f"outputs must be a torch.Tensor, got {type(outputs).__name__}")
    b, t = batch.mask.shape
    if outputs.shape != (b, t, n_output):
        raise ValueError(
            f"outputs must have shape (batch, time, n_output) = {(b, t, n_output)}, "
            f"got {tuple(outputs.shape)}"
        )


# --------------------------------------------------------------------------- timing
def _check_duration(name: str, value: object) -> tuple[float, float]:
    if isinstance(value, Real) and not isinstance(value, bool):
        v = check_nonnegative(name, value)
        return v, v
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 2:
        lo = check_nonnegative(f"{name}[0]", value[0])
        hi = check_nonnegative(f"{name}[1]", value[1])
        if hi < lo:
            raise ValueError(f"{name} = {tuple(value)!r}: the range (low, high) needs low <= high")
        return lo, hi
    raise TypeError(
        f"{name} must be a duration in ms (a number >= 0) or a (low, high) range, got {value!r}"
    )


def build_timing(
    defaults: Mapping[str, Duration],
    timing: Mapping[str, Duration] | None,
    dt: float,
    required: Sequence[str],
) -> dict[str, tuple[float, float]]:
    """Merge user ``timing`` into ``defaults`` and validate it.

    Returns ``{period: (low_ms, high_ms)}`` in trial order. Periods named in
    ``required`` must last at least one step (``low >= dt``).
    """
    if timing is None:
        timing = {}
    if not isinstance(timing, Mapping):
        raise TypeError(f"timing must be a dict of period -> duration in ms, got {timing!r}")
    unknown = [k for k in timing if k not in defaults]
    if unknown:
        raise ValueError(
            f"timing: unknown period {unknown[0]!r}; allowed periods: {', '.join(defaults)}"
        )
    out: dict[str, tuple[float, float]] = {}
    for period, default in defaults.items():
        value = timing.get(period, default)
        lo, hi = _check_duration(f"timing[{period!r}]", value)
        if period in required and math.floor(lo / dt + _EPS) < 1:
            raise ValueError(
                f"timing[{period!r}] = {value!r} ms is shorter than dt = {dt} ms; "
                f"the {period} period needs at least one time step"
            )
        out[period] = (lo, hi)
    return out


@dataclass
class Layout:
    """Per-trial period boundaries of one batch, in time steps.

    ``start[p]`` and ``end[p]`` are ``(batch,)`` long tensors; period ``p``
    covers steps ``start[p] <= t < end[p]``. ``length`` is the number of valid
    (unpadded) steps of each trial and ``n_steps`` the padded length.
    """

    start: dict[str, Tensor]
    end: dict[str, Tensor]
    length: Tensor
    n_steps: int

    def __post_init__(self) -> None:
        self.t = torch.arange(self.n_steps)

    def period(self, name: str) -> Tensor:
        """``(batch, time)`` bool: the steps inside period ``name``."""
        return (self.t >= self.start[name][:, None]) & (self.t < self.end[name][:, None])

    def span(self, first: str, last: str) -> Tensor:
        """``(batch, time)`` bool: from the start of ``first`` to the end of ``last``."""
        return (self.t >= self.start[first][:, None]) & (self.t < self.end[last][:, None])

    def valid(self) -> Tensor:
        """``(batch, time)`` bool: the unpadded steps."""
        return self.t < self.length[:, None]


def sample_layout(
    timing: Mapping[str, tuple[float, float]],
    dt: float,
    batch_size: int,
    generator: torch.Generator | None,
) -> Layout:
    """Draw the period durations of ``batch_size`` trials (uniform in each range,
    floored to whole ``dt`` steps) and lay the periods end to end."""
    start: dict[str, Tensor] = {}
    end: dict[str, Tensor] = {}
    cursor = torch.zeros(batch_size, dtype=torch.long)
    for period, (lo, hi) in timing.items():
        if hi > lo:
            ms = lo + (hi - lo) * torch.rand(batch_size, generator=generator, dtype=torch.float64)
        else:
            ms = torch.full((batch_size,), lo, dtype=torch.float64)
        steps = torch.floor(ms / dt + _EPS).long()
        start[period] = cursor
        cursor = cursor + steps
        end[period] = cursor
    n_steps = int(cursor.max())
    return Layout(start, end, cursor, n_steps)


def n_steps_range(timing: Mapping[str, tuple[float, float]], dt: float) -> tuple[int, int]:
    """Shortest and longest possible trial, in steps."""
    lo = sum(math.floor(a / dt + _EPS) for a, _ in timing.values())
    hi = sum(math.floor(b / dt + _EPS) for _, b in timing.values())
    return lo, hi


# --------------------------------------------------------------------------- base class
class PeriodTask(Task):
    """Base of the built-in tasks: a fixed sequence of periods ending with
    ``decision``; NeuroGym-style fixation/choice encoding.

    Subclasses define ``default_timing`` (ordered ``{period: Duration}``, last
    period ``"decision"``) and ``required_periods``.
    """

    default_timing: dict[str, Duration] = {}
    required_periods: tuple[str, ...] = ("decision",)

    def __init__(
        self,
        dt: float,
        timing: Mapping[str, Duration] | None,
        decision_weight: float,
    ) -> None:
        self.dt = check_positive("dt", dt)
        self.timing = build_timing(self.default_timing, timing, self.dt, self.required_periods)
        self.decision_weight = check_positive("decision_weight", decision_weight)

    # -- helpers for subclasses ------------------------------------------------
    def _layout(self, batch_size: int, generator: torch.Generator | None) -> Layout:
        return sample_layout(self.timing, self.dt, batch_size, generator)

    def _noise(
        self, shape: tuple[int, ...], sigma: float, generator: torch.Generator | None
    ) -> Tensor:
        """Gaussian noise with per-step std ``sigma / sqrt(dt)`` (dt in ms), so
        that the noise of the time integral does not depend on ``dt``."""
        if sigma == 0:
            return torch.zeros(shape)
        return torch.randn(shape, generator=generator) * (sigma / math.sqrt(self.dt))

    def _finish(
        self,
        layout: Layout,
        inputs: Tensor,
        labels: Tensor,
        info: dict[str, Tensor],
    ) -> TrialBatch:
        """Fill the fixation input, targets and mask; return the batch.

        * input 0 (fixation cue) = 1 before the decision period, 0 after;
        * targets: before the decision, channel 0 = 1 and the others 0; in the
          decision period the one-hot of ``labels`` (label 0 = keep fixating);
        * mask = 1 on valid steps, ``decision_weight`` in the decision period,
          0 on padding.
        """
        b, t = labels.shape[0], layout.n_steps
        valid = layout.valid()
        decision = layout.period("decision")
        pre = layout.t < layout.start["decision"][:, None]
        inputs[..., 0] = pre.float()
        inputs = inputs * valid[..., None]
        targets = torch.zeros(b, t, self.n_output)
        targets[..., 0] = pre.float()
        onehot = torch.nn.functional.one_hot(labels, self.n_output).float()
        targets = targets + decision[..., None].float() * onehot[:, None, :]
        mask = valid.float() + (self.decision_weight - 1.0) * decision.float()
        info = dict(info)
        info["decision_start"] = layout.start["decision"].clone()
        info["decision_end"] = layout.end["decision"].clone()
        info["trial_length"] = layout.length.clone()
        return TrialBatch(
            inputs.float().contiguous(),
            targets.contiguous(),
            mask.contiguous(),
            labels.long(),
            info,
        )

    def _decision_mean(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """``(batch, n_output)``: the output averaged over each trial's decision period."""
        check_outputs(outputs, batch, self.n_output)
        t = torch.arange(outputs.shape[1], device=outputs.device)
        start = batch.info["decision_start"].to(outputs.device)
        end = batch.info["decision_end"].to(outputs.device)
        w = ((t >= start[:, None]) & (t < end[:, None])).to(outputs.dtype)
        return (outputs * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)

    def accuracy(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """Correct iff the argmax over all output channels (fixation included) of
        the output averaged over the decision period equals ``batch.labels``."""
        return self._decision_mean(outputs, batch).argmax(-1) == batch.labels.to(outputs.device)

    def n_steps_range(self) -> tuple[int, int]:
        """Shortest and longest possible trial, in steps of ``dt``."""
        return n_steps_range(self.timing, self.dt)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dt={self.dt}, timing={self.timing})"
