r"""NIR interchange: export bionn spiking networks to a ``nir.NIRGraph`` and import NIR graphs.

NIR (the Neuromorphic Intermediate Representation, optional extra ``pip install 'bionn[snn]'``)
describes neurons in **continuous time, seconds** (bionn: ms, ``time_scale = 1000`` ms per
NIR time unit)::

    LIF:     tau dv/dt = (v_leak - v) + r I,       spike at v > v_threshold, v <- v_reset
    CubaLIF: tau_syn dI/dt = -I + w_in S,  tau_mem dv/dt = (v_leak - v) + r I
    LI:      tau dv/dt = (v_leak - v) + r I        (no spikes: a readout)
    IF:      dv/dt = r I

and carries no time step, integrator, reset mode or surrogate: the importer picks them.
:func:`from_nir` takes ``dt`` (ms), ``method`` (``"exact"``: ``beta = exp(-dt / tau)``,
bionn's; ``"euler"``: ``beta = 1 - dt / tau``, the peers'), ``reset`` (``"value"``: NIR's;
``"subtract"``; ``"subtract_after_decay"``: ``V_t = beta V_{t-1} + ... - z_{t-1} (V_th - v_reset)``,
the subtraction not decayed) and ``current`` (how a CubaLIF's input enters ``I``: ``"jump"``,
``I += w_in u``, bionn's and Norse's; ``"integrate"``, ``I += (1 - d) w_in u`` with
``d`` the synaptic decay, the Euler form of the equation above). A graph written by
:func:`to_nir` stores its ``dt``, ``method``, ``reset`` and ``current`` in its metadata, and
:func:`from_nir` reads them back: a round trip gives the same spikes.

Peers (tests/test_nir.py): snnTorch 1.0 writes ``tau = dt / (1 - beta)``, ``r = tau / dt`` with
``dt = 1e-4`` s: import with ``dt=0.1`` (ms), ``method="euler"`` and
``reset="subtract_after_decay"`` (its default reset; ``"value"`` with ``v_reset = 0`` for its
``"zero"``). Norse 1.1 writes ``tau = dt / tau_inv`` (its ``dt`` times the time constant,
not the time constant): import with ``dt = 1000 dt_norse**2`` ms (``1e-3`` for Norse's
``dt = 1e-3`` s), ``method="euler"``, ``current="jump"``.

Exported: ``nn.Linear`` (``Affine`` / ``Linear``), ``nn.Conv2d``, ``nn.Flatten``,
:class:`~bionn.spiking.SpikingLayer` (``Affine`` + ``LIF`` or ``CubaLIF``),
:class:`~bionn.spiking.SpikingRNN` (input ``Affine``, ``LIF``/``CubaLIF``, recurrent
``Linear`` edge back to the neurons, readout ``Affine`` + ``LI``),
:class:`~bionn.spiking.LeakyReadout` (``Affine`` + ``LI``), and :class:`SpikingSequential`
/ ``nn.Sequential`` of these. Refused with a ``ValueError`` naming the node: neuron classes
other than LIF (ALIF, AdEx, Izhikevich, ...), conductance and dual-exponential synapses,
a refractory period.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from bionn.spiking.neurons import LIF
from bionn.spiking.trainable import LeakyReadout, SpikingCell, SpikingLayer, SpikingRNN

__all__ = ["SpikingSequential", "from_nir", "to_nir"]

#: NIR's unit of time in ms (seconds)
TIME_SCALE = 1e3
_BIG_TAU = 1e30  # an IF neuron is a LIF whose leak is below float64's resolution
_RESETS = ("value", "subtract", "subtract_after_decay")


def _nir() -> Any:
    try:
        import nir
    except ImportError:  # pragma: no cover - the extra is installed in the tests
        raise ImportError("NIR interchange needs the optional extra: pip install 'bionn[snn]'") from None
    return nir


# ---------------------------------------------------------------------------------- modules
class _Neurons(nn.Module):
    """A :class:`SpikingCell` over ``(batch, time, *shape)`` (features flattened)."""

    def __init__(self, cell: SpikingCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        u = x.reshape(b, t, -1)
        return self.cell.scan(u)[0].reshape(x.shape)


class _LeakyIntegrator(nn.Module):
    """NIR's LI: ``y_t = d y_{t-1} + (1 - d)(v_leak + r x_t)``, ``d = exp(-dt/tau)`` or ``1 - dt/tau``."""

    def __init__(self, tau: Tensor, r: Tensor, v_leak: Tensor, dt: float, method: str) -> None:
        super().__init__()
        self.dt, self.method = float(dt), method
        for k, v in (("tau", tau), ("r", r), ("v_leak", v_leak)):
            self.register_buffer(k, torch.as_tensor(v, dtype=torch.get_default_dtype()).flatten())

    def decay(self) -> Tensor:
        return torch.exp(-self.dt / self.tau) if self.method == "exact" else 1.0 - self.dt / self.tau

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        u = x.reshape(b, t, -1)
        d, y, out = self.decay(), torch.zeros_like(u[:, 0]), []
        for k in range(t):
            y = torch.lerp(self.v_leak + self.r * u[:, k], y, d)
            out.append(y)
        return torch.stack(out, 1).reshape(x.shape)


