r"""e-prop: online eligibility traces for recurrent spiking networks (Bellec et al. 2020).

Bellec et al. 2020, "A solution to the learning dilemma for recurrent networks of spiking
neurons", *Nat. Commun.* 11:3625. e-prop factorizes the gradient of a loss ``E`` into a
*learning signal* ``L_j^t`` (what neuron ``j`` should change at step ``t``, from the output
error) and an *eligibility trace* ``e_ji^t`` (how synapse ``i -> j`` shaped neuron ``j``'s
spike at ``t``), both computed forward in time: nothing is propagated back through time.

**Model** (a :class:`~bionn.spiking.SpikingRNN` with a ``LIF`` or ``ALIF`` cell and a
``delta`` synapse; :func:`eprop_rnn` builds Bellec et al.'s model exactly). Per step ``t``,
weights ``(post, pre)``, ``p^t = (x^t, z^{t-1}, 1)`` the presynaptic input of the step::

    v'_j^t = alpha_j v_j^{t-1} + c_j (sum_i W_in_ji x_i^t + sum_i W_rec_ji z_i^{t-1} + b_j) + d_j
    A_j^t  = V_th + beta b_j^{t-1}                         (LIF: V_th)
    z_j^t  = H((v'_j^t - A_j^t) / s)
    v_j^t  = v'_j^t - z_j^t (V_th - V_reset)               (reset="subtract"; also A - V_reset,
             or v'_j^t (1 - z_j^t) + z_j^t V_reset          or reset="value")
    b_j^t  = rho_j b_j^{t-1} + (1 - rho_j) z_j^t           (ALIF)

``alpha, c, d, rho`` are read off the neuron's own integrator (exact: ``alpha = exp(-dt/tau)``,
``c = (1 - alpha) R``). Bellec et al.'s ``v^{t+1} = alpha v^t + sum W z^t + sum W x^{t+1} -
z^t v_th``, ``a^{t+1} = rho a^t + z^t``, ``A = v_th + beta_p a`` is this with ``V_rest = 0``,
``R = 1 / (1 - alpha)``, ``V_reset = V_th (1 - 1/alpha)``, ``a = b / (1 - rho)``,
``beta_p = beta (1 - rho)`` and a reset that does not follow the adaptation.

**Pseudo-derivative** ``psi_j^t = surrogate'((v'_j^t - A_j^t) / s) / s`` (the cell's
surrogate; e-prop's is ``triangle`` with ``gamma = 0.3``, ``s = V_th``:
``psi = (0.3 / V_th) max(0, 1 - |v' - A| / V_th)``).

**Eligibility** (the reset's dependence on the spike is neglected, ``detach_reset=True``),
per synapse, ``(batch, post, pre)``, with ``m^t = 1`` (subtract) or ``1 - z^t`` (value)::

    e_v^t     = alpha (m^{t-1} e_v^{t-1} - [adaptive reset] z^{t-1} beta e_a^{t-2}) + c p_i^t
    e_ji^t    = psi_j^t (e_v^t - beta e_a^{t-1})                   (eligibility trace)
    e_a^t     = rho e_a^{t-1} + (1 - rho) e_ji^t                    (ALIF; 0 for LIF)
    ebar_ji^t = kappa ebar_ji^{t-1} + e_ji^t                        (filtered by the readout)

In Bellec et al.'s variables ``e_a^{t+1} = psi^t e_v^t + (rho - psi^t beta_p) e_a^t``.

**Learning signal and updates.** The readout ``y_k^t = kappa y_k^{t-1} + (1 - kappa)
(sum_j W_out_kj z_j^t + b_k)`` (``kappa = exp(-dt/tau_out)``; ``readout="linear"``: ``kappa =
0``), ``g_k^t = dE/dy_k^t`` (``y - y*`` for a summed squared error, ``softmax(y) - onehot`` for
a cross-entropy)::

    L_j^t   = (1 - kappa) sum_k B_kj g_k^t          B: W_out (symmetric), fixed random, or adaptive
    dE/dW_ji = sum_t L_j^t ebar_ji^t                 (input, recurrent, bias: p_i = x_i, z_i, 1)
    dE/dW_out, dE/db_out: exact (the readout's own gradient)

With ``B = W_out`` this is the exact gradient of the network whose recurrent spikes do not
carry gradient to other neurons (autograd with ``z^{t-1}`` detached inside ``W_rec z^{t-1}``).
``adaptive``: ``B`` is a Parameter that receives ``W_out``'s gradient, so an optimizer gives
it ``W_out``'s update (Kolen-Pollack-like "adaptive e-prop"; weight decay aligns it).

Example:
    >>> import torch
    >>> from bionn.learning import EProp, eprop_rnn
    >>> g = torch.Generator().manual_seed(0)
    >>> net = eprop_rnn(3, 20, 2, cell="ALIF", input_gain=3.0, generator=g)
    >>> rule = EProp(net, feedback="random", loss="cross_entropy", generator=g)
    >>> opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    >>> res = rule(torch.rand(4, 30, 3, generator=g), torch.tensor([0, 1, 1, 0]))
    >>> opt.step()
    >>> net.weight_rec.grad.shape, res.outputs.shape, res.spikes.shape
    (torch.Size([20, 20]), torch.Size([4, 30, 2]), torch.Size([4, 30, 20]))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bionn.functional.surrogate import Triangle
from bionn.spiking.base import Drive
from bionn.spiking.neurons import ALIF, LIF
from bionn.spiking.trainable import SpikingRNN

__all__ = ["EPROP_FEEDBACK", "EProp", "EPropResult", "eprop_gradients", "eprop_rnn"]

#: feedback kinds of :class:`EProp`
EPROP_FEEDBACK = ("symmetric", "random", "adaptive")

LossLike = Literal["mse", "cross_entropy"] | Callable[[Tensor, Tensor], Tensor]


class EPropResult(NamedTuple):
    """What one e-prop pass returns: the ``loss`` (detached scalar), the readout
    ``outputs`` ``(batch, time, n_output)``, the ``spikes`` ``(batch, time, n_hidden)`` and
    the final ``state`` (a :class:`~bionn.spiking.CellState`), all detached."""

    loss: Tensor
    outputs: Tensor
    spikes: Tensor
    state: Any


def eprop_rnn(n_input: int, n_hidden: int, n_output: int, *, cell: Literal["LIF", "ALIF"] = "LIF",
              dt: float = 1.0, tau: float = 20.0, V_th: float = 20.0, gamma: float = 0.3,
              input_gain: float = 1.0, recurrent_gain: float = 0.5, **options: Any) -> SpikingRNN:
    r"""Bellec et al. 2020's LIF / ALIF network as a :class:`~bionn.spiking.SpikingRNN`:
    ``v^{t+1} = alpha v^t + sum_i W_rec_ji z_i^t + sum_i W_in_ji x_i^{t+1} - z_j^t V_th``,
    ``alpha = exp(-dt / tau)`` (delta synapse, reset by subtracting ``V_th`` that ignores the
    adaptation, no refractory period), ``z = H(v - A)``, ALIF ``A = V_th + beta b`` with
    ``b^{t+1} = rho b^t + (1 - rho) z^t`` (Bellec et al.'s ``a = b / (1 - rho)`` and
    ``beta_p = beta (1 - rho)``), pseudo-derivative ``triangle`` with ``gamma`` over
    ``(v - A) / V_th``, gradient through the adaptation jump but not the reset.

    Args:
        n_input, n_hidden, n_output: sizes.
        cell: ``"LIF"`` or ``"ALIF"``.
        dt, tau: step and membrane time constant (ms).
        V_th: threshold (mV, from ``V_rest = 0``).
        gamma: the pseudo-derivative's dampening (0.3 in e-prop).
        input_gain, recurrent_gain: initial weight scales as in :class:`~bionn.spiking.SpikingRNN`
            (in thresholds per unit input at steady state).
        **options: other :class:`~bionn.spiking.SpikingRNN` options (``e_fraction``,
            ``readout``, ``tau_out``, ``generator``, ...) and neuron parameters (``tau_a``,
            ``beta`` for ALIF).

    Example:
        >>> net = eprop_rnn(2, 10, 1, cell="ALIF", tau_a=200.0, beta=50.0)
        >>> net.cell.synapse, net.cell.reset_mode, round(float(net.cell.neuron.V_reset), 3)
        ('delta', 'subtract', -1.025)
    """
    if cell not in ("LIF", "ALIF"):
        raise ValueError(f"e-prop's model has cell 'LIF' or 'ALIF'; got {cell!r}")
    if not (tau >= dt > 0):
        raise ValueError(f"need tau >= dt > 0 (ms); got tau={tau!r}, dt={dt!r}")
    fixed = ("synapse", "reset", "detach_reset", "detach_jumps", "adaptive_reset", "t_refractory",
             "V_rest", "R", "V_reset", "surrogate", "scale")
    clash = sorted(k for k in options if k in fixed)
    if clash:
        raise ValueError(f"eprop_rnn sets {clash} itself (e-prop's model); build a SpikingRNN to change them")
    alpha = math.exp(-dt / tau)
    return SpikingRNN(
        n_input, n_hidden, n_output, cell=cell, dt=dt, tau=tau, V_th=V_th, V_rest=0.0,
        R=1.0 / (1.0 - alpha), V_reset=V_th * (1.0 - 1.0 / alpha), t_refractory=0.0,
        synapse="delta", reset="subtract", detach_reset=True, detach_jumps=False,
        adaptive_reset=False, surrogate=Triangle(gamma=gamma, width=1.0), scale=V_th,
        input_gain=input_gain * (1.0 - alpha), recurrent_gain=recurrent_gain * (1.0 - alpha),
        **options)


def _check(model: nn.Module) -> None:
    if not isinstance(model, SpikingRNN):
        raise TypeError(f"e-prop needs a bionn.spiking.SpikingRNN; got {type(model).__name__}")
    cell = model.cell
    problems = []
    if type(cell.neuron) not in (LIF, ALIF):
        problems.append(f"cell {type(cell.neuron).__name__} (e-prop: LIF or ALIF)")
    if cell.synapse != "delta":
        problems.append(f"synapse={cell.synapse!r} (e-prop: 'delta')")
    if cell.refractory:
        problems.append("a refractory period (give t_refractory=0.0)")
    if not cell.detach_reset:
        problems.append("detach_reset=False (e-prop neglects the reset's derivative)")
    if bool((cell.neuron.noise != 0).any()):
        problems.append("membrane noise")
    if model.credit_assignment is not None:
        problems.append("feedback rules from convert() (e-prop replaces them)")
    if problems:
        raise ValueError("e-prop cannot train this SpikingRNN: " + "; ".join(problems)
                         + " (eprop_rnn() builds e-prop's model)")


def _coefficients(model: SpikingRNN, ref: Tensor) -> dict[str, Tensor]:
    """``alpha, c, d`` (``v' = alpha v + c u + d``) and ALIF ``rho`` of the neuron's integrator, ``(n,)``."""
    cell, n = model.cell, model.n_hidden
    nr = cell.neuron
    alif = isinstance(nr, ALIF)

    def run(v: float, u: float, b: float) -> dict[str, Tensor]:
        st = {"V": ref.new_full((1, n), v), "refractory": ref.new_zeros(1, n)}
        if alif:
            st["b"] = ref.new_full((1, n), b)
        return nr.integrate(st, Drive(ref.new_full((1, n), u)), cell.dt)

    with torch.no_grad():
        base = run(0.0, 0.0, 0.0)
        out = {"alpha": (run(1.0, 0.0, 0.0)["V"] - base["V"])[0],
               "c": (run(0.0, 1.0, 0.0)["V"] - base["V"])[0], "d": base["V"][0]}
        if alif:
            out["rho"] = (run(0.0, 0.0, 1.0)["b"] - base["b"])[0]
            out["jump"] = cell._jump("1 - rho").expand(n).to(ref)
            out["beta"] = nr.beta.expand(n).to(ref)
    return out


def _loss_fn(loss: LossLike) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    if loss == "mse":
        return F.mse_loss
    if loss == "cross_entropy":
        def ce(y: Tensor, target: Tensor) -> Tensor:
            if target.dim() == 1:
                target = target[:, None].expand(-1, y.shape[1])
            return F.cross_entropy(y.reshape(-1, y.shape[-1]), target.reshape(-1))
        return ce
    raise ValueError(f"loss must be 'mse', 'cross_entropy' or a callable (outputs, target) -> loss; "
                     f"got {loss!r}")


def eprop_gradients(model: SpikingRNN, x: Tensor, target: Tensor, *, feedback: Tensor | None = None,
                    loss: LossLike = "mse", state: Any = None) -> EPropResult:
    r"""Run ``model`` on ``x`` and add e-prop's weight gradients (module docstring) to the
    ``.grad`` of its input, recurrent, bias and readout parameters (through their
    parametrizations: Dale's law, masks, sparse values), like ``loss.backward()``.

    Args:
        model: a :class:`~bionn.spiking.SpikingRNN` with a ``LIF``/``ALIF`` cell, ``delta``
            synapse, no refractory period, ``detach_reset=True`` (:func:`eprop_rnn`).
        x: input ``(batch, time, n_input)``.
        target: for ``"mse"`` ``(batch, time, n_output)``; for ``"cross_entropy"`` class
            indices ``(batch,)`` (every step) or ``(batch, time)``; anything a callable takes.
        feedback: ``B`` ``(n_output, n_hidden)`` (like ``W_out``); ``None``: ``W_out`` (symmetric).
        loss: ``"mse"`` (``F.mse_loss``), ``"cross_entropy"`` (mean over batch and steps) or
            ``loss(outputs, target) -> scalar`` (only ``dE/dy_t`` is used: a per-step loss keeps
            the rule online).
        state: the state to continue from (eligibility traces start at 0).

    Returns:
        :class:`EPropResult` ``(loss, outputs, spikes, state)``. Other parameters (learned
        time constants, thresholds) get no gradient from e-prop.

    Example:
        >>> import torch
        >>> net = eprop_rnn(2, 8, 1, input_gain=3.0)
        >>> res = eprop_gradients(net, torch.rand(3, 20, 2), torch.zeros(3, 20, 1))
        >>> net.weight_in.grad.shape, net.weight_out.grad.shape, res.loss.dim()
        (torch.Size([8, 2]), torch.Size([1, 8]), 0)
    """
    _check(model)
    model.check_input(x)
    cell, nr = model.cell, model.cell.neuron
    alif = isinstance(nr, ALIF)
    p = model.prepare()
    w_in, w_rec, w_out = (p.weights[k] for k in ("input", "recurrent", "readout"))
    batch, steps = x.shape[0], x.shape[1]
    if state is None:
        state = model.initial_state(batch)
    first_r = state.r
    ref = w_out.detach()
    k = _coefficients(model, ref)
    alpha, c = k["alpha"], k["c"]
    subtract = cell.reset_mode == "subtract"
    adaptive_reset = alif and subtract and cell.adaptive_reset
    jump = None if not alif or cell.detach_jumps else k["jump"]
    beta, rho = (k["beta"], k["rho"]) if alif else (None, None)
    if feedback is None:
        feedback = w_out.detach()
    if tuple(feedback.shape) != tuple(w_out.shape):
        raise ValueError(f"feedback must have W_out's shape {tuple(w_out.shape)}; got {tuple(feedback.shape)}")
    feedback = feedback.detach().to(ref)
    if model.readout_mode == "membrane":
        kappa = torch.exp(-model.dt / model.tau_out.detach()).to(ref)
    else:
        kappa = ref.new_zeros(())
    bias = model.bias_rec is not None
    n_in, n = model.n_input, model.n_hidden
    n_pre = n_in + n + int(bias)

    # 1. the model's own steps: spikes and pseudo-derivatives (batch, n) per step
    with torch.no_grad():
        drive = model.input_drive(x, p)
        spikes, psis = [], []
        for t in range(steps):
            old = state
            u = model.recurrent_input(old.r, p) + drive[:, t]
            th = cell.threshold(old.neuron)
            v_pre = nr.integrate(dict(old.neuron), Drive(u), cell.dt)["V"]
            state = cell(old, u)
            spikes.append(state.r)
            psis.append(cell.surrogate.derivative((v_pre - th) / cell.scale) / cell.scale)
        spikes_t = torch.stack(spikes, 1)

    # 2. readout, loss and dE/dy_t (exact gradient of the readout weights)
    y = model.readout(spikes_t, p)
    y_leaf = y.detach().requires_grad_(True)
    with torch.enable_grad():
        value = _loss_fn(loss)(y_leaf, target)
        (g,) = torch.autograd.grad(value, y_leaf)
    y.backward(g)

    # 3. eligibility traces forward in time, (batch, post, pre), summed against L_j^t online
    with torch.no_grad():
        signal = (1.0 - kappa) * (g.to(ref) @ feedback)           # L_j^t, (batch, time, n)
        grad = ref.new_zeros(n, n_pre)
        ebar = ref.new_zeros(batch, n, n_pre)
        ea_prev = ref.new_zeros(batch, n, n_pre) if alif else None  # d b_{t-1} / dW
        carry = None                                                 # d v_{t-1} / dW after the reset
        ones = ref.new_ones(batch, 1)
        z_prev = first_r.to(ref)
        for t in range(steps):
            z, psi = spikes[t], psis[t]
            pre = torch.cat([x[:, t].to(ref), z_prev] + ([ones] if bias else []), 1)[:, None, :]
            ev = c[:, None] * pre if carry is None else alpha[:, None] * carry + c[:, None] * pre
            e = psi[:, :, None] * (ev if not alif else ev - beta[None, :, None] * ea_prev)
            carry = ev if subtract else ev * (1.0 - z)[:, :, None]
            if adaptive_reset:
                carry = carry - (z * beta)[:, :, None] * ea_prev
            if alif:
                ea_prev = rho[None, :, None] * ea_prev
                if jump is not None:
                    ea_prev = ea_prev + jump[None, :, None] * e
            ebar = e if t == 0 else kappa * ebar + e
            grad += torch.einsum("bj,bji->ji", signal[:, t], ebar)
            z_prev = z
        g_in, g_rec = grad[:, :n_in], grad[:, n_in:n_in + n]
        if model.sparse:
            s = model.structure
            g_rec = g_rec[s.row.long(), s.col.long()]
    tensors, grads = [w_in, w_rec], [g_in.to(w_in), g_rec.to(w_rec)]
    if bias:
        tensors.append(model.bias_rec)
        grads.append(grad[:, -1].to(model.bias_rec))
    torch.autograd.backward(tensors, grads)
    return EPropResult(value.detach(), y.detach(), spikes_t, state)


class EProp(nn.Module):
    r"""e-prop for one :class:`~bionn.spiking.SpikingRNN`, holding the feedback matrix ``B``.

    ``rule(x, target)`` runs the network and adds the e-prop gradients to the model's
    ``.grad`` (then ``opt.step()``); equations in :mod:`bionn.learning.eprop`.

    Args:
        model: the network (not registered as a submodule: ``rule.parameters()`` is ``B`` alone).
        feedback: ``"symmetric"`` (``B = W_out``, e-prop proper), ``"random"`` (a fixed random
            ``B``, a buffer: feedback alignment) or ``"adaptive"`` (``B`` an ``nn.Parameter``
            whose gradient is ``W_out``'s: give ``rule.parameters()`` to the optimizer, with
            weight decay, and ``B`` follows ``W_out``'s updates).
        loss: ``"mse"``, ``"cross_entropy"`` or a callable (see :func:`eprop_gradients`).
        scale: ``B`` is drawn ``N(0, (scale std(W_out))^2)``.
        generator: for the draw of ``B``.

    Example:
        >>> net = eprop_rnn(2, 8, 2)
        >>> rule = EProp(net, feedback="adaptive")
        >>> opt = torch.optim.SGD([*net.parameters(), *rule.parameters()], lr=0.1)
        >>> _ = rule(torch.rand(2, 10, 2), torch.zeros(2, 10, 2))
        >>> bool(torch.equal(rule.feedback_weight.grad, net.weight_out.grad))
        True
    """

    def __init__(self, model: SpikingRNN, feedback: Literal["symmetric", "random", "adaptive"] = "symmetric",
                 loss: LossLike = "mse", *, scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check(model)
        if feedback not in EPROP_FEEDBACK:
            raise ValueError(f"feedback must be one of {EPROP_FEEDBACK}; got {feedback!r}")
        _loss_fn(loss)
        self._model = [model]
        self.kind, self.loss = feedback, loss
        w = model.weight_out.detach()
        b = None
        if feedback != "symmetric":
            b = torch.randn(w.shape, generator=generator).to(w) * (float(scale) * float(w.std()))
        if feedback == "adaptive":
            self.feedback_weight = nn.Parameter(b)
        else:
            self.register_buffer("feedback_weight", b)

    @property
    def model(self) -> SpikingRNN:
        """The network this rule trains."""
        return self._model[0]

    def feedback(self) -> Tensor:
        """The current ``B`` ``(n_output, n_hidden)`` (``W_out`` for ``symmetric``)."""
        if self.feedback_weight is None:
            return self.model.weight_out.detach()
        return self.feedback_weight.detach()

    def forward(self, x: Tensor, target: Tensor, state: Any = None) -> EPropResult:
        """One e-prop pass: gradients into the model's ``.grad`` (and, ``adaptive``, ``B.grad``
        = ``W_out.grad``'s increment)."""
        model = self.model
        before = None if model.weight_out.grad is None else model.weight_out.grad.clone()
        res = eprop_gradients(model, x, target, feedback=self.feedback(), loss=self.loss, state=state)
        if self.kind == "adaptive":
            inc = model.weight_out.grad if before is None else model.weight_out.grad - before
            b = self.feedback_weight
            b.grad = inc.clone() if b.grad is None else b.grad + inc
        return res

    def extra_repr(self) -> str:
        return f"feedback={self.kind!r}, loss={self.loss!r}"
