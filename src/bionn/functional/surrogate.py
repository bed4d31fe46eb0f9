"""Spikes with surrogate gradients, and the reset after a spike.

A spike is the Heaviside step of the distance to threshold, ``s = H(x)`` with
``x = (V - V_th) / scale`` (``scale``: the threshold's distance from rest, or 1 mV). Its
derivative is zero almost everywhere, so training uses a *surrogate*: the forward pass
keeps the exact 0/1 spike and the backward pass uses a smooth pseudo-derivative
``ds/dx ~ sigma'(x)`` (Neftci, Mostafa & Zenke 2019). Every surrogate below peaks at
``x = 0``; its ``slope`` (or width) sets how far from threshold the gradient reaches.

| name | ``sigma'(x)`` | parameter (default) | reference |
|---|---|---|---|
| ``fast_sigmoid`` | ``1 / (1 + slope |x|)^2`` | slope 25 | SuperSpike (Zenke & Ganguli 2018); snnTorch ``fast_sigmoid``; Norse 1.1's ``super`` is slope 1 (its backward ignores its ``alpha``) |
| ``arctan`` | ``(alpha / 2) / (1 + (pi alpha x / 2)^2)`` | alpha 2 | snnTorch ``atan`` |
| ``triangle`` | ``gamma * max(0, 1 - |x| / width)`` | gamma 0.3, width 1 | piecewise linear (Bellec et al. 2018, 2020); Norse ``triangle`` (gamma = its alpha) |
| ``exponential`` | ``alpha * exp(-beta |x|)`` | alpha 1, beta 1 | SLAYER (Shrestha & Orchard 2018) |
| ``sigmoid`` | ``slope * sig(slope x) * (1 - sig(slope x))`` | slope 25 | snnTorch ``sigmoid`` |

bionn spikes at ``x >= 0``; snnTorch and Norse at ``x > 0`` (they differ only exactly at
threshold). ``tests/test_surrogate.py`` checks the gradients against both peers.

Where the choice matters: a steep surrogate (large slope, small width) is closer to the
true derivative but passes gradient only to neurons near threshold, so silent networks
stop learning; a wide one trains silent networks but biases the gradient. ``triangle``
with ``gamma = 0.3`` is the dampened pseudo-derivative of e-prop, whose learning signals
it multiplies into eligibility traces.

The reset after a spike (:func:`reset`) is by subtraction (``V - s * V_th``: keeps the
overshoot, as snnTorch's default) or to a value (``V_reset`` where ``s = 1``, as Brian2 and
Norse do); ``detach=True`` stops the gradient through the reset's dependence on the spike.
snnTorch and Norse both detach it by default: the reset's gradient otherwise flows back
against the surrogate's and slows learning (Zenke & Vogels 2021).

Example:
    >>> import torch
    >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    >>> s = spike(x, FastSigmoid(slope=2.0))
    >>> s.tolist()
    [0.0, 1.0, 1.0]
    >>> s.sum().backward()
    >>> [round(g, 4) for g in x.grad.tolist()]  # 1 / (1 + 2 |x|)^2
    [0.25, 1.0, 0.25]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "SURROGATES",
    "Arctan",
    "Exponential",
    "FastSigmoid",
    "Sigmoid",
    "Surrogate",
    "Triangle",
    "make_surrogate",
    "reset",
    "spike",
]


@dataclass(frozen=True)
class Surrogate:
    """A pseudo-derivative of the Heaviside spike: ``derivative(x)`` at the scaled
    distance to threshold ``x``. Call it on ``x`` to spike: ``surrogate(x) == spike(x, surrogate)``."""

    name = "surrogate"

    def derivative(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def derivative_(self, x: Tensor) -> Tensor:
        """:meth:`derivative` written into ``x`` (no temporary of ``x``'s size where the
        formula allows; used by fused loops on whole sequences). Returns ``x``."""
        return x.copy_(self.derivative(x))

    def __call__(self, x: Tensor) -> Tensor:
        return spike(x, self)


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """SuperSpike: ``1 / (1 + slope |x|)^2`` (Zenke & Ganguli 2018)."""

    slope: float = 25.0
    name = "fast_sigmoid"

    def derivative(self, x: Tensor) -> Tensor:
        return (x.abs() * self.slope + 1.0).pow(-2)

    def derivative_(self, x: Tensor) -> Tensor:
        x.abs_().mul_(self.slope).add_(1.0)
        return x.mul_(x).reciprocal_()


@dataclass(frozen=True)
class Arctan(Surrogate):
    """``(alpha / 2) / (1 + (pi alpha x / 2)^2)``, the derivative of
    ``arctan(pi alpha x / 2) / pi + 1/2``."""

    alpha: float = 2.0
    name = "arctan"

    def derivative(self, x: Tensor) -> Tensor:
        return (self.alpha / 2.0) / (1.0 + (x * (math.pi * self.alpha / 2.0)).pow(2))

    def derivative_(self, x: Tensor) -> Tensor:
        x.mul_(math.pi * self.alpha / 2.0)
        return x.mul_(x).add_(1.0).reciprocal_().mul_(self.alpha / 2.0)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Piecewise linear: ``gamma * max(0, 1 - |x| / width)`` (Bellec et al. 2018)."""

    gamma: float = 0.3
    width: float = 1.0
    name = "triangle"

    def derivative(self, x: Tensor) -> Tensor:
        return (1.0 - x.abs() / self.width).clamp_min(0.0) * self.gamma

    def derivative_(self, x: Tensor) -> Tensor:
        return x.abs_().div_(-self.width).add_(1.0).clamp_min_(0.0).mul_(self.gamma)