class SpikingSequential(nn.Module):
    r"""Layers run one after the other over a whole sequence, ``(batch, time, ...)`` in and out.

    Spiking layers (:class:`~bionn.spiking.SpikingLayer`, a :class:`~bionn.spiking.SpikingRNN`,
    whose spikes are passed on, neurons and leaky integrators imported from NIR, a
    :class:`~bionn.spiking.LeakyReadout`) see the sequence; stateless layers (``nn.Linear``,
    ``nn.Conv2d``, ``nn.Flatten``) are applied at every step (time folded into the batch).
    What :func:`from_nir` returns.

    Example:
        >>> import torch
        >>> from bionn.spiking import SpikingLayer
        >>> net = SpikingSequential(SpikingLayer(4, 3, synapse="delta", t_refractory=0.0),
        ...                         torch.nn.Linear(3, 2))
        >>> net(torch.rand(2, 5, 4)).shape
        torch.Size([2, 5, 2])
    """

    _TEMPORAL = (SpikingLayer, SpikingRNN, LeakyReadout, _Neurons, _LeakyIntegrator)

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(batch, time, ...)`` -> the last layer's output ``(batch, time, ...)``."""
        for m in self.layers:
            if isinstance(m, SpikingRNN):
                x = m(x)[1]
            elif isinstance(m, self._TEMPORAL):
                x = m(x)
            else:
                b, t = x.shape[:2]
                x = m(x.flatten(0, 1)).unflatten(0, (b, t))
        return x


# ---------------------------------------------------------------------------------- export
def _np(t: Tensor | float, n: int | None = None) -> np.ndarray:
    a = torch.as_tensor(t).detach().cpu()
    if n is not None:
        a = a.expand(n) if a.numel() == 1 else a.reshape(n)
    return a.numpy().copy()


def _neuron_node(cell: SpikingCell, name: str, time_scale: float) -> Any:
    nir = _nir()
    nr = cell.neuron
    if type(nr) is not LIF:
        raise ValueError(f"node {name!r}: {type(nr).__name__} neurons have no NIR node "
                         "(NIR has LIF, CubaLIF, LI and IF)")
    if cell.synapse not in ("delta", "exponential"):
        raise ValueError(f"node {name!r}: the {cell.synapse!r} synapse has no NIR node "
                         "(NIR has the delta (LIF) and exponential current (CubaLIF) synapses)")
    if cell.refractory:
        raise ValueError(f"node {name!r}: NIR has no refractory period; build the cell with "
                         "t_refractory=0 or refractory=False")
    n = cell.n
    p = dict(r=_np(nr.R, n), v_leak=_np(nr.V_rest, n), v_threshold=_np(nr.V_th, n),
             v_reset=_np(nr.V_reset, n))
    tau = _np(nr.tau, n) / time_scale
    if cell.synapse == "delta":
        return nir.LIF(tau=tau, **p)
    return nir.CubaLIF(tau_mem=tau, tau_syn=_np(cell.tau_syn, n) / time_scale,
                       w_in=np.ones_like(tau), **p)


def _linear_node(weight: Tensor, bias: Tensor | None) -> Any:
    nir = _nir()
    if bias is None:
        return nir.Linear(weight=_np(weight))
    return nir.Affine(weight=_np(weight), bias=_np(bias))


def _li_node(n: int, tau: Tensor, time_scale: float) -> Any:
    nir = _nir()
    return nir.LI(tau=_np(tau, n) / time_scale, r=np.ones(n), v_leak=np.zeros(n))


def _layers(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, SpikingSequential):
        return list(model.layers)
    if isinstance(model, nn.Sequential):
        return list(model)
    return [model]


