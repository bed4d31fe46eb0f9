"""Connection rules: each draws the synapses of one projection and returns a
:class:`~bionn.circuits.Connectivity`.

One implementation per rule: a rule yields edges (post and pre index arrays),
and :class:`~bionn.circuits.Connectivity` holds them in the ``layout`` asked for:
``"sparse"`` (the default: O(synapses) memory, so a 40,000-neuron network never
allocates an N x N matrix) or ``"dense"`` (a ``(post, pre)`` mask). The same
rule, seed and arguments give the same synapses in both layouts. The builders
(:class:`~bionn.circuits.MultiArea`, :class:`~bionn.circuits.MultiAreaEI`,
:class:`~bionn.circuits.RandomInput`, cell-type tables) compose these rules block by
block (:func:`blocks`); the result feeds the rate circuits and the spiking
projections (:class:`bionn.spiking.Projection`) alike.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> c = fixed_prob(1000, 800, 0.02, generator=g)
    >>> c.n_post, c.n_pre, round(c.density, 2), c.layout
    (1000, 800, 0.02, 'sparse')
    >>> fixed_in_degree(50, 40, 5, generator=g).dense().sum(1).unique().tolist()
    [5.0]
    >>> a = fixed_prob(30, 20, 0.3, generator=torch.Generator().manual_seed(1), layout="dense")
    >>> b = fixed_prob(30, 20, 0.3, generator=torch.Generator().manual_seed(1))
    >>> torch.equal(a.mask, b.dense())
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from bionn.circuits.connectivity import Connectivity

__all__ = [
    "CONNECTORS",
    "all_to_all",
    "blocks",
    "distance_prob",
    "fixed_in_degree",
    "fixed_out_degree",
    "fixed_prob",
    "from_edges",
    "from_matrix",
    "grid_positions",
    "one_to_one",
]

_CHUNK = 4_000_000  # elements per dense chunk in the samplers
_DRAW = 1 << 20  # uniforms per chunk in fixed_prob (8 MB of float64)


def from_edges(post: Tensor, pre: Tensor, n_post: int, n_pre: int, sign: Tensor | None = None, *,
               weight: Tensor | None = None, layout: str = "sparse") -> Connectivity:
    """Connectivity from index arrays (repeated pairs merged, their weights summed)."""
    return Connectivity(post=post, pre=pre, shape=(n_post, n_pre), sign=sign, weight=weight,
                        layout=layout)


def _drop_autapses(post: Tensor, pre: Tensor, autapses: bool, n_post: int, n_pre: int):
    if autapses or n_post != n_pre:
        return post, pre
    keep = post != pre
    return post[keep], pre[keep]


def all_to_all(n_post: int, n_pre: int, *, autapses: bool = True, layout: str = "sparse") -> Connectivity:
    """Every pre neuron to every post neuron (``autapses=False`` drops i -> i)."""
    post = torch.arange(n_post).repeat_interleave(n_pre)
    pre = torch.arange(n_pre).repeat(n_post)
    return from_edges(*_drop_autapses(post, pre, autapses, n_post, n_pre), n_post, n_pre, layout=layout)


def one_to_one(n: int, *, layout: str = "sparse") -> Connectivity:
    """Neuron i to neuron i."""
    i = torch.arange(n)
    return from_edges(i, i, n, n, layout=layout)


def fixed_prob(
    n_post: int, n_pre: int, p: float, *, autapses: bool = True, generator: torch.Generator | None = None,
    layout: str = "sparse",
) -> Connectivity:
    """Each synapse present independently with probability ``p`` (Bernoulli).

    Drawn by geometric skipping per post row, so the cost is O(synapses), not
    O(n_post * n_pre). ``autapses=False`` drops i -> i (square shapes only).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"connection probability p must be in [0, 1]; got {p}")
    if p == 0.0:
        return from_edges(torch.empty(0), torch.empty(0), n_post, n_pre, layout=layout)
    if p == 1.0:
        return all_to_all(n_post, n_pre, autapses=autapses, layout=layout)
    k = _first_k(n_pre, p)
    log1mp = math.log1p(-p)
    # Rows are drawn in chunks of about _DRAW uniforms, in order: the generator's stream,
    # and so the synapses, are those of one draw for all rows, at a fraction of the memory.
    rows = torch.arange(n_post)
    done_rows, counts, pres = [], [], []
    while rows.numel():
        undone = []
        step = max(1, _DRAW // k)
        for start in range(0, rows.numel(), step):
            r = rows[start:start + step]
            pos = _gap_positions(r.numel(), k, log1mp, generator)
            done = pos[:, -1] >= n_pre
            hit = pos < n_pre
            hit &= done[:, None]
            done_rows.append(r[done])
            counts.append(hit.sum(1)[done])
            pres.append(pos[hit].to(torch.int32 if n_pre < 2**31 else torch.long))
            del pos, hit
            undone.append(r[~done])
        rows = torch.cat(undone)
        k *= 2
    post = torch.repeat_interleave(torch.cat(done_rows), torch.cat(counts))
    pre = torch.empty(post.numel(), dtype=torch.long)
    start = 0
    for i, c in enumerate(pres):  # into one int64 array, freeing each chunk as it is copied
        pre[start:start + c.numel()] = c
        start += c.numel()
        pres[i] = None
    return from_edges(*_drop_autapses(post, pre, autapses, n_post, n_pre), n_post, n_pre, layout=layout)


def _first_k(n_pre: int, p: float) -> int:
    """Successes drawn per row in the first round of :func:`fixed_prob` (mean + 8 sd + 16)."""
    mean = n_pre * p
    return int(mean + 8 * math.sqrt(mean * (1 - p)) + 16)


def _gap_positions(rows: int, k: int, log1mp: float, generator: torch.Generator | None) -> Tensor:
    """``(rows, k)`` positions of the first ``k`` Bernoulli successes per row (geometric gaps).

    Computes ``cumsum(floor(log(u) / log1p(-p)) + 1) - 1`` for uniforms ``u`` in place,
    so that two ``(rows, k)`` arrays are alive at most.
    """
    u = torch.rand(rows, k, generator=generator, dtype=torch.float64)
    u.clamp_min_(1e-300).log_().div_(log1mp).floor_()
    pos = u.long()
    del u
    pos += 1
    return pos.cumsum_(1).sub_(1)


def _choose_per_row(n_rows: int, n_from: int, k: int, exclude_diag: bool, generator) -> Tensor:
    """(n_rows, k) distinct indices in [0, n_from) per row, uniformly."""
    out = torch.empty(n_rows, k, dtype=torch.long)
    step = max(1, _CHUNK // max(1, n_from))
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        keys = torch.rand(stop - start, n_from, generator=generator)
        if exclude_diag:
            r = torch.arange(start, stop)
            keys[r - start, r] = 2.0  # never among the k smallest
        out[start:stop] = keys.topk(k, dim=1, largest=False).indices
    return out


def fixed_in_degree(
    n_post: int, n_pre: int, k: int, *, autapses: bool = True, generator: torch.Generator | None = None,
    layout: str = "sparse",
) -> Connectivity:
    """Every post neuron receives exactly ``k`` distinct pre neurons."""
    limit = n_pre - (0 if autapses or n_pre != n_post else 1)
    if not 0 <= k <= limit:
        raise ValueError(f"in-degree k must be in [0, {limit}]; got {k}")
    pre = _choose_per_row(n_post, n_pre, k, not autapses and n_pre == n_post, generator)
    post = torch.arange(n_post)[:, None].expand(-1, k)
    return from_edges(post, pre, n_post, n_pre, layout=layout)


def fixed_out_degree(
    n_post: int, n_pre: int, k: int, *, autapses: bool = True, generator: torch.Generator | None = None,
    layout: str = "sparse",
) -> Connectivity:
    """Every pre neuron projects to exactly ``k`` distinct post neurons."""
    limit = n_post - (0 if autapses or n_pre != n_post else 1)
    if not 0 <= k <= limit:
        raise ValueError(f"out-degree k must be in [0, {limit}]; got {k}")
    post = _choose_per_row(n_pre, n_post, k, not autapses and n_pre == n_post, generator)
    pre = torch.arange(n_pre)[:, None].expand(-1, k)
    return from_edges(post, pre, n_post, n_pre, layout=layout)


def grid_positions(shape: Sequence[int]) -> Tensor:
    """Cell-centre positions of a ``(rows, cols)`` grid in the unit square, ``(n, 2)``."""
    rows, cols = (int(s) for s in shape)
    y = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
    x = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), -1).reshape(-1, 2)


