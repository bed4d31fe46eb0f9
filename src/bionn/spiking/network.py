"""Networks of neuron groups and projections, the simulation loop and monitors.

State is explicit: :meth:`Network.initial_state` returns a dict (group name ->
group state, projection name -> synapse state, delay buffer and plastic
weights) and :meth:`Network.step` is a pure function of it and of a
:class:`~bionn.spiking.base.StepContext` (time, dt, the random generator,
read-once parameter values): it writes nothing into any module.
:meth:`Network.run` loops over the same step with a progress bar and records
spikes (as events) and chosen state variables; stepping by hand with the same
generator gives exactly its result.

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

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bionn.spiking.base import Drive, NeuronGroup, State, StepConstants, StepContext
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


class NonFiniteStateError(FloatingPointError):
    """A state variable of a network became NaN or infinite during :meth:`Network.run`.

    Attributes:
        owner: the group (or projection) whose state holds the value.
        kind: ``"group"`` or ``"projection"``.
        group: the group: ``owner``, or the projection's postsynaptic group.
        variable: the state variable (e.g. ``"V"``, ``"syn.g"``).
        step: the step (of the run, counted from 0) whose update produced it; ``None``
            for a non-finite initial state.
        time_ms: the time at the end of that step (the start time for an initial state).
        index: the index of one offending value (``(trial, neuron)`` for a group's
            ``(batch, n)`` variable).
        value: that value (``nan``, ``inf`` or ``-inf``).
        others: further ``"owner.variable"`` names non-finite at the same step.
    """

    def __init__(self, owner: str, kind: str, variable: str, step: int | None, time_ms: float,
                 index: tuple[int, ...], value: float, others: Sequence[str] = (),
                 group: str | None = None, per_neuron: bool | None = None) -> None:
        self.owner, self.kind, self.variable = owner, kind, variable
        self.group = owner if group is None else group
        self.step, self.time_ms, self.index, self.value = step, time_ms, tuple(index), value
        self.others = list(others)
        per_neuron = kind == "group" if per_neuron is None else per_neuron
        self.per_neuron = per_neuron and len(index) == 2
        where = (f"trial {index[0]}, neuron {index[1]}" + ("" if kind == "group" else
                                                            f" of {self.group!r}")
                 if self.per_neuron else f"index {tuple(index)}")
        when = ("in the initial state" if step is None
                else f"at t = {time_ms:g} ms (step {step})")
        who = f"{kind} {owner!r}" + (f" (onto group {self.group!r})" if self.group != owner else "")
        msg = (f"{who}: state variable {variable!r} became non-finite ({value}) "
               f"{when}, first at {where}")
        if self.others:
            msg += f"; also non-finite then: {', '.join(self.others)}"
        super().__init__(msg + "; the simulation was stopped")

    def shifted(self, steps: int) -> NonFiniteStateError:
        """The same error with its step counted ``steps`` later (a run that continued others)."""
        return NonFiniteStateError(self.owner, self.kind, self.variable,
                                   None if self.step is None else self.step + steps,
                                   self.time_ms, self.index, self.value, self.others, self.group,
                                   self.per_neuron)


#: the simulation backends of :meth:`Network.run`
BACKENDS = ("torch", "cpp", "auto")

#: steps between two checks of :meth:`Network.run` for non-finite state (``check_finite=True``)
FINITE_CHECK_EVERY = 100


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
        backend: the loop that ran: ``"torch"`` or ``"cpp"`` (see ``Network.run``).
        backend_reason: why ``backend="auto"`` ran the torch path (``None`` otherwise).
    """

    dt: float
    duration: float
    spikes: dict[str, SpikeEvents] = field(default_factory=dict)
    traces: dict[str, Tensor] = field(default_factory=dict)
    trace_times: Tensor | None = None
    recorded_neurons: dict[str, Tensor] = field(default_factory=dict)
    state: dict | None = None
    backend: str = "torch"
    backend_reason: str | None = None


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

    # -- state ------------------------------------------------------------
    def initial_state(self, batch: int = 1, *, dt: float = 0.1, generator: torch.Generator | None = None,
                   device=None, dtype: torch.dtype | None = None) -> dict[str, State]:
        ref = next(iter(self.buffers()), None)
        device = device if device is not None else (ref.device if ref is not None else "cpu")
        dtype = dtype or (ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype())
        state: dict[str, State] = {}
        for name, g in self.groups.items():
            s = g.initial_state(batch, generator=generator, dtype=dtype)
            state[name] = {k: v.to(device) for k, v in s.items()}
        for p in self.projections:
            state[p.name] = p.initial_state(batch, device, dtype, dt)
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

    def _layout(self) -> tuple[list, list]:
        """Plain-Python views of groups and projections for the time loop.

        ``nn.Module`` attribute access is slow enough to matter at 10,000
        steps per simulated second, so the loop reads these instead. Built
        once per run (inside :meth:`constants`), else at every step.
        """
        groups = [(name, g, g.spiking) for name, g in self.groups.items()]
        return groups, [_ProjPlan(p, self.groups[p.pre].n) for p in self.projections]

    def constants(self, dt: float) -> StepConstants:
        """Everything a step reads from parameters and structure, read once for ``dt``.

        The network's loop layout (groups, projections, their weights) and each
        model's :meth:`~bionn.spiking.base.NeuronGroup.constants`. A step given
        them (``StepContext(..., constants=...)``) computes exactly what it
        computes without them, faster; they hold the parameter values of now, so
        build new ones after changing a parameter or moving the network.
        """
        c = StepConstants(dt)
        c[id(self)] = self._layout()
        for g in self.groups.values():
            v = g.constants(dt)
            if v is not None:
                c[id(g)] = v
        for p in self.projections:
            v = p.synapse.constants(dt)
            if v:
                c[id(p.synapse)] = v
            v = p.constants(dt)
            if v is not None:
                c[id(p)] = v
        return c

    def context(self, dt: float, *, t: float = 0.0,
                generator: torch.Generator | None = None) -> StepContext:
        """A :class:`~bionn.spiking.base.StepContext` at time ``t`` with this network's
        read-once :meth:`constants`: what :meth:`run` steps with. Move it on with
        ``ctx.at(t)``.

        Example:
            >>> from bionn.spiking import LIF
            >>> net = Network({"E": LIF(3)}, inputs={"E": 25.0})
            >>> ctx = net.context(0.1, generator=torch.Generator().manual_seed(0))
            >>> s = net.initial_state(1, dt=0.1)
            >>> for i in range(100):
            ...     s = net.step(s, ctx.at(i * 0.1))
            >>> bool(s["E"]["V"].gt(0).all())
            True
        """
        return StepContext(float(t), float(dt), generator, self.constants(dt))

    def step(self, state: dict[str, State], ctx: StepContext | float, dt: float | None = None,
             external: Mapping[str, Tensor] | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, State]:
        """One time step. Pure: returns a new state dict and writes nothing into any module.

        Called as ``step(state, ctx)`` with a
        :class:`~bionn.spiking.base.StepContext` (time, dt, the generator every
        stochastic model draws from, optionally read-once constants from
        :meth:`context`), or as ``step(state, t, dt, generator=g)``.
        ``external``: group name -> extra current for this step. The spikes
        of the step are in the new state (``"spike"``), delayed spikes in the
        projections' ``"delay_buffer"``; :meth:`step_events` also returns their
        indices.

        Order: synaptic drive from the current synaptic state, neuron update
        (spikes), then synapse kinetics and learning rules see this step's
        (delayed) presynaptic spikes.
        """
        if not isinstance(ctx, StepContext):
            if dt is None:
                raise TypeError("step(state, t, dt): dt (ms) is missing; or pass a StepContext")
            ctx = StepContext(float(ctx), float(dt), generator)
        elif dt is not None or generator is not None:
            raise TypeError("step(state, ctx): dt and generator come from the StepContext")
        return self.step_events(state, ctx, external)[0]

    def step_events(self, state: dict[str, State], ctx: StepContext,
                    external: Mapping[str, Tensor] | None = None
                    ) -> tuple[dict[str, State], dict[str, tuple[Tensor, Tensor, Tensor]]]:
        """:meth:`step` that also returns this step's spikes as events: spiking group
        name -> ``(spike, trial, neuron)``, the ``(batch, n)`` spike tensor of the new
        state and the indices of its nonzero entries. :meth:`run` steps with this.
        """
        consts = ctx.constants
        layout = None
        if consts is not None:
            if consts.dt != ctx.dt:
                raise ValueError(f"the context's constants were built for dt={consts.dt} ms; "
                                 f"the step has dt={ctx.dt} ms (build them with Network.context(dt))")
            layout = consts.get(id(self))
        groups, projs = layout if layout is not None else self._layout()
        t, dt, gen = ctx.t, ctx.dt, ctx.generator
        current: dict[str, Tensor | float] = {}
        conductance: dict[str, Tensor | float] = {}
        for name, _, _ in groups:
            ext = self._external(name, t, state[name]) if name in self.inputs else 0.0
            if external is not None and name in external:
                ext = ext + external[name]
            current[name] = ext
            conductance[name] = 0.0
        for q in projs:
            if q.output != "voltage":
                w = state[q.name]["w"] if q.plastic else q.weight
                add_synaptic_input(q, q.proj, w, state, ctx, current, conductance)
        new: dict[str, State] = {}
        events: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        for name, grp, spiking in groups:
            new[name] = grp(state[name], Drive(current[name], conductance[name]), dt, ctx)
            if spiking:
                spike = new[name]["spike"]
                b, j = spike.nonzero(as_tuple=True)
                events[name] = (spike, b, j)
        receptive: dict[str, Tensor] = {}  # post group -> 1 where V takes voltage jumps this step
        for q in projs:
            proj = q.proj
            ps = dict(state[q.name])
            spikes = new[q.pre].get("spike")
            if spikes is None:  # a rate group: no events, rules read its rate variable
                ref = next(iter(new[q.pre].values()))
                spikes = torch.zeros(ref.shape[0], q.n_pre_group, dtype=torch.bool, device=ref.device)
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
            pctx = StepContext(t, dt, gen, consts, ev)  # this projection's arriving events
            w = ps["w"] if q.plastic else q.weight
            pre_new = _slice_state(new[q.pre], q.pre_range)
            post_new = _slice_state(new[q.post], q.post_range)
            if q.output == "voltage":
                post_new = apply_voltage_jump(q, proj.deliver(spikes, w, ctx=pctx), state, new,
                                              receptive, ctx)
            syn = {k: ps[pk] for k, pk in q.keys(ps)}
            syn = q.synapse.update(syn, proj, spikes, dt, pre_new, post_new, w, pctx)
            for k, v in syn.items():
                ps["syn." + k] = v
            if q.plastic:
                post_spikes = new[q.post].get("spike")
                if post_spikes is not None and q.post_range is not None:
                    post_spikes = post_spikes[:, q.post_range[0]:q.post_range[1]]
                if q.rule_ctx:
                    ps = q.rule.update(ps, proj, spikes, post_spikes, dt, pre_new, post_new, ctx=pctx)
                else:
                    ps = q.rule.update(ps, proj, spikes, post_spikes, dt, pre_new, post_new)
            new[q.name] = ps
        return new, events

    @torch.inference_mode()
    def run(self, duration: float, *, dt: float = 0.1, batch: int = 1,
            record: Mapping[str, Sequence[str]] | None = None, record_every: int = 1,
            record_neurons: Mapping[str, Sequence[int] | Tensor] | None = None,
            record_spikes: bool | Sequence[str] = True, state: dict | None = None,
            generator: torch.Generator | None = None, seed: int | None = None,
            device=None, dtype: torch.dtype | None = None, progress: bool = True,
            t_start: float = 0.0, check_finite: bool | int = True,
            backend: str = "torch") -> SimulationResult:
        """Simulate ``duration`` ms: :meth:`step_events` in a loop, with recording.

        The loop steps with ``self.context(dt, t=t_start, generator=generator)``
        moved on in time; stepping by hand with the same generator (after
        :meth:`initial_state` with it) gives exactly the same spikes and state.

        Args:
            duration: simulated time in ms.
            dt: time step in ms.
            batch: independent trials simulated at once.
            record: group name -> state variables to record (e.g. ``{"E": ["V"]}``).
            record_every: record state variables every k steps.
            record_neurons: group name -> neuron indices to record (default all).
            record_spikes: record the spikes of every spiking group as events (True), of
                none (False), or of the spiking groups named (e.g. ``["E", "I"]`` and not
                a large input group).
            state: a state to continue from (default :meth:`initial_state`).
            generator / seed: randomness of initial values and stochastic models
                (default: a new generator seeded with ``seed``, else 0).
            progress: show a progress bar over simulated time.
            t_start: the time (ms) of the first step, for time-dependent inputs when a run
                continues an earlier one (``state=``); trace times count from it, spike
                steps from this run's first step.
            check_finite: stop with :class:`NonFiniteStateError` when a state variable
                (of a group or a projection) becomes NaN or infinite. The state is tested
                every :data:`FINITE_CHECK_EVERY` steps (an int: every that many steps) and
                at the end, with one reduction; when a test fails, the steps since the last
                good one are stepped again one by one (same generator state) to name the
                first step, variable and neuron. ``False`` or ``0``: no test.
            backend: ``"torch"`` (default) steps with PyTorch operations; ``"cpp"`` runs the
                step compiled to one C++ loop (:mod:`bionn.spiking.compiled`: the same spikes
                and state, several times faster on the CPU; compiled on first use and cached),
                and refuses with the reason what it does not cover; ``"auto"``: ``"cpp"``
                where it applies and a compiler is present, else ``"torch"``.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}; got {backend!r}")
        self.check(dt)
        every = FINITE_CHECK_EVERY if check_finite is True else int(check_finite)
        if every < 0:
            raise ValueError(f"check_finite must be a bool or an int >= 0; got {check_finite}")
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
        if state is None:
            state = self.initial_state(batch, dt=dt, generator=generator, device=device, dtype=dtype)
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
        if isinstance(record_spikes, bool):
            spiking = [g for g, grp in self.groups.items() if grp.spiking and record_spikes]
        else:
            spiking = [record_spikes] if isinstance(record_spikes, str) else list(record_spikes)
            for g in spiking:
                if g not in self.groups:
                    raise ValueError(f"record_spikes names unknown group {g!r}; groups: {list(self.groups)}")
                if not self.groups[g].spiking:
                    raise ValueError(f"record_spikes names group {g!r}, which does not spike")
        events: dict[str, list[Tensor]] = {g: [] for g in spiking}
        traces: dict[str, list[Tensor]] = {f"{g}.{v}": [] for g, vs in record.items() for v in vs}
        times: list[float] = []
        ctx = self.context(dt, t=float(t_start), generator=generator)  # parameters read once per run
        plan, why = self._compiled(backend, state, dt, batch, spiking, record, record_every, idx)
        if plan is not None:
            result = self._loop_compiled(plan, state, ctx, n_steps, batch, events, duration,
                                         progress, every, record, idx)
            result.backend = "cpp"
            return result
        result = self._loop(state, ctx, n_steps, batch, record, record_every, idx, events,
                            traces, times, duration, progress, every)
        result.backend_reason = why
        return result

    def _loop(self, state, ctx: StepContext, n_steps, batch, record, record_every, idx, events,
              traces, times, duration, progress, every: int = 0) -> SimulationResult:
        bar = _progress(duration, progress)
        chunk = max(1, n_steps // 200)
        t_start, dt, gen, consts = ctx.t, ctx.dt, ctx.generator, ctx.constants
        if every:
            keys = _float_keys(state, self)
            bad = _nonfinite(state, keys)
            if bad:
                raise _nonfinite_error(self, state, bad, None, t_start)
            good = (0, state, gen.get_state() if gen is not None else None)
        for i in range(n_steps):
            state, spikes = self.step_events(state, StepContext(t_start + i * dt, dt, gen, consts))
            if every and ((i + 1) % every == 0 or i + 1 == n_steps):
                if _nonfinite(state, keys):
                    if bar is not None:
                        bar.close()
                    raise self._locate(good, i + 1, keys, StepContext(t_start, dt, gen, consts))
                good = (i + 1, state, gen.get_state() if gen is not None else None)
            for g in events:
                _, b, j = spikes[g]
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


    def _compiled(self, backend: str, state: dict, dt: float, batch: int, spiking: list[str],
                  record: dict, record_every: int, idx: dict):
        """``(compiled step or None, why not)`` for this run, per ``backend``."""
        if backend == "torch":
            return None, None
        from bionn.spiking import compiled

        try:
            ref = next((v for g in self.groups for v in state[g].values()
                        if isinstance(v, Tensor) and v.is_floating_point()), None)
            if ref is None:
                raise compiled.Unsupported("no floating-point state variable")
            if ref.device.type != "cpu":
                raise compiled.Unsupported(f"device {ref.device}: the compiled step runs on the CPU")
            return compiled.compile_network(self, dt=dt, batch=batch, dtype=ref.dtype,
                                            record_spikes=spiking, state=state, record=record,
                                            record_every=int(record_every),
                                            record_neurons=idx), None
        except (compiled.Unsupported, RuntimeError, OSError) as e:  # OSError: cache not writable
            if backend == "cpp":
                raise ValueError(f"backend='cpp' cannot run this network: {e}") from e
            return None, str(e)

    def _loop_compiled(self, plan, state, ctx: StepContext, n_steps, batch, events, duration,
                       progress, every: int, record: dict, idx: dict) -> SimulationResult:
        """:meth:`_loop` on the compiled step: same events, state and checks."""
        from bionn.spiking.compiled import CompiledLoop

        state = {o: dict(s) for o, s in state.items()}
        for s in state.values():
            for k, v in s.items():
                if isinstance(v, Tensor):
                    s[k] = v.clone()  # the loop writes in place; the caller's state stays as it was
        bar = _progress(duration, progress)
        t_start, dt = ctx.t, ctx.dt
        keys = _float_keys(state, self) if every else []
        if every:
            bad = _nonfinite(state, keys)
            if bad:
                raise _nonfinite_error(self, state, bad, None, t_start)
        chunk = min(every or n_steps, max(1, n_steps // 200) if bar is not None else n_steps)
        gen = ctx.generator
        loop = CompiledLoop(plan, state, gen)
        names = [g for g, _ in plan.recorded_groups]
        rows: list[Tensor] = []
        samples: list[list[Tensor]] = [[] for _ in plan.traces]
        done = 0
        good = (0, _snapshot(state), gen.get_state() if gen is not None else None)
        while done < n_steps:
            k = min(chunk, n_steps - done)
            if every:
                k = min(k, every - done % every)
            ev_rows, got = loop.run(k, done)
            rows.extend(ev_rows)
            for j, x in enumerate(got):
                samples[j].append(x)
            done += k
            if every and (done % every == 0 or done == n_steps):
                if _nonfinite(state, keys):
                    if bar is not None:
                        bar.close()
                    raise self._locate(good, done, keys, StepContext(t_start, dt, ctx.generator,
                                                                     ctx.constants))
                good = (done, _snapshot(state), gen.get_state() if gen is not None else None)
            if bar is not None:
                bar.n = round(done * dt, 6)
                bar.refresh()
        if bar is not None:
            bar.close()
        ev = torch.cat(rows) if rows else torch.zeros(0, 4, dtype=torch.long)
        result = SimulationResult(dt=dt, duration=n_steps * dt, state=state)
        for gi, g in enumerate(names):
            if g not in events:
                continue
            e = ev[ev[:, 0] == gi][:, 1:]
            result.spikes[g] = SpikeEvents(e[:, 0], e[:, 1], e[:, 2], self.groups[g].n, n_steps,
                                           batch, dt)
        for j, (name, n_sel, dtype) in enumerate(plan.traces):
            x = torch.cat(samples[j]) if samples[j] else torch.zeros(0, batch, n_sel, dtype=dtype)
            result.traces[name] = (x.permute(1, 0, 2).contiguous() if x.shape[0]
                                   else torch.zeros(batch, 0, 0))
        every_rec = plan.record_every
        result.trace_times = torch.tensor(
            [t_start + (i + 1) * dt for i in range(n_steps) if (i + 1) % every_rec == 0]
            if plan.traces else [], dtype=torch.float64)
        for g in record:
            result.recorded_neurons[g] = idx[g] if idx[g] is not None else torch.arange(self.groups[g].n)
        return result

    def _locate(self, good: tuple, stop: int, keys: list, ctx: StepContext) -> NonFiniteStateError:
        """Step again from the last good check to find the first non-finite step."""
        first, state, gen_state = good
        gen = ctx.generator
        if gen is not None and gen_state is not None:
            gen.set_state(gen_state)
        for i in range(first, stop):
            state, _ = self.step_events(state, StepContext(ctx.t + i * ctx.dt, ctx.dt, gen,
                                                           ctx.constants))
            bad = _nonfinite(state, keys)
            if bad:
                return _nonfinite_error(self, state, bad, i, ctx.t + (i + 1) * ctx.dt)
        # not reproduced (a non-deterministic step): name the check that failed
        return _nonfinite_error(self, state, keys, stop - 1, ctx.t + stop * ctx.dt)


def add_synaptic_input(q: _ProjPlan, proj, w: Tensor, state: dict[str, State], ctx: StepContext,
                       current: dict, conductance: dict) -> None:
    """Add projection ``q``'s synaptic current and conductance onto its post group (the
    drive phase of a step); ``proj`` delivers (the projection, or the compiled step's traced
    stand-in)."""
    pre, post = state[q.pre], state[q.post]
    gmax = q.synapse.scalar("g_max", ctx)
    if q.output == "gap":
        v_pre = _slice(pre["V"], q.pre_range)
        i_val = proj.deliver(v_pre, w, event_driven=False)
        g_val = proj.deliver(torch.ones_like(v_pre), w, event_driven=False)
        _add(current, q.post, q.post_range, i_val * gmax, post)
        _add(conductance, q.post, q.post_range, g_val * gmax, post)
        return
    ps = state[q.name]
    syn = {k: ps[pk] for k, pk in q.keys(ps)}
    g = q.synapse.value(syn, proj, _slice_state(pre, q.pre_range),
                        _slice_state(post, q.post_range), w, ctx)
    if gmax != 1.0:
        g = g * gmax
    if q.output == "conductance":
        factor = q.synapse.post_factor(_slice_state(post, q.post_range), ctx)
        if not isinstance(factor, float):
            g = g * factor
        if q.E != 0.0:
            _add(current, q.post, q.post_range, g * q.E, post)
        _add(conductance, q.post, q.post_range, g, post)
    else:
        _add(current, q.post, q.post_range, g, post)


def apply_voltage_jump(q: _ProjPlan, jump: Tensor, state: dict[str, State],
                       new: dict[str, State], receptive: dict[str, Tensor],
                       ctx: StepContext) -> State:
    """Add a voltage projection's delivered ``jump`` to its post group's V in ``new``;
    returns the post group's new state (sliced to the projection's range).

    One rule for every input: V ignores input in the held steps (refractory count > 0
    before the step), and a jump in the spike step is lost to the reset, as Brian2's
    ``on_pre`` runs before its reset; ``receptive`` keeps one mask per group and step.
    """
    gmax = q.synapse.scalar("g_max", ctx)
    if not (isinstance(gmax, float) and gmax == 1.0):
        jump = jump * gmax
    group_new = dict(new[q.post])
    if "refractory" in group_new:
        ok = receptive.get(q.post)
        if ok is None:
            held = state[q.post]["refractory"] + group_new["refractory"] + group_new["spike"]
            ok = receptive[q.post] = (held == 0).to(held.dtype)
        jump = jump * _slice(ok, q.post_range)
    if q.post_range is None:
        group_new["V"] = group_new["V"] + jump
    else:
        v = group_new["V"].clone()
        v[:, q.post_range[0]:q.post_range[1]] += jump
        group_new["V"] = v
    new[q.post] = group_new
    return _slice_state(group_new, q.post_range)


def _snapshot(state: dict[str, State]) -> dict[str, State]:
    return {o: {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in s.items()}
            for o, s in state.items()}


def _float_keys(state: dict[str, State], net: Network) -> list[tuple[str, str, bool]]:
    """``(owner, variable, may be +inf)`` of every floating state tensor, groups first; a
    synapse model declares its variables that are +inf by design (``unbounded_above``)."""
    above = {(p.name, f"syn.{v}") for p in net.projections for v in p.synapse.unbounded_above}
    order = sorted(state, key=lambda name: name not in net.groups)
    return [(o, v, (o, v) in above) for o in order for v, x in state[o].items()
            if isinstance(x, Tensor) and x.is_floating_point()]


def _valid(unbounded_above: bool, x: Tensor) -> Tensor:
    """Where ``x`` holds an acceptable value: finite (or +inf where that is by design)."""
    if unbounded_above:
        return ~(torch.isnan(x) | (x == -math.inf))
    return torch.isfinite(x)


def _nonfinite(state: dict[str, State], keys: list[tuple[str, str, bool]],
               ) -> list[tuple[str, str, bool]]:
    """The keys whose tensor holds a NaN or an infinity; one host sync when all are finite."""
    if not keys:
        return []
    ok = torch.stack([_valid(u, state[o][v]).all() for o, v, u in keys])
    if bool(ok.all()):
        return []
    return [k for k, good in zip(keys, ok.tolist(), strict=True) if not good]


def _nonfinite_error(net: Network, state: dict[str, State], bad: list[tuple[str, str, bool]],
                     step: int | None, time_ms: float) -> NonFiniteStateError:
    bad = [k for k in bad if not bool(_valid(k[2], state[k[0]][k[1]]).all())] or bad
    owner, var, above = bad[0]
    x = state[owner][var]
    where = (~_valid(above, x)).nonzero()
    index = tuple(int(j) for j in where[0]) if len(where) else ()
    value = float(x[index]) if len(where) else float("nan")
    post = {p.name: p.post for p in net.projections}.get(owner, owner)
    n = net.groups[post].n if post in net.groups else -1
    return NonFiniteStateError(owner, "group" if owner in net.groups else "projection", var, step,
                               round(time_ms, 9), index, value, [f"{o}.{v}" for o, v, _ in bad[1:]],
                               post, x.dim() == 2 and x.shape[1] == n)


class _ProjPlan:
    """A projection's fields as plain attributes (see :meth:`Network._layout`).

    Not a module and never part of one: it lives in a run's
    :class:`~bionn.spiking.base.StepConstants` or in one step.
    """

    def __init__(self, p: Projection, n_pre_group: int) -> None:
        self.proj = p
        self.name, self.pre, self.post = p.name, p.pre, p.post
        self.pre_range, self.post_range = p.pre_range, p.post_range
        self.output, self.E = p.output, p.E
        self.synapse = p.synapse
        self.weight = p.weight
        self.n_pre_group = n_pre_group
        self.rule = p.plasticity
        self.plastic = self.rule is not None
        self.rule_ctx = self.plastic and _takes_ctx(type(self.rule))
        self.syn_keys: list[tuple[str, str]] | None = None

    def keys(self, ps: State) -> list[tuple[str, str]]:
        if self.syn_keys is None:  # the synapse's state keys, read once
            self.syn_keys = [(k[4:], k) for k in ps if k.startswith("syn.")]
        return self.syn_keys


@functools.cache
def _takes_ctx(rule_type: type) -> bool:
    """Whether a learning rule's ``update`` accepts the step context (``ctx=``)."""
    try:
        return "ctx" in inspect.signature(rule_type.update).parameters
    except (TypeError, ValueError):
        return False


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
