"""A fused CTRNN time loop with a hand-written backward pass (manual BPTT).

The plain autograd loop records a handful of graph nodes per time step and, in
the backward pass, computes the recurrent weight gradient as ``T`` small
``(N, B) x (B, N)`` products that are then summed. :func:`ctrnn_scan` runs the
forward loop without recording a graph, writes ``r_t`` (and ``h_t`` when the
backward needs it) straight into preallocated ``(batch, time, N)`` buffers, saves
only those for the backward, and in the backward pass does only
the per-step work that is inherently sequential (one ``(B, N) x (N, N)``
product and two element-wise ops per step); the recurrent weight gradient is
then ONE ``(N, B*T) x (B*T, N)`` product after the loop. The backward is
first-order only (no double backward) and does not support ``vmap``.

The recursion is the one of :meth:`bionn.rate.CTRNN.run`::

    h_t = leak * h_{t-1} + d_t + r_{t-1} @ Wt
    r_t = f(h_t) + p_t

with ``leak = 1 - alpha`` ``(N,)``, ``d_t`` the precomputed drive
``alpha (W_in x_t + b) + pre-activation noise``, ``Wt = (alpha[:, None] * W_rec).T``
(``(pre, post)``) and ``p_t`` the optional post-activation noise.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["SCAN_ACTIVATIONS", "ctrnn_scan", "linear_few_inputs"]

#: Activations whose derivative :func:`ctrnn_scan` implements.
SCAN_ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "retanh")

_aten = torch.ops.aten


def _act_into(name: str, h: Tensor, out: Tensor) -> None:
    """``out[...] = f(h)`` without allocating (same kernels as the eager activations)."""
    if name == "relu":
        torch.clamp_min(h, 0.0, out=out)  # torch.relu is clamp_min(x, 0)
    elif name == "tanh":
        torch.tanh(h, out=out)
    elif name == "sigmoid":
        torch.sigmoid(h, out=out)
    elif name == "softplus":
        _aten.softplus.out(h, 1, 20, out=out)  # F.softplus defaults: beta=1, threshold=20
    else:  # retanh
        torch.tanh(h, out=out)
        out.clamp_min_(0.0)


def _act(name: str, h: Tensor) -> Tensor:
    out = torch.empty_like(h)
    _act_into(name, h, out)
    return out


def _act_backward_into(name: str, g: Tensor, h: Tensor, y: Tensor | None, out: Tensor) -> None:
    """``out[...] = g * f'(h)``; ``y`` is ``f(h)`` (only read for tanh, sigmoid, retanh).

    For relu ``h`` may also be ``relu(h)`` (same sign test). ``out`` may be ``g``.
    Uses the kernels autograd uses, so the result matches the autograd loop.
    """
    if name == "relu":
        _aten.threshold_backward.grad_input(g, h, 0, grad_input=out)
    elif name == "tanh":
        _aten.tanh_backward.grad_input(g, y, grad_input=out)
    elif name == "sigmoid":
        _aten.sigmoid_backward.grad_input(g, y, grad_input=out)
    elif name == "softplus":
        _aten.softplus_backward.grad_input(g, h, 1, 20, grad_input=out)
    else:  # retanh = clamp_min(tanh(h), 0): the clamp passes the gradient where tanh(h) >= 0
        _aten.tanh_backward.grad_input(g, y, grad_input=out)
        out.masked_fill_(h < 0, 0.0)


def _shifted_outer_sum(prev: Tensor, cur: Tensor, first: Tensor) -> Tensor:
    """``sum_{b,t} prev_{b,t-1}^T cur_{b,t}`` with ``prev_{b,-1} = first_b``, as one big matmul.

    ``prev`` and ``cur`` are contiguous ``(B, T, N)``. Flattened to ``(B*T, N)``,
    row ``i`` of ``prev`` paired with row ``i + 1`` of ``cur`` gives every wanted
    pair ``(b, t-1) -> (b, t)`` plus the ``B - 1`` pairs ``(b, T-1) -> (b+1, 0)``
    that cross a batch boundary; those are subtracted and the ``t = 0`` pairs
    with ``first`` added by two small products. No copy of the big tensors.
    """
    B, T, N = cur.shape
    pf, cf = prev.reshape(B * T, N), cur.reshape(B * T, N)
    out = pf[:-1].T @ cf[1:]
    if B > 1:
        out.addmm_(prev[:-1, -1].T, cur[1:, 0], alpha=-1)
    out.addmm_(first.T, cur[:, 0])
    return out


class _LinearFewInputs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):  # noqa: D102
        ctx.save_for_backward(x, w)
        ctx.has_b = b is not None
        return torch.nn.functional.linear(x, w, b)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):  # noqa: D102
        x, w = ctx.saved_tensors
        g2 = g.reshape(-1, g.shape[-1])
        grad_x = (g @ w) if ctx.needs_input_grad[0] else None
        # (in, rows) x (rows, out), then transposed: the orientation the BLAS runs fast
        # when in_features is small (the (out, rows) x (rows, in) product is several
        # times slower for in = 3)
        grad_w = (x.reshape(-1, x.shape[-1]).T @ g2).T if ctx.needs_input_grad[1] else None
        grad_b = g2.sum(0) if ctx.has_b and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear_few_inputs(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``F.linear(x, w, b)`` whose weight gradient is computed as ``(x^T g)^T``.

    The same values and gradients as ``F.linear`` (up to rounding); faster backward for a
    projection from a few inputs onto many units over a long ``(batch * time)``, such as a
    CTRNN's input weights. ``x``: ``(..., in)``, ``w``: ``(out, in)``, ``b``: ``(out,)``.

    Example:
        >>> x, w = torch.randn(4, 5, 3), torch.randn(8, 3, requires_grad=True)
        >>> linear_few_inputs(x, w).sum().backward()
        >>> torch.allclose(w.grad, torch.ones(20, 8).T @ x.reshape(20, 3))
        True
    """
    return _LinearFewInputs.apply(x, w, b)


