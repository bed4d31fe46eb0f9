"""Feedback-alignment family: one backward kernel, per-method feedback rules, two layers.

Every method computes the forward pass exactly as ``nn.Linear`` / ``nn.Conv2d``
(``y = op(x, W, b)``, weights ``(post, pre)``) and changes only what is sent
back to the layer's input. With ``g = dL/dy``:

* weight and bias gradients are the true ones, ``dL/dW = g^T x`` (conv: the
  usual correlation), computed from ``g`` and ``x``;
* the input gradient uses a feedback matrix ``B`` of the same shape as ``W``:
  ``dL/dx = g B`` (conv: the transposed convolution with ``B``).

``B`` per method (a :class:`FeedbackRule` submodule of the layer):

============  =================================================================
``bp``        ``B = W`` (plain autograd, no custom function)
``fa``        fixed random ``B`` (buffer)
``usf``       ``B = s sign(W)``, ``s`` the std of the chosen init (buffer)
``brsf``      ``B = |R| sign(W)``, ``R`` redrawn for every *training* forward
              (drawn when ``B`` is used: not for a layer whose input needs no gradient)
``frsf``      ``B = |B0| sign(W)``, ``B0`` fixed
``wm``        FA plus :meth:`WeightMirror.mirror`: ``B += eta y^T x`` with
              noise ``x`` and ``y = x W^T`` (weight mirrors, Akrout et al. 2019)
``kp``        ``B`` is an ``nn.Parameter`` whose gradient is ``dL/dW``: an
              optimizer step gives ``B`` the same update (and weight decay)
              as ``W`` (Kolen-Pollack)
``dfa``       ``dL/dx = e B`` with ``e`` the error at the network output and
              ``B`` of shape ``(n_out, in_features)`` (conv:
              ``(n_out, in_channels, kH, kW)``, ``e`` broadcast over the
              layer's output positions)
============  =================================================================

DFA: the projection replaces the gradient w.r.t. a layer's *input*. Autograd
then carries it through whatever produced that input (activation, BatchNorm,
pooling, residual sums), so for ``h_l = f(a_l)`` feeding layer ``l+1``::

    delta_l = dL/da_l = (e B_{l+1}) * f'(a_l),     dL/dW_l = delta_l^T h_{l-1}

and the last layer gets the true error. The matrix that projects to hidden
layer ``l`` is therefore held by the layer that *reads* ``h_l``. Where a hidden
activity feeds several converted layers (residual blocks), their projections
add up, together with any ordinary gradient arriving through identity paths;
BatchNorm, pooling and activations are differentiated by ordinary autograd.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from bionn.learning import convert
    >>> net = convert(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)), "fa").model
    >>> net(torch.randn(3, 5)).sum().backward()
    >>> net[0].weight.grad.shape
    torch.Size([4, 5])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bionn.functional import philox
from bionn.functional.feedback import (
    LINEAR,
    ConvKernel,
    FeedbackKernel,
    PaddedConvKernel,
    feedback_apply,
    feedback_linear,
)
from bionn.recurrent import recurrent_models

__all__ = [
    "BRSF",
    "BP",
    "DFA",
    "FA",
    "FRSF",
    "USF",
    "ErrorSignal",
    "FeedbackConv1d",
    "FeedbackConv2d",
    "FeedbackLinear",
    "FeedbackRule",
    "KolenPollack",
    "WeightMirror",
    "exact_gradients",
    "feedback_layers",
    "feedback_linear",
]

INITS = ("kaiming", "xavier", "same", "fixed_norm")


# --------------------------------------------------------------------------- init
def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


class _Sampler:
    """Draws ``B``-shaped random tensors from one of :data:`INITS` (chosen at construction)."""

    def __init__(self, init: str, shape: tuple[int, ...], weight: Tensor, scale: float):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.shape, self.scale, self.uniform = shape, float(scale), init != "same"
        self.norm = float(weight.detach().norm()) if init == "fixed_norm" else None
        if len(shape) < 2 and init in ("kaiming", "xavier"):
            # the values of a sparse matrix have no fan: uniform with W's std
            self.bound = math.sqrt(3.0) * float(weight.detach().std())
        elif init == "xavier":
            fan_in, fan_out = _fans(shape)
            self.bound = math.sqrt(6.0 / (fan_in + fan_out))
        elif init == "same":
            self.bound = float(weight.detach().std())  # Gaussian with W's std
        else:  # kaiming: PyTorch's default Kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
            self.bound = 1.0 / math.sqrt(_fans(shape)[0])
        # std of one drawn entry (the uSF scale)
        self.std = self.bound / math.sqrt(3.0) if self.uniform else self.bound
        if self.norm is not None:
            self.std = self.norm / math.sqrt(math.prod(shape))
        self.std *= self.scale

    def __call__(self, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.uniform:
            r = torch.rand(self.shape, generator=generator) * (2 * self.bound) - self.bound
        else:
            r = torch.randn(self.shape, generator=generator) * self.bound
        if self.norm is not None:
            r = r * (self.norm / r.norm().clamp_min(1e-12))
        return (r * self.scale).to(device=like.device, dtype=like.dtype)

    def fill_(self, out: Tensor) -> Tensor:
        """Draw into ``out`` in place (global RNG of ``out``'s device); returns ``out``."""
        if self.uniform:
            out.uniform_(-self.bound, self.bound)
        else:
            out.normal_(0.0, self.bound)
        if self.norm is not None:
            out.mul_(self.norm / out.norm().clamp_min(1e-12))
        return out.mul_(self.scale)


# --------------------------------------------------------------------------- rules
class FeedbackRule(nn.Module):
    """What a layer sends back instead of ``W``; subclasses own ``B`` as buffers/parameters."""

    method = ""
    kp = False  # B receives W's gradient
    signal: ErrorSignal | None = None  # DFA output error

    def feedback(self, weight: Tensor) -> Tensor | None:
        """The feedback matrix ``B`` for the current ``weight`` (``None``: use ``W``)."""
        raise NotImplementedError

    def feedback_shape(self, weight: Tensor) -> tuple[int, ...]:
        return tuple(weight.shape)

    def prepare(self) -> None:
        """Called at the start of every forward of the layer (no-op by default)."""


class BP(FeedbackRule):
    """Backpropagation: ``B = W``; the layer runs plain autograd."""

    method = "bp"

    def __init__(self, weight: Tensor, init: str = "kaiming", scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()

    def feedback(self, weight: Tensor) -> None:
        return None


class FA(FeedbackRule):
    """Feedback alignment (Lillicrap et al. 2016): fixed random ``B``, ``dL/dx = g B``."""

    method = "fa"

    def __init__(self, weight: Tensor, init: str = "kaiming", scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        shape = self.feedback_shape(weight)
        self.register_buffer("weight_feedback", _Sampler(init, shape, weight, scale)(
            weight, generator))

    def feedback(self, weight: Tensor) -> Tensor:
        return self.weight_feedback


def _noise(n: int, like: Tensor) -> Tensor:
    """``(n, like.shape[1])`` standard normals: Philox normals for float32 on the CPU
    where the compiled generator is built, else ``torch.randn`` (global generator)."""
    shape = (n, like.shape[1])
    if philox.eligible(like) and philox.available():
        return philox.normal(math.prod(shape), philox.draw_key()).view(shape)
    return torch.randn(shape, device=like.device, dtype=like.dtype)


class WeightMirror(FA):
    """Weight mirrors (Akrout et al. 2019): FA whose ``B`` learns ``W`` from noise.

    Call :meth:`mirror` after each optimizer step: with noise ``x`` (``n``
    samples, std ``noise_amplitude``) and ``y = x W^T`` (``W`` flattened to
    ``(post, pre*kH*kW)``, i.e. one conv patch), ``B += eta y^T x``.
    ``growth_control`` then rescales each row of ``B`` to
    ``damping / std(x' B^T)`` with fresh noise ``x'`` (BioTorch defaults);
    ``match_norm`` instead rescales ``B`` to ``||W||_F``. The mirror update only
    grows ``B``; for a recurrent ``B`` its size sets how the error grows through
    time, so there ``match_norm`` keeps BPTT-through-``B`` stable.

    ``every=k`` mirrors on the 1st, (k+1)-th, (2k+1)-th ... call only (the
    others return at once): the two noise products per layer cost about as much
    as the layer's own forward and backward pass, so a per-step mirror roughly
    doubles the step of a small MLP. The default ``every=1`` mirrors at every call.

    On float32 CPU weights with a C++ compiler the noise ``x`` is the Philox
    normals of :func:`bionn.functional.philox.normal` (one key per draw from the
    global generator; about 3x faster than ``torch.randn`` on one core in a one-off
    timing), else
    ``torch.randn``; both follow ``torch.manual_seed``, with different numbers.
    """

    method = "wm"
    _mirror_calls = 0  # calls of mirror() so far (the phase of ``every``)

    def mirror(self, weight: Tensor, eta: float = 0.01, noise_amplitude: float = 0.1,
               n_samples: int = 128, growth_control: bool = False,
               damping: float = 0.5, match_norm: bool = False, every: int = 1) -> None:
        """One mirror update of ``B`` from ``weight`` (see the class docstring);
        with ``every=k`` only on every k-th call, starting with the first."""
        if self.due(every):
            self.update(weight, eta, noise_amplitude, n_samples, growth_control, damping,
                        match_norm)

    def due(self, every: int = 1) -> bool:
        """Count one call of :meth:`mirror`; whether it mirrors (the 1st, (k+1)-th, ...
        call for ``every=k``)."""
        if int(every) < 1:
            raise ValueError(f"every must be a positive number of calls, got {every!r}")
        calls = self._mirror_calls
        self.__dict__["_mirror_calls"] = calls + 1  # nn.Module.__setattr__ costs ~4 us
        return calls % int(every) == 0

    @torch.no_grad()
    def update(self, weight: Tensor, eta: float = 0.01, noise_amplitude: float = 0.1,
               n_samples: int = 128, growth_control: bool = False, damping: float = 0.5,
               match_norm: bool = False) -> None:
        """One mirror update of ``B`` now (not counted by ``every``)."""
        B = self.weight_feedback.view(weight.shape[0], -1)
        w = weight.detach().reshape(weight.shape[0], -1)
        x = _noise(n_samples, w).mul_(noise_amplitude)
        B.addmm_(w.mm(x.T), x, alpha=eta)  # y^T x with y = x W^T
        if growth_control:
            x = _noise(n_samples, w).mul_(noise_amplitude)
            B.mul_(damping / (x @ B.T).std(dim=0).clamp_min(1e-12)[:, None])
        if match_norm:
            B.mul_(w.norm() / B.norm().clamp_min(1e-30))


class KolenPollack(FeedbackRule):
    """Kolen-Pollack: ``B`` (an ``nn.Parameter``) gets ``W``'s gradient.

    An optimizer step then moves ``B`` exactly as ``W`` (``dB = dW`` in the
    ``(post, pre)`` layout, i.e. the transposed update of the feedback path)
    and the optimizer's weight decay shrinks both, so ``W - B`` decays to 0:
    ``W' - B' = (1 - lr wd)(W - B)`` for SGD.
    """

    method = "kp"
    kp = True

    def __init__(self, weight: Tensor, init: str = "kaiming", scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        shape = self.feedback_shape(weight)
        self.weight_feedback = nn.Parameter(_Sampler(init, shape, weight, scale)(
            weight, generator))

    def feedback(self, weight: Tensor) -> Tensor:
        return self.weight_feedback


class USF(FeedbackRule):
    """Uniform sign-concordant feedback (Xiao et al. 2018): ``B = s sign(W)``."""

    method = "usf"

    def __init__(self, weight: Tensor, init: str = "kaiming", scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        std = _Sampler(init, tuple(weight.shape), weight, scale).std
        self.register_buffer("scale", torch.tensor(std, dtype=weight.dtype,
                                                   device=weight.device))

    def feedback(self, weight: Tensor) -> Tensor:
        return torch.sign(weight.detach()).mul_(self.scale)


class FRSF(FeedbackRule):
    """Fixed random-magnitude sign-concordant feedback: ``B = |B0| sign(W)``."""

    method = "frsf"

    def __init__(self, weight: Tensor, init: str = "kaiming", scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        sampler = _Sampler(init, tuple(weight.shape), weight, scale)
        self.register_buffer("magnitude", sampler(weight, generator).abs())

    def feedback(self, weight: Tensor) -> Tensor:
        return torch.sign(weight.detach()).mul_(self.magnitude)


class BRSF(FRSF):
    """Batchwise random-magnitude sign-concordant feedback: ``B = |R| sign(W)``.

    ``R`` is redrawn for every forward in training mode only; in eval mode the
    last draw is kept. The draw is made when ``B`` is first read after that
    forward (by the layer when its backward needs ``B``, or by :meth:`feedback` /
    ``feedback_weight``): a layer whose input needs no gradient (the first layer
    of a network) never uses ``B`` and draws nothing.

    With a uniform ``init`` (``kaiming``, ``xavier``) on contiguous float32 CPU
    weights and a C++ compiler, ``|R|`` and ``B`` are drawn in one compiled pass
    (:func:`bionn.functional.philox.sign_concordant_uniform_`: Philox4x32-10
    uniforms keyed by one draw from the global generator); otherwise ``R`` is
    PyTorch's ``uniform_``/``normal_`` from the global generator. Both are
    deterministic under ``torch.manual_seed``; their numbers differ.
    """

    method = "brsf"

    def __init__(self, weight: Tensor, init: str = "kaiming", scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__(weight, init, scale, generator)
        self._sampler = _Sampler(init, tuple(weight.shape), weight, scale)
        self._stale = False  # a training forward ran since the last draw
        # the one-pass compiled draw applies to a plain uniform sampler
        self._compiled = (self._sampler.uniform and self._sampler.norm is None
                          and philox.available())

    def prepare(self) -> None:
        if self.training and torch.is_grad_enabled():
            self.__dict__["_stale"] = True  # nn.Module.__setattr__ costs ~4 us per call

    def _one_pass(self, *tensors: Tensor) -> bool:
        return self._compiled and philox.eligible(*tensors)

    def redraw(self) -> None:
        """Draw ``R`` now."""
        self.__dict__["_stale"] = False
        with torch.no_grad():
            m = self.magnitude
            if self._one_pass(m):  # |R| = |U(-b, b)| s = b s U[0, 1)
                u = philox.uniform(m.numel(), philox.draw_key()).view_as(m)
                m.copy_(u.mul_(self._sampler.bound * self._sampler.scale))
            else:
                self._sampler.fill_(m).abs_()

    def feedback(self, weight: Tensor) -> Tensor:
        w = weight.detach()
        if self._stale and self._one_pass(w, self.magnitude):
            self.__dict__["_stale"] = False  # redraw() and the sign in one pass
            return philox.sign_concordant_uniform_(
                w, self.magnitude, torch.empty_like(w),
                self._sampler.bound * self._sampler.scale, philox.draw_key())
        if self._stale:
            self.redraw()
        return super().feedback(weight)


class ErrorSignal:
    """Holds the latest output error ``e = dL/dy`` for the DFA layers of one model."""

    def __init__(self) -> None:
        self.error: Tensor | None = None


class _CaptureError(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, signal):  # noqa: D102
        ctx.signal = signal
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        ctx.signal.error = grad.detach()
        return grad, None


class DFAOutputHook:
    """Forward hook on the converted model: passes the output through an identity
    whose backward records ``dL/dy`` in the shared :class:`ErrorSignal` before any
    layer's backward runs (it is the last node of the forward graph)."""

    def __init__(self, signal: ErrorSignal) -> None:
        self.signal = signal

    def __call__(self, module: nn.Module, inputs, output):
        if not isinstance(output, Tensor):
            raise TypeError("DFA needs a model whose forward returns a single tensor")
        if torch.is_grad_enabled() and output.requires_grad:
            return _CaptureError.apply(output, self.signal)
        return output


class DFA(FeedbackRule):
    """Direct feedback alignment (Nokland 2016): ``dL/dx = e B``, ``B`` of shape
    ``(n_out, in_features)`` (conv: ``(n_out, in_channels, kH, kW)``)."""

    method = "dfa"

    def __init__(self, weight: Tensor, init: str = "kaiming", scale: float = 1.0,
                 generator: torch.Generator | None = None, *, output_dim: int,
                 signal: ErrorSignal, groups: int = 1):
        super().__init__()
        self.output_dim = int(output_dim)
        self.groups = int(groups)
        shape = self.feedback_shape(weight)
        self.register_buffer("weight_feedback", _Sampler(init, shape, weight, scale)(
            weight, generator))
        self.signal = signal

    def feedback_shape(self, weight: Tensor) -> tuple[int, ...]:
        in_channels = weight.shape[1] * self.groups  # a grouped conv's weight holds C_in / groups
        return (self.output_dim, in_channels, *weight.shape[2:])

    def feedback(self, weight: Tensor) -> Tensor:
        return self.weight_feedback


# --------------------------------------------------------------------------- layers
class _FeedbackMixin:
    """Shared forward of :class:`FeedbackLinear` and :class:`FeedbackConv2d`."""

    rule: FeedbackRule
    kernel: FeedbackKernel  # the layer kind's gradients, set in __init__
    exact: bool = False  # True: plain autograd (used by gradient_alignment)

    def forward(self, x: Tensor) -> Tensor:
        rule = self.rule
        rule.prepare()
        if self.exact:
            return self._op(x, self.weight, self.bias)
        # plain autograd where B is not used (no dL/dx needed and B does not learn)
        return feedback_apply(self.kernel, x, self.weight, self.bias, rule)

    @property
    def feedback_weight(self) -> Tensor:
        """The current ``B`` (``W`` itself for ``bp``), detached."""
        b = self.rule.feedback(self.weight)
        return (self.weight if b is None else b).detach()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", method={self.rule.method}"


class FeedbackLinear(_FeedbackMixin, nn.Linear):
    """``nn.Linear`` whose backward follows ``self.rule`` (see module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.rule: FeedbackRule = BP(self.weight)
        self.kernel = LINEAR

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)


class FeedbackConv2d(_FeedbackMixin, nn.Conv2d):
    """``nn.Conv2d`` whose backward follows ``self.rule`` (see module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule: FeedbackRule = BP(self.weight)
        if self.padding_mode == "zeros" and not isinstance(self.padding, str):
            self.kernel = ConvKernel(self.stride, self.padding, self.dilation, self.groups)
        else:  # the gradients need the padded input: differentiate with autograd
            self.kernel = PaddedConvKernel(self.stride, self.padding, self.dilation,
                                            self.groups, self.padding_mode,
                                            list(self._reversed_padding_repeated_twice))

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._conv_forward(x, weight, bias)


class FeedbackConv1d(_FeedbackMixin, nn.Conv1d):
    """``nn.Conv1d`` whose backward follows ``self.rule`` (gradients by autograd on
    ``F.conv1d``; see module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule: FeedbackRule = BP(self.weight)
        self.kernel = PaddedConvKernel(self.stride, self.padding, self.dilation, self.groups,
                                       self.padding_mode, list(self._reversed_padding_repeated_twice),
                                       conv=F.conv1d)

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._conv_forward(x, weight, bias)


FEEDBACK_LAYERS = (FeedbackLinear, FeedbackConv1d, FeedbackConv2d)


def feedback_layers(model: nn.Module) -> dict[str, FeedbackLinear | FeedbackConv2d]:
    """Converted layers of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, FEEDBACK_LAYERS)}


class exact_gradients:
    """Context manager: the converted parts of ``model`` backpropagate exactly (``B = W``).

    Covers converted layers and converted recurrent models (any
    :class:`~bionn.recurrent.RecurrentModel` with ``credit_assignment`` rules:
    detached for the duration).
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = list(feedback_layers(model).values())
        self.circuits = [m for _, m in recurrent_models(model) if m.credit_assignment is not None]
        self._rules: list[nn.ModuleDict] = []

    def __enter__(self) -> None:
        for layer in self.layers:
            layer.exact = True
        self._rules = [m.credit_assignment for m in self.circuits]
        for m in self.circuits:
            m.credit_assignment = None

    def __exit__(self, *exc) -> None:
        for layer in self.layers:
            layer.exact = False
        for m, rules in zip(self.circuits, self._rules, strict=True):
            m.credit_assignment = rules


FEEDBACK_RULES: dict[str, Callable[..., FeedbackRule]] = {
    "bp": BP, "fa": FA, "usf": USF, "brsf": BRSF, "frsf": FRSF, "dfa": DFA,
    "wm": WeightMirror, "kp": KolenPollack,
}
