"""Cell-type tables: the cell types of a local circuit and the rules that connect them.

One :class:`CellTypeTable` serves every model: a spatially embedded area
(:class:`bionn.rate.spatial.SpatialArea`, channels per type), a non-spatial
rate network (:meth:`bionn.rate.CTRNN.from_cell_types`, neurons per type, blockwise
masks and signs), a spiking network (:func:`bionn.spiking.connectome.from_cell_types`)
and anything that takes a :class:`~bionn.circuits.Connectivity`
(:meth:`CellTypeTable.connectivity`) or a :class:`~bionn.circuits.Circuit`.

A type has a name, a size (``count``: neurons, or channels per position in a
spatial sheet; or ``density``: a share of a total), a sign (+1 excitatory,
-1 inhibitory, 0 unsigned), a time constant (ms) and a neuron nonlinearity.
A connection ``pre -> post`` has a synaptic nonlinearity (applied per synapse
group before summation), a spatial extent (a convolution kernel size) and an
initial strength (the expected summed weight a postsynaptic neuron receives
from all presynaptic neurons of the type). Type pairs that are not listed are
not connected. Matrices are ``(post, pre)`` as everywhere in bionn.

Tables are immutable; :meth:`~CellTypeTable.connect`,
:meth:`~CellTypeTable.disconnect`, :meth:`~CellTypeTable.update` and friends
return a modified copy.

Example:
    >>> t = CellTypeTable(
    ...     [CellType("E", count=4, sign=+1, tau=20.0), CellType("I", count=1, sign=-1, tau=10.0)],
    ...     [TypeConnection("E", "E", strength=0.5), TypeConnection("E", "I"),
    ...      TypeConnection("I", "E", strength=1.5)])
    >>> t.sign().tolist()
    [1.0, 1.0, 1.0, 1.0, -1.0]
    >>> t.type_matrix("allowed").tolist()   # [post][pre]
    [[1.0, 1.0], [1.0, 0.0]]
    >>> t2 = t.connect("I", "I", strength=0.5)   # a modified copy
    >>> len(t.connections), len(t2.connections)
    (3, 4)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

from bionn.circuits.connect import all_to_all, blocks
from bionn.circuits.connectivity import Circuit, Connectivity
from bionn.functional.rate import ACTIVATIONS

__all__ = [
    "CellType",
    "TypeConnection",
    "CellTypeTable",
    "SYNAPSE_NONLINEARITIES",
    "SIGNS",
]

SIGNS = {"E": 1, "excitatory": 1, "I": -1, "inhibitory": -1, "unsigned": 0, "hybrid": 0}
SYNAPSE_NONLINEARITIES = ("identity", *ACTIVATIONS)
_SIGN_WORD = {1: "E", -1: "I", 0: "unsigned"}


def _sign_value(sign: Any, where: str) -> int:
    if isinstance(sign, str):
        if sign not in SIGNS:
            raise ValueError(f"{where}: sign must be +1, -1, 0 or one of {sorted(SIGNS)}; got {sign!r}")
        return SIGNS[sign]
    if isinstance(sign, bool) or sign not in (1, -1, 0):
        raise ValueError(f"{where}: sign must be +1 (E), -1 (I) or 0 (unsigned); got {sign!r}")
    return int(sign)


@dataclass(frozen=True)
class CellType:
    """One cell type.

    Args:
        name: unique name (``"E"``, ``"PV"``, ...).
        count: number of neurons (non-spatial models) or channels per sheet
            position ("subtypes", spatial models). Give ``count`` or ``density``.
        density: share of a total number of neurons, in (0, 1], used when the
            table is expanded to ``n`` neurons (see :meth:`CellTypeTable.sizes`).
        sign: +1 / ``"E"`` excitatory, -1 / ``"I"`` inhibitory, 0 / ``"unsigned"``
            (no sign constraint). Dale's law follows from the presynaptic sign.
        tau: membrane time constant (ms), > 0.
        nonlinearity: neuron rate function, a key of
            :data:`bionn.functional.rate.ACTIVATIONS`.
    """

    name: str
    count: int | None = None
    density: float | None = None
    sign: int = 1
    tau: float = 20.0
    nonlinearity: str = "relu"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "->" in self.name:
            raise ValueError(f"cell type name must be a non-empty string without '->'; got {self.name!r}")
        where = f"cell type {self.name!r}"
        object.__setattr__(self, "sign", _sign_value(self.sign, where))
        if self.count is not None:
            if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count <= 0:
                raise ValueError(f"{where}: count must be a positive integer; got {self.count!r}")
        if self.density is not None:
            d = self.density
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= 1:
                raise ValueError(f"{where}: density must be a number in (0, 1]; got {d!r}")
            object.__setattr__(self, "density", float(d))
        if self.count is None and self.density is None:
            object.__setattr__(self, "count", 1)
        tau = self.tau
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"{where}: tau must be a positive number of ms; got {tau!r}")
        object.__setattr__(self, "tau", float(tau))
        if self.nonlinearity not in ACTIVATIONS:
            raise ValueError(
                f"{where}: nonlinearity must be one of {sorted(ACTIVATIONS)}; got {self.nonlinearity!r}"
            )

    @property
    def sign_label(self) -> str:
        """``"E"``, ``"I"`` or ``"unsigned"``."""
        return _SIGN_WORD[self.sign]


@dataclass(frozen=True)
class TypeConnection:
    """The rule for synapses from every neuron of type ``pre`` onto type ``post``.

    Args:
        pre, post: cell type names (the sending and the receiving type).
        allowed: whether the synapses exist (a listed ``allowed=False`` is an explicit "no").
        synapse: synaptic nonlinearity ``g`` applied to this synapse group's summed
            input before it joins the other groups: ``"identity"`` or a key of
            :data:`~bionn.functional.rate.ACTIVATIONS`.
        extent: spatial extent, the (odd) convolution kernel size in sheet positions.
        strength: initial strength >= 0: the expected summed weight one postsynaptic
            neuron receives from all neurons of type ``pre`` (per unit rate).
    """

    pre: str
    post: str
    allowed: bool = True
    synapse: str = "identity"
    extent: int = 3
    strength: float = 1.0

    def __post_init__(self) -> None:
        where = f"connection {self.pre!r}->{self.post!r}"
        if not isinstance(self.allowed, bool):
            raise ValueError(f"{where}: allowed must be True or False; got {self.allowed!r}")
        if self.synapse not in SYNAPSE_NONLINEARITIES:
            raise ValueError(f"{where}: synapse must be one of {list(SYNAPSE_NONLINEARITIES)}; got {self.synapse!r}")
        e = self.extent
        if isinstance(e, bool) or not isinstance(e, int) or e <= 0 or e % 2 == 0:
            raise ValueError(f"{where}: extent (kernel size) must be a positive odd integer; got {e!r}")
        s = self.strength
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s >= 0):
            raise ValueError(f"{where}: strength must be a finite number >= 0; got {s!r}")
        object.__setattr__(self, "strength", float(s))

    @property
    def key(self) -> str:
        """``"pre->post"``."""
        return f"{self.pre}->{self.post}"


def _as_types(types: Iterable[CellType | Mapping[str, Any]]) -> tuple[CellType, ...]:
    out = []
    for t in types:
        if isinstance(t, Mapping):
            t = CellType(**t)
        if not isinstance(t, CellType):
            raise ValueError(f"types must be CellType objects or dicts; got {t!r}")
        out.append(t)
    return tuple(out)


def _as_connections(conns: Iterable[TypeConnection | Mapping[str, Any]]) -> tuple[TypeConnection, ...]:
    out = []
    for c in conns:
        if isinstance(c, Mapping):
            c = TypeConnection(**c)
        if not isinstance(c, TypeConnection):
            raise ValueError(f"connections must be TypeConnection objects or dicts; got {c!r}")
        out.append(c)
    return tuple(out)


@dataclass(frozen=True)
class CellTypeTable:
    """Cell types and the connection rules between them.

    Args:
        types: the :class:`CellType` list (or dicts of its fields); order fixes the
            neuron / channel order everywhere.
        connections: :class:`TypeConnection` list (or dicts); unlisted pairs are not connected.
        inputs: types that receive the external / feedforward input (default: the
            excitatory types, or every type if there is none).
        outputs: types whose activity is read out and projects to other areas
            (default: the excitatory types, or every type if there is none).
        name: a label (motif name) for summaries and figures.
        description: free text, e.g. the source of the pattern.

    Example:
        >>> t = CellTypeTable([CellType("E", density=0.8), CellType("I", density=0.2, sign=-1)],
        ...                   [TypeConnection("E", "I"), TypeConnection("I", "E")])
        >>> t.sizes(10)
        {'E': 8, 'I': 2}
        >>> t.connection_mask(10).shape
        torch.Size([10, 10])
    """

    types: Sequence[CellType]
    connections: Sequence[TypeConnection] = ()
    inputs: Sequence[str] | None = None
    outputs: Sequence[str] | None = None
    name: str = ""
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        types = _as_types(self.types)
        if not types:
            raise ValueError("a cell-type table needs at least one cell type")
        names = [t.name for t in types]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"cell type names must be unique; repeated: {dup}")
        conns = _as_connections(self.connections)
        seen = set()
        for c in conns:
            for role in ("pre", "post"):
                if getattr(c, role) not in names:
                    raise ValueError(
                        f"connection {c.key}: {role} type {getattr(c, role)!r} is not in the table; "
                        f"types are {names}"
                    )
            if (c.pre, c.post) in seen:
                raise ValueError(f"connection {c.key} is listed twice")
            seen.add((c.pre, c.post))
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "connections", conns)
        default = tuple(t.name for t in types if t.sign > 0) or tuple(names)
        for role in ("inputs", "outputs"):
            val = getattr(self, role)
            val = default if val is None else ((val,) if isinstance(val, str) else tuple(val))
            bad = [v for v in val if v not in names]
            if bad or not val:
                raise ValueError(f"{role} must name one or more cell types among {names}; got {list(val)}")
            object.__setattr__(self, role, val)

    # ------------------------------------------------------------ lookup
    @property
    def names(self) -> tuple[str, ...]:
        """Type names in order."""
        return tuple(t.name for t in self.types)

    def index(self, name: str) -> int:
        """Position of type ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown cell type {name!r}; types are {list(self.names)}") from None

    def __getitem__(self, name: str) -> CellType:
        return self.types[self.index(name)]

    def connection(self, pre: str, post: str) -> TypeConnection | None:
        """The rule ``pre -> post`` if listed and allowed, else None."""
        self.index(pre), self.index(post)
        for c in self.connections:
            if c.pre == pre and c.post == post:
                return c if c.allowed else None
        return None

    @property
    def active_connections(self) -> tuple[TypeConnection, ...]:
        """The allowed connections, in table order."""
        return tuple(c for c in self.connections if c.allowed)

    # ------------------------------------------------------------ modified copies
    def connect(self, pre: str, post: str, **fields_: Any) -> CellTypeTable:
        """A copy with the connection ``pre -> post`` added or replaced (fields of
        :class:`TypeConnection`)."""
        new = TypeConnection(pre, post, **fields_)
        conns = [c for c in self.connections if (c.pre, c.post) != (pre, post)]
        return replace(self, connections=(*conns, new))

    def disconnect(self, pre: str, post: str) -> CellTypeTable:
        """A copy without the connection ``pre -> post``."""
        if self.connection(pre, post) is None:
            raise ValueError(f"there is no connection {pre}->{post} to remove")
        return replace(self, connections=tuple(c for c in self.connections if (c.pre, c.post) != (pre, post)))

    def update(self, pre: str, post: str, **fields_: Any) -> CellTypeTable:
        """A copy with fields of the existing connection ``pre -> post`` changed
        (e.g. ``strength=0.2``)."""
        self._check_fields(TypeConnection, fields_, exclude=("pre", "post"))
        for c in self.connections:
            if (c.pre, c.post) == (pre, post):
                conns = tuple(replace(c, **fields_) if d is c else d for d in self.connections)
                return replace(self, connections=conns)
        raise ValueError(f"there is no connection {pre}->{post}; use connect() to add it")

    def with_io(self, inputs: Sequence[str] | None = None,
                outputs: Sequence[str] | None = None) -> CellTypeTable:
        """A copy with other input and/or output types (None keeps the current ones)."""
        return replace(self, inputs=self.inputs if inputs is None else inputs,
                       outputs=self.outputs if outputs is None else outputs)

    def add_type(self, cell_type: CellType) -> CellTypeTable:
        """A copy with one more cell type (no connections yet)."""
        return replace(self, types=(*self.types, cell_type))

    def remove_type(self, name: str) -> CellTypeTable:
        """A copy without type ``name`` and its connections."""
        self.index(name)
        keep = lambda v: tuple(x for x in v if x != name) or None  # noqa: E731
        return replace(
            self,
            types=tuple(t for t in self.types if t.name != name),
            connections=tuple(c for c in self.connections if name not in (c.pre, c.post)),
            inputs=keep(self.inputs), outputs=keep(self.outputs),
        )

    def update_type(self, name: str, **fields_: Any) -> CellTypeTable:
        """A copy with fields of type ``name`` changed (e.g. ``tau=5.0``, ``count=8``)."""
        self._check_fields(CellType, fields_, exclude=("name",))
        i = self.index(name)
        types = list(self.types)
        types[i] = replace(types[i], **fields_)
        return replace(self, types=tuple(types))

    @staticmethod
    def _check_fields(cls: type, given: Mapping[str, Any], exclude: Sequence[str]) -> None:
        allowed = [f.name for f in fields(cls) if f.name not in exclude]
        bad = [k for k in given if k not in allowed]
        if bad:
            raise ValueError(f"{cls.__name__} fields that can be changed are {allowed}; got {bad}")

    # ------------------------------------------------------------ expansion
    def sizes(self, n: int | None = None) -> dict[str, int]:
        """Neurons (or channels) per type.

        Types with a ``count`` keep it; with ``n`` the remaining ``n - sum(counts)``
        are shared among the ``density`` types in proportion to their densities
        (largest remainders, each type at least 1). Without ``n`` every type needs a count.
        """
        fixed = {t.name: t.count for t in self.types if t.density is None}
        shares = {t.name: t.density for t in self.types if t.density is not None}
        if not shares:
            if n is not None and n != sum(fixed.values()):
                raise ValueError(f"the type counts sum to {sum(fixed.values())}, not n={n}")
            return {t.name: fixed[t.name] for t in self.types}
        if n is None:
            raise ValueError(f"types {sorted(shares)} are given by density; pass the total n")
        rest = n - sum(fixed.values())
        if rest < len(shares):
            raise ValueError(f"n={n} leaves {rest} neurons for the {len(shares)} density types {sorted(shares)}")
        total = sum(shares.values())
        raw = {k: rest * v / total for k, v in shares.items()}
        got = {k: max(1, int(math.floor(v))) for k, v in raw.items()}
        order = sorted(shares, key=lambda k: raw[k] - math.floor(raw[k]), reverse=True)
        i = 0
        while sum(got.values()) < rest:
            got[order[i % len(order)]] += 1
            i += 1
        while sum(got.values()) > rest:
            k = max(got, key=lambda k: got[k] - raw[k])
            got[k] -= 1
        return {t.name: fixed.get(t.name, got.get(t.name)) for t in self.types}

    def n_neurons(self, n: int | None = None) -> int:
        """Total neurons (or channels)."""
        return sum(self.sizes(n).values())

    def labels(self, n: int | None = None) -> Tensor:
        """``(N,)`` long: the type index of every neuron (types in table order)."""
        sizes = torch.tensor(list(self.sizes(n).values()))
        return torch.repeat_interleave(torch.arange(len(self.types)), sizes)

    def slices(self, n: int | None = None) -> dict[str, slice]:
        """The neurons (channels) of each type as a slice."""
        out, start = {}, 0
        for name, k in self.sizes(n).items():
            out[name] = slice(start, start + k)
            start += k
        return out

    def _per_neuron(self, values: Sequence[float], n: int | None) -> Tensor:
        return torch.as_tensor(values, dtype=torch.get_default_dtype())[self.labels(n)]

    def sign(self, n: int | None = None) -> Tensor:
        """``(N,)`` sign per neuron: +1 E, -1 I, 0 unsigned."""
        return self._per_neuron([t.sign for t in self.types], n)

    def tau(self, n: int | None = None) -> Tensor:
        """``(N,)`` time constant (ms) per neuron."""
        return self._per_neuron([t.tau for t in self.types], n)

    def type_matrix(self, what: str = "allowed") -> Tensor:
        """``(n_types, n_types)`` ``[post][pre]`` matrix of ``"allowed"`` (0/1),
        ``"strength"``, ``"extent"`` (0 where absent) or ``"signed_strength"``."""
        if what not in ("allowed", "strength", "extent", "signed_strength"):
            raise ValueError(f"what must be 'allowed', 'strength', 'extent' or 'signed_strength'; got {what!r}")
        m = torch.zeros(len(self.types), len(self.types))
        for c in self.active_connections:
            i, j = self.index(c.post), self.index(c.pre)
            sign = self.types[j].sign or 1
            m[i, j] = {"allowed": 1.0, "strength": c.strength, "extent": float(c.extent),
                       "signed_strength": c.strength * sign}[what]
        return m

    def connectivity(self, n: int | None = None, *, layout: str = "dense") -> Connectivity:
        """The table as one ``(N, N)`` :class:`~bionn.circuits.Connectivity` for a
        non-spatial network (a rate RNN or a spiking network).

        Every allowed connection ``pre -> post`` connects all neurons of type ``pre``
        to all of type ``post`` (:func:`~bionn.circuits.connect.all_to_all` per block);
        ``sign`` is the type's sign per neuron (0 for unsigned types; None when no type
        is signed); ``weight`` is ``strength / n_pre_type`` per synapse, the expected
        size of :meth:`initial_weight`'s magnitudes (so a neuron's summed input from a
        type is ``strength``); ``pre_types``/``post_types`` are the type names.

        Example:
            >>> t = CellTypeTable([CellType("E", count=3), CellType("I", count=1, sign=-1)],
            ...                   [TypeConnection("E", "I", strength=1.5), TypeConnection("I", "E")])
            >>> c = t.connectivity()
            >>> c.sign.tolist(), c.nnz, c.pre_types
            ([1.0, 1.0, 1.0, -1.0], 6, ('E', 'E', 'E', 'I'))
            >>> c.matrix()[3].tolist(), c.matrix()[:3, 3].tolist()
            ([0.5, 0.5, 0.5, 0.0], [-1.0, -1.0, -1.0])
        """
        sizes = list(self.sizes(n).values())
        parts = {}
        for c in self.active_connections:
            i, j = self.index(c.post), self.index(c.pre)
            conn = all_to_all(sizes[i], sizes[j])
            parts[(i, j)] = conn.with_weight(torch.full((conn.nnz,), c.strength / sizes[j]))
        signs = {t.sign for t in self.types}
        labels = [t.name for t, k in zip(self.types, sizes, strict=True) for _ in range(k)]
        return blocks(parts, sizes, sizes, sign=None if signs == {0} else self.sign(n),
                      pre_types=labels, post_types=labels, layout=layout)

    def connection_mask(self, n: int | None = None) -> Tensor:
        """``(N, N)`` ``(post, pre)`` 0/1 block mask for a non-spatial network
        (:meth:`connectivity`'s mask)."""
        return self.connectivity(n).dense()

    def initial_weight(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """A ``(post, pre)`` signed weight with block structure: each synapse
        ``strength * u / n_pre_type * sign[pre]``, ``u ~ U(0, 2)``, so a neuron's
        summed input from a type has expected size ``strength``."""
        lab = self.labels(n)
        sizes = torch.tensor(list(self.sizes(n).values()), dtype=torch.get_default_dtype())
        mag = self.type_matrix("strength")[lab][:, lab] / sizes[lab][None, :]
        u = torch.rand(mag.shape, generator=generator) * 2
        sign = self.sign(n)
        return mag * u * torch.where(sign == 0, torch.ones_like(sign), sign)[None, :]

    def to_circuit(self, n: int | None = None, n_input: int = 1, n_output: int = 1) -> Circuit:
        """A :class:`~bionn.circuits.Circuit`: :meth:`connectivity` as the recurrent
        structure (every type must be signed, or none), input onto :attr:`inputs` and
        readout from :attr:`outputs`."""
        self._ctrnn_sign(n)
        lab = self.labels(n)
        rows = torch.isin(lab, torch.tensor([self.index(t) for t in self.inputs]))
        cols = torch.isin(lab, torch.tensor([self.index(t) for t in self.outputs]))
        return Circuit(self.connectivity(n), Connectivity(rows[:, None].expand(-1, n_input)),
                       Connectivity(cols[None, :].expand(n_output, -1)))

    def _ctrnn_sign(self, n: int | None) -> Tensor | None:
        signs = {t.sign for t in self.types}
        if signs == {0}:
            return None
        if 0 in signs:
            unsigned = [t.name for t in self.types if t.sign == 0]
            raise ValueError(
                f"a non-spatial network needs every type signed (Dale's law per neuron) or none; "
                f"unsigned: {unsigned}"
            )
        return self.sign(n)

    # ------------------------------------------------------------ display
    def type_rows(self) -> list[dict[str, Any]]:
        """One dict per cell type (for tables)."""
        return [
            {"type": t.name, "size": t.count if t.density is None else f"{t.density:g} of n",
             "sign": t.sign_label, "tau_ms": t.tau, "nonlinearity": t.nonlinearity,
             "input": t.name in self.inputs, "output": t.name in self.outputs}
            for t in self.types
        ]

    def connection_rows(self) -> list[dict[str, Any]]:
        """One dict per listed connection (for tables)."""
        return [
            {"pre": c.pre, "post": c.post, "sign": self[c.pre].sign_label, "allowed": c.allowed,
             "synapse": c.synapse, "extent": c.extent, "strength": c.strength}
            for c in self.connections
        ]

    def to_markdown(self) -> str:
        """The types and connections as two Markdown tables."""
        def table(rows: list[dict[str, Any]]) -> str:
            if not rows:
                return "(none)"
            keys = list(rows[0])
            fmt = lambda v: f"{v:g}" if isinstance(v, float) else ("yes" if v is True else  # noqa: E731
                                                                   "no" if v is False else str(v))
            lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
            return "\n".join(lines)

        title = f"### {self.name}\n\n" if self.name else ""
        return f"{title}{table(self.type_rows())}\n\n{table(self.connection_rows())}\n"

    def summary(self) -> str:
        """A plain-text summary: types, then a ``[post][pre]`` signed strength grid."""
        w = max(11, *(len(n) + 2 for n in self.names))
        lines = [f"CellTypeTable {self.name!r}" if self.name else "CellTypeTable"]
        for r in self.type_rows():
            lines.append(f"  {r['type']:<{w}} size={r['size']!s:<8} sign={r['sign']:<8} "
                         f"tau={r['tau_ms']:g} ms  f={r['nonlinearity']}"
                         + ("  [input]" if r["input"] else "") + ("  [output]" if r["output"] else ""))
        lines.append("  " + "post \\ pre".ljust(w) + "".join(f"{n:>{w}}" for n in self.names))
        for post in self.names:
            cells = []
            for pre in self.names:
                c = self.connection(pre, post)
                cells.append(f"{'.':>{w}}" if c is None else
                             f"{('-' if self[pre].sign < 0 else '+' if self[pre].sign > 0 else '~')}"
                             f"{c.strength:g}/k{c.extent}".rjust(w))
            lines.append(f"  {post:<{w}}" + "".join(cells))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
