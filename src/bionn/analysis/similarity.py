r"""Representational similarity: linear CKA, Procrustes shape distance, RDMs and RSA.

Every function compares representations given as matrices with one row per condition
(stimulus, trial-averaged condition or time point) and one column per unit; two
representations compared with each other must have the *same rows in the same order*,
but may have different numbers of units. Torch tensors (any device or dtype), numpy arrays
and nested sequences are accepted; all computation is in float64 numpy.

* :func:`linear_cka` -- linear centered kernel alignment (Kornblith et al. 2019), in
  ``[0, 1]``; invariant to orthogonal maps, isotropic scaling and translation.
* :func:`procrustes_distance` -- the orthogonal Procrustes shape metric (Williams et al.
  2021), ``0`` for a rotated, scaled and translated copy; a true metric (symmetric,
  triangle inequality).
* :func:`rdm` -- the representational dissimilarity matrix (correlation, euclidean or
  squared euclidean distance between condition rows).
* :func:`rsa` -- representational similarity analysis (Kriegeskorte et al. 2008): the
  Spearman or Pearson correlation of the upper triangles of two RDMs.

Relation to ``rsatoolbox`` (0.3.2): ``calc_rdm(..., method="correlation")`` equals
``rdm(x, "correlation")``; ``calc_rdm(..., method="euclidean")`` is the *squared* euclidean
distance divided by the number of channels, i.e. ``rdm(x, "sqeuclidean") / x.shape[1]``;
``compare(..., method="spearman")`` and ``method="corr"`` equal ``rsa(..., compare=
"spearman")`` and ``compare="pearson"`` on the same RDMs.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

__all__ = ["linear_cka", "procrustes_distance", "rdm", "rsa"]

Metric = Literal["correlation", "euclidean", "sqeuclidean"]
Compare = Literal["spearman", "pearson"]
_METRICS = ("correlation", "euclidean", "sqeuclidean")
_COMPARES = ("spearman", "pearson")


# --------------------------------------------------------------------------- input checks
def _as_matrix(a: Any, name: str, min_rows: int = 2) -> np.ndarray:
    """``a`` as a float64 ``(n_conditions, n_units)`` numpy array, or a ValueError naming it."""
    if isinstance(a, torch.Tensor):
        if a.is_complex():
            raise ValueError(f"{name} must be real; got a complex tensor")
        arr = a.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(a)
        if np.iscomplexobj(arr):
            raise ValueError(f"{name} must be real; got a complex array")
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}") from err
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_conditions, n_units); got shape {arr.shape}")
    n, p = arr.shape
    if n < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} conditions (rows); got {n}")
    if p < 1:
        raise ValueError(f"{name} needs at least 1 unit (column); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values (nan or inf)")
    return arr


def _as_pair(x: Any, y: Any, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = _as_matrix(x, "x", min_rows), _as_matrix(y, "y", min_rows)
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"x and y must have the same conditions (rows); got x with "
                         f"{xa.shape[0]} rows and y with {ya.shape[0]}")
    return xa, ya


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}; got {metric!r}")


def _centre(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=0, keepdims=True)


# --------------------------------------------------------------------------- CKA
def linear_cka(x: Any, y: Any) -> float:
    r"""Linear centered kernel alignment between two representations of the same conditions.

    With ``X_c``, ``Y_c`` the column-centred ``x`` ``(n_conditions, n_units_x)`` and ``y``
    ``(n_conditions, n_units_y)`` (Kornblith et al. 2019, eq. 5):

        CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F),

    equivalently ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with linear kernels
    ``K = X_c X_c^T``, ``L = Y_c Y_c^T`` (the smaller of the two forms is computed).
    It lies in ``[0, 1]``, is 1 for ``y = s x Q + b`` (``Q`` orthogonal, ``s != 0``),
    and is *not* invariant to general invertible linear maps. It is biased upward with few
    conditions: for independent isotropic Gaussian ``x``, ``y`` with ``p`` units each it is
    about ``p / (n_conditions + p)``, not 0.

    Args:
        x: ``(n_conditions, n_units_x)``, at least 2 rows.
        y: ``(n_conditions, n_units_y)``, the same rows as ``x``.

    Returns:
        The CKA as a Python float in ``[0, 1]``.

    Raises:
        ValueError: non-2-D input, fewer than 2 conditions, different row counts, or a
            representation that is constant across conditions (CKA undefined).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(100, 8, generator=g, dtype=torch.float64)
        >>> q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
        >>> round(linear_cka(x, 3.0 * x @ q + 1.0), 10)
        1.0
        >>> linear_cka(x, torch.randn(100, 8, generator=g)) < 0.2
        True
    """
    xa, ya = _as_pair(x, y)
    xc, yc = _centre(xa), _centre(ya)
    n, px, py = xc.shape[0], xc.shape[1], yc.shape[1]
    if n < max(px, py):  # Gram (n x n) form
        k, ell = xc @ xc.T, yc @ yc.T
        cross = float(np.sum(k * ell))
        nx, ny = float(np.linalg.norm(k)), float(np.linalg.norm(ell))
    else:  # feature-space form
        cross = float(np.linalg.norm(yc.T @ xc) ** 2)
        nx, ny = float(np.linalg.norm(xc.T @ xc)), float(np.linalg.norm(yc.T @ yc))
    for name, v in (("x", nx), ("y", ny)):
        if v == 0.0:
            raise ValueError(f"{name} is constant across conditions (zero after centring); "
                             "CKA is undefined")
    return float(min(1.0, max(0.0, cross / (nx * ny))))


# --------------------------------------------------------------------------- Procrustes
def procrustes_distance(x: Any, y: Any, angular: bool = False) -> float:
    r"""Orthogonal Procrustes shape distance (Williams et al. 2021, "Generalized shape
    metrics on neural representations").

    Both representations are column-centred, scaled to unit Frobenius norm and the narrower
    is zero-padded to the width of the wider (``X``, ``Y`` of shape ``(n_conditions, p)``).
    With ``||X^T Y||_*`` the nuclear norm (sum of singular values, in ``[0, 1]``):

        d(X, Y)     = min_{Q orthogonal} ||X - Y Q||_F = sqrt(2 - 2 ||X^T Y||_*)   (default)
        theta(X, Y) = min_{Q orthogonal} arccos <X, Y Q>_F = arccos ||X^T Y||_*   (angular=True)

    The optimum is ``Q = V U^T`` from the SVD ``X^T Y = U S V^T``. Both are metrics on
    shapes (symmetric, triangle inequality), related by ``d = 2 sin(theta / 2)``; ``d`` lies
    in ``[0, sqrt(2)]``, ``theta`` in ``[0, pi/2]``. Both are 0 for ``y = s x Q + b``
    (``Q`` orthogonal, ``s != 0``), up to rounding: in float64 at most about 1e-8 (the
    square root of the rounding error in ``||X^T Y||_*``, which is clipped to ``[0, 1]``).

    Args:
        x: ``(n_conditions, n_units_x)``, at least 2 rows.
        y: ``(n_conditions, n_units_y)``, the same rows as ``x``.
        angular: return the angle ``theta`` (radians) instead of the chord distance ``d``.

    Returns:
        The distance as a Python float.

    Raises:
        ValueError: non-2-D input, fewer than 2 conditions, different row counts, or a
            representation that is constant across conditions.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(60, 5, generator=g, dtype=torch.float64)
        >>> q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
        >>> procrustes_distance(x, 0.5 * x @ q - 2.0) < 1e-7
        True
        >>> y = torch.randn(60, 3, generator=g, dtype=torch.float64)
        >>> d = procrustes_distance(x, y)
        >>> abs(d - procrustes_distance(y, x)) < 1e-12 and 0 < d <= 2 ** 0.5
        True
    """
    xa, ya = _as_pair(x, y)
    mats = []
    for name, a in (("x", xa), ("y", ya)):
        c = _centre(a)
        norm = float(np.linalg.norm(c))
        if norm == 0.0:
            raise ValueError(f"{name} is constant across conditions (zero after centring); "
                             "its shape is undefined")
        mats.append(c / norm)
    xn, yn = mats
    p = max(xn.shape[1], yn.shape[1])
    xn = np.pad(xn, ((0, 0), (0, p - xn.shape[1])))
    yn = np.pad(yn, ((0, 0), (0, p - yn.shape[1])))
    nuc = float(np.linalg.svd(xn.T @ yn, compute_uv=False).sum())
    nuc = min(1.0, max(0.0, nuc))
    if angular:
        return float(np.arccos(nuc))
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * nuc)))


# --------------------------------------------------------------------------- RDM / RSA
def rdm(x: Any, metric: Metric = "correlation") -> np.ndarray:
    r"""Representational dissimilarity matrix between the condition rows of ``x``.

    For rows ``x_i`` of ``x`` ``(n_conditions, n_units)``:

    * ``"correlation"``: ``D_ij = 1 - r(x_i, x_j)``, with ``r`` the Pearson correlation
      across units (each row centred over its units), in ``[0, 2]``; needs at least 2 units
      and no constant row. Equals rsatoolbox's ``calc_rdm(..., method="correlation")`` and
      scipy's ``pdist(x, "correlation")``.
    * ``"euclidean"``: the plain euclidean distance ``D_ij = ||x_i - x_j||_2`` (scipy's
      ``pdist(x, "euclidean")``).
    * ``"sqeuclidean"``: the squared euclidean distance ``D_ij = ||x_i - x_j||_2^2``.
      rsatoolbox's ``calc_rdm(..., method="euclidean")`` is this divided by the number of
      units: ``rdm(x, "sqeuclidean") / n_units``.

    The result is symmetric with an exact zero diagonal.

    Args:
        x: ``(n_conditions, n_units)``, at least 2 rows.
        metric: ``"correlation"`` (default), ``"euclidean"`` or ``"sqeuclidean"``.

    Returns:
        A float64 numpy array ``(n_conditions, n_conditions)``.

    Raises:
        ValueError: non-2-D input, fewer than 2 conditions, an unknown ``metric``, or (for
            ``"correlation"``) fewer than 2 units or a row that is constant across units.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
        >>> rdm(x, "euclidean")
        array([[ 0.,  5., 10.],
               [ 5.,  0.,  5.],
               [10.,  5.,  0.]])
        >>> rdm(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 4.0, 6.0]])).round(12)
        array([[0., 2., 0.],
               [2., 0., 2.],
               [0., 2., 0.]])
    """
    _check_metric(metric)
    return _rdm(_as_matrix(x, "x"), metric, "x")


def _rdm(xa: np.ndarray, metric: str, name: str) -> np.ndarray:
    n = xa.shape[0]
    if metric == "correlation":
        if xa.shape[1] < 2:
            raise ValueError(f"{name} needs at least 2 units (columns) for the correlation "
                             f"distance; got shape {xa.shape}")
        rc = xa - xa.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(rc, axis=1)
        bad = np.flatnonzero(norms == 0.0)
        if bad.size:
            raise ValueError(f"{name} rows {bad.tolist()} are constant across units; the "
                             "correlation distance is undefined for them")
        rn = rc / norms[:, None]
        d = np.clip(1.0 - rn @ rn.T, 0.0, 2.0)
    else:
        xc = _centre(xa)  # translation-invariant; lessens cancellation in the Gram trick
        sq = np.einsum("ij,ij->i", xc, xc)
        d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (xc @ xc.T), 0.0)
        if metric == "euclidean":
            d = np.sqrt(d)
    d = 0.5 * (d + d.T)
    d[np.diag_indices(n)] = 0.0
    return d


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks from 1 with ties given their average rank (scipy.stats.rankdata 'average')."""
    sorter = np.argsort(a, kind="mergesort")
    inv = np.empty(sorter.size, dtype=np.intp)
    inv[sorter] = np.arange(sorter.size)
    s = a[sorter]
    obs = np.r_[True, s[1:] != s[:-1]]
    dense = np.cumsum(obs)[inv]
    count = np.r_[np.flatnonzero(obs), obs.size]
    return 0.5 * (count[dense] + count[dense - 1] + 1)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ac, bc = a - a.mean(), b - b.mean()
    for name, v in (("x", ac), ("y", bc)):
        if not np.any(v):
            raise ValueError(f"the RDM of {name} has all its off-diagonal dissimilarities "
                             "equal; their correlation is undefined")
    r = float(ac @ bc / (np.linalg.norm(ac) * np.linalg.norm(bc)))
    return min(1.0, max(-1.0, r))


