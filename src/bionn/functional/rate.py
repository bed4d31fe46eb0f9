"""Pure rate dynamics: activations and the continuous-time RNN step.

The CTRNN obeys ``tau dh/dt = -h + W_rec r + W_in x + b``, ``r = f(h)``; its
Euler step with ``alpha = dt / tau`` is

    h_t = (1 - alpha) h_{t-1} + alpha (W_rec r_{t-1} + W_in x_t + b) + sqrt(2 alpha) sigma xi_t
    r_t = f(h_t) + sigma_post xi'_t

The pre-activation noise ``sqrt(2 alpha) sigma xi`` is the Euler-Maruyama step of
``tau dh = ... dt + sqrt(2 tau) sigma dW``, so the stationary variance of ``h``
it causes does not depend on ``dt`` (Song et al. 2016; PsychRNN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


def retanh(x: Tensor) -> Tensor:
    """Rectified tanh, ``max(tanh(x), 0)``."""
    return torch.tanh(x).clamp_min(0.0)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "retanh": retanh,
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation function registered under ``name``."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {name!r}") from None


class RateState(NamedTuple):
    """State of a rate network: ``h`` the pre-activation ("membrane") variable and
    ``r`` the rate seen by the recurrent synapses, both ``(batch, N)``."""

    h: Tensor
    r: Tensor


def leaky_update(
    h: Tensor,
    syn: Tensor,
    alpha: Tensor | float,
    activation: Callable[[Tensor], Tensor],
    pre_noise: Tensor | None = None,
    post_noise: Tensor | None = None,
) -> RateState:
    """The leaky rate update every rate model uses (one implementation).

    ``h' = (1 - alpha) h + alpha syn + pre_noise``, ``r' = f(h') + post_noise``,
    with ``syn`` the total synaptic input (recurrent, feedforward and bias) and
    ``alpha = dt / tau`` broadcast against ``h``.

    Example:
        >>> import torch
        >>> s = leaky_update(torch.zeros(1, 2), torch.ones(1, 2), 0.25, torch.relu)
        >>> s.h.tolist(), s.r.tolist()
        ([[0.25, 0.25]], [[0.25, 0.25]])
    """
    h = torch.lerp(h, syn, alpha) if isinstance(alpha, Tensor) else (1.0 - alpha) * h + alpha * syn
    if pre_noise is not None:
        h = h + pre_noise
    r = activation(h)
    if post_noise is not None:
        r = r + post_noise
    return RateState(h, r)


def ctrnn_step(
    state: RateState,
    drive: Tensor,
    w_rec: Tensor,
    alpha: Tensor | float,
    activation: Callable[[Tensor], Tensor],
    pre_noise: Tensor | None = None,
    post_noise: Tensor | None = None,
) -> tuple[Tensor, RateState]:
    """One Euler step of a CTRNN.

    Args:
        state: previous :class:`RateState`.
        drive: ``(batch, N)`` feedforward drive ``W_in x_t + b``.
        w_rec: ``(N, N)`` recurrent weight, ``(post, pre)``.
        alpha: ``dt / tau``, a number or an ``(N,)`` tensor.
        activation: rate function ``f``.
        pre_noise: ``(batch, N)`` noise added to ``h`` (already scaled, e.g.
            ``sqrt(2 alpha) sigma xi``), or None.
        post_noise: ``(batch, N)`` noise added to ``r``, or None.

    Returns:
        ``(r_t, new_state)``.

    Example:
        >>> import torch
        >>> s = RateState(torch.zeros(2, 3), torch.zeros(2, 3))
        >>> r, s = ctrnn_step(s, torch.ones(2, 3), torch.eye(3), 0.1, torch.relu)
        >>> r[0, 0].item()
        0.10000000149011612
    """
    new = leaky_update(state.h, state.r @ w_rec.T + drive, alpha, activation, pre_noise, post_noise)
    return new.r, new
