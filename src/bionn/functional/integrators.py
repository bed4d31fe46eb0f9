"""ODE integrators on dict states: one step of ``dx/dt = f(x)``.

``f(state) -> {name: dx/dt}`` returns derivatives for the integrated
variables; other entries of ``state`` are carried unchanged and may be read by
``f``. Exponential Euler also needs ``lin(state) -> {name: a}``, the diagonal
coefficient ``a = d f_x / d x`` (conditionally linear form ``f = a x + b``):

    x(t + dt) = x + f(x) * (exp(a dt) - 1) / a

which is exact when ``f`` is linear in ``x`` with constant ``a, b`` over the
step (``"exact"`` is this update, allowed only for linear equations).

Example:
    >>> import torch
    >>> s = {"x": torch.tensor([1.0])}
    >>> f = lambda s: {"x": -s["x"] / 10.0}
    >>> lin = lambda s: {"x": torch.full_like(s["x"], -0.1)}
    >>> round(float(exp_euler(f, lin, s, 1.0)["x"]), 6) == round(float(torch.exp(torch.tensor(-0.1))), 6)
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

State = dict[str, Tensor]
Derivative = Callable[[State], State]


def _advance(state: State, deriv: State, h: float) -> State:
    new = dict(state)
    for k, d in deriv.items():
        new[k] = state[k] + h * d
    return new


def euler(f: Derivative, lin: Derivative | None, state: State, dt: float) -> State:
    """Forward Euler: ``x + dt f(x)``."""
    return _advance(state, f(state), dt)


def rk2(f: Derivative, lin: Derivative | None, state: State, dt: float) -> State:
    """Heun's method (explicit trapezoid, RK2)."""
    k1 = f(state)
    k2 = f(_advance(state, k1, dt))
    new = dict(state)
    for k in k1:
        new[k] = state[k] + 0.5 * dt * (k1[k] + k2[k])
    return new


def rk4(f: Derivative, lin: Derivative | None, state: State, dt: float) -> State:
    """Classical fourth-order Runge-Kutta."""
    k1 = f(state)
    k2 = f(_advance(state, k1, dt / 2))
    k3 = f(_advance(state, k2, dt / 2))
    k4 = f(_advance(state, k3, dt))
    new = dict(state)
    for k in k1:
        new[k] = state[k] + dt / 6.0 * (k1[k] + 2 * k2[k] + 2 * k3[k] + k4[k])
    return new


def phi1(z: Tensor) -> Tensor:
    """``(exp(z) - 1) / z`` with the limit 1 at z = 0 (numerically safe)."""
    small = z.abs() < 1e-6
    z_safe = torch.where(small, torch.ones_like(z), z)
    return torch.where(small, 1.0 + 0.5 * z, torch.expm1(z_safe) / z_safe)


def exp_euler(f: Derivative, lin: Derivative | None, state: State, dt: float) -> State:
    """Exponential Euler: ``x + f(x) dt phi1(a dt)`` with ``a = df/dx``."""
    if lin is None:
        raise ValueError("exponential Euler needs the model's linear coefficients (lin)")
    d = f(state)
    a = lin(state)
    new = dict(state)
    for k, dk in d.items():
        new[k] = state[k] + dt * dk * phi1(a[k] * dt)
    return new


INTEGRATORS: dict[str, Callable[..., State]] = {
    "euler": euler,
    "rk2": rk2,
    "heun": rk2,
    "rk4": rk4,
    "exp_euler": exp_euler,
    "exact": exp_euler,
}
