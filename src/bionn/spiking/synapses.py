"""Projections (sparse, event-driven, delayed) and synapse kinetics.

A :class:`Projection` connects a presynaptic group to a postsynaptic group
with a :class:`~bionn.circuits.Connectivity` (weights ``(post, pre)``), the
structure object every builder of :mod:`bionn.circuits` returns; where it
carries a sign per presynaptic neuron, the weights are that sign times a
magnitude. It stores the synapses as a padded out-edge table (ELL: for each pre neuron, its
targets and weights), so delivering spikes costs work only for the neurons
that spiked. A :class:`Synapse` model holds the kinetics (per post neuron when
the kinetics are linear in the spikes, per pre neuron otherwise) and decides
what reaches the post group: a current, a conductance with reversal potential
``E`` (``I = g (E - V)``: always toward ``E``), a voltage jump, or a gap
junction current.

Order within one step (the same as Brian2): the synaptic state at the start
of the step drives the neurons; then the kinetics decay by ``dt`` and this
step's (delayed) presynaptic spikes are added, so a spike at step n first
affects V at step n + 1 (+ the delay).

Every method a step calls takes an optional
:class:`~bionn.spiking.base.StepContext` (``ctx``): it carries the read-once
parameter values of a run and the spike events arriving at the projection.
Nothing is stored in the modules during a step.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bionn.circuits.connectivity import Connectivity
from bionn.spiking.base import State, StepContext, constants_of

OUTPUTS = ("current", "conductance", "voltage", "gap")


class Synapse(nn.Module):
    """Synapse kinetics. Subclasses set ``defaults`` and implement
    :meth:`initial_state`, :meth:`update` and :meth:`value`.

    ``value`` returns the synaptic variable summed onto each post neuron,
    ``(batch, n_post)``; the projection multiplies it by ``g_max`` and
    turns it into a current or conductance. ``update``, ``value`` and
    ``post_factor`` are pure; their optional ``ctx`` (a
    :class:`~bionn.spiking.base.StepContext`) only saves work (read-once
    parameters, presynaptic event indices) and never changes the result.
    """

    defaults: ClassVar[dict[str, float]] = {}
    default_output: ClassVar[str] = "current"
    default_E: ClassVar[float | None] = None
    #: state variables that may be +inf by design (the non-finite check allows it there)
    unbounded_above: ClassVar[tuple[str, ...]] = ()
    #: the kinetics take the weighted sum of arriving spikes (``proj.deliver(spikes)``) and
    #: nothing else of the presynaptic side, so k spikes at once act as k times one spike
    #: (what :class:`PoissonInput` needs)
    linear_in_spikes: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__()
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown parameter(s) {unknown}; allowed: {sorted(self.defaults)}"
            )
        for name, default in self.defaults.items():
            value = params.get(name, default)
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.get_default_dtype()))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={float(getattr(self, k)):g}" for k in self.defaults)

    def decay(self, dt: float, name: str = "tau_decay", ctx: StepContext | None = None) -> Tensor | float:
        """``exp(-dt / tau)`` for the time constant ``name`` (a float when scalar)."""
        tau = self.scalar(name, ctx)
        return math.exp(-dt / tau) if isinstance(tau, float) else torch.exp(-dt / tau)

    def scalar(self, name: str, ctx: StepContext | None = None) -> float | Tensor:
        """A parameter as a Python float when scalar (cheap in the time loop), else the buffer.

        Read from ``ctx.constants`` when the context carries this synapse's
        (:meth:`constants`, read once per run), else from the buffer now.
        """
        c = constants_of(self, ctx)
        if c is not None:
            v = c.get(name)
            if v is not None:
                return v
        t = getattr(self, name)
        return float(t) if t.numel() == 1 else t

    def constants(self, dt: float) -> dict[str, Any]:
        """The scalar parameters as Python floats (read once per run; see :meth:`scalar`)."""
        out: dict[str, Any] = {}
        for name in self.defaults:
            t = getattr(self, name)
            if t.numel() == 1:
                out[name] = float(t)
        return out

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:  # pragma: no cover
        raise NotImplementedError

    def update(self, state: State, proj: Projection, spikes: Tensor, dt: float,
               pre: State, post: State, weight: Tensor,
               ctx: StepContext | None = None) -> State:  # pragma: no cover
        raise NotImplementedError

    def value(self, state: State, proj: Projection, pre: State, post: State, weight: Tensor,
              ctx: StepContext | None = None) -> Tensor:
        raise NotImplementedError  # pragma: no cover

    def post_factor(self, post: State, ctx: StepContext | None = None) -> Tensor | float:
        """A voltage-dependent factor on the conductance (NMDA's Mg block); 1 by default."""
        return 1.0


class Exponential(Synapse):
    """Exponential-decay synapse: ``ds/dt = -s / tau_decay``; ``s += w`` per spike.

    Linear in the spikes, so the state is one ``s`` per post neuron and the
    update is exact. bpmodels defaults: ``tau_decay = 8``, ``g_max = 0.1``.

    Example:
        >>> import torch
        >>> from bionn.circuits.connect import all_to_all
        >>> p = Projection("A", "B", all_to_all(1, 1), Exponential(tau_decay=2.0, g_max=1.0))
        >>> s = p.synapse.initial_state(p, 1, None, torch.float32)
        >>> s = p.synapse.update(s, p, torch.tensor([[True]]), 0.1, {}, {}, p.weight)
        >>> float(p.synapse.value(s, p, {}, {}, p.weight))
        1.0
    """

    defaults: ClassVar[dict[str, float]] = {"tau_decay": 8.0, "g_max": 0.1}
    linear_in_spikes: ClassVar[bool] = True

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:
        return {"s": torch.zeros(batch, proj.n_post, device=device, dtype=dtype)}

    def update(self, state: State, proj: Projection, spikes: Tensor, dt: float,
               pre: State, post: State, weight: Tensor, ctx: StepContext | None = None) -> State:
        s = state["s"] * self.decay(dt, "tau_decay", ctx)
        return {"s": proj.deliver(spikes, weight, out=s, ctx=ctx)}

    def value(self, state: State, proj: Projection, pre: State, post: State, weight: Tensor,
              ctx: StepContext | None = None) -> Tensor:
        return state["s"]


class Projection(nn.Module):
    """Synapses from group ``pre`` to group ``post``.

    Args:
        pre, post: names of the groups in the :class:`~bionn.spiking.Network`.
        connectivity: ``(post, pre)`` :class:`~bionn.circuits.Connectivity` (dense or
            sparse); its sizes must match the (ranges of the) groups.
        synapse: the kinetics (e.g. :class:`Exponential`).
        weight: a number, one value per synapse (in ``connectivity.edges()``
            order), or a dense ``(post, pre)`` matrix; None (default): the
            connectivity's own ``weight``, else 1. Multiplied by the synapse's
            ``g_max``. Where the connectivity has a sign per presynaptic neuron,
            ``weight`` is a magnitude (>= 0) and the synapse's weight is
            ``sign[pre] * weight`` (unsigned neurons, sign 0: ``weight`` as given);
            conductance and gap outputs take their sign from ``E``, so their
            connectivity may not mark neurons inhibitory.
        output: ``"current"``, ``"conductance"`` (needs ``E``), ``"voltage"``
            or ``"gap"``; default per synapse model.
        E: reversal potential in mV for conductance output.
        delay: transmission delay in ms (rounded to steps of the run's dt).
        plasticity: a learning rule (:mod:`bionn.plasticity`) that changes the
            weights during the simulation.
        pre_range, post_range: ``(start, stop)`` neuron ranges within the groups.
    """

    def __init__(self, pre: str, post: str, connectivity: Connectivity, synapse: Synapse, *,
                 weight: float | Tensor | None = None, output: str | None = None, E: float | None = None,
                 delay: float = 0.0, plasticity: nn.Module | None = None,
                 pre_range: tuple[int, int] | None = None, post_range: tuple[int, int] | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        self.pre, self.post = pre, post
        self.name = name or f"{pre}->{post}"
        self.synapse = synapse
        self.output = output or synapse.default_output
        if self.output not in OUTPUTS:
            raise ValueError(f"projection {self.name}: output {self.output!r} not in {list(OUTPUTS)}")
        E = synapse.default_E if E is None else E
        if self.output == "conductance" and E is None:
            raise ValueError(f"projection {self.name}: conductance output needs a reversal potential E (mV)")
        self.E = None if E is None else float(E)
        if delay < 0:
            raise ValueError(f"projection {self.name}: delay must be >= 0 ms; got {delay}")
        self.delay = float(delay)
        self.plasticity = plasticity
        self.pre_range, self.post_range = pre_range, post_range
        self.n_post, self.n_pre = connectivity.n_post, connectivity.n_pre
        post_idx, pre_idx = connectivity.edges(copy=False)  # read only here
        if weight is None:
            weight = 1.0 if connectivity.weight is None else connectivity.weight
        w = self._edge_weights(weight, connectivity, post_idx, pre_idx)
        w = self._signed(w, connectivity.sign, pre_idx)
        #: the connectivity's sign per presynaptic neuron (None: unsigned)
        self.register_buffer("pre_sign", connectivity.sign, persistent=False)
        targets, weights = _ell(pre_idx, post_idx, w, self.n_pre, self.n_post)
        self.register_buffer("targets", targets)
        self.register_buffer("weight", weights)
        self.register_buffer("edge_mask", targets < self.n_post)
        # Delivery reads padding slots as synapses onto neuron 0 with weight 0; int32 where
        # the indices fit: half the memory, and index_select / index_add_ read less
        t0 = targets.masked_fill(targets == self.n_post, 0)
        if self.n_post < 2**31:
            t0 = t0.to(torch.int32)
        self.register_buffer("_targets0", t0, persistent=False)
        self.nnz = int(post_idx.numel())

    def _signed(self, w: Tensor, sign: Tensor | None, pre_idx: Tensor) -> Tensor:
        """``sign[pre] * w`` at the synapses of signed presynaptic neurons."""
        if sign is None:
            return w
        s = sign.to(w.dtype)[pre_idx]
        if self.output in ("conductance", "gap") and bool((sign < 0).any()):
            raise ValueError(
                f"projection {self.name}: {self.output} output takes its sign from the reversal "
                "potential E; its connectivity's presynaptic signs must be +1 or 0 (unsigned)")
        signed = s != 0
        if bool((w[signed] < 0).any()):
            raise ValueError(
                f"projection {self.name}: the connectivity has a sign per presynaptic neuron, so "
                "weight gives magnitudes (>= 0); got negative weights")
        return torch.where(signed, w * s, w)

    def _edge_weights(self, weight, conn, post_idx, pre_idx) -> Tensor:
        w = torch.as_tensor(weight, dtype=torch.get_default_dtype())
        if w.dim() == 0:
            return w.expand(post_idx.numel()).clone()
        if w.shape == (conn.n_post, conn.n_pre):
            return w.to_dense()[post_idx, pre_idx] if w.layout != torch.strided else w[post_idx, pre_idx]
        if w.shape == (post_idx.numel(),):
            return w.clone()
        raise ValueError(
            f"projection {self.name}: weight must be a number, {post_idx.numel()} values (one per "
            f"synapse) or a ({conn.n_post}, {conn.n_pre}) (post, pre) matrix; got shape {tuple(w.shape)}"
        )

    def extra_repr(self) -> str:
        return (f"{self.name}: {self.n_pre}->{self.n_post}, {self.nnz} synapses, output={self.output!r}"
                + (f", E={self.E}" if self.E is not None else "") + (f", delay={self.delay} ms" if self.delay else ""))

    def delay_steps(self, dt: float) -> int:
        return int(round(self.delay / dt))

    def constants(self, dt: float) -> Any:
        """What the projection itself reads once per run at ``dt`` (None: nothing)."""
        return None

    def initial_state(self, batch: int, device, dtype, dt: float = 0.1) -> State:
        state = {f"syn.{k}": v for k, v in self.synapse.initial_state(self, batch, device, dtype).items()}
        d = self.delay_steps(dt)
        if d > 0:
            state["delay_buffer"] = torch.zeros(batch, d, self.n_pre, dtype=torch.bool, device=device)
        if self.plasticity is not None:
            state["w"] = self.weight.to(device=device, dtype=dtype).expand(batch, -1, -1).clone()
            state.update({f"rule.{k}": v for k, v in self.plasticity.initial_state(self, batch, device, dtype).items()})
        return state

    def weights(self, state: State | None = None) -> Tensor:
        """The current per-edge weights (ELL layout), per trial under plasticity."""
        if state is not None and "w" in state:
            return state["w"]
        return self.weight

    def dense_weight(self, state: State | None = None) -> Tensor:
        """The weight matrix ``(post, pre)`` (or ``(batch, post, pre)`` under plasticity)."""
        w = self.weights(state)
        pre = torch.arange(self.n_pre, device=w.device)[:, None].expand_as(self.targets)
        m = self.edge_mask
        if w.dim() == 2:
            out = torch.zeros(self.n_post, self.n_pre, dtype=w.dtype, device=w.device)
            out[self.targets[m], pre[m]] = w[m]
            return out
        out = torch.zeros(w.shape[0], self.n_post, self.n_pre, dtype=w.dtype, device=w.device)
        out[:, self.targets[m], pre[m]] = w[:, m]
        return out

    def deliver(self, values: Tensor, weight: Tensor, event_driven: bool = True,
                out: Tensor | None = None, ctx: StepContext | None = None) -> Tensor:
        """``sum_j w_ij values_j`` for every post neuron i, ``(batch, n_post)``.

        With ``event_driven`` only the nonzero (e.g. spiking) presynaptic entries
        cost work; otherwise every synapse is visited (for graded values). With
        ``out`` (a contiguous ``(batch, n_post)`` tensor the caller owns) the sum
        is added into it in place. When ``ctx.events`` holds the nonzero indices
        of ``values`` itself (the network sets them), they are not searched again.
        """
        batch = values.shape[0]
        n_post = self.n_post
        if out is None:
            dtype = weight.dtype if values.dtype == torch.bool else torch.promote_types(weight.dtype, values.dtype)
            out = torch.zeros(batch, n_post, dtype=dtype, device=weight.device)
        flat_out = out.view(-1)
        if event_driven:
            ev = None if ctx is None else ctx.events
            if ev is not None and ev[0] is values:
                b, j = ev[1], ev[2]
            else:
                b, j = values.nonzero(as_tuple=True)
            if j.numel() == 0:
                return out
            w = weight.index_select(0, j) if weight.dim() == 2 else weight[b, j]
            if values.dtype != torch.bool:
                w = w * values[b, j].to(w.dtype)[:, None]
            idx = self._targets0.index_select(0, j)
            if batch > 1:
                idx = idx + (b * n_post)[:, None]
            flat_out.index_add_(0, idx.view(-1), w.reshape(-1).to(out.dtype))
            return out
        w = weight * values.to(weight.dtype)[..., None]  # (batch, n_pre, K)
        if w.dim() == 2:
            w = w.expand(batch, -1, -1)
        idx = self._targets0[None] + (torch.arange(batch, device=values.device) * n_post)[:, None, None]
        flat_out.index_add_(0, idx.reshape(-1), w.reshape(-1).to(out.dtype))
        return out

    def gather_post(self, post_values: Tensor) -> Tensor:
        """Post-neuron values at every synapse, ``(batch, n_pre, K)`` (padding reads 0)."""
        padded = torch.nn.functional.pad(post_values, (0, 1))
        return padded[:, self.targets]


def _ell(pre_idx: Tensor, post_idx: Tensor, w: Tensor, n_pre: int, n_post: int) -> tuple[Tensor, Tensor]:
    """Out-edge table: ``targets[j, k]`` is the k-th post neuron of pre j (``n_post`` = padding).

    Each row lists its post neurons in increasing order. Built straight from the edge
    lists: one stable sort by pre (edges given sorted by post, as ``Connectivity.edges()``
    gives them; otherwise a stable sort by post first), then the entries are written into
    their slots in chunks, with no ``(nnz,)`` key, slot or sorted copies.
    """
    nnz = pre_idx.numel()
    if nnz > 1 and not bool((post_idx[1:] >= post_idx[:-1]).all()):
        by_post = torch.sort(post_idx, stable=True).indices
        order = by_post[torch.sort(pre_idx[by_post], stable=True).indices]
        del by_post
    else:
        order = torch.sort(pre_idx, stable=True).indices
    counts = torch.bincount(pre_idx, minlength=n_pre)
    k = max(int(counts.max()) if nnz else 0, 1)
    shift = torch.arange(n_pre) * k - (torch.cumsum(counts, 0) - counts)  # slot of edge i: i + shift[pre]
    targets = torch.full((n_pre, k), n_post, dtype=torch.long)
    weights = torch.zeros(n_pre, k, dtype=w.dtype)
    flat_t, flat_w = targets.view(-1), weights.view(-1)
    step = 1 << 20
    for s in range(0, nnz, step):
        o = order[s:s + step]
        slot = shift[pre_idx[o]]
        slot += torch.arange(s, s + o.numel())
        flat_t[slot] = post_idx[o]
        flat_w[slot] = w[o]
    return targets, weights


def _count_cdf(n_sources: int, p: float) -> Tensor:
    """The CDF of Binomial(n_sources, p) (float64, CPU), cut where it reaches 1 - 1e-17."""
    k = torch.arange(0, n_sources + 1, dtype=torch.float64)
    if p <= 0.0:
        return torch.ones(1, dtype=torch.float64)
    if p >= 1.0:
        cdf = torch.zeros(n_sources + 1, dtype=torch.float64)
        cdf[-1] = 1.0
        return cdf
    log_pmf = (math.lgamma(n_sources + 1) - torch.lgamma(k + 1) - torch.lgamma(n_sources - k + 1)
               + k * math.log(p) + (n_sources - k) * math.log1p(-p))
    cdf = log_pmf.exp().cumsum(0)
    last = min(int((cdf < 1.0 - 1e-17).sum()) + 1, n_sources + 1)
    cdf = cdf[:last].clone()
    cdf[-1] = 1.0  # every uniform draw falls in the table
    return cdf


class PoissonInput(Projection):
    r"""External Poisson drive without source neurons (Brian2's ``PoissonInput``).

    Every neuron of group ``target`` (or of ``post_range``) receives ``n_sources``
    independent Poisson spike trains of ``rate`` Hz each. In each step the number of
    arriving spikes per neuron and trial is drawn, ``k ~ Binomial(n_sources, rate dt /
    1000)`` (exactly: by inverse CDF from one uniform of the step's generator), and
    delivered through ``synapse`` like ``k`` presynaptic spikes of weight ``weight``:
    :class:`~bionn.spiking.VoltageJump` adds ``k w`` to V (dropped while the neuron is
    refractory, as any voltage jump), an :class:`Exponential` (current or conductance)
    synapse increments its ``s`` by ``k w``. It replaces ``n_sources`` Poisson neurons wired
    one-to-many to each target (the same statistics, no source state, one draw per target).

    Args:
        target: the group driven.
        n: its number of neurons (of ``post_range`` when given).
        n_sources: independent sources per neuron.
        rate: Hz per source (``rate * dt / 1000 <= 1``).
        synapse: the kinetics, e.g. ``VoltageJump()``.
        weight: a number or ``(n,)`` values (mV for voltage jumps).
        output, E: as :class:`Projection`.
        post_range: ``(start, stop)`` neurons within ``target``.
        name: default ``"poisson->{target}"``.

    Example:
        >>> from bionn.spiking import LIF, Network, VoltageJump
        >>> drive = PoissonInput("E", 100, n_sources=400, rate=50.0, synapse=VoltageJump(), weight=0.1)
        >>> net = Network({"E": LIF(100, V_rest=0.0, V_reset=10.0, V_th=20.0, tau=20.0,
        ...                         t_refractory=2.0)}, [drive])
        >>> res = net.run(200.0, dt=0.1, progress=False, seed=0)
        >>> 0 < res.spikes["E"].count()
        True
    """

    def __init__(self, target: str, n: int, *, n_sources: int, rate: float, synapse: Synapse,
                 weight: float | Tensor = 1.0, output: str | None = None, E: float | None = None,
                 post_range: tuple[int, int] | None = None, name: str | None = None) -> None:
        from bionn.circuits.connect import one_to_one

        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"PoissonInput: n must be a positive integer (the target's neurons); got {n!r}")
        if not isinstance(n_sources, int) or isinstance(n_sources, bool) or n_sources <= 0:
            raise ValueError(f"PoissonInput: n_sources must be a positive integer; got {n_sources!r}")
        if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate)
                and rate >= 0):
            raise ValueError(f"PoissonInput: rate must be a number of Hz >= 0; got {rate!r}")
        super().__init__(target, target, one_to_one(n), synapse, weight=weight, output=output, E=E,
                         pre_range=post_range, post_range=post_range,
                         name=name or f"poisson->{target}")
        if self.output == "gap" or not type(synapse).linear_in_spikes:
            raise ValueError(f"projection {self.name}: a Poisson input needs kinetics driven by the "
                             f"sum of arriving spikes (Exponential, DualExponential, Alpha, "
                             f"VoltageJump); got {type(synapse).__name__} with output {self.output!r}")
        self.n_sources, self.rate = int(n_sources), float(rate)

    def extra_repr(self) -> str:
        return (f"{self.name}: {self.n_sources} sources x {self.rate:g} Hz onto {self.n_post}, "
                f"output={self.output!r}" + (f", E={self.E}" if self.E is not None else ""))

    def constants(self, dt: float) -> Tensor:
        """The count CDF at ``dt`` (read once per run)."""
        p = self.rate * dt / 1000.0
        if p > 1.0:
            raise ValueError(f"projection {self.name}: rate * dt = {self.rate:g} Hz x {dt:g} ms is "
                             "more than one spike per step per source; lower dt")
        return _count_cdf(self.n_sources, p)

    def counts(self, batch: int, ctx: StepContext | None, device) -> Tensor:
        """This step's arriving spike counts ``(batch, n)`` (int64): one uniform per target
        neuron and trial from the step's generator (float64), through the count CDF."""
        cdf = constants_of(self, ctx)
        if cdf is None:
            cdf = self.constants(ctx.dt if ctx is not None else 0.1)
        gen = None if ctx is None else ctx.generator
        u = torch.rand(batch, self.n_post, generator=gen, dtype=torch.float64,
                       device=gen.device if gen is not None else device).to(device)
        return torch.searchsorted(cdf.to(device), u, right=True)

    def deliver(self, values: Tensor, weight: Tensor, event_driven: bool = True,
                out: Tensor | None = None, ctx: StepContext | None = None) -> Tensor:
        """``k_i w_i`` for every target neuron ``i`` ``(batch, n)``: this step's counts (the
        target's own spikes ``values`` are not read, only their batch size and device)."""
        k = self.counts(values.shape[0], ctx, weight.device)
        value = torch.mul(k, weight[..., 0])  # one synapse per target (one-to-one)
        if out is None:
            return value
        return out.add_(value)
