"""Credit assignment without weight transport: FA, DFA, sign symmetry, weight mirrors, KP, e-prop.

``convert(model, method)`` swaps every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` for a layer
with the same forward pass whose backward sends errors through a feedback
matrix ``B`` instead of ``W`` (see :mod:`bionn.learning.feedback` for the rules).
The metrics in :mod:`bionn.learning.metrics` measure how well ``B`` and the
resulting updates align with backprop.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from bionn.learning import convert, weight_angles
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = convert(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)), "fa").model
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> loss = net(torch.randn(8, 5)).pow(2).mean()
    >>> loss.backward(); opt.step()
    >>> sorted(weight_angles(net))
    ['0', '2']
"""

from bionn.learning.convert import (
    METHODS,
    Conversion,
    ConversionReport,
    FixedNorm,
    _rnn_rules,
    convert,
    recurrent_feedback,
)
from bionn.learning.eprop import EPROP_FEEDBACK, EProp, EPropResult, eprop_gradients, eprop_rnn
from bionn.learning.feedback import (
    BP,
    BRSF,
    DFA,
    FA,
    FRSF,
    USF,
    ErrorSignal,
    FeedbackConv1d,
    FeedbackConv2d,
    FeedbackLinear,
    FeedbackRule,
    KolenPollack,
    WeightMirror,
    exact_gradients,
    feedback_layers,
    feedback_linear,
)
from bionn.learning.metrics import gradient_alignment, matrix_angle, norm_ratios, weight_angles

__all__ = [
    "BP",
    "BRSF",
    "DFA",
    "EPROP_FEEDBACK",
    "EProp",
    "EPropResult",
    "FA",
    "FRSF",
    "METHODS",
    "USF",
    "Conversion",
    "ConversionReport",
    "ErrorSignal",
    "FeedbackConv1d",
    "FeedbackConv2d",
    "FeedbackLinear",
    "FeedbackRule",
    "FixedNorm",
    "KolenPollack",
    "WeightMirror",
    "convert",
    "eprop_gradients",
    "eprop_rnn",
    "recurrent_feedback",
    "exact_gradients",
    "feedback_layers",
    "feedback_linear",
    "gradient_alignment",
    "matrix_angle",
    "mirror",
    "norm_ratios",
    "weight_angles",
]


def mirror(model, **kwargs) -> None:
    """Run :meth:`WeightMirror.mirror` on every ``wm`` layer of ``model`` (after ``opt.step()``),
    converted CTRNN weights included.

    ``kwargs`` go to :meth:`WeightMirror.mirror`; ``every=k`` mirrors on every k-th call
    only (the first included; each rule counts its own calls), default every call."""
    for layer in feedback_layers(model).values():
        if isinstance(layer.rule, WeightMirror):
            layer.rule.mirror(layer.weight, **kwargs)
    for _, rule, weight in _rnn_rules(model):
        if isinstance(rule, WeightMirror):
            rule.mirror(weight, **kwargs)
