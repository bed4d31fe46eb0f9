"""``convert()``: swap every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` of a model for a feedback layer.

Example:
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from torch import nn
    >>> from bionn.learning import convert
    >>> net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> result = convert(net, "usf", inplace=True)
    >>> result.model is net, result.report.names, result.model[0].weight is net[0].weight
    (True, ['0', '2'], True)
    >>> convert(nn.Linear(3, 2), "dfa")
    Traceback (most recent call last):
    ...
    ValueError: output_dim (size of the model output) is required for method='dfa'
    >>> dfa = convert(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)), "dfa",
    ...               output_dim=2).model
    >>> F.cross_entropy(dfa(torch.randn(3, 5)), torch.tensor([0, 1, 1])).backward()
    >>> dfa[0].weight.grad.shape  # from e B_2 through tanh'
    torch.Size([4, 5])
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn.constraints import Dale, Mask, balance_ei, spectral_radius
from bionn.learning.feedback import (
    FEEDBACK_LAYERS,
    FEEDBACK_RULES,
    INITS,
    DFAOutputHook,
    ErrorSignal,
    FeedbackConv1d,
    FeedbackConv2d,
    FeedbackLinear,
    FeedbackRule,
)
from bionn.recurrent import recurrent_models

__all__ = ["Conversion", "ConversionReport", "FixedNorm", "METHODS", "convert", "recurrent_feedback"]

METHODS = tuple(FEEDBACK_RULES)


@dataclass
class ConversionReport:
    """What :func:`convert` did: one entry per converted layer, in module order."""

    method: str
    layers: list[dict] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [entry["name"] for entry in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def __str__(self) -> str:
        head = f"{'layer':<28}{'kind':<14}{'weight':<18}feedback"
        lines = [f"credit assignment: {self.method}", head]
        for e in self.layers:
            lines.append(f"{e['name'] or '<model>':<28}{e['type']:<14}{str(e['weight_shape']):<18}"
                         f"{e['feedback_shape']}")
        return "\n".join(lines)


@dataclass
class Conversion:
    """What a converter returns (:func:`convert`, and with the same two attributes
    :meth:`bionn.plasticity.BioConverter.convert`): the converted ``model`` and a
    ``report`` of what changed, layer by layer (``report.layers``, ``report.names``,
    ``print(report)``). ``model, report = convert(...)`` unpacks it."""

    model: nn.Module
    report: ConversionReport

    def __iter__(self):
        return iter((self.model, self.report))


class FixedNorm(nn.Module):
    """Parametrization ``W = norm * V / ||V||_F``: the Frobenius norm stays fixed
    (Moskovitz et al. 2018) while the optimizer keeps updating the raw ``V``."""

    def __init__(self, norm: float | Tensor) -> None:
        super().__init__()
        self.register_buffer("norm", torch.as_tensor(norm).detach().clone())

    def forward(self, v: Tensor) -> Tensor:
        return v * (self.norm / v.norm().clamp_min(1e-12))


#: the layer kinds convert() swaps, and what replaces them
CONVERTIBLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _new_layer(old: nn.Module) -> nn.Module:
    w = old.weight
    kw = {"device": w.device, "dtype": w.dtype, "bias": old.bias is not None}
    if isinstance(old, (nn.Conv1d, nn.Conv2d)):
        cls = FeedbackConv2d if isinstance(old, nn.Conv2d) else FeedbackConv1d
        return cls(old.in_channels, old.out_channels, old.kernel_size, old.stride,
                   old.padding, old.dilation, old.groups, padding_mode=old.padding_mode, **kw)
    return FeedbackLinear(old.in_features, old.out_features, **kw)


def _init_forward(layer: nn.Module, init: str) -> None:
    """Fresh forward weights (``copy_weights=False``)."""
    if init == "xavier":
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    # kaiming / same / fixed_norm: PyTorch's default reset_parameters (already done)


def converted_recurrent(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, model)`` for the recurrent models of ``model`` (:class:`~bionn.recurrent.RecurrentModel`)
    that carry feedback rules."""
    return [(n, m) for n, m in recurrent_models(model) if m.credit_assignment is not None]


def _rnn_rules(model: nn.Module):
    """``(qualified name, rule, effective weight)`` for every converted recurrent connection."""
    for name, rnn in converted_recurrent(model):
        weights = rnn.connection_weights()
        for key, rule in rnn.credit_assignment.items():
            yield (f"{name}.{key}" if name else key), rule, weights[key]


def recurrent_feedback(model: nn.Module) -> dict[str, tuple[Tensor, Tensor]]:
    """``{name: (W, B)}`` (detached) for the converted recurrent models of ``model``.

    ``W`` is the effective (constrained) weight of a connection; ``B`` is ``W``
    for ``bp``. Names are ``"<module>.<connection>"`` (just the connection name,
    e.g. ``"recurrent"``, for a bare model). Use
    :func:`~bionn.learning.matrix_angle` on the pairs for the ``W``-``B`` alignment.
    """
    out = {}
    for name, rule, w in _rnn_rules(model):
        b = rule.feedback(w)
        out[name] = (w.detach(), (w if b is None else b).detach())
    return out


