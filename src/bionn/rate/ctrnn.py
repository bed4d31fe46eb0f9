"""Continuous-time recurrent neural network (rate model) with biological constraints."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn.circuits import Circuit
from bionn.constraints import (
    WEIGHT_INITS,
    LowerBound,
    balance_ei,
    constrain,
    ei_sign,
    init_weight,
)
from bionn.constraints import spectral_radius as _spectral_radius
from bionn.functional.ctrnn_scan import SCAN_ACTIVATIONS, ctrnn_scan
from bionn.functional.loop import scan
from bionn.functional.rate import RateState, ctrnn_step, get_activation
from bionn.learning.feedback import feedback_linear

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


class CTRNN(nn.Module):
    r"""Continuous-time RNN with Dale's law, sparsity, plasticity masks and multiple timescales.

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
        tau: time constant (ms): a number, or one per neuron (see :func:`block_tau`).
            Must satisfy ``tau >= dt``.
        learn_tau: make ``tau`` trainable (kept above ``dt`` by a parametrization).
        activation: ``relu``, ``tanh``, ``sigmoid``, ``softplus`` or ``retanh``.
        e_fraction: fraction of excitatory neurons (first ones E, rest I), or None.
        sign: ``(n_hidden,)`` +1/-1 per neuron instead of ``e_fraction``.
        circuit: a :class:`~bionn.circuits.Circuit` giving masks, signs and areas.
        rec_mask, input_mask, readout_mask: 0/1 ``(post, pre)`` masks (override the circuit's).
        plasticity: ``{"input"|"recurrent"|"readout": (post, pre) scale in [0, 1]}``.
        preact_noise: ``sigma_pre`` of the noise on ``h``.
        postact_noise: ``sigma_post`` of the noise on ``r``.
        init_state: ``"zero"`` or ``"learn"`` (trainable ``h_0``).
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

    Feedback alignment through time: ``self.feedback`` is ``None`` (backprop
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

    def __init__(
        self,
        n_input: int,
        n_hidden: int,
        n_output: int,
        *,
        dt: float = 10.0,
        tau: float | Sequence[float] | Tensor = 100.0,
        learn_tau: bool = False,
        activation: str = "relu",
        e_fraction: float | None = None,
        sign: Tensor | None = None,
        circuit: Circuit | None = None,
        rec_mask: Tensor | None = None,
        input_mask: Tensor | None = None,
        readout_mask: Tensor | None = None,
        plasticity: Mapping[str, Tensor] | None = None,
        preact_noise: float = 0.0,
        postact_noise: float = 0.0,
        init_state: str = "zero",
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
        tau_t = torch.as_tensor(tau, dtype=torch.get_default_dtype()).flatten()
        if tau_t.numel() == 1:
            tau_t = tau_t.expand(n_hidden).clone()
        if tau_t.numel() != n_hidden:
            raise ValueError(f"tau must be a number or one value per neuron ({n_hidden}); got {tau_t.numel()} values")
        if not torch.isfinite(tau_t).all() or (tau_t <= 0).any():
            raise ValueError(f"tau must be positive (ms); got min {tau_t.min().item():g}")
        if (tau_t < dt).any():
            raise ValueError(
                f"tau must be >= dt (alpha = dt/tau <= 1); got dt={dt:g} ms and min tau={tau_t.min().item():g} ms"
            )
        for name, v in (("preact_noise", preact_noise), ("postact_noise", postact_noise)):
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0; got {v!r}")
        if init_state not in ("zero", "learn"):
            raise ValueError(f"init_state must be 'zero' or 'learn'; got {init_state!r}")
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
        self.dt = float(dt)
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.preact_noise = float(preact_noise)
        self.postact_noise = float(postact_noise)
        self.fused = bool(fused)

        # Structure: circuit first, explicit arguments override.
        if circuit is not None:
            if circuit.n_neurons != n_hidden:
                raise ValueError(f"circuit has {circuit.n_neurons} neurons but n_hidden={n_hidden}")
            rec_mask = circuit.recurrent.mask if rec_mask is None else rec_mask
            input_mask = circuit.input_mask if input_mask is None else input_mask
            readout_mask = circuit.readout_mask if readout_mask is None else readout_mask
            if sign is None and e_fraction is None:
                sign = circuit.sign
        if sign is not None and e_fraction is not None:
            raise ValueError("give either sign or e_fraction, not both")
        if e_fraction is not None:
            sign = ei_sign(n_hidden, e_fraction)
        if sign is not None:
            sign = torch.as_tensor(sign, dtype=torch.get_default_dtype()).flatten()
            if sign.numel() != n_hidden:
                raise ValueError(f"sign must have one entry per neuron ({n_hidden}); got {sign.numel()}")
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
        plasticity = dict(plasticity or {})
        for k, p in plasticity.items():
            if k not in LAYERS:
                raise ValueError(f"plasticity keys must be among {LAYERS}; got {k!r}")
            p = torch.as_tensor(p, dtype=torch.get_default_dtype())
            if tuple(p.shape) != shapes[k]:
                raise ValueError(f"plasticity[{k!r}] has shape {tuple(p.shape)}; expected {shapes[k]} (post, pre)")
            plasticity[k] = p
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
            self, "weight_in", mask=masks["input"], plasticity=plasticity.get("input"),
            sign=torch.ones(n_input) if positive_input else None,
        )
        constrain(self, "weight_rec", sign=sign, mask=rec_m, plasticity=plasticity.get("recurrent"))
        constrain(self, "weight_out", mask=masks["readout"], plasticity=plasticity.get("readout"))

        if learn_tau:
            self.tau = nn.Parameter(tau_t)
            parametrize.register_parametrization(self, "tau", LowerBound(self.dt))
        else:
            self.register_buffer("tau", tau_t)
        self.h0 = nn.Parameter(torch.zeros(n_hidden)) if init_state == "learn" else None
        self.init_state = init_state
        self.feedback: nn.ModuleDict | None = None

    # ------------------------------------------------------------------ API
    @property
    def alpha(self) -> Tensor:
        """``dt / tau`` per neuron, ``(n_hidden,)``."""
        return self.dt / self.tau

    def connection_weights(self) -> dict[str, Tensor]:
        """The effective (constrained) weights: ``input``, ``recurrent``, ``readout``."""
        return {"input": self.weight_in, "recurrent": self.weight_rec, "readout": self.weight_out}

    def connection_parameters(self) -> dict[str, nn.Parameter]:
        """The trained leaves behind :meth:`connection_weights` (raw, before constraints)."""
        return {k: (self.parametrizations[name].original
                    if parametrize.is_parametrized(self, name) else getattr(self, name))
                for k, name in self.WEIGHT_NAMES.items()}

    def initial_state(self, batch_size: int) -> RateState:
        """The state before the first step, ``(batch, N)`` tensors."""
        ref = self.weight_out
        if self.h0 is None:
            h = ref.new_zeros(batch_size, self.n_hidden)
        else:
            h = self.h0.expand(batch_size, -1)
        return RateState(h, self.activation(h))

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.n_input:
            raise ValueError(
                f"input must be (batch, time, n_input={self.n_input}); got shape {tuple(x.shape)}"
            )

    def step(self, x_t: Tensor, state: RateState) -> tuple[Tensor, Tensor, RateState]:
        """One step for closed-loop use: ``x_t`` is ``(batch, n_input)``.

        Returns ``(output_t, r_t, new_state)``.
        """
        alpha = self.alpha
        fb = self._feedback_matrices(alpha)
        drive = self._linear(fb, "input", x_t, self.weight_in, self.bias_rec)  # W_in x_t + b
        pre = post = None
        if self.preact_noise > 0:
            pre = torch.randn_like(drive) * (2 * alpha).sqrt() * self.preact_noise
        if self.postact_noise > 0:
            post = torch.randn_like(drive) * self.postact_noise
        if "recurrent" in fb:
            rec = self._linear(fb, "recurrent", state.r, self.weight_rec, None, alpha)
            h = (1.0 - alpha) * state.h + rec + alpha * drive
            if pre is not None:
                h = h + pre
            r = self.activation(h)
            if post is not None:
                r = r + post
            state = RateState(h, r)
        else:
            r, state = ctrnn_step(state, drive, self.weight_rec, alpha, self.activation, pre, post)
        return self._linear(fb, "readout", r, self.weight_out, self.bias_out), r, state

    def _feedback_matrices(self, alpha: Tensor) -> dict[str, Tensor]:
        """``B`` per layer with a feedback rule (``bp`` rules give none); runs ``prepare``."""
        rules = getattr(self, "feedback", None)
        if rules is None:
            return {}
        weights = self.connection_weights()
        out = {}
        for k, rule in rules.items():
            rule.prepare()
            b = rule.feedback(weights[k])
            if b is not None:
                out[k] = b
        return out

    def _linear(self, fb: dict[str, Tensor], key: str, x: Tensor, weight: Tensor,
                bias: Tensor | None, alpha: Tensor | None = None) -> Tensor:
        """``F.linear(x, alpha W, alpha b)`` (no ``alpha``: ``x W^T + b``), backward via ``B``."""
        if alpha is not None:
            weight = weight * alpha[:, None]
            bias = None if bias is None else bias * alpha
        if key not in fb:
            return F.linear(x, weight, bias)
        b = fb[key] if alpha is None else fb[key] * alpha.detach()[:, None]
        return feedback_linear(x, weight, bias, self.feedback[key], feedback=b)

    def run(self, x: Tensor, state: RateState | None = None) -> tuple[Tensor, Tensor, RateState]:
        """Run over a batch-first sequence ``x`` of shape ``(batch, time, n_input)``.

        Returns ``(outputs (batch, time, n_output), rates (batch, time, N), final_state)``.
        """
        self._check_input(x)
        if state is None:
            state = self.initial_state(x.shape[0])
        alpha = self.alpha
        fb = self._feedback_matrices(alpha)
        # Everything that does not depend on the state is computed for all steps at once:
        # alpha (W_in x_t + b) + sqrt(2 alpha) sigma xi_t, with alpha folded into W_in and b.
        drive = self._linear(fb, "input", x, self.weight_in, self.bias_rec, alpha)
        if self.preact_noise > 0:
            drive = drive + torch.randn_like(drive) * ((2 * alpha).sqrt() * self.preact_noise)
        post = torch.randn_like(drive) * self.postact_noise if self.postact_noise > 0 else None
        if "recurrent" in fb:
            # Feedback alignment through time: step-by-step autograd, recurrent product via B.
            leak, act, rule = 1.0 - alpha, self.activation, self.feedback["recurrent"]
            w_scaled = alpha[:, None] * self.weight_rec
            b_scaled = alpha.detach()[:, None] * fb["recurrent"]

            def fa_step(s: RateState, d_t: Tensor, p_t: Tensor | None) -> tuple[Tensor, RateState]:
                rec = feedback_linear(s.r, w_scaled, None, rule, feedback=b_scaled)
                h = torch.addcmul(d_t, leak, s.h) + rec
                r = act(h)
                if p_t is not None:
                    r = r + p_t
                return r, RateState(h, r)

            rates, state = scan(fa_step, state, (drive, post))
            return self._linear(fb, "readout", rates, self.weight_out, self.bias_out), rates, state
        w_scaled_t = (alpha[:, None] * self.weight_rec).T  # (pre, post)
        if self.fused and self.activation_name in SCAN_ACTIVATIONS:
            # Fused time loop with a hand-written BPTT backward (first-order gradients).
            rates, h = ctrnn_scan(drive, w_scaled_t, 1.0 - alpha, state.h, state.r,
                                  self.activation_name, post)
            state = RateState(h, rates[:, -1])
        else:
            leak, act = 1.0 - alpha, self.activation

            def step(s: RateState, d_t: Tensor, p_t: Tensor | None) -> tuple[Tensor, RateState]:
                # (1 - alpha) h + alpha (W r + drive) in one addcmul and one addmm.
                h = torch.addmm(torch.addcmul(d_t, leak, s.h), s.r, w_scaled_t)
                r = act(h)
                if p_t is not None:
                    r = r + p_t
                return r, RateState(h, r)

            rates, state = scan(step, state, (drive, post))
        return self._linear(fb, "readout", rates, self.weight_out, self.bias_out), rates, state

    def forward(self, x: Tensor, state: RateState | None = None,
                return_state: bool = False) -> tuple[Tensor, ...]:
        """``(outputs, rates)`` for a batch-first input ``(batch, time, n_input)``, plus the
        final state with ``return_state`` (to continue the trial from there)."""
        out, rates, final = self.run(x, state)
        return (out, rates, final) if return_state else (out, rates)

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
