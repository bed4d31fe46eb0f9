r"""Goodness of fit of predicted to recorded activity.

Arrays are ``(..., neurons)``: any leading axes (trials, time) are pooled, the last axis is
the neuron. Tensors and NumPy arrays are accepted; every metric is computed in float64.

* :func:`pvar` -- fraction of variance explained, pooled over neurons (Perich et al. 2020)::

      pVar = 1 - sum_{k,t,i} (y_kti - yhat_kti)^2 / sum_{k,t,i} (y_kti - mean_i)^2

  with ``mean_i`` the mean of neuron ``i`` over every trial ``k`` and time ``t``
  (``center="neuron"``, the default) or the grand mean of all the data (``center="all"``,
  what Perich's CURBD code computes: ``1 - (||A - R||_F / (sqrt(N T) std(A)))^2``).
  1 for a perfect prediction, 0 for predicting each neuron's mean, negative when worse.
* :func:`r2_per_neuron` -- the same per neuron: ``1 - SSE_i / SS_i`` (NaN where a neuron
  does not vary).
* :func:`co_smoothing_bits_per_spike` -- the co-smoothing metric of the Neural Latents
  Benchmark (Pei et al. 2021), in bits per spike::

      bits/spike = (LL(lambda_model) - LL(lambda_null)) / (n_spikes ln 2)

  where ``LL(lambda) = sum_{k,t,i} (s log lambda - lambda - log s!)`` is the Poisson
  log-likelihood of the spike counts ``s`` per bin, ``lambda_model = rate dt / 1000`` the
  expected count per bin of the predicted rate (spikes/s, ``dt`` in ms), ``lambda_null`` each
  neuron's mean count per bin over the evaluated data, and ``n_spikes`` the total count.
  Positive when the prediction beats each neuron's mean rate, 0 for the mean rate itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["co_smoothing_bits_per_spike", "pvar", "r2_per_neuron"]

#: smallest expected count per bin in the Poisson log-likelihood (a zero predicted rate where
#: spikes occurred would give -inf; the benchmark's code warns and returns inf instead)
MIN_COUNT = 1e-9


def _as64(a: Any, name: str) -> Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(a)
    if not isinstance(a, Tensor):
        try:
            a = torch.as_tensor(a)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{name} must be an array of numbers; got {type(a).__name__}") from e
    if a.dim() == 0:
        raise ValueError(f"{name} must have a neuron axis (last); got a scalar")
    a = a.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _pair(pred: Any, target: Any, names: tuple[str, str] = ("pred", "target")) -> tuple[Tensor, Tensor]:
    p, t = _as64(pred, names[0]), _as64(target, names[1])
    if p.shape != t.shape:
        raise ValueError(f"{names[0]} has shape {tuple(p.shape)} but {names[1]} has shape "
                         f"{tuple(t.shape)}; they must match (..., neurons)")
    return p, t


def pvar(pred: Any, target: Any, *, center: str = "neuron") -> float:
    """Fraction of the variance of ``target`` explained by ``pred`` (both ``(..., neurons)``),
    pooled over neurons, trials and time (see the module docstring).

    Example:
        >>> y = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 2.0]])
        >>> pvar(y, y), pvar(y.mean(0).expand(3, 2), y)
        (1.0, 0.0)
    """
    if center not in ("neuron", "all"):
        raise ValueError(f"center must be 'neuron' or 'all'; got {center!r}")
    p, t = _pair(pred, target)
    flat = t.reshape(-1, t.shape[-1])
    mean = flat.mean(0) if center == "neuron" else flat.mean()
    ss = float(((flat - mean) ** 2).sum())
    if ss == 0.0:
        raise ValueError("target does not vary: pVar is undefined")
    return 1.0 - float(((t - p) ** 2).sum()) / ss


def r2_per_neuron(pred: Any, target: Any) -> Tensor:
    """``1 - SSE_i / SS_i`` per neuron (last axis), trials and time pooled; NaN where neuron
    ``i`` of ``target`` is constant. Returns a float64 ``(neurons,)`` tensor.

    Example:
        >>> y = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
        >>> r2_per_neuron(y * torch.tensor([1.0, 0.0]), y).tolist()
        [1.0, nan]
    """
    p, t = _pair(pred, target)
    p, t = p.reshape(-1, t.shape[-1]), t.reshape(-1, t.shape[-1])
    ss = ((t - t.mean(0)) ** 2).sum(0)
    sse = ((t - p) ** 2).sum(0)
    return torch.where(ss > 0, 1.0 - sse / ss.clamp_min(1e-300), torch.full_like(ss, math.nan))


def _poisson_ll(lam: Tensor, s: Tensor) -> Tensor:
    return s * lam.log() - lam - torch.lgamma(s + 1.0)


def co_smoothing_bits_per_spike(pred_rates: Any, spikes: Any, dt: float, *,
                                neurons: Any = None) -> float:
    """Co-smoothing bits per spike (Neural Latents Benchmark) of predicted rates.

    Args:
        pred_rates: predicted firing rates (spikes/s), ``(..., neurons)``, non-negative.
        spikes: the recorded spike counts per bin, same shape.
        dt: the bin width (ms): the expected count per bin is ``pred_rates * dt / 1000``.
        neurons: indices (last axis) of the held-out neurons to score; default all.

    The null model is each scored neuron's mean count per bin over the given data;
    expected counts are floored at ``1e-9``.

    Example:
        >>> s = torch.tensor([[0.0, 2.0], [2.0, 0.0], [1.0, 1.0]])
        >>> co_smoothing_bits_per_spike(s.mean(0).expand(3, 2) * 1000 / 10, s, 10.0)
        0.0
    """
    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive bin width in ms; got {dt!r}")
    r, s = _pair(pred_rates, spikes, ("pred_rates", "spikes"))
    if neurons is not None:
        idx = torch.as_tensor(neurons, dtype=torch.long).flatten()
        if idx.numel() == 0 or int(idx.min()) < -s.shape[-1] or int(idx.max()) >= s.shape[-1]:
            raise ValueError(f"neurons must index the last axis (size {s.shape[-1]}); got {idx.tolist()}")
        r, s = r[..., idx], s[..., idx]
    if bool((r < 0).any()):
        raise ValueError("pred_rates must be non-negative (spikes/s)")
    if bool((s < 0).any()) or not bool((s == s.round()).all()):
        raise ValueError("spikes must be non-negative integer counts per bin")
    n_spikes = float(s.sum())
    if n_spikes == 0:
        raise ValueError("spikes holds no spike: bits per spike is undefined")
    lam = (r * (dt / 1000.0)).clamp_min(MIN_COUNT)
    null = s.reshape(-1, s.shape[-1]).mean(0).clamp_min(MIN_COUNT).expand_as(s)
    gain = float((_poisson_ll(lam, s) - _poisson_ll(null, s)).sum())
    return gain / (n_spikes * math.log(2.0))
