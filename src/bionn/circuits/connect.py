"""Connection rules that build sparse :class:`~bionn.circuits.Connectivity`.

Every rule returns a ``(post, pre)`` Connectivity whose mask is a sparse COO
tensor, so a 40,000-neuron network never allocates an N x N matrix. The same
object feeds the rate circuits (``Connectivity.dense()``) and the spiking
projections (:class:`bionn.spiking.Projection`).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> c = fixed_prob(1000, 800, 0.02, generator=g)
    >>> c.n_post, c.n_pre, round(c.density, 2)
    (1000, 800, 0.02)
    >>> fixed_in_degree(50, 40, 5, generator=g).dense().sum(1).unique().tolist()
    [5.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from bionn.circuits.connectivity import Connectivity

_CHUNK = 4_000_000  # elements per dense chunk in the samplers


def from_edges(post: Tensor, pre: Tensor, n_post: int, n_pre: int, sign: Tensor | None = None) -> Connectivity:
    """Connectivity from index lists (duplicates merged)."""
    post = torch.as_tensor(post, dtype=torch.long).flatten()
    pre = torch.as_tensor(pre, dtype=torch.long).flatten()
    if post.shape != pre.shape:
        raise ValueError(f"post and pre index lists differ in length: {post.numel()} vs {pre.numel()}")
    if post.numel() and (post.min() < 0 or post.max() >= n_post or pre.min() < 0 or pre.max() >= n_pre):
        raise ValueError(f"edge indices out of range for a ({n_post}, {n_pre}) (post, pre) matrix")
    mask = torch.sparse_coo_tensor(torch.stack([post, pre]), torch.ones(post.numel()), (n_post, n_pre),
                                   check_invariants=False)
    mask = mask.coalesce()
    mask = torch.sparse_coo_tensor(mask.indices(), torch.ones(mask._nnz()), (n_post, n_pre),
                                   check_invariants=False).coalesce()
    return Connectivity(mask, sign)


def _drop_autapses(post: Tensor, pre: Tensor, autapses: bool, n_post: int, n_pre: int):
    if autapses or n_post != n_pre:
        return post, pre
    keep = post != pre
    return post[keep], pre[keep]


def all_to_all(n_post: int, n_pre: int, *, autapses: bool = True) -> Connectivity:
    """Every pre neuron to every post neuron (``autapses=False`` drops i -> i)."""
    post = torch.arange(n_post).repeat_interleave(n_pre)
    pre = torch.arange(n_pre).repeat(n_post)
    return from_edges(*_drop_autapses(post, pre, autapses, n_post, n_pre), n_post, n_pre)


def one_to_one(n: int) -> Connectivity:
    """Neuron i to neuron i."""
    i = torch.arange(n)
    return from_edges(i, i, n, n)


def fixed_prob(
    n_post: int, n_pre: int, p: float, *, autapses: bool = True, generator: torch.Generator | None = None
) -> Connectivity:
    """Each synapse present independently with probability ``p`` (Bernoulli).

    Drawn by geometric skipping per post row, so the cost is O(synapses), not
    O(n_post * n_pre).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"connection probability p must be in [0, 1]; got {p}")
    if p == 0.0:
        return from_edges(torch.empty(0), torch.empty(0), n_post, n_pre)
    if p == 1.0:
        return all_to_all(n_post, n_pre, autapses=autapses)
    mean = n_pre * p
    k = int(mean + 8 * math.sqrt(mean * (1 - p)) + 16)
    log1mp = math.log1p(-p)
    rows = torch.arange(n_post)
    posts, pres = [], []
    while rows.numel():
        u = torch.rand(rows.numel(), k, generator=generator, dtype=torch.float64).clamp_min(1e-300)
        gaps = torch.floor(torch.log(u) / log1mp).long() + 1
        pos = gaps.cumsum(1) - 1
        done = pos[:, -1] >= n_pre
        r, c = (pos < n_pre).logical_and(done[:, None]).nonzero(as_tuple=True)
        posts.append(rows[r])
        pres.append(pos[r, c])
        rows = rows[~done]
        k *= 2
    post, pre = torch.cat(posts), torch.cat(pres)
    return from_edges(*_drop_autapses(post, pre, autapses, n_post, n_pre), n_post, n_pre)


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
    n_post: int, n_pre: int, k: int, *, autapses: bool = True, generator: torch.Generator | None = None
) -> Connectivity:
    """Every post neuron receives exactly ``k`` distinct pre neurons."""
    limit = n_pre - (0 if autapses or n_pre != n_post else 1)
    if not 0 <= k <= limit:
        raise ValueError(f"in-degree k must be in [0, {limit}]; got {k}")
    pre = _choose_per_row(n_post, n_pre, k, not autapses and n_pre == n_post, generator)
    post = torch.arange(n_post)[:, None].expand(-1, k)
    return from_edges(post, pre, n_post, n_pre)


def fixed_out_degree(
    n_post: int, n_pre: int, k: int, *, autapses: bool = True, generator: torch.Generator | None = None
) -> Connectivity:
    """Every pre neuron projects to exactly ``k`` distinct post neurons."""
    limit = n_post - (0 if autapses or n_pre != n_post else 1)
    if not 0 <= k <= limit:
        raise ValueError(f"out-degree k must be in [0, {limit}]; got {k}")
    post = _choose_per_row(n_pre, n_post, k, not autapses and n_pre == n_post, generator)
    pre = torch.arange(n_pre)[:, None].expand(-1, k)
    return from_edges(post, pre, n_post, n_pre)


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
    return from_edges(torch.cat(posts), torch.cat(pres), n_post, n_pre)


def from_matrix(matrix, *, sign: Tensor | None = None) -> tuple[Connectivity, Tensor]:
    """Connectivity and per-synapse weights from a ``(post, pre)`` matrix.

    Accepts a dense or sparse torch tensor, a NumPy array or a SciPy sparse
    matrix. Entries that are exactly zero are absent synapses. Returns the
    connectivity and the weights in :meth:`Connectivity.edges` order.
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
    conn = from_edges(idx[0], idx[1], n_post, n_pre, sign)
    post, pre = conn.edges()
    # from_edges sorts by (post, pre); sort the weights the same way.
    order = torch.argsort(idx[0] * n_pre + idx[1])
    if not torch.equal(idx[0][order], post) or not torch.equal(idx[1][order], pre):
        raise RuntimeError("internal error: edge order mismatch in from_matrix")
    return conn, val[order]


CONNECTORS = {
    "all_to_all": all_to_all,
    "one_to_one": one_to_one,
    "fixed_prob": fixed_prob,
    "fixed_in_degree": fixed_in_degree,
    "fixed_out_degree": fixed_out_degree,
    "distance_prob": distance_prob,
}