def _constrained_feedback(module: nn.Module, name: str, b: Tensor, w: Tensor) -> Tensor:
    """``b`` with the Dale signs and mask of ``module.name`` (``mask * |b| * sign[pre]``),
    E/I-balanced per row as the forward weights are, and for a square (recurrent) matrix
    scaled to ``w``'s spectral radius: an unbalanced sign-constrained ``B`` has a large
    leading eigenvalue and the error carried back through time explodes."""
    dale = mask = None
    if parametrize.is_parametrized(module, name):
        for p in module.parametrizations[name]:
            dale = p if isinstance(p, Dale) else dale
            mask = p if isinstance(p, Mask) else mask
    b = b.abs() if dale is not None else b
    if mask is not None:
        b = b * mask.mask
    matrix = b.dim() == 2
    if dale is not None:
        if matrix and dale.dim in (-1, 1):
            b = balance_ei(b, dale.sign) * dale.sign
        else:  # a convolution kernel (out, in, kh, kw) or sparse values: the sign on Dale's axis
            b = dale(b)
    if matrix and b.shape[0] == b.shape[1]:
        rho_b, rho_w = spectral_radius(b), spectral_radius(w)
        if rho_b > 0 and rho_w > 0:
            b = b * (rho_w / rho_b)
    return b


def _convert_recurrent(name: str, rnn: nn.Module, rule_cls, init: str, scale: float,
                       generator: torch.Generator | None, report: ConversionReport,
                       constrain_feedback: bool) -> None:
    rules = nn.ModuleDict()
    for key, w in rnn.connection_weights().items():
        rule: FeedbackRule = rule_cls(w.detach(), init, scale, generator)
        if constrain_feedback and hasattr(rule, "weight_feedback"):
            holder, attr = rnn.connection_holder(key)
            with torch.no_grad():
                rule.weight_feedback.copy_(_constrained_feedback(
                    holder, attr, rule.weight_feedback, w.detach()))
        rule.train(rnn.training)
        rules[key] = rule
        report.layers.append({
            "name": f"{name}.{key}" if name else key, "type": type(rnn).__name__,
            "weight_shape": tuple(w.shape),
            "feedback_shape": tuple(rule.feedback_shape(w)),
        })
    rnn.credit_assignment = rules


