r"""FORCE and full-FORCE: recursive least squares on the weights of a tanh rate network.

The network is a :class:`~bionn.rate.CTRNN` (Euler, ``a = dt / tau`` per unit, time in ms)::

    h_t = (1 - a) h_{t-1} + a I_t,   I_t = J r_{t-1} + W_in u_t + b,   r_t = tanh(h_t)

:class:`ForceNetwork` is such a CTRNN drawn the way FORCE papers draw it (``J ~ N(0, g^2/N)``,
``g > 1``: chaotic before training); any CTRNN whose recurrent (and, with
``train_input``, input) weights carry no constraint works too.

Recursive least squares (RLS) learns the rows of ``[J | W_in | b]`` as a linear regression
on the regressors ``z_t = [r_{t-1}, u_t, 1]`` (``[r_{t-1}]`` alone without
``train_input``; no ``1`` when the model has no bias). With ``P_0 = I / alpha`` and, at every
``learn_every``-th step, the batch of trials' regressors ``Z`` ``(B, M)`` and a-priori errors
``E`` ``(B, rows)`` (block RLS: the trials of a batch are one rank-``B`` update)::

    K = P Z^T (I_B + Z P Z^T)^{-1},   W[rows] <- W[rows] - E^T K^T,   P <- P - K Z P

* ``force`` (Sussillo & Abbott 2009, learning inside the network, their architecture C;
  as in Rajan et al. 2016 and CURBD): ``rows`` are the target units and ``E = r_t[units]
  - d_t``, the error of their rates against the data, while the network runs free.
* ``full_force`` (DePasquale et al. 2018): a target-generating network supplies the full
  currents ``I*_t`` of every unit and RLS fits every row to ``E = I_t - I*_t``. Here the
  target generator is the untrained network with its target units clamped to the data:
  their currents are the ones that make ``tanh(h)`` follow the data exactly,
  ``I*_t = h*_{t-1} + (h*_t - h*_{t-1}) / a`` with ``h* = atanh(d)`` (data clipped to
  ``|d| <= 1 - 1e-4``), and the other units run driven by the clamped rates,
  ``I*_t = J_0 r*_{t-1} + W_in u_t + b``. The task network runs free meanwhile.

Each pass runs every trial from its initial state; the model's noise is not simulated.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from bionn.rate import CTRNN

__all__ = ["ForceNetwork", "check_force_model", "rls_train"]

F64 = torch.float64
CLIP = 1.0 - 1e-4


class ForceNetwork(CTRNN):
    r"""A tanh rate network drawn for FORCE learning: a :class:`~bionn.rate.CTRNN` with
    ``J ~ N(0, g^2 / N)`` (spectral radius about ``g``; ``g = 1.5`` is chaotic),
    ``W_in ~ N(0, input_scale^2 / n_input)``, no constraint, no bias by default.

    Being a CTRNN it runs, trains by BPTT and is analysed like one
    (``model(x) -> (outputs, rates)``, :func:`~bionn.analysis.find_fixed_points`).

    Example:
        >>> net = ForceNetwork(2, 200, dt=1.0, tau=10.0, g=1.5, generator=torch.Generator().manual_seed(0))
        >>> out, rates = net(torch.zeros(1, 5, 2))
        >>> rates.shape, round(float(net.weight_rec.detach().std() * 200 ** 0.5), 1)
        (torch.Size([1, 5, 200]), 1.5)
    """

    def __init__(self, n_input: int, n_hidden: int, n_output: int = 1, *, dt: float = 1.0,
                 tau: float = 10.0, g: float = 1.5, input_scale: float = 1.0, bias: bool = False,
                 preact_noise: float = 0.0, generator: torch.Generator | None = None) -> None:
        for name, v in (("g", g), ("input_scale", input_scale)):
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a number >= 0; got {v!r}")
        super().__init__(n_input, n_hidden, n_output, dt=dt, tau=tau, activation="tanh",
                         weight_init="normal", bias=bias, preact_noise=preact_noise, generator=generator)
        with torch.no_grad():
            self.weight_rec.mul_(g)
            self.weight_in.mul_(input_scale)
        self.g, self.input_scale = float(g), float(input_scale)


def check_force_model(model: object, method: str, train_input: bool) -> None:
    """Refuse a model RLS cannot train: not a CTRNN, constrained weights, feedback rules."""
    if not isinstance(model, CTRNN):
        raise TypeError(f"method={method!r} trains a CTRNN (or ForceNetwork); got {type(model).__name__} "
                        "(use method='bptt')")
    names = ["weight_rec"] + (["weight_in"] if train_input else [])
    bad = [n for n in names if parametrize.is_parametrized(model, n)]
    if bad:
        raise ValueError(f"method={method!r} writes {bad} directly, but the model constrains them "
                         "(Dale's law, masks or gradient scales); use an unconstrained CTRNN, a "
                         "ForceNetwork, train_input=False or method='bptt'")
    if model.credit_assignment is not None:
        raise ValueError(f"method={method!r}: the model carries feedback rules (convert); RLS ignores "
                         "them, use an unconverted model")
    if method == "full_force" and model.activation_name != "tanh":
        raise ValueError(f"method='full_force' inverts tanh to get the target currents; the model's "
                         f"activation is {model.activation_name!r}")


def _block_rls(P: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """Gain ``K`` ``(M, B)`` and the new ``P`` for the regressors ``z`` ``(B, M)``."""
    pz = P @ z.T
    s = torch.eye(z.shape[0], dtype=z.dtype) + z @ pz
    k = torch.linalg.solve(s, pz.T).T
    P = P - k @ pz.T
    return k, 0.5 * (P + P.T)


def full_force_targets(model: CTRNN, x: Tensor, target: Tensor, units: Tensor, h0: Tensor) -> Tensor:
    """``I*`` ``(B, T, N)``: the currents of the target generator (see the module docstring)."""
    act: Callable[[Tensor], Tensor] = torch.tanh
    a = model.alpha.detach().to(F64)
    J = model.weight_rec.detach().to(F64)
    w_in = model.weight_in.detach().to(F64)
    b = torch.zeros(J.shape[0], dtype=F64) if model.bias_rec is None else model.bias_rec.detach().to(F64)
    hu = torch.atanh(target.clamp(-CLIP, CLIP))
    h = h0.clone()
    r = act(h)
    prev = h0[:, units]
    out = []
    for t in range(x.shape[1]):
        cur = r @ J.T + x[:, t] @ w_in.T + b
        h = (1 - a) * h + a * cur
        cur[:, units] = prev + (hu[:, t] - prev) / a[units]
        h[:, units] = hu[:, t]
        r = act(h)
        prev = hu[:, t]
        out.append(cur)
    return torch.stack(out, 1)


def rls_train(model: CTRNN, x: Tensor, target: Tensor, units: Tensor, h0: Tensor, *, method: str,
              passes: int, rls_alpha: float = 1.0, learn_every: int = 1, train_input: bool = True,
              progress: bool = False) -> list[float]:
    """Train ``model`` in place by FORCE (``method="force"``) or full-FORCE (``"full_force"``).

    Args:
        model: a CTRNN passing :func:`check_force_model`.
        x: inputs ``(B, T, n_input)``; target: the target units' rates ``(B, T, len(units))``.
        units: indices of the target units; h0: initial pre-activations ``(B, N)``.
        passes: passes over the trials; rls_alpha: ``P_0 = I / alpha``.
        learn_every: update every this many steps; train_input: also learn ``W_in`` and ``b``.

    Returns the mean squared error of the target units' rates during each pass.
    """
    check_force_model(model, method, train_input)
    if method not in ("force", "full_force"):
        raise ValueError(f"method must be 'force' or 'full_force'; got {method!r}")
    units = torch.as_tensor(units, dtype=torch.long).flatten()
    if not (isinstance(rls_alpha, (int, float)) and rls_alpha > 0):
        raise ValueError(f"rls_alpha must be > 0; got {rls_alpha!r}")
    if not (isinstance(learn_every, int) and learn_every >= 1):
        raise ValueError(f"learn_every must be a positive integer; got {learn_every!r}")
    x, target, h0 = x.detach().to(F64), target.detach().to(F64), h0.detach().to(F64)
    act = model.rate_function
    a = model.alpha.detach().to(F64)
    n = model.n_hidden
    J = model.weight_rec.detach().to(F64)
    w_in = model.weight_in.detach().to(F64)
    b = None if model.bias_rec is None else model.bias_rec.detach().to(F64)
    blocks = [J] + ([w_in] + ([b[:, None]] if b is not None else []) if train_input else [])
    W = torch.cat(blocks, 1).clone()
    fixed = None if train_input else x @ w_in.T + (0.0 if b is None else b)
    P = torch.eye(W.shape[1], dtype=F64) / rls_alpha
    rows = units if method == "force" else torch.arange(n)
    i_star = full_force_targets(model, x, target, units, h0) if method == "full_force" else None
    B, T = x.shape[:2]
    ones = torch.ones(B, 1, dtype=F64)
    curve = []
    for _ in tqdm(range(passes), disable=not progress, desc=method):
        h = h0.clone()
        r = act(h)
        se = 0.0
        for t in range(T):
            parts = [r] + ([x[:, t]] + ([ones] if b is not None else []) if train_input else [])
            z = torch.cat(parts, 1)
            cur = z @ W.T
            if fixed is not None:
                cur = cur + fixed[:, t]
            h = (1 - a) * h + a * cur
            r_new = act(h)
            err_r = r_new[:, units] - target[:, t]
            if t % learn_every == 0:
                e = err_r if i_star is None else cur - i_star[:, t]
                k, P = _block_rls(P, z)
                W[rows] -= e.T @ k.T
            se += float((err_r ** 2).sum())
            r = r_new
        curve.append(se / (B * T * len(units)))
        if not math.isfinite(curve[-1]):
            raise FloatingPointError(f"{method}: the network diverged in pass {len(curve)}; "
                                     "raise rls_alpha or lower g")
    with torch.no_grad():
        model.weight_rec.copy_(W[:, :n])
        if train_input:
            model.weight_in.copy_(W[:, n:n + model.n_input])
            if b is not None:
                model.bias_rec.copy_(W[:, -1])
    return curve
