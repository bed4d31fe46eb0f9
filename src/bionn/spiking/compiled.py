"""The compiled spiking step: :meth:`Network.run(backend="cpp") <bionn.spiking.Network.run>`.

One definition of every model: the C++ loop is generated from the same classes the torch
path runs. The network's step (synaptic drive, each group's ``forward``, each synapse's
``update`` and ``value``, voltage jumps with the refractory rule) is traced once with
PyTorch's ``make_fx`` into a graph of ATen operations, the projections' event-driven
delivery kept as one opaque operation. The graph is turned into C++:

* element-wise operations fused into one loop per index space (``batch x neurons``), in the
  graph's order and rounding (``-ffp-contract=off``; ``torch.lerp`` and ``add(alpha=)`` with
  the fused multiply-add PyTorch's kernels use);
* ``exp`` through the very vector routine ``torch.exp`` calls on this machine (MKL's
  ``vdExp``/``vsExp`` in PyTorch's library); ``expm1``, ``sigmoid`` and ``pow`` through the
  Sleef routines PyTorch's library exports, in PyTorch's loop shapes (scalar tails per
  thread chunk included); each checked bit for bit before use;
* delivery as PyTorch does it: arriving spikes in (trial, neuron) order, each neuron's
  out-edges in table order, added one by one;
* delays as a ring of spike rows, recording of spikes as events and of state variables
  (``record``, ``record_every``, ``record_neurons``), the time loop itself.

The result is the torch path's spikes and state, step for step (tests compare them on LIF,
AdEx and Izhikevich groups with exponential, alpha and conductance synapses, voltage jumps,
delays, Poisson inputs, neuron noise and a batch). Random numbers (a
:class:`~bionn.spiking.PoissonInput`'s uniforms, neuron noise) are drawn from the run's
generator as on the torch path, in the same order, before the loop runs a chunk of steps.
What the trace cannot express (other random draws such as Poisson neurons, plasticity,
rate groups, time-dependent inputs, other
transcendental functions, CUDA tensors) is refused with the
reason; ``backend="auto"`` then runs the torch path.

The library is compiled on first use with the system's C++ compiler (``$CXX``, else ``c++``)
into a cache folder (``$BIONN_CACHE_DIR``, else ``~/.cache/bionn``), named by a hash of its
source: a later run of the same network (same sizes and parameter values) loads it without
compiling. :func:`compile_network` builds it and reports the compile time.

Example:
    >>> import torch
    >>> from bionn.spiking.networks import coba
    >>> net = coba(400, generator=torch.Generator().manual_seed(0))
    >>> a = net.run(20.0, progress=False, seed=1)
    >>> b = net.run(20.0, progress=False, seed=1, backend="auto")
    >>> bool(torch.equal(a.spikes["P"].neuron, b.spikes["P"].neuron))
    True
"""

from __future__ import annotations

import ctypes
import math
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bionn._core import native
from bionn.spiking.base import Drive, StepContext

#: bump when the generated code's conventions change (old cached libraries are not reused)
CODEGEN_VERSION = 2


class Unsupported(ValueError):
    """The network (or run) uses something the compiled step does not cover; the message says what."""


# ---------------------------------------------------------------------------------------------
# the opaque delivery operation
# ---------------------------------------------------------------------------------------------
@torch.library.custom_op("bionn::deliver_events", mutates_args=())
def _deliver_events(spikes: Tensor, base: Tensor, projection: int) -> Tensor:
    """``base`` plus, for every spike of ``spikes`` (bool, ``(batch, n_pre)``), the weights of
    the projection's out-edges added at their targets. Only traced, never computed: the
    value returned here only gives the trace a tensor of the right shape."""
    return base.clone()


@torch.library.custom_op("bionn::deliver_graded", mutates_args=())
def _deliver_graded(values: Tensor, base: Tensor, projection: int) -> Tensor:
    """``base`` plus ``sum_j w_ij values_j`` over every synapse (graded delivery: gap
    junctions, transmitter from the presynaptic voltage). Only traced, never computed."""
    return base.clone()


@torch.library.custom_op("bionn::poisson_counts", mutates_args=())
def _poisson_counts(like: Tensor, projection: int) -> Tensor:
    """The step's arriving counts of a projection that draws them (:class:`PoissonInput`), shaped
    like ``like``. Only traced: the loop draws them from the run's generator as the torch
    path does (the uniforms of a chunk of steps in one call: the same stream)."""
    return torch.zeros(like.shape, dtype=torch.int64)


class _TracedProjection:
    """A projection whose ``deliver`` records :func:`_deliver_events` (for the trace)."""

    def __init__(self, proj, index: int) -> None:
        self._proj, self._index = proj, index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proj, name)

    def counts(self, batch: int, ctx: StepContext | None, device) -> Tensor:
        like = torch.zeros(batch, self._proj.n_post)
        return torch.ops.bionn.poisson_counts(like, self._index)

    def deliver(self, values: Tensor, weight: Tensor, event_driven: bool = True,
                out: Tensor | None = None, ctx: StepContext | None = None) -> Tensor:
        if callable(getattr(type(self._proj), "counts", None)):  # draws its arriving counts
            return type(self._proj).deliver(self, values, weight, event_driven, out, ctx)
        if weight is not self._proj.weight:
            raise Unsupported(f"projection {self._proj.name}: weights other than its own table")
        if event_driven and values.dtype == torch.bool:
            if out is None:
                out = torch.zeros(values.shape[0], self._proj.n_post, dtype=weight.dtype)
            return torch.ops.bionn.deliver_events(values, out, self._index)
        if out is None:  # as Projection.deliver: values in the weights' type, sums promoted
            out = torch.zeros(values.shape[0], self._proj.n_post,
                              dtype=torch.promote_types(weight.dtype, values.dtype))
        return torch.ops.bionn.deliver_graded(values, out, self._index)


# ---------------------------------------------------------------------------------------------
# the traced step
# ---------------------------------------------------------------------------------------------
def _check_network(net, dtype) -> None:
    for t in net.buffers():
        if t.device.type != "cpu":
            raise Unsupported(f"device {t.device}: the compiled step runs on the CPU")
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise Unsupported(f"dtype {dtype}: float32 or float64 only")
    for name, g in net.groups.items():
        if not g.spiking:
            raise Unsupported(f"group {name!r} ({type(g).__name__}) does not spike")
    for p in net.projections:
        if p.plasticity is not None:
            raise Unsupported(f"projection {p.name}: plasticity")
        if p.pre_range is None and not net.groups[p.pre].spiking:
            raise Unsupported(f"projection {p.name}: presynaptic group does not spike")
    for name, spec in net.inputs.items():
        if callable(spec):
            raise Unsupported(f"input to {name!r} is a function of time")


