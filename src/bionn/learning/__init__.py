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

import torch

from bionn.learning.convert import (
    METHODS,
    Conversion,
    ConversionReport,
    FixedNorm,
    convert,
    converted_recurrent,
    recurrent_feedback,
)
from bionn.learning.eprop import EPROP_FEEDBACK, EProp, EPropResult, eprop_gradients, eprop_rnn
from bionn.learning.feedback import (
    BP,
    BRSF,
    DFA,
    FA,
    FEEDBACK_LAYERS,
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


def mirror(model, every: int = 1, **kwargs) -> None:
    """Run :meth:`WeightMirror.mirror` on every ``wm`` layer of ``model`` (after ``opt.step()``),
    converted recurrent connections included.

    ``kwargs`` go to :meth:`WeightMirror.update`; ``every=k`` mirrors on every k-th call
    only (the first included; each rule counts its own calls), default every call. A
    recurrent model's effective weights are computed only when one of its rules mirrors."""
    recurrent = False  # one walk over the modules when none is recurrent
    for m in model.modules():
        if isinstance(m, FEEDBACK_LAYERS):
            if isinstance(m.rule, WeightMirror) and m.rule.due(every):
                m.rule.update(m.weight, **kwargs)
        elif hasattr(type(m), "connection_weights"):
            recurrent = True
    for _, rnn in converted_recurrent(model) if recurrent else ():
        due = [key for key, rule in rnn.credit_assignment.items()
               if isinstance(rule, WeightMirror) and rule.due(every)]
        if due:
            with torch.no_grad():
                weights = rnn.connection_weights()
            for key in due:
                rnn.credit_assignment[key].update(weights[key], **kwargs)