def to_nir(model: nn.Module, *, time_scale: float = TIME_SCALE) -> Any:
    r"""A trained bionn spiking network as a ``nir.NIRGraph`` (continuous time, seconds).

    ``tau`` (ms) becomes ``tau / time_scale``; a LIF cell's ``R``, ``V_rest``, ``V_th``,
    ``V_reset`` become ``r``, ``v_leak``, ``v_threshold``, ``v_reset``; an exponential synapse
    becomes a ``CubaLIF`` (``tau_syn``, ``w_in = 1``); a :class:`SpikingRNN`'s recurrent
    weight a ``Linear`` node on the edges ``lif -> rec -> lif``. The graph's metadata keeps
    bionn's ``dt`` (in NIR's unit), ``method``, ``reset`` and ``current`` so that
    :func:`from_nir` rebuilds the same discrete dynamics.

    Args:
        model: a :class:`SpikingSequential`, ``nn.Sequential``, :class:`SpikingLayer`,
            :class:`SpikingRNN`, :class:`LeakyReadout`, ``nn.Linear``/``Conv2d``/``Flatten``.
        time_scale: ms per NIR time unit (1000: seconds).

    Raises:
        ValueError: a layer or neuron NIR cannot express (ALIF, AdEx, Izhikevich, ..., COBA or
            dual-exponential synapses, refractoriness), naming the node.

    Example:
        >>> from bionn.spiking import SpikingLayer
        >>> g = to_nir(SpikingLayer(4, 3, synapse="delta", t_refractory=0.0))
        >>> sorted(type(n).__name__ for n in g.nodes.values())
        ['Affine', 'Input', 'LIF', 'Output']
    """
    nir = _nir()
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    prev = "input"
    meta: dict[str, Any] = {}
    first_shape: tuple[int, ...] | None = None

    out_n: list[int] = [0]

    def add(name: str, node: Any) -> None:
        nonlocal prev
        size = getattr(node, "weight", None)
        if isinstance(node, (nir.Affine, nir.Linear)):
            out_n[0] = int(np.asarray(node.weight).shape[0])
        elif size is None and hasattr(node, "v_leak"):
            out_n[0] = int(np.asarray(node.v_leak).size)
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    def note_cell(cell: SpikingCell) -> None:
        m = {"dt": cell.dt / time_scale, "method": "euler" if cell.neuron.method == "euler" else "exact",
             "reset": cell.reset_mode, "current": "jump", "synapse_method": "exact"}
        for k, v in m.items():
            if k in meta and meta[k] != v:
                raise ValueError(f"the cells differ in {k} ({meta[k]} and {v}); NIR stores one per graph")
            meta[k] = v

    for i, m in enumerate(_layers(model)):
        name = f"{i}"
        if isinstance(m, SpikingLayer):
            first_shape = first_shape or (m.linear.in_features,)
            add(f"{name}.linear", _linear_node(m.linear.weight, m.linear.bias))
            add(f"{name}.lif", _neuron_node(m.cell, f"{name}.lif", time_scale))
            note_cell(m.cell)
        elif isinstance(m, _Neurons):
            add(f"{name}.lif", _neuron_node(m.cell, f"{name}.lif", time_scale))
            note_cell(m.cell)
        elif isinstance(m, SpikingRNN):
            first_shape = first_shape or (m.n_input,)
            if m.cell.n_channels != 1:
                raise ValueError(f"node {name}.lif: the conductance synapse has no NIR node")
            add(f"{name}.input", _linear_node(m.weight_in, m.bias_rec if m.bias_rec is not None
                                              else torch.zeros(m.n_hidden)))
            add(f"{name}.lif", _neuron_node(m.cell, f"{name}.lif", time_scale))
            note_cell(m.cell)
            nodes[f"{name}.rec"] = nir.Linear(weight=_np(m.recurrent_weight()))
            edges += [(f"{name}.lif", f"{name}.rec"), (f"{name}.rec", f"{name}.lif")]
            add(f"{name}.readout", _linear_node(m.weight_out, m.bias_out))
            if m.readout_mode == "membrane":
                add(f"{name}.li", _li_node(m.n_output, m.tau_out, time_scale))
                meta.setdefault("dt", m.dt / time_scale)
        elif isinstance(m, LeakyReadout):
            first_shape = first_shape or (m.linear.in_features,)
            add(f"{name}.linear", _linear_node(m.linear.weight, m.linear.bias))
            add(f"{name}.li", _li_node(m.linear.out_features, m.tau, time_scale))
            meta.setdefault("dt", m.dt / time_scale)
        elif isinstance(m, _LeakyIntegrator):
            add(f"{name}.li", nir.LI(tau=_np(m.tau) / time_scale, r=_np(m.r), v_leak=_np(m.v_leak)))
        elif isinstance(m, nn.Linear):
            first_shape = first_shape or (m.in_features,)
            add(name, _linear_node(m.weight, m.bias))
        elif isinstance(m, nn.Conv2d):
            if not isinstance(m.padding, tuple):
                raise ValueError(f"node {name!r}: Conv2d padding {m.padding!r} is not exported; use numbers")
            add(name, nir.Conv2d(input_shape=None, weight=_np(m.weight), stride=m.stride,
                                 padding=m.padding, dilation=m.dilation, groups=m.groups,
                                 bias=_np(m.bias) if m.bias is not None
                                 else np.zeros(m.out_channels)))
        elif isinstance(m, nn.Flatten):
            add(name, nir.Flatten(input_type={"input": None}, start_dim=m.start_dim, end_dim=m.end_dim))
        else:
            raise ValueError(f"node {name!r}: {type(m).__name__} has no NIR node")
    nodes["input"] = nir.Input(input_type={"input": np.array(first_shape or (0,))})
    nodes["output"] = nir.Output(output_type={"output": np.array((out_n[0],))})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


