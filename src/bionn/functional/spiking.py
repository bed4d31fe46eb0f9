"""Fused step functions for integrate-and-fire neurons (the hot path).

Written with few passes over memory and without bool-to-float round trips:
at 40,000 neurons one elementwise pass costs a few microseconds, so the
number of passes is the cost.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_CONSTANTS: dict[tuple, Tensor] = {}


def _constant(value: float, like: Tensor) -> Tensor:
    """A cached 0-d tensor (no host-to-device copy per step on CUDA)."""
    key = (value, like.dtype, like.device)
    t = _CONSTANTS.get(key)
    if t is None:
        if len(_CONSTANTS) > 256:
            _CONSTANTS.clear()
        with torch.inference_mode(False):  # usable later under autograd too
            t = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return t


def lif_exact_step(v: Tensor, refractory: Tensor, current: Tensor | float, conductance: Tensor | float,
                   *, v_rest: float, v_reset: float, v_th: float, r: float, tau: float,
                   refractory_steps: int, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    """One exact LIF step under a drive constant over the step.

    ``tau dV/dt = -(V - v_rest) + r (current - conductance V)``: V relaxes to
    ``V_inf = (v_rest + r current) / (1 + r conductance)`` at rate
    ``(1 + r conductance) / tau``. V is held while ``refractory > 0``; at
    ``V >= v_th`` the neuron spikes, V is reset and ``refractory`` is set to
    ``refractory_steps``; ``refractory`` is a float count of steps left.
    Needs ``v_reset < v_th`` (a held neuron cannot cross threshold). Returns
    ``(v, refractory, spike)`` (new tensors; ``spike`` is bool).

    Example:
        >>> import torch
        >>> v, ref, s = lif_exact_step(torch.tensor([[19.9]]), torch.zeros(1, 1),
        ...     30.0, 0.0, v_rest=0., v_reset=-5., v_th=20., r=1., tau=10., refractory_steps=50, dt=0.1)
        >>> v.item(), ref.item(), s.item()
        (-5.0, 50.0, True)
    """
    if isinstance(conductance, float) and conductance == 0.0:
        decay: Tensor | float = math.exp(-dt / tau)
        if isinstance(current, float):
            new = v * decay + (v_rest + r * current) * (1.0 - decay)
        else:
            new = torch.lerp(torch.add(current * r if r != 1.0 else current, v_rest), v, decay)
    else:
        leak = conductance * r + 1.0 if r != 1.0 else conductance + 1.0
        if isinstance(current, float):
            v_inf = (r * current + v_rest) / leak
        else:
            v_inf = torch.add(current * r if r != 1.0 else current, v_rest)
            # in place only where the shapes agree: a (n,) current with a (batch, n)
            # conductance broadcasts to (batch, n)
            v_inf = v_inf.div_(leak) if v_inf.shape == leak.shape else v_inf / leak
        new = torch.lerp(v_inf, v, leak.mul_(-dt / tau).exp_())
    # Float arithmetic throughout: bool tensors and masked writes cost several
    # times more per element on CPU than a fused float op.
    if refractory_steps > 0:
        new = torch.lerp(new, v, refractory.clamp(0.0, 1.0))  # weight 1 returns v exactly
    fired = torch.ge(new, v_th, out=torch.empty_like(new))
    new = torch.lerp(new, _constant(v_reset, new), fired)
    if refractory_steps > 0:
        # A neuron that fires was not refractory (its count was 0): count - 1 clamps to 0.
        refractory = (refractory - 1.0).clamp_min_(0.0).add_(fired, alpha=float(refractory_steps))
    return new, refractory, fired.bool()