class _CTRNNScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, drive, w_t, leak, h0, r0, post_noise, act, w_out, b_out):  # noqa: D102
        B, T, N = drive.shape
        has_post = post_noise is not None
        # All h_t are kept only when the backward reads them: for the leak gradient, for
        # f'(h) that cannot be read off r_t = f(h_t) (softplus, retanh, or any noisy r_t).
        # Otherwise h lives in two (B, N) buffers and the derivative is taken from r_t.
        keep_h = ctx.needs_input_grad[2] or has_post or act in ("softplus", "retanh")
        ctx.set_materialize_grads(False)
        # Time-major buffers (T, B, N): each step's (B, N) slice is one contiguous block, so
        # the per-step kernels touch a few pages instead of B rows T * N apart; the rates
        # are returned as their (B, T, N) view.
        R = drive.new_empty(T, B, N)
        if keep_h:
            H = drive.new_empty(T, B, N)
            h_bufs = None
        else:
            H = None
            h_bufs = (drive.new_empty(B, N), drive.new_empty(B, N))
        # Per-step views made in one call each (cheaper than T Python-level slices).
        d_steps, r_steps = drive.unbind(1), R.unbind(0)
        h_steps = H.unbind(0) if H is not None else None
        p_steps = post_noise.unbind(1) if has_post else None
        h_prev, r_prev = h0, r0.expand(B, N)
        for t in range(T):
            h = h_bufs[t % 2] if h_steps is None else h_steps[t]
            torch.addcmul(d_steps[t], leak, h_prev, out=h)
            h.addmm_(r_prev, w_t)
            r = r_steps[t]
            _act_into(act, h, r)
            if has_post:
                r.add_(p_steps[t])
            h_prev, r_prev = h, r
        ctx.act, ctx.has_post = act, has_post
        ctx.h0_shape, ctx.r0_shape = h0.shape, r0.shape
        ctx.save_for_backward(H, R, w_t, leak, h0, r0, w_out)
        if w_out is None:
            out = drive.new_empty(0)
        else:  # the linear readout (one product after the loop)
            flat = R.view(T * B, N)
            out = (torch.addmm(b_out, flat, w_out.T) if b_out is not None
                   else flat @ w_out.T).view(T, B, -1).transpose(0, 1)
        return R.transpose(0, 1), h_prev.clone(), out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rates, grad_h_last, grad_out):  # noqa: D102
        H, R, w_t, leak, h0, r0, w_out = ctx.saved_tensors
        if w_out is None:
            grad_out = None
        act = ctx.act
        T, B, N = R.shape  # time-major (see forward)
        h0, r0 = h0.expand(B, N), r0.expand(B, N)
        needs = ctx.needs_input_grad
        w_back = w_t.T  # g_h @ Wt^T is the gradient w.r.t. r_{t-1}
        # y_t = f(h_t) without the noise, for the derivatives that are written with f(h).
        use_y = act in ("tanh", "sigmoid", "retanh")
        # G (dL/dh_t == dL/dd_t) starts as dL/dr_t (one vectorised copy) and is then
        # completed in place, step by step, from the last step back:
        # G_t = f'(h_t) * (dL/dr_t + G_{t+1} @ Wt^T) + leak * G_{t+1}.
        # With a fused readout, dL/dr_t also gets grad_out_t @ W_out, one small product per
        # step (the (B*T, n_out) x (n_out, N) product in one piece is slow for small n_out).
        G = torch.empty_like(R)
        if grad_rates is not None:
            G.copy_(grad_rates.transpose(0, 1))
        elif grad_out is None:
            G.zero_()
        o_steps = grad_out.unbind(1) if grad_out is not None else None
        g_steps, r_steps = G.unbind(0), R.unbind(0)
        # Without H (see forward), relu's mask is read from r_t = relu(h_t): r > 0 iff h > 0.
        h_steps = r_steps if H is None else H.unbind(0)
        has_post = ctx.has_post
        g_next = None
        # a few outputs: their rank-1 terms element-wise (a BLAS product with an inner size
        # of 1-4 runs far below its peak); more: one product
        few = o_steps is not None and w_out.shape[0] <= 4
        if few:
            w_rows = [w_out[k] for k in range(w_out.shape[0])]
            o_cols = [grad_out[:, :, k:k + 1].unbind(1) for k in range(w_out.shape[0])]
        for t in range(T - 1, -1, -1):
            g = g_steps[t]
            if few:
                k0 = 0
                if grad_rates is None:
                    torch.mul(o_cols[0][t], w_rows[0], out=g)
                    k0 = 1
                for k in range(k0, len(w_rows)):
                    g.addcmul_(o_cols[k][t], w_rows[k])
            elif o_steps is not None:
                if grad_rates is None:
                    torch.mm(o_steps[t], w_out, out=g)
                else:
                    g.addmm_(o_steps[t], w_out)
            if g_next is not None:
                g.addmm_(g_next, w_back)
            h = h_steps[t]
            y = None
            if use_y:
                y = _act(act, h) if has_post else r_steps[t]
            _act_backward_into(act, g, h, y, g)
            if g_next is None:
                if grad_h_last is not None:
                    g.add_(grad_h_last)
            else:
                g.addcmul_(leak, g_next)
            g_next = g

        g0 = G[0]
        grad_drive = G.transpose(0, 1) if needs[0] else None
        Rf, Gf = R.view(T * B, N), G.view(T * B, N)
        grad_w = None
        if needs[1]:  # sum_{t,b} r_{t-1,b}^T g_{t,b}: rows B apart in time-major order
            grad_w = Rf[:-B].T @ Gf[B:] if T > 1 else torch.zeros_like(w_t)
            grad_w.addmm_(r0.T, g0)
        grad_leak = None
        if needs[2]:
            Hf = H.view(T * B, N)
            grad_leak = ((Hf[:-B] * Gf[B:]).sum(0) + (h0 * g0).sum(0)).sum_to_size(leak.shape)
        grad_h0 = (leak * g0).sum_to_size(ctx.h0_shape) if needs[3] else None
        grad_r0 = (g0 @ w_back).sum_to_size(ctx.r0_shape) if needs[4] else None
        grad_w_out = grad_b_out = None
        if grad_out is not None:
            n_out = w_out.shape[0]
            go = grad_out.transpose(0, 1).reshape(T * B, n_out)
            if needs[7]:
                grad_w_out = go.T @ Rf
            if needs[8]:
                grad_b_out = go.sum(0)
        return (grad_drive, grad_w, grad_leak, grad_h0, grad_r0, None, None, grad_w_out,
                grad_b_out)


