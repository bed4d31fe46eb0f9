"""The generic time loop shared by every dynamical model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def scan(
    step: Callable[..., tuple[Tensor, Any]],
    state: Any,
    inputs: tuple[Tensor | None, ...],
    time_dim: int = 1,
) -> tuple[Tensor, Any]:
    """Run ``step(state, *inputs_t) -> (output_t, state)`` over time.

    Args:
        step: a pure step function.
        state: the initial state (any pytree of tensors, e.g. a named tuple).
        inputs: tensors with a time axis at ``time_dim`` (batch-first by default),
            sliced per step; ``None`` entries are passed through as ``None``.
        time_dim: the time axis of the inputs and of the stacked output.

    Returns:
        ``(outputs, final_state)`` with outputs stacked along ``time_dim``.

    Example:
        >>> import torch
        >>> out, s = scan(lambda s, x: (s + x, s + x), torch.zeros(2), (torch.ones(2, 3),))
        >>> out.tolist(), s.tolist()
        ([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], [3.0, 3.0])
    """
    lengths = {x.shape[time_dim] for x in inputs if x is not None}
    if len(lengths) != 1:
        raise ValueError(f"inputs must share one time length along dim {time_dim}; got {sorted(lengths)}")
    (n_steps,) = lengths
    seqs = [None if x is None else x.unbind(time_dim) for x in inputs]
    outputs = []
    for t in range(n_steps):
        out, state = step(state, *(None if s is None else s[t] for s in seqs))
        outputs.append(out)
    return torch.stack(outputs, dim=time_dim), state
