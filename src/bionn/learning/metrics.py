"""Alignment metrics for converted models; all return dicts keyed by layer name.

Example:
    >>> import torch
    >>> from bionn.learning.metrics import matrix_angle
    >>> w = torch.randn(3, 4)
    >>> round(matrix_angle(w, w), 3), round(matrix_angle(w, -w), 3)
    (0.0, 180.0)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bionn.constraints import raw_parameter
from bionn.learning.convert import converted_recurrent, recurrent_feedback
from bionn.learning.feedback import DFA, exact_gradients, feedback_layers

__all__ = ["gradient_alignment", "matrix_angle", "norm_ratios", "weight_angles"]


def matrix_angle(a: Tensor, b: Tensor) -> float:
    """Angle in degrees between ``a`` and ``b`` flattened: ``arccos(<a,b> / (|a||b|))``."""
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    a, b = a / a.norm().clamp_min(1e-300), b / b.norm().clamp_min(1e-300)
    # 2 atan2(|a - b|, |a + b|): accurate near 0 and 180 degrees, unlike arccos
    return math.degrees(2 * math.atan2(float((a - b).norm()), float((a + b).norm())))


def _pairs(model: nn.Module):
    for name, layer in feedback_layers(model).items():
        if not isinstance(layer.rule, DFA):  # DFA's B is not W-shaped
            yield name, layer.weight.detach(), layer.feedback_weight
    for name, (w, b) in recurrent_feedback(model).items():
        yield name, w, b


def weight_angles(model: nn.Module) -> dict[str, float]:
    """Per converted layer or recurrent connection, angle (degrees) between ``W`` and ``B``.

    DFA layers are skipped (their ``B`` is not ``W``-shaped).
    """
    return {name: matrix_angle(w, b) for name, w, b in _pairs(model)}


def norm_ratios(model: nn.Module) -> dict[str, float]:
    """Per converted layer or recurrent connection, ``||B||_F / ||W||_F`` (DFA layers skipped)."""
    return {name: float(b.norm() / w.norm()) for name, w, b in _pairs(model)}


def _leaves(model: nn.Module) -> dict[str, Tensor]:
    """The weight Parameter (raw one under a parametrization) of every converted part."""
    out = {}
    for name, layer in feedback_layers(model).items():
        out[name] = raw_parameter(layer, "weight")
    for name, rnn in converted_recurrent(model):
        for key, leaf in rnn.connection_parameters().items():
            if key in rnn.credit_assignment:
                out[f"{name}.{key}" if name else key] = leaf
    return out


def _weight_grads(model: nn.Module, weights: dict[str, Tensor], loss_fn: Callable, x: Tensor,
                  y: Tensor) -> dict[str, Tensor]:
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
    return {n: g for n, g in zip(weights, grads, strict=True) if g is not None}


def gradient_alignment(model: nn.Module, loss_fn: Callable, x: Tensor, y: Tensor,
                       ) -> dict[str, float]:
    """Per layer, angle (degrees) between this method's ``dL/dW`` and backprop's on one batch.

    Works on a deep copy (the model, its ``.grad`` and BatchNorm statistics are
    untouched); both passes start from the same RNG state (same dropout masks).
    ``dL/dW`` is taken w.r.t. the weight Parameter (the raw one under ``constrain_norm``).
    """
    model = copy.deepcopy(model)
    state = torch.random.get_rng_state()
    leaves = _leaves(model)
    ours = _weight_grads(model, leaves, loss_fn, x, y)
    torch.random.set_rng_state(state)
    with exact_gradients(model):
        true = _weight_grads(model, leaves, loss_fn, x, y)
    return {n: matrix_angle(ours[n], true[n]) for n in ours if n in true}