@dataclass(frozen=True)
class Exponential(Surrogate):
    """``alpha * exp(-beta |x|)`` (SLAYER's probability density, Shrestha & Orchard 2018)."""

    alpha: float = 1.0
    beta: float = 1.0
    name = "exponential"

    def derivative(self, x: Tensor) -> Tensor:
        return torch.exp(x.abs() * -self.beta) * self.alpha

    def derivative_(self, x: Tensor) -> Tensor:
        return x.abs_().mul_(-self.beta).exp_().mul_(self.alpha)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """The logistic's derivative: ``slope * sig(slope x) (1 - sig(slope x))``."""

    slope: float = 25.0
    name = "sigmoid"

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(x * self.slope)
        return s * (1.0 - s) * self.slope


#: surrogate name -> class (the names a config uses)
SURROGATES: dict[str, type[Surrogate]] = {
    c.name: c for c in (FastSigmoid, Arctan, Triangle, Exponential, Sigmoid)}


def make_surrogate(surrogate: str | Surrogate = "fast_sigmoid", **params: float) -> Surrogate:
    """A :class:`Surrogate` from its name and parameters (or one given as is).

    Example:
        >>> make_surrogate("triangle", gamma=0.5)
        Triangle(gamma=0.5, width=1.0)
    """
    if isinstance(surrogate, Surrogate):
        if params:
            raise ValueError("parameters are given with a surrogate name, not with a Surrogate")
        return surrogate
    cls = SURROGATES.get(surrogate)
    if cls is None:
        raise ValueError(f"unknown surrogate {surrogate!r}; allowed: {sorted(SURROGATES)}")
    try:
        made = cls(**params)
    except TypeError:
        fields = [f for f in cls.__dataclass_fields__]
        raise ValueError(f"surrogate {surrogate!r} takes {fields}; got {sorted(params)}") from None
    for k, v in params.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"surrogate {surrogate!r}: {k} must be a finite number > 0; got {v!r}")
    return made


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


def spike(x: Tensor, surrogate: Surrogate | str = "fast_sigmoid") -> Tensor:
    """``H(x)`` forward (1.0 where ``x >= 0``), ``surrogate.derivative(x)`` backward.

    Args:
        x: scaled distance to threshold, ``(V - V_th) / scale``, any shape.
        surrogate: a :class:`Surrogate` or its name (default parameters).

    Returns:
        spikes as 0.0/1.0 in ``x``'s dtype and shape.
    """
    if isinstance(surrogate, str):
        surrogate = make_surrogate(surrogate)
    if not torch.is_grad_enabled() or not x.requires_grad:
        return (x >= 0).to(x.dtype)
    return _Spike.apply(x, surrogate)


def reset(v: Tensor, s: Tensor, *, mode: Literal["subtract", "value", "none"] = "subtract",
          v_th: Tensor | float = 1.0, v_reset: Tensor | float = 0.0,
          detach: bool = True) -> Tensor:
    """The membrane potential after the spikes ``s`` (0/1, same shape as ``v``).

    ``subtract``: ``V - s (V_th - V_reset)`` (keeps the overshoot); ``value``:
    ``V (1 - s) + s V_reset``; ``none``: ``V``. With ``detach`` the reset does not carry
    gradient through ``s`` (the surrogate's gradient reaches ``V`` only through the
    spike's own use downstream).

    Example:
        >>> reset(torch.tensor([1.5, 0.25]), torch.tensor([1.0, 0.0]), mode="value").tolist()
        [0.0, 0.25]
    """
    if mode == "none":
        return v
    if detach:
        s = s.detach()
    if mode == "subtract":
        return v - s * (v_th - v_reset)
    if mode == "value":
        return torch.lerp(v, torch.as_tensor(v_reset, dtype=v.dtype, device=v.device).expand_as(v), s)
    raise ValueError(f"unknown reset mode {mode!r}; allowed: subtract, value, none")