def ctrnn_scan(
    drive: Tensor,
    w_scaled_t: Tensor,
    leak: Tensor,
    h0: Tensor,
    r0: Tensor,
    activation_name: str,
    post_noise: Tensor | None = None,
    readout: tuple[Tensor, Tensor | None] | None = None,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Run the CTRNN recursion over time with a fused forward and a manual BPTT backward.

    ``h_t = leak * h_{t-1} + drive_t + r_{t-1} @ w_scaled_t``,
    ``r_t = f(h_t) + post_noise_t``, for ``t = 0 .. T-1``.

    Args:
        drive: ``(batch, time, N)`` state-independent drive ``d_t`` (input, bias,
            pre-activation noise, already multiplied by ``alpha``).
        w_scaled_t: ``(N, N)`` recurrent weight in ``(pre, post)`` orientation,
            already scaled by ``alpha`` per postsynaptic neuron:
            ``(alpha[:, None] * W_rec).T``.
        leak: ``(N,)`` (or broadcastable) ``1 - alpha``.
        h0, r0: ``(batch, N)`` (or broadcastable) initial ``h`` and rate.
        activation_name: one of :data:`SCAN_ACTIVATIONS`.
        post_noise: optional ``(batch, time, N)`` noise added to the rates; it
            receives no gradient.
        readout: optional ``(W_out (n_out, N), b_out (n_out,) or None)``: the linear
            readout ``rates @ W_out^T + b_out`` computed with the scan, whose backward then
            adds ``dL/dout_t @ W_out`` step by step instead of taking ``dL/drates`` from a
            separate ``(B*T, n_out) x (n_out, N)`` product (slow for a few outputs).

    Returns:
        ``(rates (batch, time, N), h_T (batch, N))``, and ``outputs (batch, time, n_out)``
        third with ``readout``; the final rate is ``rates[:, -1]``.

    Gradients flow to ``drive``, ``w_scaled_t``, ``leak``, ``h0`` and ``r0``
    (first-order only: the backward is not itself differentiable).

    Example:
        >>> import torch
        >>> d = torch.ones(2, 3, 4)
        >>> rates, h = ctrnn_scan(d, torch.zeros(4, 4), torch.full((4,), 0.5),
        ...                       torch.zeros(2, 4), torch.zeros(2, 4), "relu")
        >>> rates[0, :, 0].tolist(), h.shape
        ([1.0, 1.5, 1.75], torch.Size([2, 4]))
    """
    if activation_name not in SCAN_ACTIVATIONS:
        raise ValueError(
            f"activation_name must be one of {SCAN_ACTIVATIONS}; got {activation_name!r}"
        )
    if drive.dim() != 3:
        raise ValueError(f"drive must be (batch, time, N); got shape {tuple(drive.shape)}")
    B, T, N = drive.shape
    if T == 0:
        raise ValueError("drive must have at least one time step")
    if tuple(w_scaled_t.shape) != (N, N):
        raise ValueError(f"w_scaled_t must be ({N}, {N}); got {tuple(w_scaled_t.shape)}")
    if post_noise is not None and post_noise.shape != drive.shape:
        raise ValueError(
            f"post_noise must have the shape of drive {tuple(drive.shape)}; "
            f"got {tuple(post_noise.shape)}"
        )
    if not isinstance(leak, Tensor):
        leak = drive.new_tensor(leak)
    if post_noise is not None:
        post_noise = post_noise.detach()
    w_out, b_out = readout if readout is not None else (None, None)
    if w_out is not None and (w_out.dim() != 2 or w_out.shape[1] != N):
        raise ValueError(f"readout weight must be (n_out, {N}); got {tuple(w_out.shape)}")
    rates, h, out = _CTRNNScan.apply(drive, w_scaled_t, leak, h0, r0, post_noise,
                                     activation_name, w_out, b_out)
    return (rates, h) if readout is None else (rates, h, out)