def _core_step(net, layout, consts, dt: float, keys: list[tuple[str, str]], arriving: dict,
               values: list[Tensor]) -> tuple[Tensor, ...]:
    """The network's step (:meth:`Network.step_events`) as a function of tensors, for tracing.

    Same operations in the same order; deliveries go through :func:`_deliver_events` and
    delayed spikes arrive as inputs (``arriving``: projection name -> position in ``values``).
    """
    from bionn.spiking.network import _slice_state, add_synaptic_input, apply_voltage_jump

    state: dict[str, dict[str, Tensor]] = {}
    for (owner, var), v in zip(keys, values, strict=False):
        state.setdefault(owner, {})[var] = v
    groups, projs = layout
    for owner in [g[0] for g in groups] + [q.name for q in projs]:
        state.setdefault(owner, {})  # stateless synapses (voltage jumps) have no variables
    ctx = StepContext(0.0, dt, None, consts)
    current: dict[str, Tensor | float] = {}
    conductance: dict[str, Tensor | float] = {}
    for name, _, _ in groups:
        current[name] = net._external(name, 0.0, state[name]) if name in net.inputs else 0.0
        conductance[name] = 0.0
    traced = {q.name: _TracedProjection(q.proj, i) for i, q in enumerate(projs)}
    for q in projs:
        if q.output != "voltage":
            add_synaptic_input(q, traced[q.name], q.weight, state, ctx, current, conductance)
    new: dict[str, dict[str, Tensor]] = {}
    for name, grp, _ in groups:
        new[name] = grp(state[name], Drive(current[name], conductance[name]), dt, ctx)
    receptive: dict[str, Tensor] = {}
    for q in projs:
        ps = dict(state[q.name])
        if q.name in arriving:
            spikes = values[arriving[q.name]]
        else:
            spikes = new[q.pre]["spike"]
            if q.pre_range is not None:
                spikes = spikes[:, q.pre_range[0]:q.pre_range[1]]
        pre_new = _slice_state(new[q.pre], q.pre_range)
        post_new = _slice_state(new[q.post], q.post_range)
        proj = traced[q.name]
        if q.output == "voltage":
            post_new = apply_voltage_jump(q, proj.deliver(spikes, q.weight, ctx=ctx), state, new,
                                          receptive, ctx)
        syn = {k: ps[pk] for k, pk in q.keys(ps)}
        syn = q.synapse.update(syn, proj, spikes, dt, pre_new, post_new, q.weight, ctx)
        for k, v in syn.items():
            ps["syn." + k] = v
        new[q.name] = ps
    out = []
    for owner, var in keys:
        if var not in new[owner]:
            raise Unsupported(f"{owner}: the step drops state variable {var!r}")
        out.append(new[owner][var])
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# code generation
# ---------------------------------------------------------------------------------------------
_CTYPE = {torch.float64: "double", torch.float32: "float", torch.bool: "uint8_t",
          torch.int32: "int32_t", torch.int64: "int64_t", torch.uint8: "uint8_t"}
_aten = torch.ops.aten
_VIEWLIKE = {_aten.clone.default, _aten.alias.default, _aten.alias_copy.default,
             _aten.lift_fresh_copy.default, _aten.detach.default, _aten.expand.default,
             _aten.expand_copy.default}
_DRAWS = (_aten.randn.default, _aten.randn_like.default)
_VECTOR_OPS = {_aten.exp.default: "exp", _aten.expm1.default: "expm1", _aten.sigmoid.default: "sigmoid",
              _aten.pow.Tensor_Scalar: "pow", _aten.tanh.default: "tanh",
              _aten.cosh.default: "cosh", _aten.sinh.default: "sinh", _aten.log.default: "log",
              _aten.sin.default: "sin", _aten.cos.default: "cos"}


def _pow_inline(n: torch.fx.Node) -> bool:
    """``pow(x, e)`` with an exponent PyTorch computes exactly without ``pow``."""
    if n.target != _aten.pow.Tensor_Scalar:
        return False
    e = n.args[1]
    return isinstance(e, (int, float)) and float(e) in (0.0, 1.0, 2.0, 3.0, -2.0, 0.5, -0.5, -1.0)
_CMP = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "eq": "==", "ne": "!="}


def _lit(value: Any, ctype: str) -> str:
    """A C++ literal of exactly ``value`` in type ``ctype``."""
    if ctype in ("double", "float"):
        x = float(value)
        if math.isnan(x):
            return f"std::numeric_limits<{ctype}>::quiet_NaN()"
        if math.isinf(x):
            return ("" if x > 0 else "-") + f"std::numeric_limits<{ctype}>::infinity()"
        if ctype == "float":
            x = float(torch.tensor(x, dtype=torch.float32))
            return f"{x.hex()}f"
        return f"{x.hex()}"
    if ctype == "uint8_t" and isinstance(value, bool):
        return "1" if value else "0"
    return f"({ctype}){int(value)}"


@dataclass
class _Buf:
    """A materialized value: ``ptr[b * row + off + i]``."""

    ptr: str
    row: str
    off: str = "0"
    ctype: str = "double"

    def at(self, b: str, i: str) -> str:
        off = "" if self.off == "0" else f" + {self.off}"
        return f"{self.ptr}[{b} * {self.row}{off} + {i}]"


@dataclass
class CompiledStep:
    """A network's step compiled for one run setting (sizes, dt, dtype, recorded groups).

    Attributes:
        keys: the state tensors the loop reads and writes, as ``(owner, variable)``.
        compile_s: seconds spent compiling (0 when the library came from the cache).
        trace_s: seconds spent tracing and generating the source.
        cached: whether the library came from the cache folder.
        path: the shared library.
    """

    keys: list[tuple[str, str]]
    delayed: list[tuple[str, str, int, int, int, int]]  # (proj, pre group, lo, n_pre, d, n_grp)
    recorded: list[tuple[int, int]]  # (state index of the spike tensor, n) per recorded group
    recorded_groups: list[tuple[str, int]]
    constants: list[Tensor]
    batch: int
    dtype: torch.dtype
    dt: float
    source: str
    path: Path
    compile_s: float = 0.0
    trace_s: float = 0.0
    cached: bool = False
    _lib: Any = field(default=None, repr=False)
    _fn: Any = field(default=None, repr=False)
    draws: list[tuple[str, int, torch.dtype]] = field(default_factory=list)  # per step, in order
    traces: list[tuple[str, int, torch.dtype]] = field(default_factory=list)  # ("g.v", n, dtype)
    record_every: int = 1
    vec_ops: set[tuple[str, torch.dtype]] = field(default_factory=set)  # routines it calls