def rsa(x: Any, y: Any, metric: Metric = "correlation", compare: Compare = "spearman") -> float:
    r"""Representational similarity analysis (Kriegeskorte et al. 2008): the correlation of
    the RDMs of two representations of the same conditions.

    With ``D_x = rdm(x, metric)`` and ``D_y = rdm(y, metric)`` ``(n, n)``, and ``u(D)`` the
    ``n (n - 1) / 2`` entries above the diagonal (``numpy.triu_indices(n, k=1)``):

        RSA(x, y) = rho(u(D_x), u(D_y)),

    with ``rho`` the Spearman rank correlation (ties given average ranks; default) or the
    Pearson correlation. Spearman is unchanged by any monotone map of the dissimilarities
    (so ``"euclidean"`` and ``"sqeuclidean"`` give the same value). These equal
    rsatoolbox's ``compare(rdm_x, rdm_y, method="spearman")`` and ``method="corr"``.

    Args:
        x: ``(n_conditions, n_units_x)``, at least 3 rows.
        y: ``(n_conditions, n_units_y)``, the same rows as ``x``.
        metric: the RDM dissimilarity, as in :func:`rdm`.
        compare: ``"spearman"`` (default) or ``"pearson"``.

    Returns:
        The correlation as a Python float in ``[-1, 1]``.

    Raises:
        ValueError: non-2-D input, fewer than 3 conditions, different row counts, an
            unknown ``metric`` or ``compare``, or an RDM whose dissimilarities are all equal.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(20, 6, generator=g, dtype=torch.float64)
        >>> rsa(x, x)
        1.0
        >>> round(rsa(x, 2 * x + 1, metric="euclidean", compare="pearson"), 12)
        1.0
    """
    _check_metric(metric)
    if compare not in _COMPARES:
        raise ValueError(f"compare must be one of {_COMPARES}; got {compare!r}")
    xa, ya = _as_pair(x, y, min_rows=3)
    iu = np.triu_indices(xa.shape[0], k=1)
    ux, uy = _rdm(xa, metric, "x")[iu], _rdm(ya, metric, "y")[iu]
    if compare == "spearman":
        ux, uy = _rankdata(ux), _rankdata(uy)
    return _pearson(ux, uy)
