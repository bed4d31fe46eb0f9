r"""The recurrent core: one base for every recurrent model of bionn.

Every rate model (:class:`~bionn.rate.CTRNN`, :class:`~bionn.rate.ConnectomeRNN`,
the spatial areas and networks) is a configuration of :class:`RecurrentCore`.
The core owns what they share:

* the leaky update of the units (Euler, ``alpha = dt / tau`` per unit, time in ms)::

      h_t = (1 - alpha) h_{t-1} + alpha (I_t + b) + sqrt(2 alpha) sigma_pre xi_t
      r_t = f(h_t) + sigma_post xi'_t

  with ``I_t`` the synaptic input the configuration computes (recurrent
  operator plus feedforward drive), written once in :meth:`RecurrentCore.cell_update`;
* the time constants (:class:`TimeConstants`: per unit, type or block, fixed or
  learned and kept above ``dt``), the initial state (zero or learned), pre- and
  post-activation noise;
* the time loop: :meth:`~RecurrentCore.run` over a batch-first sequence,
  :meth:`~RecurrentCore.step` for closed-loop use, ``forward(x, state=None,
  return_state=False)``; a fused scan with a hand-written BPTT backward where the
  recurrent operator is a dense matrix; truncated and checkpointed BPTT through
  :mod:`bionn.training`-style chunking work because the state is explicit;
* credit assignment through time: ``credit_assignment`` is ``None`` (backprop)
  or an ``nn.ModuleDict`` of feedback rules keyed by connection name. Every
  connection is applied through :meth:`~RecurrentCore.connect`, which routes
  the product through the rule's ``B`` in the backward pass, whatever the
  operator (dense, sparse, convolution).

A configuration supplies its connections and operators:

* ``connection_weights()`` / ``connection_parameters()``: the effective
  (constrained) weights and their raw trained leaves, by connection name;
* ``input_drive(x, p)``: the state-independent drive ``(batch, time, *units)``;
* ``recurrent_input(r, p)``: the recurrent operator on the rates;
* ``readout(rates, p)``: outputs from the rates;
* optionally ``dense_recurrent(p)``: the ``(post, pre)`` matrix when the
  operator is dense (enables the fused scan);

where ``p`` is the :class:`Prepared` of the sequence (weights, feedback
matrices, ``alpha``) and every connection goes through
``self.connect(p, name, x, weight, bias, kernel)``. Nothing is written into
module attributes during a step.

:class:`RecurrentModel` is the protocol the converters (``convert``,
``exact_gradients``, alignment metrics, ``BioConverter``, ``RNNLoss``) rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn.constraints import LowerBound, raw_parameter
from bionn.functional.ctrnn_scan import SCAN_ACTIVATIONS, ctrnn_scan
from bionn.functional.feedback import LINEAR, FeedbackKernel, feedback_apply
from bionn.functional.loop import scan
from bionn.functional.rate import RateState, get_activation, leaky_update

__all__ = ["Prepared", "RecurrentCore", "RecurrentModel", "TimeConstants", "RateState", "detach_state",
           "recurrent_models"]


class Prepared(NamedTuple):
    """What one sequence uses throughout (see :meth:`RecurrentCore.prepare`):
    effective ``weights`` and feedback matrices ``feedback`` by connection name,
    and ``alpha = dt / tau`` per unit."""

    weights: dict[str, Tensor]
    feedback: dict[str, Tensor]
    alpha: Tensor


@runtime_checkable
class RecurrentModel(Protocol):
    """What every recurrent model of the core offers (and converters use).

    * ``dt`` (ms);
    * ``connection_weights() -> {name: Tensor}``: effective (constrained) weights,
      ``(post, pre)`` for dense ones, ``(out, in, kh, kw)`` for convolutions,
      ``(nnz,)`` values for sparse ones;
    * ``connection_parameters() -> {name: Parameter}``: the trained leaves behind them;
    * ``credit_assignment``: ``None`` or a ``ModuleDict`` of feedback rules by
      connection name;
    * ``initial_state(batch_size)``; ``forward(x, state=None, return_state=False)
      -> (outputs, rates[, final_state])``.
    """

    dt: float
    credit_assignment: nn.ModuleDict | None

    def connection_weights(self) -> dict[str, Tensor]: ...

    def connection_parameters(self) -> dict[str, nn.Parameter]: ...

    def initial_state(self, batch_size: int) -> Any: ...


def detach_state(state: Any) -> Any:
    """``state`` (tensors in any nesting of tuples, named tuples, lists and dicts, ``None``
    allowed) cut from the autograd graph: truncated BPTT continues a trial from it.

    Example:
        >>> s = RateState(torch.ones(2, requires_grad=True) * 2, torch.zeros(2))
        >>> detach_state(s).h.requires_grad, type(detach_state(s)).__name__
        (False, 'RateState')
    """
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(v) for v in state))
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(v) for v in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


def recurrent_models(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` for every module of ``model`` that follows
    :class:`RecurrentModel`, outermost first; modules nested inside one are left
    to it (a spatial network's areas are part of the network)."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        # the class's methods first: a Protocol's isinstance costs ~20 us per module
        if not hasattr(type(m), "connection_weights"):
            continue
        if isinstance(m, RecurrentModel) and not any(
                name.startswith(f"{p}.") or p == "" for p, _ in found):
            found.append((name, m))
    return found


class TimeConstants(nn.Module):
    """Time constants (ms) shared within groups of units, fixed or learned.

    ``values`` holds one tau per group, ``(G, *rest)``; ``index`` ``(N,)`` maps
    each unit (or channel) to its group (``None``: one value per unit). A
    learned tau is ``dt + softplus(raw)`` (:class:`~bionn.constraints.LowerBound`),
    so ``alpha = dt / tau < 1`` after every optimizer step (a learned tau given
    as exactly ``dt`` starts at ``dt + 1e-4``); every tau must be ``>= dt``.

    Example:
        >>> tc = TimeConstants(torch.tensor([20.0, 100.0]), dt=10.0,
        ...                    index=torch.tensor([0, 0, 1]), learn=True)
        >>> [round(v, 3) for v in tc.per_unit().tolist()], isinstance(tc.tau, torch.Tensor)
        ([20.0, 20.0, 100.0], True)
    """

    def __init__(self, values: Tensor | float, dt: float, *, index: Tensor | None = None,
                 learn: bool = False, what: str = "tau") -> None:
        super().__init__()
        tau = torch.as_tensor(values, dtype=torch.get_default_dtype()).clone()
        if tau.dim() == 0:
            tau = tau.reshape(1)
        if not bool(torch.isfinite(tau).all()) or bool((tau <= 0).any()):
            raise ValueError(f"{what} must be positive and finite (ms); got min {tau.min().item():g}")
        if bool((tau < dt).any()):
            raise ValueError(f"{what} must be >= dt (alpha = dt/tau <= 1); got dt={dt:g} ms and min "
                             f"{what}={tau.min().item():g} ms")
        self.dt, self.learn = float(dt), bool(learn)
        if index is not None:
            index = torch.as_tensor(index, dtype=torch.long).flatten()
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= tau.shape[0]):
                raise ValueError(f"{what} group index must lie in [0, {tau.shape[0]})")
        self.register_buffer("index", index)
        if learn:
            self.tau = nn.Parameter(tau)
            parametrize.register_parametrization(self, "tau", LowerBound(self.dt))
        else:
            self.register_buffer("tau", tau)

    def per_unit(self) -> Tensor:
        """tau of every unit: ``values[index]`` (``(N, *rest)``)."""
        return self.tau if self.index is None else self.tau[self.index]

    def extra_repr(self) -> str:
        groups = "per unit" if self.index is None else f"{self.tau.shape[0]} groups"
        return f"{groups}, learn={self.learn}"


def _groups(labels: Tensor) -> Tensor:
    """Group index ``0..G-1`` per unit, groups numbered in order of first appearance."""
    uniq, inverse = torch.unique(labels, return_inverse=True)
    first = torch.full((uniq.numel(),), labels.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(labels.numel()), reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(uniq.numel())
    return rank[inverse]


def tau_groups(spec: str | Tensor | None, n: int, labels: Mapping[str, Tensor | None]) -> Tensor | None:
    """The ``(n,)`` group index for a tau sharing spec: ``"neuron"`` (None), a key of
    ``labels`` (e.g. ``"type"``, ``"area"``) or an ``(n,)`` integer tensor. Groups
    are numbered in order of first appearance (E before I for ``e_fraction``).

    Example:
        >>> tau_groups("type", 4, {"type": torch.tensor([1.0, 1.0, -1.0, 1.0])}).tolist()
        [0, 0, 1, 0]
    """
    if spec is None or (isinstance(spec, str) and spec == "neuron"):
        return None
    if isinstance(spec, str):
        if spec not in labels:
            raise ValueError(f"tau_groups must be one of {['neuron', *labels]} or an (n,) tensor; got {spec!r}")
        lab = labels[spec]
        if lab is None:
            raise ValueError(f"tau_groups={spec!r} needs {spec} labels (give cell types or a circuit)")
        return _groups(torch.as_tensor(lab).flatten())
    idx = torch.as_tensor(spec, dtype=torch.long).flatten()
    if idx.numel() != n:
        raise ValueError(f"tau_groups must hold one group per neuron ({n}); got {idx.numel()}")
    return _groups(idx)


class RecurrentCore(nn.Module):
    """Base of every recurrent model (see the module docstring for the equations).

    Subclasses call :meth:`_init_core` from ``__init__`` and implement
    ``connection_weights``, ``connection_parameters``, ``input_drive``,
    ``recurrent_input`` and ``readout`` (and ``dense_recurrent`` where the
    recurrent operator is a dense matrix). The time loop, noise, initial state,
    time constants and credit assignment through time are here.

    Call convention (every model): ``forward(x, state=None, return_state=False)``
    with ``x`` batch-first ``(batch, time, ...)`` returns ``(outputs, rates)``,
    plus the final state with ``return_state``; ``step(state, x_t)`` returns
    ``(output_t, rates_t, new_state)``; ``initial_state(batch_size)`` the state
    before the first step.
    """

    RECURRENT = "recurrent"
    #: connection names whose rules may be applied (subclasses override)
    CONNECTIONS: tuple[str, ...] = ("input", "recurrent", "readout")

    dt: float
    credit_assignment: nn.ModuleDict | None

    def _init_core(self, *, dt: float, unit_shape: tuple[int, ...], activation: str | Callable | None,
                   preact_noise: float = 0.0, postact_noise: float = 0.0,
                   learn_initial_state: bool = False, fused: bool = True) -> None:
        for name, v in (("preact_noise", preact_noise), ("postact_noise", postact_noise)):
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"{name} must be >= 0; got {v!r}")
        if not isinstance(learn_initial_state, bool):
            raise ValueError(f"learn_initial_state must be true or false; got {learn_initial_state!r}")
        self.dt = float(dt)
        self.unit_shape = tuple(int(s) for s in unit_shape)
        if isinstance(activation, str):
            self.activation_name = activation
            self.activation = get_activation(activation)
        else:  # None: the configuration overrides rate_function
            self.activation_name = None if activation is None else getattr(activation, "__name__", "custom")
            self.activation = activation
        self.preact_noise = float(preact_noise)
        self.postact_noise = float(postact_noise)
        self.fused = bool(fused)
        self.h0 = nn.Parameter(torch.zeros(self.unit_shape)) if learn_initial_state else None
        self.credit_assignment = None

    # ----------------------------------------------------------- configuration
    def connection_weights(self) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def connection_parameters(self) -> dict[str, nn.Parameter]:
        """The trained leaves behind :meth:`connection_weights` (raw, before constraints)."""
        return {k: raw_parameter(*self.connection_holder(k)) for k in self.connection_weights()}

    def input_drive(self, x: Tensor, p: Prepared) -> Tensor:  # pragma: no cover - abstract
        """State-independent drive ``I_ff + b``, ``(batch, time, *units)``."""
        raise NotImplementedError

    def recurrent_input(self, r: Tensor, p: Prepared) -> Tensor:  # pragma: no cover - abstract
        """The recurrent operator on the rates ``r`` ``(batch, *units)``."""
        raise NotImplementedError

    def readout(self, rates: Tensor, p: Prepared) -> Tensor:  # pragma: no cover - abstract
        """Outputs ``(batch, time, n_output)`` from the rates ``(batch, time, *units)``."""
        raise NotImplementedError

    def dense_recurrent(self, p: Prepared) -> Tensor | None:
        """The ``(post, pre)`` recurrent matrix when the operator is dense (fused scan), else None."""
        return None

    #: connection name -> attribute of the model holding its weight (configurations whose
    #: weights live on submodules override :meth:`connection_holder` instead)
    WEIGHT_NAMES: dict[str, str] = {}

    def connection_holder(self, name: str) -> tuple[nn.Module, str]:
        """``(module, attribute)`` holding connection ``name``'s weight (and its parametrizations)."""
        return self, self.WEIGHT_NAMES[name]

    def time_constants_per_unit(self) -> Tensor:
        """tau of every unit (ms), broadcastable to ``unit_shape``."""
        return self.time_constants.per_unit()

    def rate_function(self, h: Tensor) -> Tensor:
        """``f(h)``: the units' nonlinearity (one per model unless overridden)."""
        return self.activation(h)

    # ----------------------------------------------------------- shared machinery
    @property
    def alpha(self) -> Tensor:
        """``dt / tau`` per unit."""
        return self.dt / self.time_constants_per_unit()

    @property
    def tau(self) -> Tensor:
        """tau of every unit (ms)."""
        return self.time_constants_per_unit()

    def initial_state(self, batch_size: int) -> RateState:
        """The state before the first step: ``h`` zero or learned, ``r = f(h)``, ``(batch, *units)``."""
        ref = next(iter(self.parameters()))
        if self.h0 is None:
            h = ref.new_zeros(batch_size, *self.unit_shape)
        else:
            h = self.h0.expand(batch_size, *self.unit_shape)
        return RateState(h, self.rate_function(h))

    def prepare(self) -> Prepared:
        """Everything a sequence needs once: the effective weights (constraints
        evaluated once), ``B`` of every connection with a feedback rule (each rule's
        ``prepare()`` runs here: ``brsf`` redraws once per sequence) and ``alpha``.
        Pass it to :meth:`step` to keep one draw over a closed loop."""
        weights = self.connection_weights()
        fb: dict[str, Tensor] = {}
        for k, rule in (self.credit_assignment or {}).items():
            rule.prepare()
            b = rule.feedback(weights[k])
            if b is not None:
                fb[k] = b
        return Prepared(weights, fb, self.alpha)

    def connect(self, p: Prepared, name: str, x: Tensor, weight: Tensor, bias: Tensor | None = None,
                kernel: FeedbackKernel = LINEAR) -> Tensor:
        """Apply connection ``name``: ``kernel.op(x, weight, bias)`` (default ``F.linear``),
        its backward sending the error through the rule's ``B`` when it has one."""
        if name not in p.feedback:
            return kernel.op(x, weight, bias)
        return feedback_apply(kernel, x, weight, bias, self.credit_assignment[name],
                              feedback=p.feedback[name])

    def cell_update(self, state: Any, syn: Tensor, alpha: Tensor, pre_noise: Tensor | None = None,
                    post_noise: Tensor | None = None) -> Any:
        """The units' update from their state and total synaptic input ``syn``; the
        new state has the rates seen by the synapses as ``.r``.

        Rate units: ``h' = (1 - alpha) h + alpha syn + pre_noise``, ``r' = f(h') + post_noise``.
        A spiking configuration overrides this (neuron state, integrator, surrogate
        spike and reset, with the spikes as ``.r``) and :meth:`initial_state`; the
        operator, connections, feedback routing and loop stay the core's.
        """
        return leaky_update(state.h, syn, alpha, self.rate_function, pre_noise, post_noise)

    def _noise(self, like: Tensor, alpha: Tensor) -> tuple[Tensor | None, Tensor | None]:
        pre = post = None
        # drawn in (batch, time, ...) order whatever the memory layout of ``like``
        if self.preact_noise > 0:
            pre = torch.randn(like.shape, dtype=like.dtype, device=like.device) * (
                (2 * alpha).sqrt() * self.preact_noise)
        if self.postact_noise > 0:
            post = torch.randn(like.shape, dtype=like.dtype, device=like.device) * self.postact_noise
        return pre, post

    def check_input(self, x: Tensor) -> None:
        """Refuse an input that is not ``(batch, time, n_input)``."""
        n_in = getattr(self, "n_input", None)
        if x.dim() != 3 or (n_in is not None and x.shape[-1] != n_in):
            raise ValueError(f"input must be (batch, time, n_input={n_in}); got shape {tuple(x.shape)}")

    def step(self, state: Any, x_t: Tensor, prepared: Prepared | None = None,
             ) -> tuple[Tensor, Tensor, Any]:
        """One step for closed-loop use: from ``state``, with ``x_t`` one time step of the
        input, ``(batch, ...)`` (state first, like every step function of bionn).

        Returns ``(output_t, rates_t, new_state)``. ``prepared`` (from :meth:`prepare`)
        is reused if given; else the weights and feedback matrices are prepared for
        this step alone.
        """
        out, rates, state = self.run(x_t.unsqueeze(1), state, prepared)
        return out[:, 0], rates[:, 0], state

    def run(self, x: Tensor, state: RateState | None = None, prepared: Prepared | None = None,
            ) -> tuple[Tensor, Tensor, RateState]:
        """Run over a batch-first sequence ``x`` ``(batch, time, ...)``.

        Returns ``(outputs (batch, time, n_output), rates (batch, time, *units), final_state)``.
        """
        self.check_input(x)
        if state is None:
            state = self.initial_state(x.shape[0])
        p = self.prepare() if prepared is None else prepared
        return self._sequence(x, state, p)

    def _sequence(self, x: Tensor, state: Any, p: Prepared) -> tuple[Tensor, Tensor, Any]:
        """Drive, time loop and readout of one sequence (a configuration whose units
        update in several stages per step, like a multi-area network, overrides this)."""
        alpha = p.alpha
        rate_cell = type(self).cell_update is RecurrentCore.cell_update
        dense = None if self.RECURRENT in p.feedback or not rate_cell else self.dense_recurrent(p)
        if dense is not None:
            # the leaky rate update on a dense matrix, alpha folded into the weights:
            # h_t = (1 - alpha) h + r (alpha W)^T + alpha (W_in x + b) + noise
            d = self.scaled_input_drive(x, p)
            pre, post = self._noise(d, alpha)
            if pre is not None:
                d = d + pre
            rates, state, out = self._dense_loop(d, post, state, dense, alpha, p)
            if out is not None:  # the fused scan computed the linear readout
                return out, rates, state
        else:
            drive = self.input_drive(x, p)
            pre, post = self._noise(drive, alpha)

            def step(s: Any, d_t: Tensor, pre_t: Tensor | None, p_t: Tensor | None) -> tuple[Tensor, Any]:
                new = self.cell_update(s, self.recurrent_input(s.r, p) + d_t, alpha, pre_t, p_t)
                return new.r, new

            rates, state = scan(step, state, (drive, pre, post))
        return self.readout(rates, p), rates, state

    def scaled_input_drive(self, x: Tensor, p: Prepared) -> Tensor:
        """``alpha * input_drive(x)``; a dense configuration folds ``alpha`` into its
        input weights instead (one pass less over ``(batch, time, N)``)."""
        return p.alpha * self.input_drive(x, p)

    def linear_readout(self, p: Prepared) -> tuple[Tensor, Tensor | None] | None:
        """``(W_out, b_out)`` when the readout is ``F.linear`` on the rates with no feedback
        rule (the fused scan then computes it and its gradient step by step); else None."""
        return None

    def _dense_loop(self, d: Tensor, post: Tensor | None, state: RateState, dense: Tensor,
                    alpha: Tensor, p: Prepared) -> tuple[Tensor, RateState, Tensor | None]:
        """``(rates, final state, outputs)``: outputs when the fused scan computed the
        :meth:`linear_readout`, else None (the caller applies the readout)."""
        w_scaled_t = (alpha[:, None] * dense).T  # (pre, post)
        leak = 1.0 - alpha
        if self.fused and self.activation_name in SCAN_ACTIVATIONS:
            readout = self.linear_readout(p)
            got = ctrnn_scan(d, w_scaled_t, leak, state.h, state.r, self.activation_name, post,
                             readout)
            return got[0], RateState(got[1], got[0][:, -1]), got[2] if readout is not None else None
        act = self.rate_function

        def dense_step(s: RateState, d_t: Tensor, p_t: Tensor | None) -> tuple[Tensor, RateState]:
            h = torch.addmm(torch.addcmul(d_t, leak, s.h), s.r, w_scaled_t)
            r = act(h)
            if p_t is not None:
                r = r + p_t
            return r, RateState(h, r)

        rates, final = scan(dense_step, state, (d, post))
        return rates, final, None

    def forward(self, x: Tensor, state: RateState | None = None,
                return_state: bool = False) -> tuple[Tensor, ...]:
        """``(outputs, rates)`` for a batch-first input, plus the final state with
        ``return_state`` (to continue the trial from there)."""
        out, rates, final = self.run(x, state)
        return (out, rates, final) if return_state else (out, rates)