def distance_prob(
    post_shape: Sequence[int],
    pre_shape: Sequence[int],
    *,
    p_max: float = 1.0,
    sigma: float = 0.1,
    radius: float | None = None,
    periodic: bool = False,
    autapses: bool = True,
    generator: torch.Generator | None = None,
    layout: str = "sparse",
) -> Connectivity:
    """Distance-dependent connections between two grids laid on the unit square.

    ``p(d) = p_max * exp(-d^2 / (2 sigma^2))`` for ``d <= radius`` (no cut-off
    by default), with wrap-around distances when ``periodic``. Neurons are
    numbered row-major on their grid.
    """
    if not 0.0 <= p_max <= 1.0:
        raise ValueError(f"p_max must be in [0, 1]; got {p_max}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 (in unit-square lengths); got {sigma}")
    post_xy, pre_xy = grid_positions(post_shape), grid_positions(pre_shape)
    n_post, n_pre = post_xy.shape[0], pre_xy.shape[0]
    same = not autapses and tuple(post_shape) == tuple(pre_shape)
    posts, pres = [], []
    step = max(1, _CHUNK // max(1, n_pre))
    for start in range(0, n_post, step):
        d = (post_xy[start:start + step, None, :] - pre_xy[None, :, :]).abs()
        if periodic:
            d = torch.minimum(d, 1.0 - d)
        d2 = (d ** 2).sum(-1)
        p = p_max * torch.exp(-d2 / (2 * sigma**2))
        if radius is not None:
            p = p.masked_fill(d2 > radius**2, 0.0)
        hit = torch.rand(p.shape, generator=generator, dtype=torch.float64) < p
        if same:
            r = torch.arange(start, min(n_post, start + step))
            hit[r - start, r] = False
        r, c = hit.nonzero(as_tuple=True)
        posts.append(r + start)
        pres.append(c)
    return from_edges(torch.cat(posts), torch.cat(pres), n_post, n_pre, layout=layout)


def from_matrix(matrix, *, sign: Tensor | None = None, layout: str = "sparse") -> tuple[Connectivity, Tensor]:
    """Connectivity and per-synapse weights from a ``(post, pre)`` matrix.

    Accepts a dense or sparse torch tensor, a NumPy array or a SciPy sparse
    matrix. Entries that are exactly zero are absent synapses. Returns the
    connectivity and the weights in :meth:`Connectivity.edges` order; without
    ``sign`` the connectivity carries them as its ``weight`` too.
    """
    if hasattr(matrix, "tocoo") and not isinstance(matrix, Tensor):  # scipy.sparse
        coo = matrix.tocoo()
        t = torch.sparse_coo_tensor(
            torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long),
            torch.as_tensor(coo.data, dtype=torch.float32), coo.shape, check_invariants=True,
        )
    elif isinstance(matrix, Tensor) and matrix.layout != torch.strided:
        t = matrix.to_sparse_coo().float()
    else:
        dense = torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, Tensor) else matrix)
        if dense.dim() != 2:
            raise ValueError(f"matrix must be 2-D (post, pre); got shape {tuple(dense.shape)}")
        t = dense.float().to_sparse_coo()
    t = t.coalesce()
    keep = t.values() != 0
    idx, val = t.indices()[:, keep], t.values()[keep]
    n_post, n_pre = t.shape
    conn = from_edges(idx[0], idx[1], n_post, n_pre, layout=layout, weight=val)
    values = conn.weight
    return (conn if sign is None else conn.replace(weight=None, sign=sign)), values


