"""Task losses and regularisers for rate networks.

Every loss returns ``(total, terms)``: a scalar to backpropagate and a dict of
the named terms (detached floats are the caller's business), so training logs
show what each term contributes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_mse(outputs: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error weighted per time step.

    ``sum_{b,t} m_{bt} * mean_k (y_{btk} - y*_{btk})^2 / sum_{b,t} m_{bt}``,
    with ``outputs``/``targets`` ``(batch, time, n_out)`` and ``mask`` ``(batch, time)``.
    """
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} differ in shape")
    err = (outputs - targets).pow(2).mean(-1)
    if mask is None:
        return err.mean()
    if mask.shape != err.shape:
        raise ValueError(f"mask must be (batch, time) = {tuple(err.shape)}; got {tuple(mask.shape)}")
    return (err * mask).sum() / mask.sum().clamp_min(1e-12)


def masked_cross_entropy(outputs: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Cross-entropy per time step against the target channel ``argmax(targets)``,
    weighted by ``mask`` like :func:`masked_mse`."""
    labels = targets.argmax(-1)
    ce = F.cross_entropy(outputs.flatten(0, 1), labels.flatten(), reduction="none").view(labels.shape)
    if mask is None:
        return ce.mean()
    return (ce * mask).sum() / mask.sum().clamp_min(1e-12)


TASK_LOSSES = {"mse": masked_mse, "cross_entropy": masked_cross_entropy}


def per_neuron_rate(rates: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean rate of each neuron over batch and (masked) time, ``(N,)``."""
    if mask is None:
        return rates.mean(dim=(0, 1))
    w = (mask > 0).to(rates.dtype)
    return (rates * w[..., None]).sum(dim=(0, 1)) / w.sum().clamp_min(1.0)


class RNNLoss:
    """Task loss plus weighted regularisers.

    total = task(y, y*, mask)
          + sum_l l2[l] * mean(W_l^2)                      (l a connection of the model)
          + rate_mean * mean_i(rbar_i)                       (metabolic cost)
          + rate_std  * std_i(rbar_i)                        (uneven rates across neurons)
          + rate_cv   * std_i(rbar_i) / mean_i(rbar_i)       (coefficient of variation)

    where ``rbar_i`` is neuron ``i``'s mean rate over the batch and the scored time steps.

    Args:
        task: ``"mse"`` or ``"cross_entropy"``.
        l2: weight of the L2 term per connection, e.g. ``{"recurrent": 1e-4}``, keyed by the
            names of the model's ``connection_weights()`` (``input``, ``recurrent``,
            ``readout`` for a CTRNN or ConnectomeRNN; per area and cell-type pair for a
            spatial network); ``"all"`` applies to every connection not named.
        rate_mean, rate_std, rate_cv: weights of the rate regularisers.

    Example:
        >>> import torch
        >>> from bionn.rate import CTRNN
        >>> net = CTRNN(2, 20, 2)
        >>> out, rates = net(torch.randn(4, 10, 2))
        >>> loss = RNNLoss(l2={"recurrent": 1e-3}, rate_mean=1e-2)
        >>> total, terms = loss(out, torch.zeros_like(out), rates, weights=net.connection_weights())
        >>> sorted(terms)
        ['l2_recurrent', 'rate_mean', 'task']
    """

    def __init__(
        self,
        task: str = "mse",
        l2: Mapping[str, float] | None = None,
        rate_mean: float = 0.0,
        rate_std: float = 0.0,
        rate_cv: float = 0.0,
    ) -> None:
        if task not in TASK_LOSSES:
            raise ValueError(f"task loss must be one of {sorted(TASK_LOSSES)}; got {task!r}")
        self.task = task
        self.l2 = {k: float(v) for k, v in (l2 or {}).items()}
        for k, v in [*self.l2.items(), ("rate_mean", rate_mean), ("rate_std", rate_std), ("rate_cv", rate_cv)]:
            if not v >= 0:
                raise ValueError(f"regulariser weight {k} must be >= 0; got {v!r}")
        self.rate_mean, self.rate_std, self.rate_cv = float(rate_mean), float(rate_std), float(rate_cv)

    def __call__(
        self,
        outputs: Tensor,
        targets: Tensor,
        rates: Tensor | None = None,
        mask: Tensor | None = None,
        weights: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        terms: dict[str, Tensor] = {"task": TASK_LOSSES[self.task](outputs, targets, mask)}
        named = {k: v for k, v in self.l2.items() if k != "all"}
        for name in named:
            if weights is None or name not in weights:
                raise ValueError(f"l2 term {name!r} needs weights[{name!r}]; got {sorted(weights or {})}")
        if "all" in self.l2:
            if weights is None:
                raise ValueError("l2 'all' needs the model's connection weights (weights=...)")
            named = {**{k: self.l2["all"] for k in weights if k not in named}, **named}
        for name, lam in named.items():
            if lam == 0:
                continue
            terms[f"l2_{name}"] = lam * weights[name].pow(2).mean()
        if self.rate_mean or self.rate_std or self.rate_cv:
            if rates is None:
                raise ValueError("rate regularisers need the rates")
            rbar = per_neuron_rate(rates, mask)
            if self.rate_mean:
                terms["rate_mean"] = self.rate_mean * rbar.mean()
            if self.rate_std:
                terms["rate_std"] = self.rate_std * rbar.std()
            if self.rate_cv:
                terms["rate_cv"] = self.rate_cv * rbar.std() / rbar.mean().abs().clamp_min(1e-8)
        total = torch.stack(list(terms.values())).sum()
        return total, terms
