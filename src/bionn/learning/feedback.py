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
``brsf``      ``B = |R| sign(W)``, ``R`` redrawn at every *training* forward
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
    >>> net = convert(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)), "fa")
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

__all__ = [
    "BRSF",
    "BP",
    "DFA",
    "FA",
    "FRSF",
    "USF",
    "ErrorSignal",
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


# --------------------------------------------------------------------------- kernel
def _broadcast_error(e: Tensor, shape: torch.Size) -> Tensor:
    if e.shape[: e.dim()] != shape[: e.dim()]:
        raise RuntimeError(
            f"DFA: output error of shape {tuple(e.shape)} does not match the projection "
            f"{tuple(shape)}; output_dim must equal the size of the model output"
        )
    return e.reshape(*e.shape, *([1] * (len(shape) - e.dim()))).expand(shape)


class _Kernel:
    """Per-layer-kind gradients of a bilinear ``op(x, W, b)`` (chosen when the layer is built).

    ``grads(g, x, W, b, need)`` returns ``(dL/dx, dL/dW, dL/db)`` for
    ``y = op(x, W, b)`` with ``dL/dy = g``; entries not in ``need`` are ``None``.
    Called with ``W = B``, ``dL/dx`` is the error sent back through ``B``, and since
    ``op`` is bilinear ``dL/dW`` does not depend on the weight's value.
    ``project(e, g, x, B)`` is DFA's ``dL/dx`` for the output error ``e``: the
    transpose of ``x -> op(x, B, None)`` applied to ``e`` broadcast to its output.

    This base class differentiates ``op`` / ``project_op`` with autograd (one
    recomputation); subclasses use closed forms.
    """

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def project_op(self, x: Tensor, feedback: Tensor) -> Tensor:
        return self.op(x, feedback, None)

    def grads(self, g: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None,
              need: tuple[bool, bool, bool]) -> tuple[Tensor | None, ...]:
        leaves = [None if t is None else t.detach().requires_grad_(n)
                  for t, n in zip((x, weight, bias), need, strict=True)]
        wanted = [t for t in leaves if t is not None and t.requires_grad]
        with torch.enable_grad():
            got = iter(torch.autograd.grad(self.op(*leaves), wanted, g) if wanted else ())
        return tuple(next(got) if t is not None and t.requires_grad else None for t in leaves)

    def project(self, e: Tensor, g: Tensor, x: Tensor, feedback: Tensor) -> Tensor:
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            proj = self.project_op(x_, feedback)
            (gx,) = torch.autograd.grad(proj, [x_], _broadcast_error(e, proj.shape))
        return gx


class _LinearKernel(_Kernel):
    """``F.linear``: ``dL/dx = g W``, ``dL/dW = g^T x``, ``dL/db = sum g`` (any batch dims)."""

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    def grads(self, g, x, weight, bias, need):  # noqa: D102
        gx = g.matmul(weight) if need[0] else None
        g2 = g.reshape(-1, g.shape[-1])
        gw = g2.T.mm(x.reshape(-1, x.shape[-1])) if need[1] else None
        gb = g2.sum(0) if need[2] and bias is not None else None
        return gx, gw, gb

    def project(self, e, g, x, feedback):  # noqa: D102
        shape = torch.Size((*g.shape[:-1], feedback.shape[0]))
        return _broadcast_error(e, shape).matmul(feedback)


_LINEAR = _LinearKernel()


class _ConvKernel(_Kernel):
    """Zero-padded ``F.conv2d`` with fixed settings: one ``convolution_backward`` call."""

    def __init__(self, stride, padding, dilation, groups: int):
        self.stride, self.padding = list(stride), list(padding)
        self.dilation, self.groups = list(dilation), int(groups)

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _backward(self, g, x, weight, bias_sizes, groups, mask):
        unbatched = x.dim() == 3
        if unbatched:
            g, x = g.unsqueeze(0), x.unsqueeze(0)
        gx, gw, gb = torch.ops.aten.convolution_backward(
            g, x, weight, bias_sizes, self.stride, self.padding, self.dilation, False,
            [0, 0], groups, mask)
        if unbatched and gx is not None:
            gx = gx.squeeze(0)
        return gx, gw, gb

    def grads(self, g, x, weight, bias, need):  # noqa: D102
        need_b = need[2] and bias is not None
        return self._backward(g, x, weight, None if bias is None else [weight.shape[0]],
                              self.groups, [need[0], need[1], need_b])

    def project(self, e, g, x, feedback):  # noqa: D102
        # DFA's B has n_out "channels" (same kernel size, so same output positions as
        # g): the projection is ungrouped
        e = _broadcast_error(e, torch.Size((*g.shape[:-3], feedback.shape[0], *g.shape[-2:])))
        return self._backward(e, x, feedback, None, 1, [True, False, False])[0]


class _PaddedConvKernel(_Kernel):
    """``F.conv2d`` with a non-zero padding mode or string padding: autograd fallback."""

    def __init__(self, stride, padding, dilation, groups: int, padding_mode: str,
                 pad: list[int]):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.padding_mode, self.pad = padding_mode, pad

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._conv(x, weight, bias, self.groups)

    def project_op(self, x: Tensor, feedback: Tensor) -> Tensor:
        return self._conv(x, feedback, None, 1)  # ungrouped: B has n_out "channels"

    def _conv(self, x, weight, bias, groups):
        if self.padding_mode != "zeros":
            x = F.pad(x, self.pad, mode=self.padding_mode)
            return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, groups)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class _FeedbackFunction(torch.autograd.Function):
    """``y = op(x, W, b)``; backward sends the error back through ``B`` instead of ``W``.

    ``kernel`` (a :class:`_Kernel`) gives the layer kind's gradients: ``dL/dW``
    and ``dL/db`` are the true ones and ``dL/dx`` goes through ``B``; for DFA
    (``signal`` given) ``dL/dx`` is instead the output error ``e`` projected by
    ``B``. ``kp=True`` also returns ``dL/dW`` as ``B``'s gradient.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, feedback, kernel, signal, kp):  # noqa: D102
        ctx.save_for_backward(x, weight, bias, feedback)
        ctx.kernel, ctx.signal, ctx.kp = kernel, signal, kp
        return kernel.op(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_y):  # noqa: D102
        x, weight, bias, feedback = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        want_fb = ctx.kp and ctx.needs_input_grad[3]
        need_w = need_w or want_fb
        kernel = ctx.kernel
        if ctx.signal is None:
            gx, gw, gb = kernel.grads(grad_y, x, feedback, bias, (need_x, need_w, need_b))
        else:
            _, gw, gb = kernel.grads(grad_y, x, weight, bias, (False, need_w, need_b))
            gx = None
            if need_x:
                e = ctx.signal.error
                if e is None:
                    raise RuntimeError(
                        "DFA: no output error recorded; the loss must depend on the "
                        "output of the model that convert(..., 'dfa') returned"
                    )
                gx = kernel.project(e, grad_y, x, feedback)
        gfb = None
        if want_fb:  # kp: B gets dL/dW too
            gfb = gw
            # a distinct copy (or none), so that each AccumulateGrad can take its tensor over
            gw = gw.clone() if ctx.needs_input_grad[1] else None
        elif not ctx.needs_input_grad[1]:
            gw = None
        return gx, gw, gb, gfb, None, None, None


def _needs_feedback(x: Tensor, rule: FeedbackRule) -> bool:
    """Whether a backward can use ``B``: ``dL/dx`` is needed, or ``B`` learns (``kp``)."""
    return torch.is_grad_enabled() and (x.requires_grad or rule.kp)


def feedback_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                    rule: FeedbackRule | None = None, *,
                    feedback: Tensor | None = None) -> Tensor:
    """Functional :class:`FeedbackLinear`: ``y = x W^T + b`` with ``rule``'s backward.

    The forward is ``F.linear(x, weight, bias)``; the backward gives ``weight``
    and ``bias`` their true gradients and sends ``dL/dx = g B`` with
    ``B = rule.feedback(weight)`` (``(post, pre)``, like ``weight``). With
    ``rule=None`` or a rule whose ``B`` is ``None`` (``bp``) this is plain
    ``F.linear``. ``feedback`` overrides ``B`` (e.g. a scaled ``B``, or one
    ``B`` computed once and reused at every time step); with ``kp`` its
    gradient is ``dL/dweight``. The caller runs ``rule.prepare()`` (once per
    forward pass, not per call: ``brsf`` redraws there).

    Example:
        >>> import torch
        >>> w, b = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3)
        >>> x = torch.randn(4, 3, requires_grad=True)
        >>> feedback_linear(x, w, None, feedback=b).sum().backward()
        >>> torch.allclose(x.grad, b.sum(0).expand(4, 3)), torch.allclose(w.grad[0], x.sum(0))
        (True, True)
    """
    if rule is not None and not _needs_feedback(x, rule):
        return F.linear(x, weight, bias)
    if feedback is None and rule is not None:
        feedback = rule.feedback(weight)
    if feedback is None:
        return F.linear(x, weight, bias)
    signal = None if rule is None else rule.signal
    kp = False if rule is None else rule.kp
    return _FeedbackFunction.apply(x, weight, bias, feedback, _LINEAR, signal, kp)


# --------------------------------------------------------------------------- init
def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


class _Sampler:
    """Draws ``B``-shaped random tensors from one of :data:`INITS` (chosen at construction)."""

    def __init__(self, init: str, shape: tuple[int, ...], weight: Tensor, scale: float):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        fan_in, fan_out = _fans(shape)
        self.shape, self.scale, self.uniform = shape, float(scale), init != "same"
        self.norm = float(weight.detach().norm()) if init == "fixed_norm" else None
        if init == "xavier":
            self.bound = math.sqrt(6.0 / (fan_in + fan_out))
        elif init == "same":
            self.bound = float(weight.detach().std())  # Gaussian with W's std
        else:  # kaiming: PyTorch's default Kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
            self.bound = 1.0 / math.sqrt(fan_in)
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
    """

    method = "wm"

    @torch.no_grad()
    def mirror(self, weight: Tensor, eta: float = 0.01, noise_amplitude: float = 0.1,
               n_samples: int = 128, growth_control: bool = False,
               damping: float = 0.5, match_norm: bool = False) -> None:
        B = self.weight_feedback.view(weight.shape[0], -1)
        w = weight.detach().reshape(weight.shape[0], -1)
        x = torch.randn(n_samples, w.shape[1], device=w.device, dtype=w.dtype)
        x.mul_(noise_amplitude)
        B.addmm_(w.mm(x.T), x, alpha=eta)  # y^T x with y = x W^T
        if growth_control:
            x.normal_().mul_(noise_amplitude)
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

    ``R`` is redrawn (global RNG) at every forward in training mode only; in
    eval mode the last draw is kept.
    """

    method = "brsf"

    def __init__(self, weight: Tensor, init: str = "kaiming", scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__(weight, init, scale, generator)
        self._sampler = _Sampler(init, tuple(weight.shape), weight, scale)

    def prepare(self) -> None:
        if self.training and torch.is_grad_enabled():
            self.redraw()

    def redraw(self) -> None:
        with torch.no_grad():
            self._sampler.fill_(self.magnitude).abs_()


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
    kernel: _Kernel  # the layer kind's gradients, set in __init__
    exact: bool = False  # True: plain autograd (used by gradient_alignment)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight
        self.rule.prepare()
        # B only shapes dL/dx (and, for kp, receives dL/dW): without either, plain autograd
        # gives the same (true) weight and bias gradients
        if self.exact or not _needs_feedback(x, self.rule):
            return self._op(x, weight, self.bias)
        feedback = self.rule.feedback(weight)
        if feedback is None:
            return self._op(x, weight, self.bias)
        return _FeedbackFunction.apply(x, weight, self.bias, feedback, self.kernel,
                                       self.rule.signal, self.rule.kp)

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
        self.kernel = _LINEAR

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)


class FeedbackConv2d(_FeedbackMixin, nn.Conv2d):
    """``nn.Conv2d`` whose backward follows ``self.rule`` (see module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule: FeedbackRule = BP(self.weight)
        if self.padding_mode == "zeros" and not isinstance(self.padding, str):
            self.kernel = _ConvKernel(self.stride, self.padding, self.dilation, self.groups)
        else:  # the gradients need the padded input: differentiate with autograd
            self.kernel = _PaddedConvKernel(self.stride, self.padding, self.dilation,
                                            self.groups, self.padding_mode,
                                            list(self._reversed_padding_repeated_twice))

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._conv_forward(x, weight, bias)


FEEDBACK_LAYERS = (FeedbackLinear, FeedbackConv2d)


def feedback_layers(model: nn.Module) -> dict[str, FeedbackLinear | FeedbackConv2d]:
    """Converted layers of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, FEEDBACK_LAYERS)}


class exact_gradients:
    """Context manager: the converted parts of ``model`` backpropagate exactly (``B = W``).

    Covers converted layers and converted recurrent circuits (a module whose
    ``feedback`` is a ``ModuleDict`` of rules, e.g. CTRNN: detached for the duration).
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = list(feedback_layers(model).values())
        self.circuits = [m for m in model.modules()
                         if isinstance(getattr(m, "feedback", None), nn.ModuleDict)
                         and all(isinstance(r, FeedbackRule) for r in m.feedback.values())]
        self._rules: list[nn.ModuleDict] = []

    def __enter__(self) -> None:
        for layer in self.layers:
            layer.exact = True
        self._rules = [m.feedback for m in self.circuits]
        for m in self.circuits:
            m.feedback = None

    def __exit__(self, *exc) -> None:
        for layer in self.layers:
            layer.exact = False
        for m, rules in zip(self.circuits, self._rules, strict=True):
            m.feedback = rules


RULES: dict[str, Callable[..., FeedbackRule]] = {
    "bp": BP, "fa": FA, "usf": USF, "brsf": BRSF, "frsf": FRSF, "dfa": DFA,
    "wm": WeightMirror, "kp": KolenPollack,
}
