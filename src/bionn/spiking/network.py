"""Networks of neuron groups and projections, the simulation loop and monitors.

State is explicit: :meth:`Network.init_state` returns a dict (group name ->
group state, projection name -> synapse state) and :meth:`Network.step` is a
pure function of it. :meth:`Network.run` loops over time with a progress bar
and records spikes (as events) and chosen state variables.

Example:
    >>> import torch
    >>> from bionn.circuits.connect import fixed_prob
    >>> from bionn.spiking import LIF, Exponential, Network, Projection
    >>> g = torch.Generator().manual_seed(0)
    >>> net = Network(
    ...     {"E": LIF(100, V_rest=-52.0, V_reset=-60.0, V_th=-50.0, initial={"V": (-52.0, -50.0)})},
    ...     [Projection("E", "E", fixed_prob(100, 100, 0.1, generator=g), Exponential(tau_decay=2.0, g_max=1.0),
    ...                 weight=0.3)],
    ...     inputs={"E": 3.0},
    ... )
    >>> res = net.run(100.0, dt=0.1, generator=g, progress=False)
    >>> res.spikes["E"].count() > 0
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bionn.spiking.base import Drive, NeuronGroup, State
from bionn.spiking.synapses import Projection

InputSpec = float | Tensor | Callable[[float], Tensor | float]


@dataclass
class SpikeEvents:
    """Spikes as events: ``(trial, step, neuron)`` index triples.

    Attributes:
        trial, step, neuron: long tensors of equal length.
        n_neurons, n_steps, batch: sizes; dt in ms.
    """

    trial: Tensor
    step: Tensor
    neuron: Tensor
    n_neurons: int
    n_steps: int
    batch: int
    dt: float

    def count(self) -> int:
        return int(self.step.numel())

    @property
    def times(self) -> Tensor:
        """Spike times in ms (end of the step in which the spike occurred)."""
        return (self.step.to(torch.float64) + 1) * self.dt

    def dense(self, dtype: torch.dtype = torch.bool) -> Tensor:
        """``(batch, n_steps, n_neurons)`` spike raster."""
        out = torch.zeros(self.batch, self.n_steps, self.n_neurons, dtype=dtype,
                          device=self.step.device)
        out[self.trial, self.step, self.neuron] = True if dtype == torch.bool else 1
        return out

    def of(self, neuron: int, trial: int = 0) -> Tensor:
        """Spike times (ms) of one neuron in one trial."""
        sel = (self.neuron == neuron) & (self.trial == trial)
        return self.times[sel]


@dataclass
class SimulationResult:
    """What :meth:`Network.run` recorded.

    Attributes:
        dt, duration: in ms.
        spikes: group name -> :class:`SpikeEvents`.
        traces: ``"group.var"`` -> ``(batch, n_records, n_neurons_recorded)`` tensor.
        trace_times: ms of each recorded sample (after the step).
        recorded_neurons: group name -> indices of the neurons in the traces.
        state: the final network state.
    """

    dt: float
    duration: float
    spikes: dict[str, SpikeEvents] = field(default_factory=dict)
    traces: dict[str, Tensor] = field(default_factory=dict)
    trace_times: Tensor | None = None
    recorded_neurons: dict[str, Tensor] = field(default_factory=dict)
    state: dict | None = None


class Network(nn.Module):
    """Neuron groups, projections between them and external inputs.

    Args:
        groups: name -> :class:`~bionn.spiking.base.NeuronGroup`.
        projections: :class:`~bionn.spiking.Projection` objects naming their
            pre and post groups.
        inputs: group name -> external current (a number, a ``(n,)`` or
            ``(batch, n)`` tensor, or a function of time in ms returning one).
    """

    def __init__(self, groups: Mapping[str, NeuronGroup], projections: Sequence[Projection] = (),
                 inputs: Mapping[str, InputSpec] | None = None) -> None:
        super().__init__()
        self.groups = nn.ModuleDict(dict(groups))
        self.projections = nn.ModuleList(list(projections))
        names = [p.name for p in self.projections]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"projection names must be unique; repeated: {dup} (pass name=...)")
        clash = sorted(set(names) & set(self.groups))
        if clash:
            raise ValueError(f"projection names clash with group names: {clash}")
        for p in self.projections:
            for role, gname, rng, size in (("pre", p.pre, p.pre_range, p.n_pre), ("post", p.post, p.post_range, p.n_post)):
                if gname not in self.groups:
                    raise ValueError(f"projection {p.name}: {role} group {gname!r} not in {list(self.groups)}")
                n = self.groups[gname].n
                lo, hi = rng if rng is not None else (0, n)
                if not (0 <= lo < hi <= n) or hi - lo != size:
                    raise ValueError(
                        f"projection {p.name}: its connectivity has {size} {role} neurons but {role} "
                        f"{gname!r} range {(lo, hi)} of a group of {n} covers {hi - lo}"
                    )
            if p.pre_range is None and not self.groups[p.pre].spiking and p.output not in ("gap", "current"):
                raise ValueError(f"projection {p.name}: pre group {p.pre!r} does not spike")
        self.inputs: dict[str, InputSpec] = dict(inputs or {})
        unknown = sorted(set(self.inputs) - set(self.groups))
        if unknown:
            raise ValueError(f"inputs name unknown group(s) {unknown}; groups: {list(self.groups)}")
        self._generator: torch.Generator | None = None
        self.__dict__["_events"] = {}

    # -- state ------------------------------------------------------------
    def init_state(self, batch: int = 1, *, dt: float = 0.1, generator: torch.Generator | None = None,
                   device=None, dtype: torch.dtype | None = None) -> dict[str, State]:
        ref = next(iter(self.buffers()), None)
        device = device if device is not None else (ref.device if ref is not None else "cpu")
        dtype = dtype or (ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype())
        state: dict[str, State] = {}
        for name, g in self.groups.items():
            s = g.init_state(batch, generator=generator, dtype=dtype)
            state[name] = {k: v.to(device) for k, v in s.items()}
        for p in self.projections:
            state[p.name] = p.init_state(batch, device, dtype, dt)
        return state

    def check(self, dt: float) -> None:
        """Refuse a dt at which a model is known to diverge (before any work)."""
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive number of ms; got {dt}")
        for g in self.groups.values():
            g.check_dt(dt)

    # -- dynamics ---------------------------------------------------------
    def _external(self, name: str, t: float, group_state: State) -> Tensor | float:
        spec = self.inputs.get(name)
        if spec is None:
            return 0.0
        value = spec(t) if callable(spec) else spec
        if isinstance(value, Tensor):
            like = group_state.get("V", next(iter(group_state.values())))
            return value.to(device=like.device, dtype=like.dtype)
        return float(value)

    def _plan(self) -> tuple[list, list]:
        """Plain-Python views of groups and projections for the time loop.

        ``nn.Module`` attribute access is slow enough to matter at 10,000
        steps per simulated second, so the loop reads these instead. Rebuilt
        when the module lists change.
        """
        frozen = self.__dict__.get("_run_plan")
        if frozen is not None:  # inside Network.run: the structure cannot change
            return frozen
        key = (tuple(id(g) for g in self.groups.values()), tuple(id(p) for p in self.projections))
        plan = self.__dict__.get("_plan_cache")
        if plan is not None and plan[0] == key:
            return plan[1], plan[2]
        groups = [(name, g, g.spiking) for name, g in self.groups.items()]
        projs = []
        for p in self.projections:
            projs.append(_ProjPlan(p))
        self.__dict__["_plan_cache"] = (key, groups, projs)
        return groups, projs

    def step(self, state: dict[str, State], t: float, dt: float,
             external: Mapping[str, Tensor] | None = None) -> dict[str, State]:
        """One time step at time ``t`` (ms). Pure: returns a new state dict.

        Order: synaptic drive from the current synaptic state, neuron update
        (spikes), then synapse kinetics and learning rules see this step's
        (delayed) presynaptic spikes.
        """
        groups, projs = self._plan()
        current: dict[str, Tensor | float] = {}
        conductance: dict[str, Tensor | float] = {}
        for name, _, _ in groups:
            ext = self._external(name, t, state[name]) if name in self.inputs else 0.0
            if external is not None and name in external:
                ext = ext + external[name]
            current[name] = ext
            conductance[name] = 0.0
        for q in projs:
            if q.output == "voltage":
                continue
            ps = state[q.name]
            pre, post = state[q.pre], state[q.post]
            w = ps["w"] if q.plastic else q.weight
            gmax = q.synapse.scalar("g_max")
            if q.output == "gap":
                v_pre = _slice(pre["V"], q.pre_range)
                i_val = q.proj.deliver(v_pre, w, event_driven=False)
                g_val = q.proj.deliver(torch.ones_like(v_pre), w, event_driven=False)
                _add(current, q.post, q.post_range, i_val * gmax, post)
                _add(conductance, q.post, q.post_range, g_val * gmax, post)
                continue
            syn = {k: ps[pk] for k, pk in q.keys(ps)}
            g = q.synapse.value(syn, q.proj, _slice_state(pre, q.pre_range),
                                _slice_state(post, q.post_range), w)
            if gmax != 1.0:
                g = g * gmax
            if q.output == "conductance":
                factor = q.synapse.post_factor(_slice_state(post, q.post_range))
                if not isinstance(factor, float):
                    g = g * factor
                if q.E != 0.0:
                    _add(current, q.post, q.post_range, g * q.E, post)
                _add(conductance, q.post, q.post_range, g, post)
            else:
                _add(current, q.post, q.post_range, g, post)
        new: dict[str, State] = {}
        events: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        for name, grp, spiking in groups:
            new[name] = grp(state[name], Drive(current[name], conductance[name]), dt)
            if spiking:
                spike = new[name]["spike"]
                b, j = spike.nonzero(as_tuple=True)
                events[name] = (spike, b, j)
        self.__dict__["_events"] = events
        for q in projs:
            proj = q.proj
            ps = dict(state[q.name])
            spikes = new[q.pre].get("spike")
            if spikes is None:  # a rate group: no events, rules read its rate variable
                ref = next(iter(new[q.pre].values()))
                spikes = torch.zeros(ref.shape[0], self.groups[q.pre].n, dtype=torch.bool, device=ref.device)
            if q.pre_range is not None:
                spikes = spikes[:, q.pre_range[0]:q.pre_range[1]]
            ev = None
            if "delay_buffer" in ps:
                buf = ps["delay_buffer"]
                arriving = buf[:, 0]
                ps["delay_buffer"] = torch.cat([buf[:, 1:], spikes[:, None]], 1)
                spikes = arriving
            elif q.pre in events:
                _, b, j = events[q.pre]
                if q.pre_range is not None:
                    if spikes.numel() <= 20_000:  # a fresh nonzero is cheaper than filtering
                        b, j = spikes.nonzero(as_tuple=True)
                    else:
                        keep = (j >= q.pre_range[0]) & (j < q.pre_range[1])
                        b, j = b[keep], j[keep] - q.pre_range[0]
                ev = (spikes, b, j)
            proj.__dict__["_events"] = ev
            w = ps["w"] if q.plastic else q.weight
            pre_new = _slice_state(new[q.pre], q.pre_range)
            post_new = _slice_state(new[q.post], q.post_range)
            if q.output == "voltage":
                jump = proj.deliver(spikes, w) * q.synapse.scalar("g_max")
                if "refractory" in post_new:
                    jump = jump * (post_new["refractory"] == 0)
                group_new = dict(new[q.post])
                v = group_new["V"].clone()
                lo, hi = q.post_range or (0, v.shape[1])
                v[:, lo:hi] += jump
                group_new["V"] = v
                new[q.post] = group_new
                post_new = _slice_state(group_new, q.post_range)
            syn = {k: ps[pk] for k, pk in q.keys(ps)}
            syn = q.synapse.update(syn, proj, spikes, dt, pre_new, post_new, w)
            for k, v in syn.items():
                ps["syn." + k] = v
            if q.plastic:
                post_spikes = new[q.post].get("spike")
                if post_spikes is not None and q.post_range is not None:
                    post_spikes = post_spikes[:, q.post_range[0]:q.post_range[1]]
                ps = proj.plasticity.update(ps, proj, spikes, post_spikes, dt, pre_new, post_new)
            proj.__dict__["_events"] = None
            new[q.name] = ps
        return new

    @torch.inference_mode()
    def run(self, duration: float, *, dt: float = 0.1, batch: int = 1,
            record: Mapping[str, Sequence[str]] | None = None, record_every: int = 1,
            record_neurons: Mapping[str, Sequence[int] | Tensor] | None = None,
            record_spikes: bool = True, state: dict | None = None,
            generator: torch.Generator | None = None, seed: int | None = None,
            device=None, dtype: torch.dtype | None = None, progress: bool = True,
            t_start: float = 0.0) -> SimulationResult:
        """Simulate ``duration`` ms.

        Args:
            duration: simulated time in ms.
            dt: time step in ms.
            batch: independent trials simulated at once.
            record: group name -> state variables to record (e.g. ``{"E": ["V"]}``).
            record_every: record state variables every k steps.
            record_neurons: group name -> neuron indices to record (default all).
            record_spikes: record spikes of every spiking group as events.
            state: a state to continue from (default :meth:`init_state`).
            generator / seed: randomness of initial values and stochastic models.
            progress: show a progress bar over simulated time.
            t_start: the time (ms) of the first step, for time-dependent inputs when a run
                continues an earlier one (``state=``); trace times count from it, spike
                steps from this run's first step.
        """
        self.check(dt)
        if duration <= 0:
            raise ValueError(f"duration must be > 0 ms; got {duration}")
        if int(record_every) < 1:
            raise ValueError(f"record_every must be a positive integer; got {record_every}")
        record = {k: list(v) for k, v in (record or {}).items()}
        for gname in record:
            if gname not in self.groups:
                raise ValueError(f"record names unknown group {gname!r}; groups: {list(self.groups)}")
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(0 if seed is None else int(seed))
        self._generator = generator
        for g in self.groups.values():
            g._generator = generator
        if state is None:
            state = self.init_state(batch, dt=dt, generator=generator, device=device, dtype=dtype)
        for gname, vars_ in record.items():
            missing = sorted(set(vars_) - set(state[gname]))
            if missing:
                raise ValueError(f"record[{gname!r}] names unknown variable(s) {missing}; "
                                 f"variables: {sorted(state[gname])}")
        batch = next(iter(state[next(iter(self.groups))].values())).shape[0]
        n_steps = int(round(duration / dt))
        idx = {g: (torch.as_tensor(list(record_neurons[g]) if not isinstance(record_neurons[g], Tensor)
                                   else record_neurons[g], dtype=torch.long)
                   if record_neurons and g in record_neurons else None) for g in record}
        events: dict[str, list[Tensor]] = {g: [] for g, grp in self.groups.items() if grp.spiking and record_spikes}
        traces: dict[str, list[Tensor]] = {f"{g}.{v}": [] for g, vs in record.items() for v in vs}
        times: list[float] = []
        modules = [*self.groups.values(), *(p.synapse for p in self.projections)]
        for m in modules:  # parameters are read once per run (cheaper time loop)
            m.__dict__.pop("_fast_cache", None)
            m.__dict__.pop("_scalar_cache", None)
            m.__dict__["_in_run"] = True
        groups, plans = self._plan()
        for q in plans:
            q.frozen_weight = q.proj.weight
        self.__dict__["_run_plan"] = (groups, plans)
        try:
            return self._loop(state, n_steps, dt, batch, record, record_every, idx, events, traces,
                              times, duration, progress, float(t_start))
        finally:
            for m in modules:
                m.__dict__["_in_run"] = False
            self.__dict__["_run_plan"] = None
            for q in plans:
                q.frozen_weight = None

    def _loop(self, state, n_steps, dt, batch, record, record_every, idx, events, traces, times,
              duration, progress, t_start: float = 0.0) -> SimulationResult:
        bar = _progress(duration, progress)
        chunk = max(1, n_steps // 200)
        for i in range(n_steps):
            state = self.step(state, t_start + i * dt, dt)
            for g in events:
                _, b, j = self._events[g]
                if j.numel():
                    events[g].append(torch.stack([b, torch.full_like(j, i), j], 1).cpu())
            if traces and (i + 1) % record_every == 0:
                times.append(t_start + (i + 1) * dt)
                for g, vs in record.items():
                    for v in vs:
                        x = state[g][v]
                        if idx[g] is not None:
                            x = x[:, idx[g].to(x.device)]
                        traces[f"{g}.{v}"].append(x.detach().to("cpu", copy=True))
            if bar is not None and ((i + 1) % chunk == 0 or i + 1 == n_steps):
                bar.n = round((i + 1) * dt, 6)
                bar.refresh()
        if bar is not None:
            bar.close()
        result = SimulationResult(dt=dt, duration=n_steps * dt, state=state)
        for g, ev in events.items():
            e = torch.cat(ev) if ev else torch.zeros(0, 3, dtype=torch.long)
            result.spikes[g] = SpikeEvents(e[:, 0], e[:, 1], e[:, 2], self.groups[g].n, n_steps, batch, dt)
        for key, xs in traces.items():
            result.traces[key] = torch.stack(xs, 1) if xs else torch.zeros(batch, 0, 0)
        result.trace_times = torch.tensor(times, dtype=torch.float64)
        for g in record:
            result.recorded_neurons[g] = idx[g] if idx[g] is not None else torch.arange(self.groups[g].n)
        return result


class _ProjPlan:
    """A projection's fields as plain attributes (see :meth:`Network._plan`)."""

    def __init__(self, p: Projection) -> None:
        self.proj = p
        self.name, self.pre, self.post = p.name, p.pre, p.post
        self.pre_range, self.post_range = p.pre_range, p.post_range
        self.output, self.E = p.output, p.E
        self.synapse = p.synapse
        self.plastic = p.plasticity is not None
        self.syn_keys: list[tuple[str, str]] | None = None
        self.frozen_weight: Tensor | None = None

    @property
    def weight(self) -> Tensor:
        w = self.frozen_weight
        return self.proj.weight if w is None else w

    def keys(self, ps: State) -> list[tuple[str, str]]:
        if self.syn_keys is None:  # the synapse's state keys, read once
            self.syn_keys = [(k[4:], k) for k in ps if k.startswith("syn.")]
        return self.syn_keys