class _Gen:
    """Turns the traced graph into the C++ step."""

    def __init__(self, gm: torch.fx.GraphModule, n_keys: int, batch: int, keys, arriving,
                 projs, rings) -> None:
        self.gm, self.batch, self.keys = gm, batch, keys
        self.n_keys = n_keys
        self.arriving = arriving  # placeholder position -> ring expression
        self.projs = projs
        self.rings = rings
        self.constants: list[Tensor] = []
        self.consts: dict[torch.fx.Node, Any] = {}  # folded: Tensor (or python scalar)
        self.bufs: dict[torch.fx.Node, _Buf] = {}
        self.temps: list[tuple[str, str, int]] = []  # (name, ctype, numel)
        self.lines: list[str] = []
        self.vec_ops: set[tuple[str, torch.dtype]] = set()
        # random draws of a step in the torch path's order: (kind, numel, dtype)
        self.draws: list[tuple[str, int, torch.dtype]] = []
        self.dt = 0.1

    # -- helpers ------------------------------------------------------------------------------
    def meta(self, n: torch.fx.Node) -> Any:
        return n.meta.get("val")

    def ctype(self, n) -> str:
        if isinstance(n, torch.fx.Node):
            if n in self.consts and not isinstance(self.consts[n], Tensor):
                v = self.consts[n]
                return "double" if isinstance(v, float) else ("uint8_t" if isinstance(v, bool) else "int64_t")
            dt = self.meta(n).dtype
        else:
            dt = n
        if dt not in _CTYPE:
            raise Unsupported(f"dtype {dt} in the step")
        return _CTYPE[dt]

    def width(self, n: torch.fx.Node) -> int:
        shape = tuple(self.meta(n).shape)
        if len(shape) != 2 or shape[0] != self.batch:
            raise Unsupported(f"a value of shape {shape} in the step (expected ({self.batch}, n))")
        return int(shape[1])

    def add_const(self, t: Tensor) -> _Buf:
        """A constant tensor broadcast over ``(batch, n)``: read as ``c[b * row + i]``."""
        t = t.detach().contiguous()
        if t.dim() == 1:
            row = "0"
        elif t.dim() == 2 and t.shape[0] == 1:
            row, t = "0", t.reshape(-1)
        elif t.dim() == 2 and t.shape[0] == self.batch:
            row = str(t.shape[1])
        else:
            raise Unsupported(f"a constant of shape {tuple(t.shape)}")
        k = len(self.constants)
        self.constants.append(t)
        ctype = _CTYPE.get(t.dtype)
        if ctype is None:
            raise Unsupported(f"a constant of dtype {t.dtype}")
        return _Buf(f"K{k}", row, "0", ctype)

    def read(self, a: Any, local: dict, b: str = "b", i: str = "i") -> tuple[str, str]:
        """``(expression, ctype)`` of argument ``a`` at ``(b, i)``."""
        if isinstance(a, torch.fx.Node):
            if a in local:
                return local[a]
            if a in self.consts:
                v = self.consts[a]
                if isinstance(v, Tensor):
                    if v.dim() == 0 or v.numel() == 1 and v.dim() <= 2 and all(s == 1 for s in v.shape):
                        ct = _CTYPE[v.dtype]
                        return _lit(v.reshape(()).item(), ct), ct
                    buf = self.add_const(v)
                    self.consts[a] = buf
                    return buf.at(b, i), buf.ctype
                if isinstance(v, _Buf):
                    return v.at(b, i), v.ctype
                ct = self.ctype(a)
                return _lit(v, ct), ct
            buf = self.bufs.get(a)
            if buf is None:
                raise Unsupported(f"internal: {a.name} read before it was written")
            return buf.at(b, i), buf.ctype
        if isinstance(a, bool):
            return ("1" if a else "0"), "uint8_t"
        if isinstance(a, int):
            return _lit(a, "int64_t"), "int64_t"
        if isinstance(a, float):
            return _lit(a, "double"), "double"
        raise Unsupported(f"argument {a!r} in the step")

    # -- constant folding -----------------------------------------------------------------------
    def fold(self) -> None:
        placeholders_dep: set[torch.fx.Node] = set()
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                placeholders_dep.add(n)
            elif n.op == "get_attr":
                self.consts[n] = getattr(self.gm, n.target)
            elif n.op == "call_function":
                if n.target in _DRAWS:
                    if n.target == _aten.randn.default and n.kwargs.get("generator") is not None:
                        raise Unsupported("a draw from a generator other than the run's")
                    placeholders_dep.add(n)
                    continue
                if torch.Tag.nondeterministic_seeded in getattr(n.target, "tags", ()):
                    raise Unsupported(f"random draws ({n.target}) in the step")
                if any(d in placeholders_dep for d in n.all_input_nodes) or \
                        n.target == torch.ops.bionn.poisson_counts.default:
                    placeholders_dep.add(n)
                    continue
                args = torch.fx.node.map_arg(n.args, lambda x: self.consts[x])
                kwargs = torch.fx.node.map_arg(n.kwargs, lambda x: self.consts[x])
                self.consts[n] = n.target(*args, **kwargs)

    # -- the step ----------------------------------------------------------------------------
    def generate(self) -> tuple[str, list]:
        g = self.gm.graph
        nodes = [n for n in g.nodes]
        placeholders = [n for n in nodes if n.op == "placeholder"]
        output = next(n for n in nodes if n.op == "output")
        outs = list(output.args[0])
        self.fold()
        # placeholders: state (cur pointers) and arriving delayed spikes (ring slots)
        for pos, n in enumerate(placeholders):
            if pos < self.n_keys:
                self.bufs[n] = _Buf(f"cur{pos}", str(self.width(n)), "0", self.ctype(n))
            else:
                self.bufs[n] = self.arriving[pos]
        out_of: dict[torch.fx.Node, list[int]] = {}
        for k, o in enumerate(outs):
            out_of.setdefault(o, []).append(k)
        users = {n: [u for u in n.users if u.op != "output"] for n in nodes}
        work = [n for n in nodes if n.op == "call_function" and n not in self.consts]
        # which nodes need a buffer: read by another kernel, a barrier or the output
        kernel_of: dict[torch.fx.Node, int] = {}
        kernels: list[list[torch.fx.Node]] = []
        cur_k, cur_w = None, None
        for n in work:
            t = n.target
            if t == _aten.slice.Tensor or t == _aten.slice_copy.Tensor or \
                    t in (torch.ops.bionn.deliver_events.default,
                          torch.ops.bionn.deliver_graded.default,
                          torch.ops.bionn.poisson_counts.default) or t in _DRAWS or \
                    (t in _VECTOR_OPS and not _pow_inline(n)):
                cur_k = None
                kernel_of[n] = -1
                continue
            w = self.width(n)
            if cur_k is None or w != cur_w:
                kernels.append([])
                cur_k, cur_w = len(kernels) - 1, w
            kernels[cur_k].append(n)
            kernel_of[n] = cur_k
        need: set[torch.fx.Node] = set(out_of)
        for n in work:
            for a in n.all_input_nodes:
                if a in self.consts or a.op == "placeholder":
                    continue
                if kernel_of.get(a) != kernel_of.get(n) or kernel_of.get(n) == -1:
                    need.add(a)
        # destinations: outputs write into the next-state buffers
        dest: dict[torch.fx.Node, str] = {}
        for o, ks in out_of.items():
            if isinstance(o, torch.fx.Node) and o.op == "call_function" and o not in self.consts:
                dest[o] = f"nxt{ks[0]}"
        inplace: set[torch.fx.Node] = set()
        for n in work:
            if n.target in (torch.ops.bionn.deliver_events.default,
                            torch.ops.bionn.deliver_graded.default):
                base = n.args[1]
                if (base in kernel_of and kernel_of[base] >= 0 and len(users[base]) == 1
                        and base not in out_of):
                    inplace.add(n)
                    if n in dest:
                        dest[base] = dest.pop(n)
                        dest[n] = dest[base]
        for n in [m for m in nodes if m in need or m in dest]:  # graph order: a stable source
            if n in self.consts or n.op == "placeholder" or n in self.bufs:
                continue
            if n.target in (_aten.slice.Tensor, _aten.slice_copy.Tensor):
                continue
            if n in inplace:
                continue
            ct = self.ctype(n)
            width = self.width(n)
            if n in dest:
                self.bufs[n] = _Buf(dest[n], str(width), "0", ct)
            else:
                name = f"t{len(self.temps)}"
                self.temps.append((name, ct, self.batch * width))
                self.bufs[n] = _Buf(name, str(width), "0", ct)
        # emit in order
        emitted_kernels: set[int] = set()
        for n in work:
            k = kernel_of[n]
            if k == -1:
                self.barrier(n, inplace)
            elif k not in emitted_kernels:
                emitted_kernels.add(k)
                self.kernel(kernels[k], need, dest)
        # outputs that are not computed here: placeholders and constants
        extra = []
        for k, o in enumerate(outs):
            if not isinstance(o, torch.fx.Node):
                raise Unsupported("a state variable set to a Python number")
            if o in dest and dest[o] == f"nxt{k}":
                continue
            if o.op == "placeholder" and placeholders.index(o) == k:
                extra.append(("same", k, None))
                continue
            extra.append(("copy", k, o))
        return "\n".join(self.lines), extra

    def expr(self, n: torch.fx.Node, local: dict) -> tuple[str, str]:
        t = n.target
        out_ct = self.ctype(n)
        name = t.overloadpacket.__name__ if hasattr(t, "overloadpacket") else str(t)

        def arg(a, ct=out_ct):
            e, act = self.read(a, local)
            return e if act == ct else f"({ct})({e})"

        def sample(v: Any) -> Any:
            if not isinstance(v, torch.fx.Node):
                return v
            c = self.consts.get(v)
            if isinstance(c, Tensor):
                return torch.empty(() if c.dim() == 0 else (1,), dtype=c.dtype)
            if c is not None and not isinstance(c, _Buf):
                return c
            return torch.empty((1,), dtype=self.meta(v).dtype)

        def compute_ct(a: Any, b: Any) -> str:
            """The dtype the op computes in (PyTorch's type promotion of its operands)."""
            return _CTYPE[torch.result_type(sample(a), sample(b))]

        if t in _VIEWLIKE:
            return arg(n.args[0]), out_ct
        if t in (_aten._to_copy.default, _aten.copy.default):
            src = n.args[0] if t == _aten._to_copy.default else n.args[1]
            e, act = self.read(src, local)
            if out_ct == "uint8_t" and act != "uint8_t":
                return f"(({e}) != 0 ? (uint8_t)1 : (uint8_t)0)", out_ct
            if act == "uint8_t" and out_ct != "uint8_t":  # a select vectorizes; a cast may not
                return f"(({e}) ? ({out_ct})1 : ({out_ct})0)", out_ct
            return (e if act == out_ct else f"({out_ct})({e})"), out_ct
        if name in ("add", "sub") and len(n.args) >= 2:
            ct = out_ct
            a, b = arg(n.args[0], ct), arg(n.args[1], ct)
            alpha = n.kwargs.get("alpha", 1)
            if name == "sub":
                alpha = -alpha
            if alpha == 1:
                return f"({a} + {b})", ct
            if alpha == -1:
                return f"({a} - {b})", ct
            return f"std::fma({b}, {_lit(alpha, ct)}, {a})", ct
        if name == "rsub":
            alpha = n.kwargs.get("alpha", 1)
            if alpha != 1:
                raise Unsupported("rsub with alpha")
            return f"({arg(n.args[1])} - {arg(n.args[0])})", out_ct
        if name == "mul":
            return f"({arg(n.args[0])} * {arg(n.args[1])})", out_ct
        if name == "div" and "rounding_mode" not in n.kwargs:
            return f"({arg(n.args[0])} / {arg(n.args[1])})", out_ct
        if name == "neg":
            return f"(-{arg(n.args[0])})", out_ct
        if name == "reciprocal":
            return f"({_lit(1.0, out_ct)} / {arg(n.args[0])})", out_ct
        if name == "abs":
            return f"std::abs({arg(n.args[0])})", out_ct
        if name == "sqrt":
            return f"std::sqrt({arg(n.args[0])})", out_ct
        if name == "pow" and _pow_inline(n):  # PyTorch's exact special cases
            x, e = arg(n.args[0]), float(n.args[1])
            one = _lit(1.0, out_ct)
            return {0.0: one, 1.0: x, 2.0: f"({x} * {x})", 3.0: f"({x} * {x} * {x})",
                    -2.0: f"({one} / ({x} * {x}))", 0.5: f"std::sqrt({x})",
                    -0.5: f"({one} / std::sqrt({x}))", -1.0: f"({one} / {x})"}[e], out_ct
        if name == "round" and not n.kwargs.get("decimals"):
            return f"std::nearbyint({arg(n.args[0])})", out_ct
        if name in ("clamp", "clamp_min", "clamp_max"):
            x = arg(n.args[0])
            lo = n.args[1] if name != "clamp_max" else None
            hi = (n.args[2] if len(n.args) > 2 else n.kwargs.get("max")) if name == "clamp" else (
                n.args[1] if name == "clamp_max" else None)
            if name == "clamp" and len(n.args) < 2:
                lo = n.kwargs.get("min")
            e = x
            if lo is not None:
                e = f"bionn_max({e}, {arg(lo)})"
            if hi is not None:
                e = f"bionn_min({e}, {arg(hi)})"
            return e, out_ct
        if name in ("maximum", "minimum"):
            return f"bionn_{name[:3]}({arg(n.args[0])}, {arg(n.args[1])})", out_ct
        if name in _CMP:
            ct = compute_ct(n.args[0], n.args[1])
            return f"(({arg(n.args[0], ct)} {_CMP[name]} {arg(n.args[1], ct)}) ? (uint8_t)1 : (uint8_t)0)", "uint8_t"
        if name == "where":
            c, _ = self.read(n.args[0], local)
            return f"(({c}) ? {arg(n.args[1])} : {arg(n.args[2])})", out_ct
        if name == "masked_fill":
            c, _ = self.read(n.args[1], local)
            return f"(({c}) ? {arg(n.args[2])} : {arg(n.args[0])})", out_ct
        if name in ("logical_not", "bitwise_not") and out_ct == "uint8_t":
            c, _ = self.read(n.args[0], local)
            return f"(uint8_t)!({c})", "uint8_t"
        if name in ("logical_and", "bitwise_and") and out_ct == "uint8_t":
            return f"(uint8_t)(({self.read(n.args[0], local)[0]}) && ({self.read(n.args[1], local)[0]}))", "uint8_t"
        if name in ("logical_or", "bitwise_or") and out_ct == "uint8_t":
            return f"(uint8_t)(({self.read(n.args[0], local)[0]}) || ({self.read(n.args[1], local)[0]}))", "uint8_t"
        if name == "lerp":
            a, b, w = arg(n.args[0]), arg(n.args[1]), arg(n.args[2])
            return f"bionn_lerp({a}, {b}, {w})", out_ct
        if name in ("full_like", "zeros_like", "ones_like", "fill"):
            v = {"zeros_like": 0.0, "ones_like": 1.0}.get(name, n.args[1] if len(n.args) > 1 else 0)
            return _lit(v, out_ct), out_ct
        if name == "slice_scatter":
            base = arg(n.args[0])
            dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
            start = n.args[3] if len(n.args) > 3 else n.kwargs.get("start")
            end = n.args[4] if len(n.args) > 4 else n.kwargs.get("end")
            step = n.args[5] if len(n.args) > 5 else n.kwargs.get("step", 1)
            if dim != 1 or step != 1:
                raise Unsupported("a slice other than a neuron range")
            width = self.width(n)
            start, end = int(start or 0), min(int(end if end is not None else width), width)
            src, sct = self.read(n.args[1], local, "b", f"(i - {start})")
            if sct != out_ct:
                src = f"({out_ct})({src})"
            return f"((i >= {start} && i < {end}) ? {src} : {base})", out_ct
        raise Unsupported(f"operation {t} in the step")

    def kernel(self, nodes: list[torch.fx.Node], need: set, dest: dict) -> None:
        width = self.width(nodes[0])
        body: list[str] = []
        local: dict = {}
        for n in nodes:
            if n.target == _aten.slice_scatter.default:
                src = n.args[1]
                if src not in self.bufs and src not in self.consts:
                    raise Unsupported("internal: slice_scatter source not materialized")
            e, ct = self.expr(n, local)
            var = f"v_{n.name}"
            body.append(f"      const {ct} {var} = {e};")
            local[n] = (var, ct)
            if n in self.bufs:
                buf = self.bufs[n]
                body.append(f"      {buf.at('b', 'i')} = {var};")
        self.lines.append(f"    for (int64_t b = 0; b < {self.batch}; ++b) {{\n"
                          f"     #pragma GCC ivdep\n"
                          f"     for (int64_t i = 0; i < {width}; ++i) {{")
        self.lines.extend(body)
        self.lines.append("    }}")

    def barrier(self, n: torch.fx.Node, inplace: set) -> None:
        t = n.target
        if t in (_aten.slice.Tensor, _aten.slice_copy.Tensor):
            src = n.args[0]
            dim, start = n.args[1], n.args[2] if len(n.args) > 2 else 0
            step = n.args[4] if len(n.args) > 4 else 1
            if dim != 1 or step != 1:
                raise Unsupported("a slice other than a neuron range")
            if src in self.consts:
                v = self.consts[src]
                self.consts[n] = v[:, n.args[2]:n.args[3]] if isinstance(v, Tensor) else v
                return
            base = self.bufs.get(src)
            if base is None:
                raise Unsupported("internal: slice of an unmaterialized value")
            off = str(start) if base.off == "0" else f"({base.off} + {start})"
            self.bufs[n] = _Buf(base.ptr, base.row, off, base.ctype)
            return
        if t in _VECTOR_OPS:  # PyTorch's own vector routines (MKL, Sleef), in its loops
            op = _VECTOR_OPS[t]
            x = n.args[0]
            ct = self.ctype(n)
            src = self.bufs.get(x)
            width = self.width(n)
            if src is None or src.off != "0" or src.row != str(width):
                raise Unsupported(f"internal: {op} of a non-contiguous value")
            dtype = torch.float64 if ct == "double" else torch.float32
            found = _vector_routine(op, dtype)
            if found is None:
                raise Unsupported(f"{op}: no routine in PyTorch's library gives torch.{op}'s bits here")
            slot = 2 * list(_VEC_OPS).index(op) + (0 if ct == "double" else 1)
            self.vec_ops.add((op, dtype))
            size, dst = self.batch * width, self.bufs[n].ptr
            if op in _VML:
                call = (f"((void (*)(int, const {ct}*, {ct}*))F[{slot}])((int){size}, {src.ptr}, "
                        f"{dst})")
            elif op in _KVEC1:
                call = (f"bionn_kvec1<{ct}, {found[1]}, {_KVEC1.index(op)}>(F[{slot}], {src.ptr}, "
                        f"{dst}, {size}, threads)")
            elif op in _MAPPED:
                call = f"bionn_vmap<{ct}, {found[1]}>(F[{slot}], {src.ptr}, {dst}, {size})"
            elif op == "sigmoid":
                call = f"bionn_sigmoid<{ct}, {found[1]}>(F[{slot}], {src.ptr}, {dst}, {size}, threads)"
            else:
                call = (f"bionn_pow<{ct}, {found[1]}>(F[{slot}], {_lit(n.args[1], ct)}, {src.ptr}, "
                        f"{dst}, {size}, threads)")
            self.lines.append(f"    {call};")
            return
        if t in _DRAWS:  # a standard normal draw per element (neuron noise)
            j = len(self.draws)
            ct = self.ctype(n)
            self.draws.append(("normal", self.batch * self.width(n), self.meta(n).dtype))
            self.bufs[n] = _Buf(f"((const {ct}*)D[{j}])", str(self.width(n)), f"s * Dstride[{j}]", ct)
            return
        if t == torch.ops.bionn.poisson_counts.default:
            proj = self.projs[n.args[1]]
            cdf = proj.constants(self.dt).to(torch.float64)
            kc = self.add_const(cdf)
            dst = self.bufs[n]
            width = self.width(n)
            j = len(self.draws)
            self.draws.append(("uniform", self.batch * width, torch.float64))
            self.lines.append(
                f"    for (int64_t b = 0; b < {self.batch}; ++b) for (int64_t i = 0; i < {width}; ++i) {{\n"
                f"      const double x = ((const double*)D[{j}])[s * Dstride[{j}] + b * {width} + i];\n"
                f"      int64_t k = 0;\n"
                f"      while (k < {cdf.numel() - 1} && {kc.ptr}[k] <= x) ++k;  // searchsorted, right\n"
                f"      {dst.at('b', 'i')} = ({dst.ctype})k;\n    }}")
            return
        if t in (torch.ops.bionn.deliver_events.default, torch.ops.bionn.deliver_graded.default):
            graded = t == torch.ops.bionn.deliver_graded.default
            spikes, base, q = n.args
            proj = self.projs[q]
            sp = self.bufs.get(spikes)
            if sp is None and spikes in self.consts:
                v = self.consts[spikes]
                sp = v if isinstance(v, _Buf) else self.add_const(
                    v.expand(self.batch, -1) if v.dim() == 1 else v)
            if sp is None:
                raise Unsupported("internal: spikes of a delivery not materialized")
            if base in self.consts:
                bv = self.consts[base]
                if not (isinstance(bv, Tensor) and bool((bv == 0).all())):
                    raise Unsupported("a delivery onto a non-zero constant")
                base_buf = None
            else:
                base_buf = self.bufs[base]
            if n in inplace:
                self.bufs[n] = base_buf
                dst = base_buf
            else:
                dst = self.bufs[n]
            ct = dst.ctype
            n_post = self.width(n)
            kw = self.add_const(proj.weight.reshape(-1))
            kt = self.add_const(proj._targets0.reshape(-1))
            n_pre, kk = proj.weight.shape
            lines = []
            if n not in inplace:
                if base_buf is None:
                    lines.append(f"    std::memset({dst.ptr}, 0, sizeof({ct}) * {self.batch * n_post});")
                else:
                    lines.append(f"    for (int64_t b = 0; b < {self.batch}; ++b) for (int64_t i = 0; i < {n_post}; ++i) "
                                 f"{dst.at('b', 'i')} = {base_buf.at('b', 'i')};")
            # graded: every synapse, w_ij v_j in the weights' type, as index_add_ adds them
            test = "" if graded else f"        if (!{sp.at('b', 'j')}) continue;\n"
            term = f"({ct})(w[k] * vj)" if graded else f"({ct})w[k]"
            lines.append(
                f"    for (int64_t b = 0; b < {self.batch}; ++b) {{\n"
                f"      {ct}* o = {dst.ptr} + b * {n_post};\n"
                f"      for (int64_t j = 0; j < {n_pre}; ++j) {{\n"
                + test + (f"        const {kw.ctype} vj = {sp.at('b', 'j')};\n" if graded else "") +
                f"        const {kw.ctype}* w = {kw.ptr} + j * {kk};\n"
                f"        const {kt.ctype}* t = {kt.ptr} + j * {kk};\n"
                f"        for (int64_t k = 0; k < {kk}; ++k) o[t[k]] += {term};\n"
                f"      }}\n    }}")
            self.lines.extend(lines)
            return
        raise Unsupported(f"operation {t} in the step")