def convert(model: nn.Module, method: str, *, copy_weights: bool = True,
            init: str = "kaiming", scale: float = 1.0, constrain_norm: bool = False,
            output_dim: int | None = None, inplace: bool = False,
            generator: torch.Generator | None = None,
            constrain_feedback: bool = False) -> Conversion:
    """Swap every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` in ``model`` for a layer trained by ``method``.

    Other layers with weights (``nn.Conv3d``, transposed convolutions, ``nn.Embedding``,
    ``nn.LSTM``...) stay on backprop, with a warning naming each.

    Args:
        model: any ``nn.Module`` (also a bare ``nn.Linear``; residual nets work).
        method: one of :data:`METHODS` (``bp fa usf brsf frsf dfa wm kp``).
        copy_weights: the new layer holds the *same* weight and bias Parameter
            objects as the layer it replaces; else fresh ones drawn from ``init``.
        init: distribution of ``B`` (and of fresh forward weights):
            ``kaiming`` (PyTorch's default, ``U(+-1/sqrt(fan_in))``), ``xavier``
            (``U(+-sqrt(6/(fan_in+fan_out)))``), ``same`` (Gaussian with ``W``'s
            std), ``fixed_norm`` (random direction with ``||B|| = ||W||``). The
            uSF scale ``s`` is the std of that distribution.
        scale: multiplies ``B`` (uSF: ``s``).
        constrain_norm: keep ``||W||_F`` at its value at conversion, by a
            :class:`FixedNorm` parametrization (the raw Parameter stays the one
            the optimizer holds).
        output_dim: size of the model output; required for ``dfa``.
        inplace: modify ``model`` itself; else a deep copy is converted.
        generator: RNG for the initial draws of ``B`` (CPU generator).
        constrain_feedback: recurrent models only: ``B`` (``fa``, ``wm``, ``kp``) is drawn with
            the forward weight's Dale signs and connectivity mask,
            ``B = mask * |B0| * sign[pre]``, so that ``W`` can align with it; like
            ``W`` at initialisation, its inhibitory columns are scaled to balance
            excitation, and the recurrent ``B`` has ``W_rec``'s spectral radius.

    Recurrent models of the core (any :class:`~bionn.recurrent.RecurrentModel`:
    :class:`~bionn.rate.CTRNN`, :class:`~bionn.rate.ConnectomeRNN`,
    :class:`~bionn.rate.SpatialNetwork`, :class:`~bionn.spiking.SpikingRNN`, bare or inside
    ``model``) get one rule per
    connection (``input``, ``recurrent``, ``readout``, ...) in ``rnn.credit_assignment``: feedback
    alignment through time, the recurrent error carried back by ``B_rec``
    instead of ``W_rec^T`` and the readout error by ``B_out`` (see
    :class:`~bionn.rate.CTRNN`; the same for sparse and convolutional operators).
    Their weights and constraints (Dale, masks) are
    kept whatever ``copy_weights``; each rule is built from the *effective*
    constrained weight. ``B`` itself is unconstrained: for ``fa``/``kp``/``wm``
    a random draw with mixed signs (also under Dale's law: only the forward
    weights obey it, unless ``constrain_feedback``), while ``usf``/``frsf``/``brsf`` follow ``sign(W)`` and so
    inherit Dale's column signs. ``dfa`` and ``constrain_norm`` are refused on
    recurrent models.

    Returns:
        A :class:`Conversion`: ``.model`` (the converted model; ``model`` itself with
        ``inplace=True``, else a converted deep copy) and ``.report``
        (:class:`ConversionReport`). Build the optimizer after converting (``kp``
        adds ``B`` as a Parameter). DFA registers a forward hook on the converted
        model that records the output error ``dL/dy`` during ``loss.backward()``;
        an ordinary loop works.
    """
    if method not in FEEDBACK_RULES:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if method == "dfa" and (output_dim is None or int(output_dim) < 1):
        raise ValueError("output_dim (size of the model output) is required for method='dfa'")
    if any(isinstance(m, FEEDBACK_LAYERS) for m in model.modules()):
        raise ValueError("model is already converted (it contains feedback layers)")
    rnns = recurrent_models(model)
    if any(m.credit_assignment is not None for _, m in rnns):
        raise ValueError("model is already converted (a recurrent model has feedback rules)")
    if not rnns and not any(isinstance(m, CONVERTIBLE) for m in model.modules()):
        raise ValueError("model has no nn.Linear, nn.Conv1d or nn.Conv2d layer to convert")
    if rnns and method == "dfa":
        raise ValueError(
            "method='dfa' is not supported on a recurrent model: a direct projection of the output "
            "error has no meaning through time here; use fa, usf, frsf, brsf, wm or kp"
        )
    if rnns and constrain_norm:
        raise ValueError("constrain_norm is not supported on a recurrent model")
    if not inplace:
        model = copy.deepcopy(model)
    prefixes = [n for n, _ in recurrent_models(model)]

    def inside(n: str) -> bool:  # layers of a recurrent model are its connections: rules, not swaps
        return any(p == "" or n == p or n.startswith(f"{p}.") for p in prefixes)

    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, CONVERTIBLE) and not inside(n)]
    # other layers with weights stay on backprop: say so, naming each
    skipped = [f"{n or '<model>'} ({type(m).__name__})" for n, m in model.named_modules()
               if not isinstance(m, CONVERTIBLE) and not inside(n) and not list(m.children())
               and isinstance(getattr(m, "weight", None), Tensor) and m.weight.dim() >= 2]
    if skipped:
        warnings.warn(f"convert({method!r}) leaves these layers on backprop (their kind is not "
                      f"converted): {', '.join(skipped)}", stacklevel=2)
    for name, m in targets:
        if parametrize.is_parametrized(m):
            raise ValueError(f"layer {name!r} is parametrized; convert it before constraining")
    extra = {}
    if method == "dfa":
        extra = {"output_dim": int(output_dim), "signal": ErrorSignal()}
    report = ConversionReport(method)
    rule_cls = FEEDBACK_RULES[method]

    def swap(name: str, old: nn.Module) -> nn.Module:
        new = _new_layer(old)
        if copy_weights:
            new.weight = old.weight
            if old.bias is not None:
                new.bias = old.bias
        else:
            _init_forward(new, init)
        new.train(old.training)
        kw = dict(extra)
        if method == "dfa" and isinstance(old, (nn.Conv1d, nn.Conv2d)):
            kw["groups"] = old.groups  # the projection is ungrouped: B spans all input channels
        new.rule = rule_cls(new.weight, init, scale, generator, **kw)
        new.rule.train(old.training)
        if constrain_norm:
            parametrize.register_parametrization(new, "weight", FixedNorm(new.weight.norm()))
        report.layers.append({
            "name": name, "type": type(old).__name__,
            "weight_shape": tuple(new.weight.shape),
            "feedback_shape": tuple(new.rule.feedback_shape(new.weight)),
        })
        return new

    if isinstance(model, CONVERTIBLE):
        model = swap("", model)
    else:
        for name, old in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, swap(name, old))
        for name, rnn in recurrent_models(model):
            _convert_recurrent(name, rnn, rule_cls, init, scale, generator, report,
                               constrain_feedback)
    if method == "dfa":
        model.register_forward_hook(DFAOutputHook(extra["signal"]))
    return Conversion(model, report)