# ---------------------------------------------------------------------------------- import
def _pair(v: Any) -> Any:
    if isinstance(v, str):
        return v
    t = tuple(int(x) for x in np.atleast_1d(v).tolist())
    return t[0] if len(t) == 1 else t


def _arr(a: Any) -> Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.get_default_dtype())


def _flatten(graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Nested graphs inlined: ``(nodes, edges)`` with subgraph nodes named ``outer.inner``."""
    nir = _nir()
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    sub_in: dict[str, list[str]] = {}
    sub_out: dict[str, list[str]] = {}
    for k, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            n2, e2 = _flatten(node, f"{prefix}{k}.")
            ins = [f"{prefix}{k}.{i}" for i, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [f"{prefix}{k}.{i}" for i, v in node.nodes.items() if isinstance(v, nir.Output)]
            sub_in[prefix + k] = [b for a, b in e2 if a in ins]
            sub_out[prefix + k] = [a for a, b in e2 if b in outs]
            nodes.update({n: v for n, v in n2.items() if n not in ins and n not in outs})
            edges += [(a, b) for a, b in e2 if a not in ins and b not in outs]
        else:
            nodes[prefix + k] = node
    for a, b in graph.edges:
        for a2 in sub_out.get(prefix + a, [prefix + a]):
            for b2 in sub_in.get(prefix + b, [prefix + b]):
                edges.append((a2, b2))
    return nodes, edges


def _cell_from(node: Any, name: str, dt: float, method: str, reset: str, current: str,
               time_scale: float, cell_options: Mapping[str, Any], syn_method: str) -> SpikingCell:
    nir = _nir()
    opts: dict[str, Any] = dict(t_refractory=0.0)
    if isinstance(node, nir.IF):
        r = _arr(node.r).flatten()
        n = r.numel()
        opts.update(tau=torch.full((n,), _BIG_TAU), R=r * _BIG_TAU / time_scale, V_rest=0.0,
                    V_th=_arr(node.v_threshold).flatten(), method="euler", synapse="delta")
        v_reset = _arr(node.v_reset).flatten() if node.v_reset is not None else torch.zeros(n)
        decay = torch.ones(n)
    else:
        tau = _arr(node.tau if isinstance(node, nir.LIF) else node.tau_mem).flatten() * time_scale
        n = tau.numel()
        v_leak = _arr(node.v_leak).flatten()
        r = _arr(node.r).flatten().expand(n)
        v_reset = _arr(node.v_reset).flatten() if node.v_reset is not None else v_leak
        decay = torch.exp(-dt / tau) if method == "exact" else 1.0 - dt / tau
        opts.update(tau=tau, V_rest=v_leak, V_th=_arr(node.v_threshold).flatten())
        if method == "euler":
            opts["method"] = "euler"
        if isinstance(node, nir.CubaLIF):
            tau_syn = _arr(node.tau_syn).flatten() * time_scale
            if not bool((tau_syn == tau_syn[0]).all()):
                raise ValueError(f"node {name!r}: bionn's synapse has one tau_syn per layer")
            ts = float(tau_syn[0])
            d = math.exp(-dt / ts) if syn_method == "exact" else 1.0 - dt / ts
            if not 0.0 <= d < 1.0:
                raise ValueError(f"node {name!r}: dt={dt:g} ms is too large for tau_syn={ts:g} ms")
            r = r * _arr(node.w_in).flatten().expand(n) * (1.0 - d if current == "integrate" else 1.0)
            opts.update(synapse="exponential", tau_syn=-dt / math.log(d) if d > 0 else dt * 1e-3)
        else:
            opts["synapse"] = "delta"
        opts["R"] = r
    v_th = opts["V_th"]
    if reset == "subtract_after_decay":  # subtract V_th - v_reset after the next step's decay
        v_reset = v_th - (v_th - v_reset) / decay
    opts["V_reset"] = v_reset
    opts["reset"] = "value" if reset == "value" else "subtract"
    opts.update(cell_options)
    return SpikingCell("LIF", n, dt=dt, **opts)


def from_nir(graph: Any, dt: float | None = None, *, method: Literal["exact", "euler"] | None = None,
             reset: Literal["value", "subtract", "subtract_after_decay"] | None = None,
             current: Literal["jump", "integrate"] | None = None, time_scale: float = TIME_SCALE,
             **cell_options: Any) -> SpikingSequential:
    r"""A NIR graph as a bionn :class:`SpikingSequential` (``(batch, time, ...)`` in and out).

    ``Affine``/``Linear`` followed by ``LIF``/``CubaLIF``/``IF`` becomes a
    :class:`~bionn.spiking.SpikingLayer`; with a recurrent edge (neuron -> ``Linear``/``Affine``
    -> the same neuron) a :class:`~bionn.spiking.SpikingRNN` (``readout="linear"``, its
    spikes passed on; a recurrent bias adds to the input bias); ``LI`` a leaky integrator;
    ``Conv2d``, ``Flatten`` and other ``Affine``/``Linear`` the torch layers, applied per
    step. The discrete dynamics at ``dt`` (ms)::

        LIF:     V_t = d V_{t-1} + (1 - d)(v_leak + r I_t),  d = exp(-dt/tau) ("exact") or 1 - dt/tau ("euler")
        CubaLIF: I_t = d_s I_{t-1} + w_in u_t ("jump") or + (1 - d_s) w_in u_t ("integrate")
        IF:      V_t = V_{t-1} + dt r I_t
        spike z_t = H(V_t - v_threshold), then the reset ("value": V <- v_reset, ...)

    Args:
        graph: a ``nir.NIRGraph`` (nested graphs are inlined).
        dt: step (ms); default the graph's metadata (:func:`to_nir` writes it).
        method, reset, current: the discretization (module docstring); defaults from the
            metadata, else ``"exact"``, ``"value"``, ``"jump"``.
        time_scale: ms per NIR time unit (1000: seconds).
        **cell_options: more :class:`~bionn.spiking.SpikingCell` options (``surrogate``, ``scale``, ...).

    Example:
        >>> import torch
        >>> from bionn.spiking import SpikingLayer
        >>> layer = SpikingLayer(4, 3, synapse="exponential", t_refractory=0.0)
        >>> x = torch.rand(2, 20, 4) * 30
        >>> back = from_nir(to_nir(layer))
        >>> torch.equal(back(x), layer(x))
        True
    """
    nir = _nir()
    meta = dict(getattr(graph, "metadata", None) or {})
    if dt is None:
        if "dt" not in meta:
            raise ValueError("give dt (ms): the graph does not store one")
        dt = float(meta["dt"]) * time_scale
    method = method or meta.get("method", "exact")
    reset = reset or meta.get("reset", "value")
    current = current or meta.get("current", "jump")
    # bionn's synapse decays exactly whatever the neuron's integrator (written by to_nir)
    syn_method = meta.get("synapse_method", method) if "method" in meta and method == meta["method"] else method
    if method not in ("exact", "euler"):
        raise ValueError(f"method must be 'exact' or 'euler'; got {method!r}")
    if reset not in _RESETS:
        raise ValueError(f"reset must be one of {_RESETS}; got {reset!r}")
    if current not in ("jump", "integrate"):
        raise ValueError(f"current must be 'jump' or 'integrate'; got {current!r}")
    nodes, edges = _flatten(graph)
    neuron_types = (nir.LIF, nir.CubaLIF, nir.IF)
    weight_types = (nir.Affine, nir.Linear)
    supported = (*neuron_types, *weight_types, nir.LI, nir.Conv2d, nir.Flatten, nir.Input, nir.Output)
    for k, node in nodes.items():
        if not isinstance(node, supported):
            raise ValueError(f"node {k!r}: NIR {type(node).__name__} is not imported; supported: "
                             f"{sorted(t.__name__ for t in supported)}")
    # recurrent loops: neuron -> weight -> the same neuron
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        succ[a].append(b)
    recurrent: dict[str, str] = {}
    for k, node in nodes.items():
        if isinstance(node, neuron_types):
            for w in succ[k]:
                if isinstance(nodes[w], weight_types) and succ[w] == [k]:
                    recurrent[k] = w
    loop_edges = {(k, w) for k, w in recurrent.items()} | {(w, k) for k, w in recurrent.items()}
    chain_succ = {k: [b for b in succ[k] if (k, b) not in loop_edges] for k in nodes}
    starts = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(starts) != 1:
        raise ValueError(f"the graph needs one Input node; found {starts}")
    order: list[str] = []
    k = starts[0]
    while True:
        nxt = chain_succ[k]
        if not nxt:
            break
        if len(nxt) > 1:
            raise ValueError(f"node {k!r} has several successors {nxt}: only chains (and "
                             "recurrent loops) are imported")
        k = nxt[0]
        if isinstance(nodes[k], nir.Output):
            break
        order.append(k)

    def weight(node: Any) -> tuple[Tensor, Tensor | None]:
        return _arr(node.weight), _arr(node.bias) if isinstance(node, nir.Affine) else None

    layers: list[nn.Module] = []
    i = 0
    while i < len(order):
        k, node = order[i], nodes[order[i]]
        nxt = order[i + 1] if i + 1 < len(order) else None
        if isinstance(node, weight_types) and nxt is not None and isinstance(nodes[nxt], neuron_types):
            w, b = weight(node)
            cell = _cell_from(nodes[nxt], nxt, dt, method, reset, current, time_scale, cell_options, syn_method)
            if nxt in recurrent:
                w_rec, b_rec = weight(nodes[recurrent[nxt]])
                bias = (b if b is not None else 0.0) + (b_rec if b_rec is not None else 0.0)
                net = SpikingRNN(w.shape[1], w.shape[0], 1, cell=cell, dt=dt, readout="linear",
                                 bias=True)
                with torch.no_grad():
                    net.weight_in.copy_(w)
                    net.weight_rec.copy_(w_rec)
                    assert net.bias_rec is not None
                    net.bias_rec.copy_(torch.as_tensor(bias).expand(w.shape[0]))
                layers.append(net)
            else:
                layer = SpikingLayer(w.shape[1], w.shape[0], cell, dt=dt, bias=b is not None)
                with torch.no_grad():
                    layer.linear.weight.copy_(w)
                    if b is not None:
                        layer.linear.bias.copy_(b)
                layers.append(layer)
            i += 2
            continue
        if k in recurrent:
            raise ValueError(f"node {k!r}: a recurrent neuron must follow an Affine or Linear node")
        if isinstance(node, weight_types):
            w, b = weight(node)
            lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            with torch.no_grad():
                lin.weight.copy_(w)
                if b is not None:
                    lin.bias.copy_(b)
            layers.append(lin)
        elif isinstance(node, neuron_types):
            layers.append(_Neurons(_cell_from(node, k, dt, method, reset, current, time_scale,
                                              cell_options, syn_method)))
        elif isinstance(node, nir.LI):
            tau = _arr(node.tau).flatten() * time_scale
            layers.append(_LeakyIntegrator(tau, _arr(node.r).flatten(), _arr(node.v_leak).flatten(),
                                           dt, method))
        elif isinstance(node, nir.Conv2d):
            wt = _arr(node.weight)
            conv = nn.Conv2d(wt.shape[1] * int(node.groups), wt.shape[0], tuple(wt.shape[-2:]),
                             stride=_pair(node.stride), padding=_pair(node.padding),
                             dilation=_pair(node.dilation), groups=int(node.groups),
                             bias=node.bias is not None)
            with torch.no_grad():
                conv.weight.copy_(wt)
                if node.bias is not None:
                    conv.bias.copy_(_arr(node.bias))
            layers.append(conv)
        elif isinstance(node, nir.Flatten):
            layers.append(nn.Flatten(int(node.start_dim), int(node.end_dim)))
        i += 1
    return SpikingSequential(*layers)