_PRELUDE = r"""
#include <cstdint>
#include <cstring>
#include <cmath>
#include <limits>
#include <vector>
#include <algorithm>
template <typename T> static inline T bionn_max(T a, T b) { return (a != a) ? a : (a < b ? b : a); }
template <typename T> static inline T bionn_min(T a, T b) { return (a != a) ? a : (a > b ? b : a); }
template <typename T> static inline T bionn_lerp(T a, T b, T w) {
  const bool small = std::abs(w) < T(0.5);  // PyTorch's lerp: one fused multiply-add
  return std::fma(small ? w : w - T(1), b - a, small ? a : b);
}
"""


def _source(gen: _Gen, body: str, extra, keys, recorded, delayed, batch, traces, every) -> str:
    n_keys = len(keys)
    lines = [_PRELUDE + _VEC_KERNELS, 'extern "C" int64_t bionn_step_loop(void** S, void** S2, void** C, void** R, '
             "int64_t* heads, int64_t steps, int64_t step0, int64_t* ev, int64_t ev_cap, "
             "int64_t* n_ev, void** D, const int64_t* Dstride, "
             "void** Tr, void** F, int64_t threads) {",
             "  (void)threads;",
             "  (void)D; (void)Dstride; (void)Tr; (void)F; int64_t rec = 0; (void)rec;",
             ]
    for k, t in enumerate(gen.constants):
        lines.append(f"  const {_CTYPE[t.dtype]}* __restrict K{k} = (const {_CTYPE[t.dtype]}*)C[{k}];")
    for name, ct, numel in gen.temps:
        lines.append(f"  std::vector<{ct}> {name}_v({numel}); {ct}* __restrict {name} = {name}_v.data();")
    swapped = [k for k in range(n_keys) if not any(e[0] == "same" and e[1] == k for e in extra)]
    for k, (_, ct) in enumerate(keys):
        lines.append(f"  {ct}* __restrict cur{k} = ({ct}*)S[{k}]; {ct}* __restrict nxt{k} = ({ct}*)S2[{k}];")
    for r in range(len(delayed)):
        lines.append(f"  uint8_t* ring{r} = (uint8_t*)R[{r}]; int64_t head{r} = heads[{r}];")
    lines.append("  int64_t done = 0, ne = *n_ev;")
    per_step = sum(batch * n for _, n in recorded) * 4
    lines.append("  for (int64_t s = 0; s < steps; ++s) {")
    lines.append(f"    if (ne + {per_step} > ev_cap) break;")
    lines.append(body)
    for kind, k, o in extra:
        if kind == "copy":
            src = gen.bufs.get(o) if o.op != "get_attr" else None
            if src is None and o in gen.consts:
                raise Unsupported("a state variable set to a constant")
            w = gen.widths[k]
            lines.append(f"    for (int64_t b = 0; b < {batch}; ++b) for (int64_t i = 0; i < {w}; ++i) "
                         f"nxt{k}[b * {w} + i] = {src.at('b', 'i')};")
    # record spikes
    for g, (k, n) in enumerate(recorded):
        lines.append(f"    for (int64_t b = 0; b < {batch}; ++b) for (int64_t i = 0; i < {n}; ++i) "
                     f"if (nxt{k}[b * {n} + i]) {{ ev[ne] = {g}; ev[ne + 1] = b; ev[ne + 2] = step0 + s; "
                     f"ev[ne + 3] = i; ne += 4; }}")
    # record state variables after the step (the torch path's (i + 1) % record_every == 0)
    if traces:
        lines.append(f"    if ((step0 + s + 1) % {every} == 0) {{")
        for j, (k, sel, n_sel, width, ct) in enumerate(traces):
            src = f"nxt{k}" if k in swapped else f"cur{k}"
            pick = f"{sel}[m]" if sel is not None else "m"
            lines.append(f"      {{ {ct}* o = ({ct}*)Tr[{j}] + rec * {batch * n_sel};\n"
                         f"        for (int64_t b = 0; b < {batch}; ++b) for (int64_t m = 0; m < {n_sel}; ++m) "
                         f"o[b * {n_sel} + m] = {src}[b * {width} + {pick}]; }}")
        lines.append("      ++rec;\n    }")
    # push this step's spikes into the rings
    for r, (_, _, lo, n_pre, d, n_grp) in enumerate(delayed):
        k = gen.ring_spike_key[r]
        lines.append(f"    for (int64_t b = 0; b < {batch}; ++b) std::memcpy(ring{r} + b * {d * n_pre} + head{r} * {n_pre}, "
                     f"nxt{k} + b * {n_grp} + {lo}, {n_pre});")
        lines.append(f"    head{r} = (head{r} + 1) % {d};")
    for k in swapped:
        lines.append(f"    std::swap(cur{k}, nxt{k});")
    lines.append("    ++done;\n  }")
    # the state ends in S (the caller's tensors)
    for k in swapped:
        ct = keys[k][1]
        lines.append(f"  if (cur{k} != ({ct}*)S[{k}]) std::memcpy(S[{k}], cur{k}, sizeof({ct}) * {gen.widths[k] * batch});")
    for r, (_, _, _, n_pre, d, _) in enumerate(delayed):
        lines.append(f"  for (int64_t b = 0; b < {batch}; ++b) std::rotate(ring{r} + b * {d * n_pre}, "
                     f"ring{r} + b * {d * n_pre} + head{r} * {n_pre}, ring{r} + (b + 1) * {d * n_pre});")
        lines.append(f"  heads[{r}] = 0;")
    lines.append("  *n_ev = ne;\n  return done;\n}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# building: trace, generate, compile (cached)
# ---------------------------------------------------------------------------------------------
#: C++ of PyTorch's CPU loops around a Sleef vector routine: ``vec::map`` (every lane
#: vectorised, the last vector zero-padded: ``expm1``) and ``cpu_kernel_vec`` (blocks of two
#: vectors per ``parallel_for`` chunk of 32768 elements or more, then a scalar tail:
#: ``sigmoid``, ``pow``); used by the generated step and by the check that picks them
_VEC_KERNELS = r"""
template <typename T, int W> struct bionn_v { typedef T type __attribute__((vector_size(W * sizeof(T)))); };
template <typename T, int W> static void bionn_vmap(void* f, const T* x, T* y, int64_t n) {
  typedef typename bionn_v<T, W>::type vec;
  typedef vec (*fn_t)(vec);
  fn_t fn = (fn_t)f;
  int64_t i = 0;
  for (; i + W <= n; i += W) { vec a; std::memcpy(&a, x + i, sizeof(vec)); vec r = fn(a); std::memcpy(y + i, &r, sizeof(vec)); }
  if (i < n) { vec a = {}; std::memcpy(&a, x + i, (n - i) * sizeof(T)); vec r = fn(a); std::memcpy(y + i, &r, (n - i) * sizeof(T)); }
}
static inline int64_t bionn_chunk(int64_t n, int64_t threads) {
  const int64_t grain = 32768;  // at::internal::GRAIN_SIZE
  if (n <= grain || threads <= 1) return n;
  int64_t nt = (n + grain - 1) / grain;
  if (nt > threads) nt = threads;
  return (n + nt - 1) / nt;
}
// PyTorch's cpu_kernel_vec: per parallel_for chunk, blocks of two vectors through op.lanes,
// the rest of the chunk through op.scalar
template <typename T, int W, typename Op> static void bionn_kvec(const Op& op, const T* x, T* y, int64_t n, int64_t threads) {
  typedef typename bionn_v<T, W>::type vec;
  const int64_t chunk = bionn_chunk(n, threads);
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t c1 = c0 + chunk < n ? c0 + chunk : n;
    int64_t i = c0;
    for (; i + 2 * W <= c1; i += 2 * W)
      for (int h = 0; h < 2; ++h) {
        vec a; std::memcpy(&a, x + i + h * W, sizeof(vec));
        a = op.lanes(a);
        std::memcpy(y + i + h * W, &a, sizeof(vec));
      }
    for (; i < c1; ++i) y[i] = op.scalar(x[i]);
  }
}
// sigmoid: vectors 1 / (1 + exp(0 - x)) with the vector exp, the tail 1 / (1 + std::exp(-x))
template <typename T, int W> struct bionn_sigmoid_op {
  typedef typename bionn_v<T, W>::type vec;
  vec (*vexp)(vec);
  vec lanes(vec a) const { vec z = {}; a = z - a; a = vexp(a); a = a + T(1); return T(1) / a; }
  T scalar(T x) const { return T(1) / (T(1) + std::exp(-x)); }
};
// cosh (K 0), sinh (K 1): vectors with the vector routine, the tail std::cosh / std::sinh
template <typename T, int W, int K> struct bionn_unary_op {
  typedef typename bionn_v<T, W>::type vec;
  vec (*fn)(vec);
  vec lanes(vec a) const { return fn(a); }
  T scalar(T x) const { return K == 0 ? std::cosh(x) : std::sinh(x); }
};
// pow(x, e) for a scalar e: vectors with the vector pow, the tail std::pow
template <typename T, int W> struct bionn_pow_op {
  typedef typename bionn_v<T, W>::type vec;
  vec (*fn)(vec, vec);
  vec ev;
  T e;
  vec lanes(vec a) const { return fn(a, ev); }
  T scalar(T x) const { return std::pow(x, e); }
};
template <typename T, int W> static void bionn_sigmoid(void* f, const T* x, T* y, int64_t n, int64_t threads) {
  bionn_sigmoid_op<T, W> op; op.vexp = (decltype(op.vexp))f;
  bionn_kvec<T, W>(op, x, y, n, threads);
}
template <typename T, int W, int K> static void bionn_kvec1(void* f, const T* x, T* y, int64_t n, int64_t threads) {
  bionn_unary_op<T, W, K> op; op.fn = (decltype(op.fn))f;
  bionn_kvec<T, W>(op, x, y, n, threads);
}
template <typename T, int W> static void bionn_pow(void* f, T e, const T* x, T* y, int64_t n, int64_t threads) {
  bionn_pow_op<T, W> op; op.fn = (decltype(op.fn))f; op.e = e;
  for (int k = 0; k < W; ++k) op.ev[k] = e;
  bionn_kvec<T, W>(op, x, y, n, threads);
}
"""
_VEC_CHECK = "#include <cstdint>\n#include <cstring>\n#include <cmath>\n" + _VEC_KERNELS + r"""
#define CHECKS(T, W, S) \
extern "C" void map_##S(void* f, const T* x, T* y, int64_t n) { bionn_vmap<T, W>(f, x, y, n); } \
extern "C" void sigmoid_##S(void* f, const T* x, T* y, int64_t n, int64_t t) { bionn_sigmoid<T, W>(f, x, y, n, t); } \
extern "C" void cosh_##S(void* f, const T* x, T* y, int64_t n, int64_t t) { bionn_kvec1<T, W, 0>(f, x, y, n, t); } \
extern "C" void sinh_##S(void* f, const T* x, T* y, int64_t n, int64_t t) { bionn_kvec1<T, W, 1>(f, x, y, n, t); } \
extern "C" void pow_##S(void* f, double e, const T* x, T* y, int64_t n, int64_t t) { bionn_pow<T, W>(f, (T)e, x, y, n, t); }
CHECKS(double, 8, d8)
CHECKS(double, 4, d4)
CHECKS(float, 16, f16)
CHECKS(float, 8, f8)
"""
#: op -> (Sleef routine stem, what it is checked against)
_VEC_OPS = {"exp": "Exp", "expm1": "expm1", "sigmoid": "exp", "pow": "pow", "cosh": "cosh", "sinh": "sinh",
            "tanh": "Tanh", "log": "Ln", "sin": "Sin", "cos": "Cos"}
#: the ops PyTorch runs as vec::map over a Sleef routine (every lane vectorised)
_MAPPED = ("expm1",)
#: the ops PyTorch runs as cpu_kernel_vec around a one-argument Sleef routine (scalar tails)
_KVEC1 = ("cosh", "sinh")
#: the ops PyTorch hands to MKL's vector math (an array routine, like exp)
_VML = ("exp", "tanh", "log", "sin", "cos")
_VEC_FOUND: dict[tuple[str, torch.dtype], tuple[int, int] | None] = {}


def _vector_routine(op: str, dtype: torch.dtype) -> tuple[int, int] | None:
    """``(address, lanes)`` of the Sleef routine in PyTorch's library with which the loops of
    :data:`_VEC_KERNELS` give ``torch.<op>``'s bits for ``dtype`` on this machine, or None.
    Checked once per process on random values, on lengths that are not multiples of the
    vector width and on one longer than a ``parallel_for`` chunk (at the current number of
    threads, which the loop is then given).
    """
    key = (op, dtype)
    if key in _VEC_FOUND:
        return _VEC_FOUND[key]
    found = None
    if op in _VML:  # MKL's array routine, like exp
        try:
            lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
            fn = getattr(lib, ("vd" if dtype == torch.float64 else "vs") + _VEC_OPS[op])
            fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
            g = torch.Generator().manual_seed(0)
            ok = True
            for n in (4099, 19):
                x = torch.randn(n, generator=g, dtype=dtype) * 4
                if op == "log":
                    x = x.abs() + 1e-3
                y = torch.empty_like(x)
                fn(n, x.data_ptr(), y.data_ptr())
                ok = ok and torch.equal(y, getattr(torch, op)(x))
            found = (ctypes.cast(fn, ctypes.c_void_p).value, 0) if ok else None
        except (OSError, AttributeError):
            found = None
        _VEC_FOUND[key] = found
        return found
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        check = native.build(_VEC_CHECK, "vec_check").lib
        wide = torch.backends.cpu.get_cpu_capability() == "AVX512"
        cands = (([("d8", 8)] if wide else []) + [("d4", 4)] if dtype == torch.float64 else
                 ([("f16", 16)] if wide else []) + [("f8", 8)])
        g = torch.Generator().manual_seed(0)
        threads = torch.get_num_threads()
        for tag, lanes in cands:
            fn = ctypes.cast(getattr(lib, f"Sleef_{_VEC_OPS[op]}{tag}_u10"), ctypes.c_void_p).value
            ok = True
            for n in (4099, 19, 5, 70001):
                x = torch.randn(n, generator=g, dtype=dtype) * 4
                y = torch.empty_like(x)
                args = (ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(y.data_ptr()), ctypes.c_int64(n))
                if op in _MAPPED:
                    getattr(check, f"map_{tag}")(ctypes.c_void_p(fn), *args)
                    ok = ok and torch.equal(y, getattr(torch, op)(x))
                elif op in ("sigmoid",) + _KVEC1:
                    getattr(check, f"{op}_{tag}")(ctypes.c_void_p(fn), *args, ctypes.c_int64(threads))
                    ok = ok and torch.equal(y, getattr(torch, op)(x))
                else:
                    x = x.abs() + 0.1
                    args = (ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(y.data_ptr()), ctypes.c_int64(n))
                    for e in (4.0, 2.5):
                        getattr(check, f"pow_{tag}")(ctypes.c_void_p(fn), ctypes.c_double(e), *args,
                                                     ctypes.c_int64(threads))
                        ok = ok and torch.equal(y, torch.pow(x, e))
            if ok:
                found = (fn, lanes)
                break
    except (OSError, AttributeError, RuntimeError):
        found = None
    _VEC_FOUND[key] = found
    return found


def _fingerprint(net, dt, batch, dtype, recorded, record) -> tuple:
    parts: list[Any] = [id(net), dt, batch, dtype, tuple(recorded), tuple(sorted(net.inputs)), record]
    for t in list(net.buffers()) + list(net.parameters()):
        parts.append((t.data_ptr(), t._version, tuple(t.shape)))
    for m in net.modules():  # and every plain attribute (method, order, a Poisson rate, ...)
        parts.append((type(m).__name__, tuple(sorted(
            (k, v) for k, v in vars(m).items()
            if not k.startswith("_") and isinstance(v, (int, float, str, bool, tuple, type(None)))))))
    for v in net.inputs.values():
        parts.append((v.data_ptr(), v._version) if isinstance(v, Tensor) else v)
    return tuple(parts)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compile_network(net, *, dt: float = 0.1, batch: int = 1, dtype: torch.dtype | None = None,
                    record_spikes: list[str] | None = None, state: dict | None = None,
                    record: dict[str, list[str]] | None = None, record_every: int = 1,
                    record_neurons: dict[str, Tensor | None] | None = None) -> CompiledStep:
    """Trace ``net``'s step, generate its C++ loop and build it (or load it from the cache).

    ``record_spikes``, ``record``, ``record_every`` and ``record_neurons`` are those of
    :meth:`Network.run <bionn.spiking.Network.run>` (``record_neurons``: group -> long
    indices or None for all).

    Raises :class:`Unsupported` (a ``ValueError``) naming what the compiled step does not
    cover, and ``RuntimeError`` when no C++ compiler is found or compilation fails.
    The result is kept for the network while its parameters and structure are unchanged.
    """
    dtype = dtype or torch.get_default_dtype()
    recorded = list(record_spikes if record_spikes is not None else
                    [g for g, grp in net.groups.items() if grp.spiking])
    record = {g: list(vs) for g, vs in (record or {}).items()}
    sel = {g: (None if (record_neurons or {}).get(g) is None
               else torch.as_tensor(record_neurons[g], dtype=torch.long).reshape(-1))
           for g in record}
    rec_key = (tuple((g, tuple(vs)) for g, vs in record.items()), int(record_every),
               tuple((g, None if s is None else tuple(s.tolist())) for g, s in sel.items()))
    key = _fingerprint(net, float(dt), int(batch), dtype, recorded, rec_key)
    cached = _PLANS.get(net)
    if cached is not None and cached[0] == key:
        return cached[1]
    _check_network(net, dtype)
    if native.compiler() is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++); use backend='torch'")
    t0 = time.perf_counter()
    if state is None:
        state = net.initial_state(batch, dt=dt, generator=torch.Generator().manual_seed(0), dtype=dtype)
    consts = net.constants(dt)
    layout = consts[id(net)]
    keys: list[tuple[str, str]] = []
    for owner, s in state.items():
        for var, v in s.items():
            if var == "delay_buffer":
                continue
            if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[0] != batch:
                raise Unsupported(f"state {owner}.{var} of shape {tuple(getattr(v, 'shape', ()))}")
            keys.append((owner, var))
    delayed_projs = [q for q in layout[1] if "delay_buffer" in state[q.name]]
    arriving = {q.name: len(keys) + r for r, q in enumerate(delayed_projs)}
    values = [state[o][v] for o, v in keys] + [state[q.name]["delay_buffer"][:, 0].contiguous()
                                                for q in delayed_projs]
    from torch.fx.experimental.proxy_tensor import make_fx

    def step(*xs):
        return _core_step(net, layout, consts, float(dt), keys, arriving, list(xs))

    from bionn.functional import spiking as functional_spiking

    saved = dict(functional_spiking._CONSTANTS)  # a constant made while tracing is a traced
    try:                                         # tensor: it must not stay in the cache
        with torch.inference_mode(False), torch.no_grad():
            gm = make_fx(torch.func.functionalize(step, remove="mutations_and_views"),
                         tracing_mode="real")(*[v.clone() for v in values])
    except Unsupported:
        raise
    except Exception as e:  # a model the trace cannot follow
        raise Unsupported(f"the step could not be traced ({type(e).__name__}: {e})") from e
    finally:
        functional_spiking._CONSTANTS.clear()
        functional_spiking._CONSTANTS.update(saved)
    gm.graph.eliminate_dead_code()
    ring_exprs = {}
    delayed = []
    for r, q in enumerate(delayed_projs):
        d = q.proj.delay_steps(dt)
        n_pre = q.proj.n_pre
        lo = q.pre_range[0] if q.pre_range is not None else 0
        ring_exprs[len(keys) + r] = _Buf(f"ring{r}", str(d * n_pre), f"head{r} * {n_pre}", "uint8_t")
        delayed.append((q.name, q.pre, lo, n_pre, d, net.groups[q.pre].n))
    key_types = [(f"{o}.{v}", _CTYPE[state[o][v].dtype]) for o, v in keys]
    gen = _Gen(gm, len(keys), batch, key_types, ring_exprs, [q.proj for q in layout[1]], delayed)
    gen.dt = float(dt)
    gen.widths = [int(state[o][v].shape[1]) for o, v in keys]
    gen.ring_spike_key = [keys.index((pre, "spike")) for _, pre, *_ in delayed]
    body, extra = gen.generate()
    rec = [(keys.index((g, "spike")), net.groups[g].n) for g in recorded]
    traces, trace_meta = [], []
    for g, vs in record.items():
        for v in vs:
            if (g, v) not in keys:
                raise Unsupported(f"record[{g!r}]: {v!r} is not a state variable the step keeps")
            k = keys.index((g, v))
            width = gen.widths[k]
            s = sel[g]
            if s is not None and (s.numel() == 0 or int(s.min()) < 0 or int(s.max()) >= width):
                raise Unsupported(f"record_neurons[{g!r}]: indices outside 0..{width - 1}")
            buf = None if s is None else gen.add_const(s.to(torch.int64)).ptr
            n_sel = width if s is None else int(s.numel())
            traces.append((k, buf, n_sel, width, key_types[k][1]))
            trace_meta.append((f"{g}.{v}", n_sel, state[g][v].dtype))
    source = _source(gen, body, extra, key_types, rec, delayed, batch, traces, int(record_every))
    trace_s = time.perf_counter() - t0
    built = native.build(source, "step", f"{CODEGEN_VERSION} {torch.__version__}")
    lib, path, compile_s, was_cached = built.lib, built.path, built.compile_s, built.cached
    fn = lib.bionn_step_loop
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 2 + [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,  # events, capacity, count
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,  # draws, strides, traces, routines
        ctypes.c_int64]  # threads
    plan = CompiledStep(keys, delayed, rec, [(g, net.groups[g].n) for g in recorded], gen.constants, batch, dtype, float(dt), source, path,
                        compile_s, trace_s, was_cached, lib, fn, list(gen.draws), trace_meta,
                        int(record_every), gen.vec_ops)
    _PLANS[net] = (key, plan)
    return plan


