"""Feedback products: a bilinear operation whose backward sends the error through ``B``.

``y = op(x, W, b)`` forward; backward gives ``W`` and ``b`` their true gradients
and sends ``dL/dx`` through a feedback tensor ``B`` of ``W``'s shape instead of
``W`` (feedback alignment and its relatives, :mod:`bionn.learning`). One
autograd Function serves every operation; a :class:`FeedbackKernel` per kind of
product gives the gradients: closed forms for ``F.linear`` and zero-padded
``F.conv2d``, autograd recomputation for anything else bilinear (sparse
products, padded convolutions). ``F.linear`` without DFA's output error, the most
frequent case (every feedback-alignment linear layer, every recurrent step), takes a
leaner Function with the same gradients and less Python per call.

The functions take a *rule* by protocol: any object with ``feedback(W)``
(``B`` or ``None`` for backprop), ``kp`` (``B`` receives ``W``'s gradient) and
``signal`` (DFA's recorded output error, or ``None``).

Example:
    >>> import torch
    >>> w, b = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3)
    >>> x = torch.randn(4, 3, requires_grad=True)
    >>> feedback_linear(x, w, None, feedback=b).sum().backward()
    >>> torch.allclose(x.grad, b.sum(0).expand(4, 3))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FeedbackKernel",
    "LinearKernel",
    "ConvKernel",
    "OpKernel",
    "LINEAR",
    "feedback_apply",
    "feedback_linear",
    "needs_feedback",
]

def broadcast_error(e: Tensor, shape: torch.Size) -> Tensor:
    if e.shape[: e.dim()] != shape[: e.dim()]:
        raise RuntimeError(
            f"DFA: output error of shape {tuple(e.shape)} does not match the projection "
            f"{tuple(shape)}; output_dim must equal the size of the model output"
        )
    return e.reshape(*e.shape, *([1] * (len(shape) - e.dim()))).expand(shape)


class FeedbackKernel:
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
            (gx,) = torch.autograd.grad(proj, [x_], broadcast_error(e, proj.shape))
        return gx


class LinearKernel(FeedbackKernel):
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
        return broadcast_error(e, shape).matmul(feedback)


LINEAR = LinearKernel()


class ConvKernel(FeedbackKernel):
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
        e = broadcast_error(e, torch.Size((*g.shape[:-3], feedback.shape[0], *g.shape[-2:])))
        return self._backward(e, x, feedback, None, 1, [True, False, False])[0]


class PaddedConvKernel(FeedbackKernel):
    """A convolution (``F.conv2d``, or ``conv=F.conv1d``) with any padding mode:
    autograd fallback."""

    def __init__(self, stride, padding, dilation, groups: int, padding_mode: str,
                 pad: list[int], conv: Callable[..., Tensor] = F.conv2d):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.padding_mode, self.pad, self.conv = padding_mode, pad, conv

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._conv(x, weight, bias, self.groups)

    def project_op(self, x: Tensor, feedback: Tensor) -> Tensor:
        return self._conv(x, feedback, None, 1)  # ungrouped: B has n_out "channels"

    def _conv(self, x, weight, bias, groups):
        if self.padding_mode != "zeros":
            x = F.pad(x, self.pad, mode=self.padding_mode)
            return self.conv(x, weight, bias, self.stride, 0, self.dilation, groups)
        return self.conv(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class OpKernel(FeedbackKernel):
    """Any bilinear ``op(x, weight, bias)`` (e.g. a sparse product or a padded
    convolution), differentiated by autograd in the backward (one recomputation).

    Example:
        >>> import torch
        >>> k = OpKernel(lambda x, w, b: x * w)
        >>> x, w = torch.ones(3, requires_grad=True), torch.full((3,), 2.0, requires_grad=True)
        >>> feedback_apply(k, x, w, None, feedback=torch.full((3,), 5.0)).sum().backward()
        >>> x.grad.tolist(), w.grad.tolist()
        ([5.0, 5.0, 5.0], [1.0, 1.0, 1.0])
    """

    def __init__(self, op: Callable[[Tensor, Tensor, Tensor | None], Tensor]) -> None:
        self._op = op

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._op(x, weight, bias)


class _FeedbackFunction(torch.autograd.Function):
    """``y = op(x, W, b)``; backward sends the error back through ``B`` instead of ``W``.

    ``kernel`` (a :class:`FeedbackKernel`) gives the layer kind's gradients: ``dL/dW``
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


class _LinearFeedback(torch.autograd.Function):
    """:class:`_FeedbackFunction` for ``F.linear`` without DFA's output error: the same
    gradients with less Python per call (every feedback-alignment linear layer and
    recurrent step takes it). A ``feedback`` that requires grad gets ``dL/dW`` (``kp``);
    the caller detaches it otherwise."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback):  # noqa: D102
        ctx.save_for_backward(x, feedback)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x, feedback = ctx.saved_tensors
        need_x, need_w, need_b, need_fb = ctx.needs_input_grad
        gx = g.matmul(feedback) if need_x else None
        if g.dim() != 2:
            g, x = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        gw = g.t().mm(x) if need_w or need_fb else None
        gb = g.sum(0) if need_b else None
        if need_fb:  # kp: a distinct copy for W (each AccumulateGrad takes its tensor over)
            return gx, gw.clone() if need_w else None, gb, gw
        return gx, gw, gb, None


def needs_feedback(x: Tensor, rule: Any) -> bool:
    """Whether a backward can use ``B``: ``dL/dx`` is needed, or ``B`` learns (``kp``)."""
    return torch.is_grad_enabled() and (x.requires_grad or rule.kp)


def feedback_apply(kernel: FeedbackKernel, x: Tensor, weight: Tensor, bias: Tensor | None = None,
                   rule: Any | None = None, *, feedback: Tensor | None = None) -> Tensor:
    """``kernel.op(x, weight, bias)`` whose backward sends ``dL/dx`` through ``B``.

    ``B`` is ``feedback`` if given, else ``rule.feedback(weight)``; with no ``B``
    (no rule, or a ``bp`` rule) this is the plain operation under autograd.
    ``weight`` and ``bias`` always get their true gradients; with ``rule.kp``
    ``B`` receives ``dL/dweight`` too; with ``rule.signal`` (DFA) ``dL/dx`` is
    the recorded output error projected by ``B``. The caller runs
    ``rule.prepare()`` once per forward pass.
    """
    if rule is not None and not needs_feedback(x, rule):
        return kernel.op(x, weight, bias)
    if feedback is None and rule is not None:
        feedback = rule.feedback(weight)
    if feedback is None:
        return kernel.op(x, weight, bias)
    signal = None if rule is None else rule.signal
    kp = False if rule is None else rule.kp
    if kernel is LINEAR and signal is None:
        if feedback.requires_grad and not kp:
            feedback = feedback.detach()
        return _LinearFeedback.apply(x, weight, bias, feedback)
    return _FeedbackFunction.apply(x, weight, bias, feedback, kernel, signal, kp)


def feedback_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                    rule: Any | None = None, *,
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
    return feedback_apply(LINEAR, x, weight, bias, rule, feedback=feedback)
