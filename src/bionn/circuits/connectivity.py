"""The structure of a projection (:class:`Connectivity`) and of a recurrent network with
inputs and a readout (:class:`Circuit`, named connectivities plus areas).

Weights and masks are ``(post, pre)``: row ``i`` lists the inputs of
postsynaptic neuron ``i``, like ``nn.Linear.weight``. Every builder in
:mod:`bionn.circuits` returns a :class:`Connectivity` for each connection, and
every model takes one: :class:`bionn.rate.CTRNN` (``circuit=``), the spiking
:class:`bionn.spiking.Projection`, :func:`bionn.spiking.connectome.from_cell_types`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["Connectivity", "Circuit", "LAYOUTS"]

#: ``"dense"``: a ``(post, pre)`` 0/1 mask; ``"sparse"``: post and pre index arrays (O(nnz)).
LAYOUTS = ("dense", "sparse")


def _check_01(values: Tensor, name: str) -> None:
    if values.dtype != torch.bool and not bool(((values == 0) | (values == 1)).all()):
        raise ValueError(f"{name} must contain only 0 and 1 (or be boolean)")


def _index(t: Any, name: str) -> Tensor:
    t = torch.as_tensor(t)
    if t.numel() and t.is_floating_point() and not bool((t == t.round()).all()):
        raise ValueError(f"{name} indices must be integers")
    return t.long().flatten()


def _strictly_sorted(post: Tensor, pre: Tensor) -> bool:
    """Whether the pairs ``(post, pre)`` increase strictly (sorted by post, then pre; no repeats).

    Compares neighbours in chunks, with no ``(nnz,)`` key array.
    """
    step = 1 << 20
    for s in range(0, post.numel() - 1, step):
        e = min(post.numel(), s + step + 1)
        p0, p1, q0, q1 = post[s:e - 1], post[s + 1:e], pre[s:e - 1], pre[s + 1:e]
        if not bool(((p1 > p0) | ((p1 == p0) & (q1 > q0))).all()):
            return False
    return True


def _labels(labels: Sequence[str] | None, n: int, name: str) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        raise ValueError(f"{name} must be one label per neuron, not a single string")
    out = tuple(str(x) for x in labels)
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} labels; expected one per neuron ({n})")
    return out


def _where(spec: Any, n: int, name: str) -> Tensor:
    """``(n,)`` long map old index -> new index (-1: dropped) for :meth:`Connectivity.select`."""
    if spec is None:
        return torch.arange(n)
    if isinstance(spec, slice):
        idx = torch.arange(n)[spec]
    elif isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, int) for v in spec):
        idx = torch.arange(n)[spec[0]:spec[1]]
    else:
        idx = _index(spec, name)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"{name} indices must lie in [0, {n})")
        if torch.unique(idx).numel() != idx.numel():
            raise ValueError(f"{name} indices must not repeat")
    out = torch.full((n,), -1, dtype=torch.long)
    out[idx] = torch.arange(idx.numel())
    return out


class Connectivity:
    """One projection's structure: which synapses exist, dense or sparse, with
    optional presynaptic signs, synapse weights (counts) and cell-type labels.

    The one structure object of bionn: every builder returns it (the rules of
    :mod:`bionn.circuits.connect`, :class:`~bionn.circuits.MultiArea`,
    :class:`~bionn.circuits.MultiAreaEI`, :class:`~bionn.circuits.RandomInput`,
    :meth:`CellTypeTable.connectivity <bionn.circuits.CellTypeTable.connectivity>`,
    :meth:`Connectome.connectivity <bionn.circuits.Connectome.connectivity>`) and every
    model takes it (:class:`bionn.rate.CTRNN`, :class:`bionn.spiking.Projection`).

    Give either a ``(post, pre)`` 0/1 ``mask`` (a dense tensor, array or bool
    tensor, or a torch sparse tensor) or the index arrays ``post``, ``pre`` with
    ``shape=(n_post, n_pre)`` (repeated pairs are merged, their weights summed).

    Args:
        mask: ``(post, pre)`` 0/1 matrix.
        sign: one entry per **presynaptic** neuron: +1 excitatory, -1 inhibitory,
            0 unsigned (no constraint); a plain number is used for every neuron.
            None: no sign constraint.
        post, pre: synapse index arrays (instead of ``mask``).
        shape: ``(n_post, n_pre)``, needed with ``post``/``pre``.
        weight: optional per-synapse value in :meth:`edges` order (or a dense
            ``(post, pre)`` matrix read at the synapses): a synapse count or a
            strength. With signs it is a magnitude (>= 0 for synapses of signed
            neurons); :meth:`signed_weight` applies the sign.
        pre_types, post_types: optional cell-type label per pre / post neuron.
        layout: ``"dense"`` (a mask; the default for a dense ``mask``) or ``"sparse"``
            (index arrays, O(synapses) memory; the default otherwise).

    Example:
        >>> import torch
        >>> c = Connectivity(torch.ones(3, 4), sign=torch.tensor([1., 1., 1., -1.]))
        >>> c.n_post, c.n_pre, c.density, c.layout
        (3, 4, 1.0, 'dense')
        >>> s = Connectivity(post=[0, 2], pre=[3, 1], shape=(3, 4), weight=[2.0, 5.0], sign=-1)
        >>> s.layout, s.nnz, s.signed_weight().tolist()
        ('sparse', 2, [-2.0, -5.0])
        >>> s.matrix()[0].tolist()
        [0.0, 0.0, 0.0, -2.0]
        >>> s.to_dense().layout, s.to_dense().edges()[1].tolist()
        ('dense', [3, 1])
    """

    __slots__ = ("_shape", "_mask", "_post", "_pre", "_sign", "_weight", "_pre_types", "_post_types")

    def __init__(
        self,
        mask: Any = None,
        sign: Tensor | Sequence[float] | float | None = None,
        *,
        post: Any = None,
        pre: Any = None,
        shape: tuple[int, int] | None = None,
        weight: Any = None,
        pre_types: Sequence[str] | None = None,
        post_types: Sequence[str] | None = None,
        layout: str | None = None,
    ) -> None:
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
        dtype = torch.get_default_dtype()
        dense: Tensor | None = None
        order: Tensor | None = None  # given edge i -> stored edge order[i] (weights follow)
        n_given = None
        if mask is not None:
            if post is not None or pre is not None:
                raise ValueError("give a (post, pre) mask or post/pre index arrays, not both")
            if isinstance(mask, Tensor) and mask.layout != torch.strided:
                if mask.dim() != 2:
                    raise ValueError(f"mask must be a 2-D (post, pre) matrix; got shape {tuple(mask.shape)}")
                coo = mask.to_sparse_coo().coalesce()
                _check_01(coo.values(), "mask")
                idx = coo.indices()[:, coo.values() != 0]
                post, pre, shape = idx[0], idx[1], tuple(coo.shape)
                layout = layout or "sparse"
            else:
                m = torch.as_tensor(mask)
                if m.dim() != 2:
                    raise ValueError(f"mask must be a 2-D (post, pre) matrix; got shape {tuple(m.shape)}")
                _check_01(m, "mask")
                shape = tuple(m.shape)
                layout = layout or "dense"
                if layout == "dense":
                    dense = m.to(dtype)
                else:
                    post, pre = m.nonzero(as_tuple=True)
        else:
            if post is None or pre is None or shape is None:
                raise ValueError("Connectivity needs a (post, pre) mask, or post and pre index arrays "
                                 "with shape=(n_post, n_pre)")
            layout = layout or "sparse"
        n_post, n_pre = (int(s) for s in shape)
        if n_post < 0 or n_pre < 0:
            raise ValueError(f"shape must be (n_post, n_pre) >= 0; got {shape}")
        self._shape = (n_post, n_pre)
        self._post = self._pre = None
        if dense is None:
            post, pre = _index(post, "post"), _index(pre, "pre")
            if post.shape != pre.shape:
                raise ValueError(f"post and pre index arrays differ in length: {post.numel()} vs {pre.numel()}")
            if post.numel() and (int(post.min()) < 0 or int(post.max()) >= n_post
                                 or int(pre.min()) < 0 or int(pre.max()) >= n_pre):
                raise ValueError(f"edge indices out of range for a ({n_post}, {n_pre}) (post, pre) matrix")
            n_given = post.numel()
            if not _strictly_sorted(post, pre):  # sort, merge repeats
                key, order = torch.unique(post * n_pre + pre, sorted=True, return_inverse=True)
                post, pre = key // max(n_pre, 1), key % max(n_pre, 1)
            if layout == "dense":
                dense = torch.zeros(n_post, n_pre, dtype=dtype)
                dense[post, pre] = 1.0
            else:
                self._post, self._pre = post, pre
        self._mask = dense
        nnz = self.nnz
        self._weight = None
        if weight is not None:
            w = torch.as_tensor(weight, dtype=dtype)
            if w.layout != torch.strided:
                w = w.to_dense()
            if w.dim() == 2 and tuple(w.shape) == self._shape:
                p, q = self.edges()
                w = w[p, q]
            elif n_given is not None and w.shape == (n_given,):
                if order is not None:
                    w = torch.zeros(nnz, dtype=dtype).index_add_(0, order, w)
            elif w.shape != (nnz,):
                raise ValueError(f"weight must have one value per synapse ({nnz}, in edges() order) or "
                                 f"be a {self._shape} (post, pre) matrix; got shape {tuple(w.shape)}")
            if not bool(torch.isfinite(w).all()):
                raise ValueError("weight must be finite")
            self._weight = w
        self._sign = None
        if sign is not None:
            if isinstance(sign, (int, float)) and not isinstance(sign, bool):
                s = torch.full((n_pre,), float(sign), dtype=dtype)
            else:
                s = torch.as_tensor(sign, dtype=dtype).flatten()
            if s.shape[0] != n_pre:
                raise ValueError(f"sign has {s.shape[0]} entries; the connectivity has {n_pre} "
                                 "presynaptic neurons (one sign per presynaptic neuron; masks are (post, pre))")
            if not bool(((s == 1) | (s == -1) | (s == 0)).all()):
                raise ValueError("sign must contain only +1 (excitatory), -1 (inhibitory) and 0 (unsigned)")
            self._sign = s
            if self._weight is not None and self._weight.numel():
                signed = s[self.edges()[1]] != 0
                if bool((self._weight[signed] < 0).any()):
                    raise ValueError("with a sign per presynaptic neuron, weight holds magnitudes: it must be "
                                     ">= 0 on the synapses of signed neurons (the sign goes in `sign`)")
        self._pre_types = _labels(pre_types, n_pre, "pre_types")
        self._post_types = _labels(post_types, n_post, "post_types")

    # ------------------------------------------------------------ attributes
    @property
    def shape(self) -> tuple[int, int]:
        """``(n_post, n_pre)``."""
        return self._shape

    @property
    def n_post(self) -> int:
        return self._shape[0]

    @property
    def n_pre(self) -> int:
        return self._shape[1]

    @property
    def layout(self) -> str:
        """``"dense"`` or ``"sparse"``."""
        return "dense" if self._mask is not None else "sparse"

    @property
    def is_sparse(self) -> bool:
        return self._mask is None

    @property
    def sign(self) -> Tensor | None:
        """``(n_pre,)`` +1 / -1 / 0 per presynaptic neuron, or None."""
        return self._sign

    @property
    def weight(self) -> Tensor | None:
        """``(nnz,)`` per-synapse weight (count, strength) in :meth:`edges` order, or None."""
        return self._weight

    @property
    def pre_types(self) -> tuple[str, ...] | None:
        """Cell-type label of every presynaptic neuron, or None."""
        return self._pre_types

    @property
    def post_types(self) -> tuple[str, ...] | None:
        """Cell-type label of every postsynaptic neuron, or None."""
        return self._post_types

    @property
    def nnz(self) -> int:
        """Number of synapses."""
        return int(self._post.numel()) if self._mask is None else int(self._mask.count_nonzero())

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n_post * self.n_pre)

    @property
    def mask(self) -> Tensor:
        """The ``(post, pre)`` mask: the dense 0/1 tensor, or (sparse layout) a torch sparse COO tensor."""
        if self._mask is not None:
            return self._mask
        return torch.sparse_coo_tensor(torch.stack([self._post, self._pre]),
                                       torch.ones(self._post.numel()), self._shape,
                                       is_coalesced=True, check_invariants=False)

    # ------------------------------------------------------------ conversions
    def edges(self, *, copy: bool = True) -> tuple[Tensor, Tensor]:
        """``(post_index, pre_index)`` of every synapse, sorted by post then pre.

        ``copy=False`` returns the sparse layout's own index arrays (read-only use: no
        copy of 16 bytes per synapse); the dense layout always builds new ones.
        """
        if self._mask is not None:
            return self._mask.nonzero(as_tuple=True)
        if not copy:
            return self._post, self._pre
        return self._post.clone(), self._pre.clone()

    def dense(self) -> Tensor:
        """The ``(post, pre)`` mask as a dense 0/1 tensor."""
        if self._mask is not None:
            return self._mask
        m = torch.zeros(self._shape, dtype=torch.get_default_dtype())
        m[self._post, self._pre] = 1.0
        return m

    def _copy(self, **changes: Any) -> Connectivity:
        new = object.__new__(Connectivity)
        for k in self.__slots__:
            object.__setattr__(new, k, changes.get(k, getattr(self, k)))
        return new

    def to_dense(self) -> Connectivity:
        """The same connectivity in the dense layout (a ``(post, pre)`` mask)."""
        if self._mask is not None:
            return self
        return self._copy(_mask=self.dense(), _post=None, _pre=None)

    def to_sparse(self) -> Connectivity:
        """The same connectivity in the sparse layout (post and pre index arrays)."""
        if self._mask is None:
            return self
        post, pre = self.edges()
        return self._copy(_mask=None, _post=post, _pre=pre)

    def signed_weight(self) -> Tensor:
        """``(nnz,)``: each synapse's weight (1 without weights) times its presynaptic
        sign (unsigned neurons: the weight as it is)."""
        w = self._weight if self._weight is not None else torch.ones(self.nnz)
        if self._sign is None:
            return w
        s = self._sign[self.edges()[1]]
        return torch.where(s == 0, w, w * s)

    def matrix(self, signed: bool = True) -> Tensor:
        """A dense ``(post, pre)`` matrix: the weights (1 without weights), signed
        with :meth:`signed_weight` unless ``signed=False``."""
        w = self.signed_weight() if signed else (
            self._weight if self._weight is not None else torch.ones(self.nnz))
        out = torch.zeros(self._shape, dtype=w.dtype)
        post, pre = self.edges()
        out[post, pre] = w
        return out

    # ------------------------------------------------------------ modified copies
    def with_sign(self, sign: Tensor | Sequence[float] | float | None) -> Connectivity:
        """A copy with another sign per presynaptic neuron (a number: the same for all; None: none)."""
        return self.replace(sign=sign)

    def with_weight(self, weight: Any) -> Connectivity:
        """A copy with other per-synapse weights (in :meth:`edges` order, or a ``(post, pre)`` matrix)."""
        return self.replace(weight=weight)

    def replace(self, **changes: Any) -> Connectivity:
        """A copy with some of ``sign``, ``weight``, ``pre_types``, ``post_types``, ``layout`` changed."""
        allowed = ("sign", "weight", "pre_types", "post_types", "layout")
        bad = sorted(set(changes) - set(allowed))
        if bad:
            raise TypeError(f"Connectivity.replace takes {list(allowed)}; got {bad}")
        post, pre = self.edges()
        kw = {"sign": self._sign, "weight": self._weight, "pre_types": self._pre_types,
              "post_types": self._post_types, "layout": self.layout, **changes}
        return Connectivity(post=post, pre=pre, shape=self._shape, **kw)

    def select(self, post: Any = None, pre: Any = None) -> Connectivity:
        """The sub-connectivity between some post and some pre neurons, renumbered
        in the given order: each a slice, a ``(start, stop)`` range, indices, or None (all)."""
        mp, mq = _where(post, self.n_post, "post"), _where(pre, self.n_pre, "pre")
        p, q = self.edges()
        keep = (mp[p] >= 0) & (mq[q] >= 0)
        kq = (mq >= 0).nonzero().flatten()[mq[mq >= 0].argsort()]
        kp = (mp >= 0).nonzero().flatten()[mp[mp >= 0].argsort()]
        return Connectivity(
            post=mp[p[keep]], pre=mq[q[keep]], shape=(kp.numel(), kq.numel()),
            sign=None if self._sign is None else self._sign[kq],
            weight=None if self._weight is None else self._weight[keep],
            pre_types=None if self._pre_types is None else [self._pre_types[i] for i in kq.tolist()],
            post_types=None if self._post_types is None else [self._post_types[i] for i in kp.tolist()],
            layout=self.layout)

    def __repr__(self) -> str:
        parts = [f"{self.n_post} post x {self.n_pre} pre", f"{self.nnz} synapses", self.layout]
        if self._sign is not None:
            s = self._sign
            parts.append(f"sign E={int((s > 0).sum())} I={int((s < 0).sum())}"
                         + (f" unsigned={int((s == 0).sum())}" if bool((s == 0).any()) else ""))
        if self._weight is not None:
            parts.append("weighted")
        if self._pre_types is not None or self._post_types is not None:
            parts.append("typed")
        return f"Connectivity({', '.join(parts)})"


def _as_connectivity(value: Any, name: str) -> Connectivity | None:
    if value is None or isinstance(value, Connectivity):
        return value
    try:
        return Connectivity(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


class Circuit:
    """The structure of a recurrent network with inputs and a readout: a named
    bundle of :class:`Connectivity` objects plus the neurons' areas.

    Args:
        recurrent: ``(N, N)`` connectivity (its ``sign``: Dale's law per neuron, or None).
        input: ``(N, n_input)`` input connectivity (a :class:`Connectivity` or a 0/1
            mask), or None (all-to-all).
        readout: ``(n_output, N)`` readout connectivity, or None (all-to-all).
        area: ``(N,)`` area index per neuron (0 for a single area).
        area_names: one name per area.
        input_mask, readout_mask: the former names of ``input`` and ``readout``.

    :attr:`input_mask` and :attr:`readout_mask` give the dense 0/1 masks (or None).

    Example:
        >>> import torch
        >>> c = Circuit(Connectivity(torch.ones(3, 3), sign=[1, 1, -1]), input=torch.ones(3, 2))
        >>> c.n_neurons, c.n_input, c.sign.tolist(), c.input.nnz
        (3, 2, [1.0, 1.0, -1.0], 6)
    """

    def __init__(
        self,
        recurrent: Connectivity,
        input: Connectivity | Tensor | None = None,
        readout: Connectivity | Tensor | None = None,
        area: Tensor | Sequence[int] | None = None,
        area_names: Sequence[str] = (),
        *,
        input_mask: Connectivity | Tensor | None = None,
        readout_mask: Connectivity | Tensor | None = None,
    ) -> None:
        if not isinstance(recurrent, Connectivity):
            recurrent = _as_connectivity(recurrent, "recurrent")
        n = recurrent.n_pre
        if recurrent.n_post != n:
            raise ValueError(f"recurrent mask must be square; got {recurrent.shape}")
        for old, new, value in (("input_mask", "input", input), ("readout_mask", "readout", readout)):
            if (input_mask if old == "input_mask" else readout_mask) is not None and value is not None:
                raise ValueError(f"give {new} or {old}, not both")
        inp = _as_connectivity(input if input is not None else input_mask, "input_mask")
        out = _as_connectivity(readout if readout is not None else readout_mask, "readout_mask")
        if inp is not None and inp.n_post != n:
            raise ValueError(f"input_mask (input connectivity) has {inp.n_post} rows; expected N={n} (post, pre)")
        if out is not None and out.n_pre != n:
            raise ValueError(f"readout_mask (readout connectivity) has {out.n_pre} columns; expected N={n} "
                             "(post, pre)")
        a = torch.zeros(n, dtype=torch.long) if area is None else torch.as_tensor(area).long()
        if a.shape != (n,):
            raise ValueError(f"area must have one entry per neuron ({n}); got shape {tuple(a.shape)}")
        names = tuple(area_names) or tuple(f"area{i}" for i in range(int(a.max()) + 1 if n else 0))
        self.recurrent, self.input, self.readout = recurrent, inp, out
        self.area, self.area_names = a, names

    @property
    def n_neurons(self) -> int:
        return self.recurrent.n_pre

    @property
    def sign(self) -> Tensor | None:
        """The recurrent connectivity's sign per neuron."""
        return self.recurrent.sign

    @property
    def input_mask(self) -> Tensor | None:
        """``(N, n_input)`` dense 0/1 input mask, or None."""
        return None if self.input is None else self.input.dense()

    @property
    def readout_mask(self) -> Tensor | None:
        """``(n_output, N)`` dense 0/1 readout mask, or None."""
        return None if self.readout is None else self.readout.dense()

    @property
    def n_input(self) -> int | None:
        return None if self.input is None else self.input.n_pre

    @property
    def n_output(self) -> int | None:
        return None if self.readout is None else self.readout.n_post

    def connectivities(self) -> Mapping[str, Connectivity | None]:
        """``{"input": ..., "recurrent": ..., "readout": ...}``."""
        return {"input": self.input, "recurrent": self.recurrent, "readout": self.readout}

    def __repr__(self) -> str:
        return (f"Circuit({self.n_neurons} neurons, {len(self.area_names)} area(s), "
                f"recurrent={self.recurrent!r})")