def _ptrs(ts: list[Tensor]):
    arr = (ctypes.c_void_p * max(1, len(ts)))()
    for i, t in enumerate(ts):
        arr[i] = t.data_ptr()
    return arr


class CompiledLoop:
    """Runs a :class:`CompiledStep` on a state dict, in place, chunk by chunk."""

    def __init__(self, plan: CompiledStep, state: dict,
                 generator: torch.Generator | None = None) -> None:
        self.plan = plan
        self.generator = generator
        self.state = state
        for o, v in plan.keys:  # the loop writes the state tensors in place, row by row
            if not state[o][v].is_contiguous():
                state[o][v] = state[o][v].contiguous()
        for name, *_ in plan.delayed:
            state[name]["delay_buffer"] = state[name]["delay_buffer"].contiguous()
        self.scratch = [torch.empty_like(state[o][v]) for o, v in plan.keys]
        self.heads = (ctypes.c_int64 * max(1, len(plan.delayed)))()
        self.events = torch.empty(0, dtype=torch.int64)
        self.n_ev = ctypes.c_int64(0)
        # the vector routines this step calls, in their slots (see _Gen.barrier)
        self.F = (ctypes.c_void_p * (2 * len(_VEC_OPS)))()
        for op, dt in plan.vec_ops:
            self.F[2 * list(_VEC_OPS).index(op) + (dt != torch.float64)] = _vector_routine(op, dt)[0]

    def run(self, steps: int, step0: int) -> tuple[list[Tensor], list[Tensor]]:
        """Advance ``steps`` steps (the run's steps ``step0 ..``). Returns the spike events as
        ``(group, trial, step, neuron)`` rows and, per recorded variable, its samples
        ``(n_records, batch, n_recorded)``."""
        plan, state = self.plan, self.state
        cur = [state[o][v] for o, v in plan.keys]
        rings = [state[name]["delay_buffer"] for name, *_ in plan.delayed]
        S, S2, C, R = _ptrs(cur), _ptrs(self.scratch), _ptrs(plan.constants), _ptrs(rings)
        per_step = sum(plan.batch * n for _, n in plan.recorded) * 4
        out: list[Tensor] = []
        done = 0
        _, Dstride, keep = self._draw(steps)
        every = plan.record_every
        n_rec = (step0 + steps) // every - step0 // every
        samples = [torch.empty(n_rec, plan.batch, n, dtype=dt) for _, n, dt in plan.traces]
        while done < steps:
            r0 = (step0 + done) // every - step0 // every
            Tr = (ctypes.c_void_p * max(1, len(samples)))()
            for j, x in enumerate(samples):
                Tr[j] = x.data_ptr() + r0 * x.stride(0) * x.element_size() if x.numel() else 0
            cap = max(per_step, min(per_step * (steps - done), max(4096, per_step * 8)))
            if self.events.numel() < cap:
                self.events = torch.empty(cap, dtype=torch.int64)
            self.n_ev.value = 0
            k = plan._fn(S, S2, C, R, self.heads, steps - done, step0 + done, self.events.data_ptr(),
                         cap, ctypes.byref(self.n_ev), _offset(Dstride, keep, done), Dstride, Tr, self.F,
                         torch.get_num_threads())
            if self.n_ev.value:
                out.append(self.events[: self.n_ev.value].view(-1, 4).clone())
            done += k
        return out, samples


    def _draw(self, steps: int):
        """The random numbers of ``steps`` steps, drawn as the torch path draws them: per step,
        each draw of the graph in order. Only uniforms (Poisson inputs): all in one call, the
        same stream. Returns the pointer array, per-draw step strides and the tensors."""
        draws, gen = self.plan.draws, self.generator
        n = len(draws)
        stride = (ctypes.c_int64 * max(1, n))()
        if n == 0:
            return (ctypes.c_void_p * 1)(), stride, []
        if all(k == "uniform" and dt == torch.float64 for k, _, dt in draws):
            per = sum(m for _, m, _ in draws)
            u = torch.rand(steps * per, generator=gen, dtype=torch.float64)
            offs, keep = 0, []
            for j, (_, m, _) in enumerate(draws):
                stride[j] = per
                keep.append(u[offs:])
                offs += m
            return None, stride, keep
        bufs = [torch.empty(steps, m, dtype=dt) for _, m, dt in draws]
        shapes = [(self.plan.batch, m // self.plan.batch) for _, m, _ in draws]
        for s in range(steps):
            for j, (kind, _, dt) in enumerate(draws):
                fn = torch.randn if kind == "normal" else torch.rand
                fn(shapes[j], generator=gen, dtype=dt, out=bufs[j][s].view(shapes[j]))
        for j, (_, m, _) in enumerate(draws):
            stride[j] = m
        return None, stride, bufs


def _offset(stride, keep: list[Tensor], done: int):
    """Pointers to the draws of step ``done`` on (the loop indexes ``s * stride`` from there)."""
    arr = (ctypes.c_void_p * max(1, len(keep)))()
    for j, t in enumerate(keep):
        arr[j] = t.data_ptr() + done * stride[j] * t.element_size()
    return arr