def blocks(
    parts: Mapping[tuple[int, int], Connectivity | None],
    post_sizes: Sequence[int],
    pre_sizes: Sequence[int],
    *,
    sign: Tensor | Sequence[float] | None = None,
    pre_types: Sequence[str] | None = None,
    post_types: Sequence[str] | None = None,
    layout: str = "sparse",
) -> Connectivity:
    """One connectivity assembled from blocks.

    ``parts[(i, j)]`` connects pre block ``j`` (``pre_sizes[j]`` neurons) to post
    block ``i`` (``post_sizes[i]``); blocks that are absent (or None) have no
    synapses. Weights are kept when any block has them (1 in blocks without).
    ``sign``: per presynaptic neuron; by default the blocks' own signs (all blocks
    of a pre block must agree), or None when no block has one.

    Example:
        >>> c = blocks({(0, 0): all_to_all(2, 2, autapses=False), (1, 0): one_to_one(2)},
        ...            [2, 2], [2, 3], sign=[1, 1, -1, -1, -1])
        >>> c.shape, c.dense()[:, :2].tolist()
        ((4, 5), [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    """
    post_sizes, pre_sizes = [int(k) for k in post_sizes], [int(k) for k in pre_sizes]
    post_off = [0, *np.cumsum(post_sizes).tolist()]
    pre_off = [0, *np.cumsum(pre_sizes).tolist()]
    posts, pres, weights = [], [], []
    weighted = any(c is not None and c.weight is not None for c in parts.values())
    block_sign: dict[int, Tensor] = {}
    for (i, j), c in parts.items():
        if c is None:
            continue
        if not (0 <= i < len(post_sizes) and 0 <= j < len(pre_sizes)):
            raise ValueError(f"block ({i}, {j}) is outside the {len(post_sizes)} x {len(pre_sizes)} block grid")
        if c.shape != (post_sizes[i], pre_sizes[j]):
            raise ValueError(f"block ({i}, {j}) has shape {c.shape}; expected "
                             f"({post_sizes[i]}, {pre_sizes[j]}) (post, pre)")
        p, q = c.edges()
        posts.append(p + post_off[i])
        pres.append(q + pre_off[j])
        if weighted:
            weights.append(c.weight if c.weight is not None else torch.ones(p.numel()))
        if sign is None and c.sign is not None:
            if j in block_sign and not torch.equal(block_sign[j], c.sign):
                raise ValueError(f"blocks of pre block {j} disagree in their presynaptic signs")
            block_sign[j] = c.sign
    if sign is None and block_sign:
        sign = torch.cat([block_sign.get(j, torch.zeros(k)) for j, k in enumerate(pre_sizes)])
    empty = torch.empty(0, dtype=torch.long)
    return Connectivity(
        post=torch.cat(posts) if posts else empty, pre=torch.cat(pres) if pres else empty,
        shape=(post_off[-1], pre_off[-1]), sign=sign,
        weight=(torch.cat(weights) if weights else torch.empty(0)) if weighted else None,
        pre_types=pre_types, post_types=post_types, layout=layout)


CONNECTORS = {
    "all_to_all": all_to_all,
    "one_to_one": one_to_one,
    "fixed_prob": fixed_prob,
    "fixed_in_degree": fixed_in_degree,
    "fixed_out_degree": fixed_out_degree,
    "distance_prob": distance_prob,
}
