r"""A fused LIF time loop with a hand-written backward pass (surrogate-gradient BPTT).

The plain autograd loop of :class:`bionn.spiking.SpikingCell` records a dozen graph
nodes per step (synapse, integration, surrogate spike, reset), and its backward pass
replays them. :func:`lif_scan` runs the forward loop without a graph, in place, writing
the pre-reset membrane ``V'_t`` and the spikes ``z_t`` into ``(batch, time, N)`` buffers.
Its backward pass takes the surrogate derivative of every step at once, then steps back
through the only inherently sequential part: one multiply-add per step, plus one
``(B, N) x (N, N)`` product with recurrence. The recurrent weight gradient is ONE
``(N, B*T) x (B*T, N)`` product after the loop. First-order only (no double backward).

The recursion, per step ``t`` (``W`` the recurrent ``(post, pre)`` weight, optional)::

    I_t  = d I_{t-1} + drive_t + W z_{t-1}       (exponential synapse, decay d)
    I_t  = drive_t + W z_{t-1}                   (delta synapse: syn_decay=None)
    V'_t = beta V_{t-1} + gain I_t + offset       (the exact LIF step over dt)
    z_t  = H((V'_t - V_th) / scale)               (surrogate derivative backward)
    V_t  = V'_t - z_t (V_th - V_reset)            (reset="subtract")
    V_t  = V_reset where z_t = 1, else V'_t       (reset="value")

For the LIF neuron ``tau dV/dt = -(V - V_rest) + R I`` with the input held over a step:
``beta = exp(-dt / tau)``, ``gain = (1 - beta) R``, ``offset = (1 - beta) V_rest``.
The reset is detached from the graph (``detach_reset=True``); there is no refractory
period. :meth:`bionn.spiking.SpikingCell.scan` uses this loop whenever its configuration
is one of these (see :attr:`~bionn.spiking.SpikingCell.fusable`) and the generic step
otherwise; ``tests/test_lif_scan.py`` checks that both give the same spikes and gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from bionn.functional.ctrnn_scan import _shifted_outer_sum
from bionn.functional.surrogate import Surrogate, make_surrogate

__all__ = ["lif_scan"]


class _LIFScan(torch.autograd.Function):
    # The loop runs on the membrane in units of the input, U = V / gain (gain > 0), so a
    # step is one multiply-add: U'_t = beta U_{t-1} + I_t (+ offset / gain), and dL/dI_t is
    # dL/dU'_t itself; thresholds and reset values are divided by the gain once.
    @staticmethod
    def forward(ctx, drive, v0, i0, z0, w_rec, beta, gain, offset, v_th, v_reset, scale,  # noqa: D102
                surrogate, syn_decay, value_reset):
        B, T, N = drive.shape
        ctx.set_materialize_grads(False)
        UP = drive.new_empty(B, T, N)  # pre-reset membrane U', read by the backward's surrogate
        Z = drive.new_empty(B, T, N)
        exp_syn, rec = syn_decay is not None, w_rec is not None
        w_t = w_rec.T if rec else None  # (pre, post)
        th, u_reset = v_th / gain, v_reset / gain
        jump = u_reset - th  # subtract reset: U = U' + z (U_reset - U_th)
        off = None if bool((offset == 0).all()) else offset / gain
        u = drive.new_empty(B, N)  # U after the reset (each step reads it, then rewrites it)
        u.copy_((v0 / gain).expand(B, N))
        i = i0.clone() if exp_syn else None
        zb = torch.empty(B, N, dtype=torch.bool, device=drive.device) if value_reset else None
        steps = zip(drive.unbind(1), UP.unbind(1), Z.unbind(1), strict=True)
        if not (exp_syn or rec or value_reset or off is not None):
            for d, up, z in steps:  # the common feedforward case: three operations a step
                torch.addcmul(d, beta, u, out=up)
                torch.ge(up, th, out=z)
                torch.addcmul(up, z, jump, out=u)
        elif rec and not (exp_syn or value_reset or off is not None):
            # the common recurrent case: the subtract reset folded into the recurrent product,
            # U'_{t+1} = beta U'_t + d_{t+1} + z_t (W^T + diag(beta jump)); two operations and
            # the product a step (the backward uses W alone: the reset is detached)
            w_reset = w_t + torch.diag((beta * jump).expand(N))
            up_prev, z_prev, w_step = u, z0, w_t  # the first step starts after the reset (U0)
            for d, up, z in steps:
                torch.addcmul(d, beta, up_prev, out=up)
                up.addmm_(z_prev, w_step)
                torch.ge(up, th, out=z)
                up_prev, z_prev, w_step = up, z, w_reset
            torch.addcmul(up_prev, z_prev, jump, out=u)
        else:
            z_prev = z0
            for d, up, z in steps:
                if exp_syn:
                    torch.addcmul(d, syn_decay, i, out=i)
                    if rec:
                        i.addmm_(z_prev, w_t)
                    torch.addcmul(i, beta, u, out=up)
                else:
                    torch.addcmul(d, beta, u, out=up)
                    if rec:
                        up.addmm_(z_prev, w_t)
                if off is not None:
                    up.add_(off)
                if value_reset:
                    torch.ge(up, th, out=zb)
                    z.copy_(zb)
                    torch.where(zb, u_reset, up, out=u)
                else:
                    torch.ge(up, th, out=z)
                    torch.addcmul(up, z, jump, out=u)
                z_prev = z
        ctx.surrogate, ctx.scale, ctx.value_reset = surrogate, scale, value_reset
        ctx.shapes = (v0.shape, None if i0 is None else i0.shape, None if z0 is None else z0.shape)
        ctx.save_for_backward(UP, Z, w_rec, beta, gain, th, syn_decay, z0)
        return Z, u * gain, i

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z, grad_v_last, grad_i_last):  # noqa: D102
        UP, Z, w_rec, beta, gain, th, syn_decay, z0 = ctx.saved_tensors
        B, T, N = Z.shape
        needs = ctx.needs_input_grad
        exp_syn, rec = syn_decay is not None, w_rec is not None
        # S_t = dz_t/dU'_t = sigma'(x) k with x = (U' - U_th) k, k = gain / scale; computed
        # in place in UP (read for the last time here), all steps at once.
        k = gain / ctx.scale
        S = torch.addcmul(-th * k, UP, k, out=UP)
        ctx.surrogate.derivative_(S)
        if grad_z is not None and grad_z.stride() == (0, 0, 0):
            scalar_grad = grad_z.reshape(-1)[:1]  # d(sum or mean of the spikes): one number
        else:
            scalar_grad = None
        # A_t = dL/dU'_t = dL/dI_t (delta synapse), built in place: the spikes' own gradient
        # times S, then the sequential carry from the next step
        if grad_z is None:
            A = torch.zeros_like(S)
            S.mul_(k)
        elif rec:  # S is read again in the loop
            S.mul_(k)
            A = S * grad_z
        else:
            A = S.mul_(k * scalar_grad if scalar_grad is not None else k)
            if scalar_grad is None:
                A.mul_(grad_z)
        carry = beta * (1.0 - Z) if ctx.value_reset else beta  # dU'_{t+1}/dU'_t
        hold = (1.0 - Z[:, -1]) if ctx.value_reset else None
        AI = torch.empty_like(A) if exp_syn else A  # dL/dI_t
        a_steps = A.unbind(1)
        ai_steps = AI.unbind(1) if exp_syn else a_steps
        c_steps = carry.unbind(1) if ctx.value_reset else None
        s_steps = S.unbind(1) if rec else None
        gz = A.new_empty(B, N) if rec else None  # dL/dz_t through W: one buffer for every step
        for t in range(T - 1, -1, -1):
            a = a_steps[t]
            if t == T - 1:
                if grad_v_last is not None:  # V_T = gain U_T
                    g = grad_v_last * gain
                    a.add_(g * hold if hold is not None else g)
            else:
                if rec:  # the spike z_t reaches I_{t+1} through W
                    torch.mm(ai_steps[t + 1], w_rec, out=gz)
                    a.addcmul_(gz, s_steps[t])
                a.addcmul_(c_steps[t] if c_steps is not None else carry, a_steps[t + 1])
            if exp_syn:
                ai = ai_steps[t]
                if t == T - 1:
                    ai.copy_(a)
                    if grad_i_last is not None:
                        ai.add_(grad_i_last)
                else:
                    torch.addcmul(a, syn_decay, ai_steps[t + 1], out=ai)
        v_shape, i_shape, z_shape = ctx.shapes
        grad_v0 = (A[:, 0] * (beta / gain)).sum_to_size(v_shape) if needs[1] else None
        grad_i0 = (AI[:, 0] * syn_decay).sum_to_size(i_shape) if exp_syn and needs[2] else None
        grad_z0 = grad_w = None
        if rec:
            if needs[3]:
                grad_z0 = (AI[:, 0] @ w_rec).sum_to_size(z_shape)
            if needs[4]:
                grad_w = _shifted_outer_sum(Z, AI, z0.expand(B, N)).T
        return (AI if needs[0] else None, grad_v0, grad_i0, grad_z0, grad_w,
                None, None, None, None, None, None, None, None, None)


def _const(x: Tensor | float, like: Tensor, name: str) -> Tensor:
    t = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if t.requires_grad:
        raise ValueError(f"lif_scan: {name} is a constant here (no gradient); got a tensor that requires grad")
    return t


def lif_scan(drive: Tensor, v0: Tensor, *, beta: Tensor | float, gain: Tensor | float = 1.0,
             offset: Tensor | float = 0.0, v_th: Tensor | float = 1.0, v_reset: Tensor | float = 0.0,
             scale: float = 1.0, surrogate: Surrogate | str = "fast_sigmoid",
             reset: Literal["subtract", "value"] = "subtract", syn_decay: Tensor | float | None = None,
             i0: Tensor | None = None, w_rec: Tensor | None = None, z0: Tensor | None = None,
             ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run a LIF layer over time with a fused forward and a manual surrogate-gradient BPTT.

    Equations in the module docstring. Gradients flow to ``drive``, ``v0``, ``i0``, ``z0``
    and ``w_rec``; ``beta``, ``gain``, ``offset``, ``v_th``, ``v_reset`` and ``syn_decay``
    are constants (per neuron ``(N,)`` or scalars).

    Args:
        drive: ``(batch, time, N)`` synaptic input of each step (``W_in x_t + b``).
        v0: ``(batch, N)`` (or broadcastable) membrane before the first step (mV).
        beta, gain, offset: the LIF step ``V' = beta V + gain I + offset``.
        v_th, v_reset: threshold and reset (mV); scale: ``x = (V' - V_th) / scale`` (mV).
        surrogate: the spike's pseudo-derivative (:mod:`bionn.functional.surrogate`).
        reset: ``"subtract"`` or ``"value"`` (detached from the graph).
        syn_decay: ``d = exp(-dt / tau_syn)`` of an exponential synapse (None: delta).
        i0: ``(batch, N)`` synaptic current before the first step (exponential synapse).
        w_rec: ``(N, N)`` recurrent ``(post, pre)`` weight (None: feedforward).
        z0: ``(batch, N)`` spikes of the step before the first (recurrent).

    Returns:
        ``(spikes (batch, time, N), V_T (batch, N), I_T (batch, N) or None)``: the spikes
        (0/1), the membrane after the last step's reset, the last synaptic current.

    Example:
        >>> import torch
        >>> z, v, _ = lif_scan(torch.full((1, 4, 1), 0.6), torch.zeros(1, 1), beta=1.0)
        >>> z.flatten().tolist(), round(float(v), 6)
        ([0.0, 1.0, 0.0, 1.0], 0.4)
    """
    if drive.dim() != 3:
        raise ValueError(f"drive must be (batch, time, N); got shape {tuple(drive.shape)}")
    B, T, N = drive.shape
    if T == 0:
        raise ValueError("drive must have at least one time step")
    if reset not in ("subtract", "value"):
        raise ValueError(f"reset must be 'subtract' or 'value'; got {reset!r}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0 mV; got {scale!r}")
    surrogate = make_surrogate(surrogate)
    consts = [_const(v, drive, k) for k, v in (("beta", beta), ("gain", gain), ("offset", offset),
                                                  ("v_th", v_th), ("v_reset", v_reset))]
    if not bool((consts[1] > 0).all()):
        raise ValueError("lif_scan: gain must be > 0 (the LIF's R > 0)")
    d = None if syn_decay is None else _const(syn_decay, drive, "syn_decay")
    if d is not None and i0 is None:
        i0 = drive.new_zeros(B, N)
    if d is None:
        i0 = None
    if w_rec is not None:
        if tuple(w_rec.shape) != (N, N):
            raise ValueError(f"w_rec must be ({N}, {N}); got {tuple(w_rec.shape)}")
        z0 = drive.new_zeros(B, N) if z0 is None else z0.expand(B, N)
    else:
        z0 = None
    return _LIFScan.apply(drive, v0, i0, z0, w_rec, *consts, float(scale), surrogate, d,
                          reset == "value")
