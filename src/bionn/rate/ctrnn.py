"""Continuous-time recurrent neural network (rate model) with biological constraints."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bionn.circuits import CellTypeTable, Circuit, Connectivity
from bionn.constraints import WEIGHT_INITS, balance_ei, constrain, init_weight, resolve_sign
from bionn.constraints import spectral_radius as _spectral_radius
from bionn.functional.ctrnn_scan import linear_few_inputs
from bionn.functional.feedback import LINEAR, feedback_apply
from bionn.recurrent.core import Prepared, RecurrentCore, TimeConstants
from bionn.recurrent.core import tau_groups as _tau_groups

LAYERS = ("input", "recurrent", "readout")


def block_tau(sizes: Sequence[int], taus: Sequence[float]) -> Tensor:
    """Per-neuron time constants (ms) for consecutive blocks of neurons.

    Example:
        >>> block_tau([2, 3], [20.0, 200.0]).tolist()
        [20.0, 20.0, 200.0, 200.0, 200.0]
    """
    if len(sizes) != len(taus):
        raise ValueError(f"sizes ({len(sizes)}) and taus ({len(taus)}) must have the same length")
    return torch.repeat_interleave(torch.as_tensor(taus, dtype=torch.float32), torch.as_tensor(sizes))


class CTRNN(RecurrentCore):
    r"""Continuous-time RNN with Dale's law, sparsity, gradient-scale masks and multiple timescales.

    The dense configuration of the recurrent core (:class:`~bionn.recurrent.RecurrentCore`):
    its time loop, noise, initial state, time constants and credit assignment
    through time are the core's.

    Dynamics (Euler, ``alpha = dt / tau`` per neuron; time in ms)::

        h_t = (1 - alpha) h_{t-1} + alpha (W_rec r_{t-1} + W_in x_t + b) + sqrt(2 alpha) sigma_pre xi_t
        r_t = f(h_t) + sigma_post xi'_t
        y_t = W_out r_t + b_out

    All weights are ``(post, pre)``. Constraints are parametrizations, so they hold
    after every optimizer step: with ``sign`` (or ``e_fraction``) the effective
    recurrent weight is ``mask * |W_raw| * sign[pre]``.

    Args:
        n_input, n_hidden, n_output: sizes.
        dt: integration step (ms).
        tau: time constant (ms): a number, one per neuron (see :func:`block_tau`) or one
            per group of ``tau_groups``. Must satisfy ``tau >= dt``.
        tau_groups: how tau is shared: ``"neuron"`` (default), ``"type"`` (E and I,
            from the signs), ``"area"`` (the circuit's areas) or an ``(n_hidden,)``
            integer tensor of group labels (e.g. blocks).
        learn_tau: make ``tau`` trainable (kept above ``dt`` by a parametrization).
        activation: ``relu``, ``tanh``, ``sigmoid``, ``softplus`` or ``retanh``.
        e_fraction: fraction of excitatory neurons (first ones E, rest I), or None.
        sign: ``(n_hidden,)`` +1/-1 per neuron instead of ``e_fraction``.
        circuit: a :class:`~bionn.circuits.Circuit` giving the input, recurrent and readout
            :class:`~bionn.circuits.Connectivity` (masks; the recurrent one's sign per
            neuron) and areas, or a recurrent :class:`~bionn.circuits.Connectivity` alone
            (``N x N``, dense or sparse: its mask and signs).
        rec_mask, input_mask, readout_mask: 0/1 ``(post, pre)`` masks (override the circuit's).
        grad_scale: ``{"input"|"recurrent"|"readout": (post, pre) scale in [0, 1]}`` of each
            synapse's gradient (0 freezes a synapse).
        preact_noise: ``sigma_pre`` of the noise on ``h``.
        postact_noise: ``sigma_post`` of the noise on ``r``.
        learn_initial_state: train the initial state ``h_0`` (else zero).
        weight_init: distribution of the initial weights, one name or one per layer
            (``{"recurrent": "gamma", ...}``): ``uniform``, ``normal``, ``gamma``,
            ``orthogonal``, ``zero``.
        spectral_radius: if given, scale the initial effective recurrent weight to it.
        readout: ``"all"`` or ``"excitatory"`` (read out from E neurons only).
        positive_input: make input weights non-negative (excitatory afferents).
        bias: learn a recurrent bias ``b``.
        fused: run the time loop as one autograd node with a hand-written BPTT
            backward (faster); ``False`` uses the step-by-step autograd loop,
            needed for double backward (gradient penalties) or ``torch.func.vmap``.
        generator: random generator for the initial weights.

    Feedback alignment through time: ``self.credit_assignment`` is ``None`` (backprop
    through time) or an ``nn.ModuleDict`` of
    :class:`~bionn.learning.FeedbackRule` keyed by ``"input"``,
    ``"recurrent"``, ``"readout"`` (any subset), normally set by
    ``bionn.learning.convert(net, "fa")``. Each rule sees the effective
    (constrained) weight ``W`` and its ``B`` (``(post, pre)``) replaces ``W`` in
    the backward pass of that product only: the recurrent error flows back
    through time as ``dL/dr_{t-1} = alpha B_rec^T delta_t``, the readout error
    as ``B_out^T e_t``; every weight still gets its true gradient given the
    error at its output. A recurrent rule with a ``B`` runs the step-by-step
    autograd loop (``fused`` is then ignored).

    Example:
        >>> import torch
        >>> net = CTRNN(3, 50, 2, dt=20, tau=100, e_fraction=0.8, spectral_radius=1.0)
        >>> out, rates = net(torch.randn(8, 25, 3))
        >>> out.shape, rates.shape, bool((net.weight_rec[:, 40:] <= 0).all())
        (torch.Size([8, 25, 2]), torch.Size([8, 25, 50]), True)
    """

    WEIGHT_NAMES = {"input": "weight_in", "recurrent": "weight_rec", "readout": "weight_out"}
    BIAS_NAMES = ("bias_rec", "bias_out")

    def __init__(
        self,
        n_input: int,
        n_hidden: int,
        n_output: int,
        *,
        dt: float = 10.0,
        tau: float | Sequence[float] | Tensor = 100.0,
        tau_groups: str | Tensor = "neuron",
        learn_tau: bool = False,
        activation: str = "relu",
        e_fraction: float | None = None,
        sign: Tensor | None = None,
        circuit: Circuit | Connectivity | None = None,
        rec_mask: Tensor | None = None,
        input_mask: Tensor | None = None,
        readout_mask: Tensor | None = None,
        grad_scale: Mapping[str, Tensor] | None = None,
        preact_noise: float = 0.0,
        postact_noise: float = 0.0,
        learn_initial_state: bool = False,
        weight_init: str | Mapping[str, str] = "uniform",
        spectral_radius: float | None = None,
        readout: str = "all",
        positive_input: bool = False,
        bias: bool = True,
        fused: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("n_input", n_input), ("n_hidden", n_hidden), ("n_output", n_output)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer; got {v!r}")
        if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive number of ms; got {dt!r}")
        if readout not in ("all", "excitatory"):
            raise ValueError(f"readout must be 'all' or 'excitatory'; got {readout!r}")
        inits = {k: weight_init for k in LAYERS} if isinstance(weight_init, str) else dict(weight_init)
        for k, v in inits.items():
            if k not in LAYERS:
                raise ValueError(f"weight_init keys must be among {LAYERS}; got {k!r}")
            if v not in WEIGHT_INITS:
                raise ValueError(f"weight_init[{k!r}] must be one of {WEIGHT_INITS}; got {v!r}")
        if spectral_radius is not None and not spectral_radius > 0:
            raise ValueError(f"spectral_radius must be > 0; got {spectral_radius!r}")

        self.n_input, self.n_hidden, self.n_output = n_input, n_hidden, n_output
        self._init_core(dt=dt, unit_shape=(n_hidden,), activation=activation,
                        preact_noise=preact_noise, postact_noise=postact_noise,
                        learn_initial_state=learn_initial_state, fused=fused)

        # Structure: circuit first, explicit arguments override.
        if isinstance(circuit, Connectivity):  # the recurrent structure alone, no areas
            if circuit.shape != (n_hidden, n_hidden):
                raise ValueError(f"circuit connectivity has shape {circuit.shape}; expected "
                                 f"({n_hidden}, {n_hidden}) (n_hidden, n_hidden)")
            rec_mask = circuit.dense() if rec_mask is None else rec_mask
            if sign is None and e_fraction is None:
                sign = circuit.sign
            circuit = None
        if circuit is not None:
            if circuit.n_neurons != n_hidden:
                raise ValueError(f"circuit has {circuit.n_neurons} neurons but n_hidden={n_hidden}")
            rec_mask = circuit.recurrent.dense() if rec_mask is None else rec_mask
            input_mask = circuit.input_mask if input_mask is None else input_mask
            readout_mask = circuit.readout_mask if readout_mask is None else readout_mask
            if sign is None and e_fraction is None:
                sign = circuit.sign
        sign = resolve_sign(n_hidden, sign, e_fraction)
        if readout == "excitatory":
            if sign is None:
                raise ValueError("readout='excitatory' needs cell types: give e_fraction, sign or an E/I circuit")
            e_cols = (sign > 0).to(torch.get_default_dtype()).expand(n_output, -1)
            readout_mask = e_cols.clone() if readout_mask is None else torch.as_tensor(readout_mask) * e_cols
        shapes = {
            "input": (n_hidden, n_input),
            "recurrent": (n_hidden, n_hidden),
            "readout": (n_output, n_hidden),
        }
        masks = {"input": input_mask, "recurrent": rec_mask, "readout": readout_mask}
        for k, m in masks.items():
            if m is not None:
                m = torch.as_tensor(m, dtype=torch.get_default_dtype())
                if tuple(m.shape) != shapes[k]:
                    raise ValueError(
                        f"{k} mask has shape {tuple(m.shape)}; expected {shapes[k]} (post, pre)"
                    )
                masks[k] = None if bool((m == 1).all()) else m
        grad_scale = dict(grad_scale or {})
        for k, p in grad_scale.items():
            if k not in LAYERS:
                raise ValueError(f"grad_scale keys must be among {LAYERS}; got {k!r}")
            p = torch.as_tensor(p, dtype=torch.get_default_dtype())
            if tuple(p.shape) != shapes[k]:
                raise ValueError(f"grad_scale[{k!r}] has shape {tuple(p.shape)}; expected {shapes[k]} (post, pre)")
            grad_scale[k] = p
        self.register_buffer("sign", sign)
        self.register_buffer("area", None if circuit is None else circuit.area.clone())
        self.area_names = None if circuit is None else tuple(circuit.area_names)
        self.readout_mode = readout

        # Initial weights.
        w_in = init_weight(shapes["input"], inits.get("input", "uniform"), generator)
        w_rec = init_weight(shapes["recurrent"], inits.get("recurrent", "uniform"), generator)
        w_out = init_weight(shapes["readout"], inits.get("readout", "uniform"), generator)
        rec_m = masks["recurrent"]
        if sign is not None:
            w_rec = balance_ei(w_rec, sign, rec_m)
            eff = w_rec * sign
        else:
            eff = w_rec if rec_m is None else w_rec * rec_m
        if spectral_radius is not None:
            rho = _spectral_radius(eff)
            if rho > 0:
                w_rec = w_rec * (spectral_radius / rho)
        if positive_input:
            w_in = w_in.abs()
        self.weight_in = nn.Parameter(w_in)
        self.weight_rec = nn.Parameter(w_rec)
        self.weight_out = nn.Parameter(w_out)
        self.bias_rec = nn.Parameter(torch.zeros(n_hidden)) if bias else None
        self.bias_out = nn.Parameter(torch.zeros(n_output))
        constrain(
            self, "weight_in", mask=masks["input"], grad_scale=grad_scale.get("input"),
            sign=torch.ones(n_input) if positive_input else None,
        )
        constrain(self, "weight_rec", sign=sign, mask=rec_m, grad_scale=grad_scale.get("recurrent"))
        constrain(self, "weight_out", mask=masks["readout"], grad_scale=grad_scale.get("readout"))

        groups = _tau_groups(tau_groups, n_hidden, {
            "type": sign, "area": None if circuit is None else circuit.area})
        n_tau = n_hidden if groups is None else int(groups.max()) + 1
        tau_t = torch.as_tensor(tau, dtype=torch.get_default_dtype()).flatten()
        if tau_t.numel() == 1:
            tau_t = tau_t.expand(n_tau).clone()
        if tau_t.numel() != n_tau:
            what = "per neuron" if groups is None else f"per group of tau_groups ({n_tau} groups)"
            raise ValueError(f"tau must be a number or one value {what} ({n_tau}); got {tau_t.numel()} values")
        self.time_constants = TimeConstants(tau_t, self.dt, index=groups, learn=learn_tau)

    # ------------------------------------------------------------------ configuration
    def connection_weights(self) -> dict[str, Tensor]:
        """The effective (constrained) weights: ``input``, ``recurrent``, ``readout``."""
        return {"input": self.weight_in, "recurrent": self.weight_rec, "readout": self.weight_out}

    def input_drive(self, x: Tensor, p: Prepared) -> Tensor:
        """``W_in x_t + b`` for every step."""
        return self.connect(p, "input", x, p.weights["input"], self.bias_rec)

    def scaled_input_drive(self, x: Tensor, p: Prepared) -> Tensor:
        """``alpha (W_in x_t + b)`` with ``alpha`` folded into ``W_in`` and ``b``; a feedback
        matrix is scaled alike, so a Kolen-Pollack ``B`` still receives ``dL/dW_in``."""
        a = p.alpha
        w = a[:, None] * p.weights["input"]
        b = None if self.bias_rec is None else a * self.bias_rec
        if "input" not in p.feedback:
            if not self.fused:
                return F.linear(x, w, b)
            # time-major (a (batch, time, N) view of (time, batch, N) memory): the fused
            # scan then reads each step's drive as one contiguous block
            return linear_few_inputs(x.transpose(0, 1), w, b).transpose(0, 1)
        return feedback_apply(LINEAR, x, w, b, self.credit_assignment["input"],
                              feedback=p.feedback["input"] * a.detach()[:, None])

    def recurrent_input(self, r: Tensor, p: Prepared) -> Tensor:
        return self.connect(p, "recurrent", r, p.weights["recurrent"])

    def dense_recurrent(self, p: Prepared) -> Tensor:
        return p.weights["recurrent"]

    def readout(self, rates: Tensor, p: Prepared) -> Tensor:
        return self.connect(p, "readout", rates, p.weights["readout"], self.bias_out)

    def linear_readout(self, p: Prepared) -> tuple[Tensor, Tensor | None] | None:
        if "readout" in p.feedback or type(self).readout is not CTRNN.readout:
            return None
        return p.weights["readout"], self.bias_out

    @classmethod
    def from_cell_types(cls, table: CellTypeTable, n_input: int, n_output: int,
                        n: int | None = None, *, generator: torch.Generator | None = None,
                        **kwargs: Any) -> CTRNN:
        """A CTRNN whose neurons are a :class:`~bionn.circuits.CellTypeTable`'s types:
        the table's block mask and signs (its circuit), its initial strengths, tau per
        type (``tau_groups="type"`` semantics: one value per type, learned with
        ``learn_tau``), input onto the table's input types and readout from its
        output types. ``n`` sizes types given by density.

        The CTRNN has one neuron nonlinearity and linear synapses, so every type
        must share one ``nonlinearity`` and every connection use ``synapse="identity"``
        (a :class:`~bionn.rate.SpatialArea` takes per-type nonlinearities). ``kwargs``
        go to the constructor (``dt``, ``learn_tau``, ``preact_noise``, ...).

        Example:
            >>> from bionn.circuits.motifs import motif
            >>> net = CTRNN.from_cell_types(motif("E-I", channels=16), 2, 1, dt=5.0)  # 16 E + 4 I
            >>> out, rates = net(torch.zeros(3, 7, 2))
            >>> rates.shape, bool((net.weight_rec[:, net.sign < 0] <= 0).all())
            (torch.Size([3, 7, 20]), True)
        """
        acts = {t.nonlinearity for t in table.types}
        if len(acts) > 1:
            raise ValueError(f"a CTRNN has one nonlinearity for all types; the table has {sorted(acts)}")
        syn = [c.key for c in table.active_connections if c.synapse != "identity"]
        if syn:
            raise ValueError(f"a CTRNN has linear synapses only; connections {syn} have a synapse "
                             "nonlinearity (use bionn.rate.SpatialArea)")
        for k in ("circuit", "sign", "e_fraction", "rec_mask", "tau", "tau_groups", "activation"):
            if k in kwargs:
                raise ValueError(f"{k!r} comes from the cell-type table; do not pass it to from_cell_types")
        labels = table.labels(n)
        type_tau = torch.tensor([t.tau for t in table.types], dtype=torch.get_default_dtype())
        used = torch.unique_consecutive(labels)  # types in order of first appearance
        net = cls(n_input, table.n_neurons(n), n_output, circuit=table.to_circuit(n, n_input, n_output),
                  tau=type_tau[used], tau_groups=labels, activation=acts.pop(), generator=generator,
                  **kwargs)
        w = table.initial_weight(n, generator)
        with torch.no_grad():
            net.weight_rec = w
        return net

    def extra_repr(self) -> str:
        tau = self.tau.detach()
        tau_s = f"{tau[0].item():g}" if bool((tau == tau[0]).all()) else f"{tau.min().item():g}..{tau.max().item():g}"
        ei = ""
        if self.sign is not None:
            ei = f", E={int((self.sign > 0).sum())}, I={int((self.sign < 0).sum())}"
        return (
            f"n_input={self.n_input}, n_hidden={self.n_hidden}, n_output={self.n_output}, "
            f"dt={self.dt:g}, tau={tau_s}, activation={self.activation_name}{ei}"
        )