def _slice(x: Tensor, rng: tuple[int, int] | None) -> Tensor:
    return x if rng is None else x[:, rng[0]:rng[1]]


class _SlicedState(Mapping):
    """A group's state restricted to a neuron range, sliced on access."""

    __slots__ = ("_state", "_lo", "_hi")

    def __init__(self, state: State, lo: int, hi: int) -> None:
        self._state, self._lo, self._hi = state, lo, hi

    def __getitem__(self, key: str) -> Tensor:
        v = self._state[key]
        return v[:, self._lo:self._hi] if v.dim() >= 2 else v

    def __iter__(self):
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def _slice_state(state: State, rng: tuple[int, int] | None) -> State:
    if rng is None:
        return state
    return _SlicedState(state, rng[0], rng[1])


def _add(acc: dict, name: str, rng: tuple[int, int] | None, value: Tensor, like_state: State) -> None:
    if rng is None:
        cur = acc[name]
        acc[name] = value if isinstance(cur, float) and cur == 0.0 else cur + value
        return
    cur = acc[name]
    if not isinstance(cur, Tensor) or cur.dim() < 2:
        v = like_state.get("V", next(iter(like_state.values())))
        cur = torch.zeros_like(v, dtype=value.dtype) + cur
    else:
        cur = cur.clone()
    cur[:, rng[0]:rng[1]] += value
    acc[name] = cur


def _progress(duration: float, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=duration, unit="ms", desc="simulating", bar_format=(
        "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} ms [{elapsed}<{remaining}]"))
