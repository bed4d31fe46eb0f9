r"""Population analyses of trained rate networks: trajectories and unit clusters.

Every function takes firing rates ``(trials, time, N)`` batch-first (what
``model(x)`` returns as its second output for the rate models, e.g. a CTRNN), so it works
for any network, recorded or simulated; all computations are in float64 on the CPU.

Trajectories
    :func:`pca_by_condition` averages the trials of each condition and fits PCA to the
    condition-averaged trajectories; :func:`targeted_dimensionality_reduction` finds the
    axes of the population along which task variables (choice, motion and colour coherence,
    context, ...) are encoded (Mante, Sussillo, Shenoy & Newsome 2013, Nature 503:78,
    Methods "targeted dimensionality reduction").

Units
    :func:`task_variance` measures how much each unit's activity varies across the trials
    of each task, :func:`normalized_task_variance` divides each unit's vector by its maximum
    over tasks, and :func:`cluster_units` groups units by k-means with k chosen by the
    silhouette score (Yang, Joglekar, Song, Newsome & Wang 2019, Nat. Neurosci. 22:297).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "ConditionPCA",
    "TargetedAxes",
    "TaskVariance",
    "UnitClusters",
    "cluster_units",
    "normalized_task_variance",
    "pca_by_condition",
    "targeted_dimensionality_reduction",
    "task_variance",
]

F64 = torch.float64


# --------------------------------------------------------------------------- input checks
def _as_f64(x: Any, name: str) -> Tensor:
    try:
        t = torch.as_tensor(x.detach() if isinstance(x, Tensor) else np.asarray(x))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} could not be converted to a numeric tensor: {err}") from None
    if t.is_complex():
        raise ValueError(f"{name} must be real; got dtype {t.dtype}")
    return t.to(device="cpu", dtype=F64)


def _check_rates(rates: Any, name: str = "rates") -> Tensor:
    r = _as_f64(rates, name)
    if r.dim() != 3:
        raise ValueError(f"{name} must be (trials, time, N); got shape {tuple(r.shape)}")
    if min(r.shape) < 1:
        raise ValueError(f"{name} must be non-empty (trials, time, N); got shape {tuple(r.shape)}")
    if not torch.isfinite(r).all():
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return r


def _check_per_trial(values: Any, n_trials: int, name: str) -> None:
    n = len(values)
    if n != n_trials:
        raise ValueError(f"{name} must have one value per trial: rates has {n_trials} trials, "
                         f"{name} has {n}")


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ValueError(f"{name} must be a positive integer; got {v!r}")
    return int(v)


def _condition_values(conditions: Any, n_trials: int, name: str = "conditions") -> list[Hashable]:
    """One hashable Python value per trial (tensors and arrays via ``tolist``)."""
    if isinstance(conditions, Tensor | np.ndarray):
        if conditions.ndim != 1:
            raise ValueError(f"{name} must be (trials,): one label per trial; got shape "
                             f"{tuple(conditions.shape)}")
        conditions = conditions.tolist()
    values = list(conditions)
    _check_per_trial(values, n_trials, name)
    for v in values:
        try:
            hash(v)
        except TypeError:
            raise ValueError(f"{name} must hold hashable labels; got {type(v).__name__}") from None
    return values


def _sorted_unique(values: Sequence[Hashable]) -> list[Hashable]:
    """Sorted unique values; in order of first appearance when they cannot be compared."""
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique)  # type: ignore[type-var]
    except TypeError:
        return unique


def _condition_average(r: Tensor, labels: Sequence[Hashable], unique: Sequence[Hashable]
                       ) -> tuple[Tensor, Tensor]:
    """The mean of the trials of each condition ``(n_conditions, ...)`` and the counts."""
    index = {c: i for i, c in enumerate(unique)}
    idx = torch.tensor([index[c] for c in labels])
    sums = torch.zeros(len(unique), *r.shape[1:], dtype=F64).index_add_(0, idx, r)
    counts = torch.bincount(idx, minlength=len(unique))
    return sums / counts.to(F64).reshape(-1, *([1] * (r.dim() - 1))), counts


def _pca(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """PCA of the rows of ``x`` ``(M, N)``: mean ``(N,)``, components ``(r, N)`` (rows,
    each with its largest-magnitude loading positive), explained-variance ratios ``(r,)``."""
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    flip = torch.sign(vh.gather(1, vh.abs().argmax(1, keepdim=True)))
    flip[flip == 0] = 1
    vh = vh * flip
    var = s.square()
    total = var.sum()
    evr = var / total if total > 0 else torch.zeros_like(var)
    return mean, vh, evr


# --------------------------------------------------------------------------- PCA
@dataclass
class ConditionPCA:
    """PCA of condition-averaged trajectories (:func:`pca_by_condition`).

    Attributes:
        components: ``(k, N)`` orthonormal principal axes, rows, largest variance first.
        explained_variance_ratio: ``(k,)`` fraction of the variance of the condition-averaged
            trajectories (over conditions x time) along each axis.
        mean: ``(N,)`` the mean over conditions and time that was subtracted.
        trajectories: ``(n_conditions, time, k)`` the condition averages projected,
            ``(averages - mean) @ components.T``.
        conditions: the sorted unique condition values, one per row of ``trajectories``.
        averages: ``(n_conditions, time, N)`` the condition-averaged rates.
        counts: ``(n_conditions,)`` the number of trials of each condition.
    """

    components: Tensor
    explained_variance_ratio: Tensor
    mean: Tensor
    trajectories: Tensor
    conditions: list[Hashable]
    averages: Tensor
    counts: Tensor

    def project(self, rates: Any) -> Tensor:
        """Project rates ``(..., N)`` (e.g. single trials ``(trials, time, N)``) onto the
        components: ``(rates - mean) @ components.T`` -> ``(..., k)``."""
        r = _as_f64(rates, "rates")
        if r.dim() < 1 or r.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"rates must end with N={self.mean.shape[0]} units; got shape "
                             f"{tuple(r.shape)}")
        return (r - self.mean) @ self.components.T

    def plot(self, dims: int = 2, path: Any = None, **kwargs: Any):
        """:func:`bionn.viz.population.plot_trajectories` of these trajectories."""
        from bionn.viz.population import plot_trajectories

        return plot_trajectories(self.trajectories, self.conditions,
                                 self.explained_variance_ratio, dims=dims, path=path, **kwargs)


def pca_by_condition(rates: Any, conditions: Any, n_components: int = 10) -> ConditionPCA:
    """PCA of the condition-averaged trajectories.

    The trials of each condition are averaged, giving ``(n_conditions, time, N)``; PCA is
    fitted to the ``n_conditions * time`` population vectors (centred by their mean over
    conditions and time; SVD in float64), and the averages are projected onto the top
    ``k = min(n_components, N, n_conditions * time)`` components.

    Args:
        rates: ``(trials, time, N)`` firing rates.
        conditions: ``(trials,)`` a label per trial: ints, floats, strings, tuples (e.g.
            ``(coherence, context)``), any hashable value. Conditions are ordered by sorting
            (by first appearance if the labels cannot be compared).
        n_components: the number of components to keep.

    Example:
        >>> rates = torch.randn(12, 5, 8)
        >>> pca = pca_by_condition(rates, [0, 1, 2] * 4, n_components=3)
        >>> tuple(pca.trajectories.shape), pca.conditions
        ((3, 5, 3), [0, 1, 2])
        >>> bool(torch.allclose(pca.components @ pca.components.T, torch.eye(3, dtype=torch.float64)))
        True
    """
    r = _check_rates(rates)
    n_components = _positive_int(n_components, "n_components")
    labels = _condition_values(conditions, r.shape[0])
    unique = _sorted_unique(labels)
    avg, counts = _condition_average(r, labels, unique)
    c, t, n = avg.shape
    mean, vh, evr = _pca(avg.reshape(c * t, n))
    k = min(n_components, vh.shape[0])
    comps = vh[:k]
    return ConditionPCA(comps, evr[:k], mean, (avg - mean) @ comps.T, unique, avg, counts)


# --------------------------------------------------------------------------- TDR
@dataclass
class TargetedAxes:
    """Task-variable axes of the population (:func:`targeted_dimensionality_reduction`).

    Attributes:
        axes: ``(n_regressors, N)`` orthonormal rows, in the order of ``names`` (axis ``v``
            is the part of regressor ``v``'s denoised coefficient vector orthogonal to the
            axes before it, signed to point along it).
        names: the regressor names.
        coefficients: ``(n_regressors, time, N)`` regression coefficients of the z-scored
            rates on the regressors (the constant term dropped), before denoising.
        denoised: ``(n_regressors, time, N)`` the coefficients projected onto the top
            ``n_pcs`` principal components.
        t_max: ``(n_regressors,)`` the time step at which each denoised coefficient vector
            has its largest norm (the vectors orthogonalized into ``axes``).
        projections: ``(trials, time, n_regressors)`` the z-scored single-trial rates
            projected onto ``axes``.
        mean, std: ``(N,)`` each unit's mean and standard deviation over trials and time
            (the z-scoring; 1 for a unit with no variance).
        pcs: ``(n_pcs, N)`` the denoising components (rows).
    """

    axes: Tensor
    names: list[str]
    coefficients: Tensor
    denoised: Tensor
    t_max: Tensor
    projections: Tensor
    mean: Tensor
    std: Tensor
    pcs: Tensor

    def project(self, rates: Any) -> Tensor:
        """Z-score rates ``(..., N)`` with this fit's ``mean``/``std`` and project them onto
        the axes -> ``(..., n_regressors)``."""
        r = _as_f64(rates, "rates")
        if r.dim() < 1 or r.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"rates must end with N={self.mean.shape[0]} units; got shape "
                             f"{tuple(r.shape)}")
        return ((r - self.mean) / self.std) @ self.axes.T


def targeted_dimensionality_reduction(rates: Any, regressors: Mapping[str, Any],
                                      n_pcs: int | None = 12) -> TargetedAxes:
    r"""Targeted dimensionality reduction (Mante et al. 2013, Methods).

    1. Each unit is z-scored with its mean and standard deviation over all trials and
       time steps.
    2. For every unit ``i`` and time step ``t``, a least-squares linear regression over
       trials ``k``: :math:`r_{i,t}(k) = \sum_v \beta_{v,i,t}\,F_v(k) + \beta_{0,i,t}`
       (``F_v`` the regressors, plus a constant) gives the coefficient vectors
       :math:`\beta_{v,t} \in \mathbb R^N`.
    3. Denoising: each :math:`\beta_{v,t}` is projected onto the span of the top ``n_pcs``
       principal components of the condition-averaged z-scored responses, a condition
       being one combination of the regressor values (all ``time`` steps of every
       condition average are the samples of that PCA).
    4. For each regressor the denoised vector at the time of its largest norm,
       :math:`\beta^{max}_v`.
    5. The axes: QR decomposition of :math:`[\beta^{max}_1 \dots \beta^{max}_V]`, so axis
       ``v`` is :math:`\beta^{max}_v` orthogonalized against the axes before it (the order
       of ``regressors`` matters: put the variable the others should be orthogonal to
       first), each signed to have a positive dot product with :math:`\beta^{max}_v`.

    Args:
        rates: ``(trials, time, N)`` firing rates.
        regressors: name -> ``(trials,)`` numeric values (e.g. ``choice`` +-1,
            ``motion`` and ``colour`` signed coherence, ``context`` +-1). Together with
            the constant they must be linearly independent over trials, and there can be
            at most ``N`` of them.
        n_pcs: the number of principal components kept by the denoising (``None``: no
            denoising); at most the number of available components is used.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(40, 2, generator=g)
        >>> rates = (x @ torch.randn(2, 6, generator=g))[:, None, :].expand(40, 3, 6)
        >>> tdr = targeted_dimensionality_reduction(rates, {"a": x[:, 0], "b": x[:, 1]}, n_pcs=None)
        >>> tuple(tdr.axes.shape), tuple(tdr.projections.shape), tdr.names
        ((2, 6), (40, 3, 2), ['a', 'b'])
    """
    r = _check_rates(rates)
    k_trials, t_steps, n = r.shape
    if not isinstance(regressors, Mapping) or len(regressors) == 0:
        raise ValueError("regressors must be a non-empty dict name -> (trials,) values")
    names = [str(key) for key in regressors]
    cols = []
    for key, values in regressors.items():
        v = _as_f64(values, f"regressors[{key!r}]")
        if v.dim() != 1:
            raise ValueError(f"regressors[{key!r}] must be (trials,); got shape {tuple(v.shape)}")
        _check_per_trial(v, k_trials, f"regressors[{key!r}]")
        if not torch.isfinite(v).all():
            raise ValueError(f"regressors[{key!r}] contains non-finite values")
        cols.append(v)
    n_reg = len(cols)
    if n_reg > n:
        raise ValueError(f"regressors: {n_reg} regressors need at least as many units; rates has "
                         f"N={n}")
    if n_pcs is not None:
        n_pcs = _positive_int(n_pcs, "n_pcs")
    design = torch.stack([*cols, torch.ones(k_trials, dtype=F64)], 1)  # (trials, V + 1)
    if int(torch.linalg.matrix_rank(design)) < n_reg + 1:
        raise ValueError(f"regressors {names} are linearly dependent over the trials (with the "
                         "constant term): a constant or duplicated regressor has no unique "
                         "coefficient")

    # 1. z-score each unit
    mean = r.mean((0, 1))
    std = r.std((0, 1), correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    z = (r - mean) / std
    # 2. regression per unit and time, all at once
    beta = torch.linalg.lstsq(design, z.reshape(k_trials, t_steps * n)).solution
    coefficients = beta[:n_reg].reshape(n_reg, t_steps, n)
    # 3. denoise onto the top PCs of the condition-averaged responses
    labels = [tuple(row) for row in torch.stack(cols, 1).tolist()]
    unique = _sorted_unique(labels)
    avg, _ = _condition_average(z, labels, unique)
    _, vh, _ = _pca(avg.reshape(-1, n))
    pcs = vh if n_pcs is None else vh[:n_pcs]
    denoised = coefficients if n_pcs is None else (coefficients @ pcs.T) @ pcs
    # 4. the time of the largest norm
    t_max = denoised.norm(dim=-1).argmax(1)
    b_max = denoised[torch.arange(n_reg), t_max]  # (V, N)
    # 5. orthogonalize in the given order
    q, rr = torch.linalg.qr(b_max.T)
    sign = torch.sign(torch.diagonal(rr))
    sign[sign == 0] = 1
    axes = (q * sign).T.contiguous()
    return TargetedAxes(axes, names, coefficients, denoised, t_max, z @ axes.T, mean, std, pcs)


# --------------------------------------------------------------------------- task variance
@dataclass
class TaskVariance:
    """Each unit's variance across trials, averaged over time, per task (:func:`task_variance`).

    Attributes:
        variance: ``(N, n_tasks)``, columns in the order of ``task_names``.
        task_names: the tasks.
    """

    variance: Tensor
    task_names: list[str]

    def normalized(self, min_total: float = 1e-3) -> tuple[Tensor, Tensor]:
        """:func:`normalized_task_variance` of this variance."""
        return normalized_task_variance(self, min_total)


def _run_model(net: nn.Module, batch: Any, name: str) -> Tensor:
    inputs = getattr(batch, "inputs", batch)
    if not isinstance(inputs, Tensor) or inputs.dim() != 3:
        raise ValueError(f"{name} must be a TrialBatch (or an input tensor (trials, time, "
                         f"n_input)); got {type(batch).__name__}")
    param = next(iter(net.parameters()), None)
    if param is not None:
        inputs = inputs.to(device=param.device, dtype=param.dtype)
    with torch.no_grad():
        out = net(inputs)
    if not (isinstance(out, tuple) and len(out) >= 2 and isinstance(out[1], Tensor)):
        raise TypeError(f"{type(net).__name__}(x) must return (outputs, rates) with rates "
                        "(trials, time, N); give the rates instead")
    return out[1]


def task_variance(source: Mapping[str, Any] | nn.Module, batches: Mapping[str, Any] | None = None,
                  *, masks: Mapping[str, Any] | None = None, noise: bool = False) -> TaskVariance:
    r"""Task variance of every unit (Yang et al. 2019).

    For task ``a``, unit ``i``:

    .. math:: TV_{i,a} = \frac{1}{|T|} \sum_{t \in T} \mathrm{Var}_k\, r_{i,k,t}

    the (population, ``ddof = 0``) variance of the unit's rate across the trials ``k`` at
    each time step, averaged over the time steps ``T``. With a valid-step mask
    ``(trials, time)``, the variance at step ``t`` is taken over the trials valid at ``t``,
    and ``T`` holds the steps with at least two valid trials. Yang et al. take the variance
    across stimulus conditions in a task's stimulus and response epochs: give trials that
    span the conditions (noise-free to measure conditions only, or condition-averaged
    rates), and a mask of those epochs to exclude fixation.

    Args:
        source: task name -> rates ``(trials, time, N)`` (any network), or a model whose
            ``model(x)`` returns ``(outputs, rates)`` batch-first (with ``batches``).
        batches: with a model: task name -> :class:`~bionn.tasks.TrialBatch` (or input
            tensor); the model is run on each without gradients.
        masks: task name -> ``(trials, time)`` valid steps (nonzero = used); by default
            every step, or with a model the steps where the batch's ``mask`` is nonzero
            (padding excluded).
        noise: with a model, keep its recurrent noise (``preact_noise``,
            ``postact_noise``); by default it runs on a noise-free float64 copy (the model
            is not changed).

    Example:
        >>> tv = task_variance({"a": torch.zeros(4, 3, 2), "b": torch.randn(4, 3, 2)})
        >>> tuple(tv.variance.shape), tv.task_names, float(tv.variance[:, 0].sum())
        ((2, 2), ['a', 'b'], 0.0)
    """
    if isinstance(source, nn.Module):
        if not isinstance(batches, Mapping) or not batches:
            raise ValueError("batches must be a non-empty dict task name -> TrialBatch when "
                             "source is a model")
        from bionn.analysis.fixed_points import _analysis_copy

        net = source if noise else _analysis_copy(source, F64)
        rates_by_task = {str(k): _run_model(net, b, f"batches[{k!r}]") for k, b in batches.items()}
        default_masks = {str(k): b.mask for k, b in batches.items() if hasattr(b, "mask")}
    elif isinstance(source, Mapping):
        if batches is not None:
            raise ValueError("batches is only used with a model; source is already rates")
        if not source:
            raise ValueError("source must be a non-empty dict task name -> rates")
        rates_by_task = {str(k): v for k, v in source.items()}
        default_masks = {}
    else:
        raise ValueError("source must be a dict task name -> rates (trials, time, N) or a "
                         f"model; got {type(source).__name__}")
    masks = {str(k): v for k, v in (masks or {}).items()}
    unknown = sorted(set(masks) - set(rates_by_task))
    if unknown:
        raise ValueError(f"masks names tasks that are not given: {unknown}")

    names, columns, n_units = [], [], None
    for name, rates in rates_by_task.items():
        r = _check_rates(rates, f"rates[{name!r}]")
        if n_units is None:
            n_units = r.shape[2]
        elif r.shape[2] != n_units:
            raise ValueError(f"rates[{name!r}] has N={r.shape[2]} units; the first task has "
                             f"{n_units}")
        m = masks.get(name, default_masks.get(name))
        if m is None:
            w = torch.ones(r.shape[:2], dtype=F64)
        else:
            w = (_as_f64(m, f"masks[{name!r}]") != 0).to(F64)
            if tuple(w.shape) != tuple(r.shape[:2]):
                raise ValueError(f"masks[{name!r}] must be (trials, time) = {tuple(r.shape[:2])}; "
                                 f"got shape {tuple(w.shape)}")
        cnt = w.sum(0)  # (time,)
        used = cnt >= 2
        if not used.any():
            raise ValueError(f"rates[{name!r}]: no time step has two valid trials to take a "
                             "variance over")
        wc = w[..., None]
        mu = (wc * r).sum(0) / cnt.clamp(min=1)[:, None]
        var = (wc * (r - mu).square()).sum(0) / cnt.clamp(min=1)[:, None]  # (time, N)
        columns.append(var[used].mean(0))
        names.append(name)
    return TaskVariance(torch.stack(columns, 1), names)


def normalized_task_variance(tv: TaskVariance | Any, min_total: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Each unit's task-variance vector divided by its maximum over tasks (Yang et al. 2019).

    Units whose variance summed over tasks is not above ``min_total`` (absolute, in squared
    rate units; 1e-3 as in Yang et al.'s code) are dropped as inactive.

    Args:
        tv: a :class:`TaskVariance` or an ``(N, n_tasks)`` array.
        min_total: the activity threshold.

    Returns:
        ``(normalized (n_kept, n_tasks), kept (n_kept,))``: values in ``[0, 1]`` with a 1
        in each row, and the indices of the kept units.

    Example:
        >>> norm, kept = normalized_task_variance(torch.tensor([[2.0, 1.0], [0.0, 0.0], [0.5, 1.0]]))
        >>> norm.tolist(), kept.tolist()
        ([[1.0, 0.5], [0.5, 1.0]], [0, 2])
    """
    v = _as_f64(tv.variance if isinstance(tv, TaskVariance) else tv, "tv")
    if v.dim() != 2:
        raise ValueError(f"tv must be (units, tasks); got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all() or (v < 0).any():
        raise ValueError("tv must hold finite, non-negative variances")
    if not isinstance(min_total, int | float) or min_total < 0:
        raise ValueError(f"min_total must be a non-negative number; got {min_total!r}")
    kept = torch.nonzero(v.sum(1) > min_total).flatten()
    x = v[kept]
    return x / x.max(1, keepdim=True).values, kept


# --------------------------------------------------------------------------- clustering
@dataclass
class UnitClusters:
    """k-means clusters of units (:func:`cluster_units`).

    Attributes:
        labels: ``(n_units,)`` cluster of each clustered unit, ``0 .. k-1``; clusters are
            numbered by their preferred task (the argmax of their mean feature vector),
            then by decreasing size.
        k: the number of clusters (best silhouette score).
        silhouette: k -> mean silhouette score, for each k tried.
        order: ``(n_units,)`` unit positions sorted by cluster (then by decreasing value
            at the cluster's preferred task): ``features[order]`` is the map's row order.
        units: ``(n_units,)`` indices of the clustered units in the network (the ``kept``
            units when the input was a :class:`TaskVariance`, else ``0 .. n_units-1``).
        features: ``(n_units, n_features)`` what was clustered.
    """

    labels: Tensor
    k: int
    silhouette: dict[int, float]
    order: Tensor
    units: Tensor
    features: Tensor = field(repr=False)

    def plot(self, task_names: Sequence[str] | None = None, path: Any = None):
        """:func:`bionn.viz.population.plot_clusters` of these clusters."""
        from bionn.viz.population import plot_clusters

        return plot_clusters(self.silhouette, self.k, self.features, self.labels, task_names,
                             path=path)

    def plot_map(self, task_names: Sequence[str] | None = None, path: Any = None):
        """:func:`bionn.viz.population.plot_task_variance_map` of the clustered features,
        units sorted by cluster."""
        from bionn.viz.population import plot_task_variance_map

        return plot_task_variance_map(self.features, task_names, self.order, self.labels,
                                      path=path)


def cluster_units(tv: TaskVariance | Any, k_range: Iterable[int] = range(2, 31), seed: int = 0,
                  *, min_total: float = 1e-3, n_init: int = 10) -> UnitClusters:
    """Cluster units by k-means on their (normalized) task variance, with k chosen by the
    best mean silhouette score (Yang et al. 2019).

    Every ``k`` of ``k_range`` with ``2 <= k <= n_units - 1`` (where a silhouette score is
    defined) is fitted with scikit-learn's ``KMeans(n_clusters=k, n_init=n_init,
    random_state=seed)`` and scored by scikit-learn's ``silhouette_score`` (Euclidean); a
    ``k`` for which k-means ends with fewer than ``k`` distinct clusters (too few distinct
    units) is scored ``nan`` and not chosen. The ``k`` of the largest score wins (the
    smallest on a tie).

    Args:
        tv: ``(n_units, n_features)`` features, typically the normalized task variance, or a
            :class:`TaskVariance` (normalized here with ``min_total``).
        k_range: the numbers of clusters to try.
        seed: the k-means seed.
        min_total: the activity threshold of :func:`normalized_task_variance` (only with a
            :class:`TaskVariance`).
        n_init: k-means restarts per k.

    Example:
        >>> feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.05, 1.0]])
        >>> cl = cluster_units(feats, range(2, 5))
        >>> cl.k, sorted(cl.silhouette), cl.labels.tolist()
        (2, [2, 3, 4], [0, 0, 1, 1, 1])
    """
    try:
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.metrics import silhouette_score
    except ImportError:  # pragma: no cover - scikit-learn is the optional extra `data`
        raise ImportError("cluster_units needs scikit-learn: pip install 'bionn[data]'") from None

    if isinstance(tv, TaskVariance):
        x, units = normalized_task_variance(tv, min_total)
    else:
        x = _as_f64(tv, "tv")
        if x.dim() != 2:
            raise ValueError(f"tv must be (units, features); got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("tv contains non-finite values")
        units = torch.arange(x.shape[0])
    n_units = x.shape[0]
    ks = sorted({int(k) for k in k_range})
    if any(k < 1 for k in ks):
        raise ValueError(f"k_range must hold positive integers; got {ks}")
    ks = [k for k in ks if 2 <= k <= n_units - 1]
    if not ks:
        raise ValueError(f"k_range has no k with 2 <= k <= n_units - 1 = {n_units - 1} "
                         f"({n_units} units): nothing to score")
    data = x.numpy()
    scores: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    for k in ks:
        with warnings.catch_warnings():  # fewer distinct points than k: scored nan below
            warnings.simplefilter("ignore", ConvergenceWarning)
            lab = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(data)
        fits[k] = lab
        ok = len(np.unique(lab)) == k
        scores[k] = float(silhouette_score(data, lab)) if ok else math.nan
    valid = [k for k in ks if not math.isnan(scores[k])]
    if not valid:
        raise ValueError(f"k-means found fewer than k distinct clusters for every k in {ks}: "
                         "the units have too few distinct feature vectors")
    best = max(valid, key=lambda k: (scores[k], -k))
    raw = fits[best]
    # canonical numbering: by preferred feature, then larger clusters first
    keys = []
    for c in np.unique(raw):
        centre = data[raw == c].mean(0)
        keys.append((int(centre.argmax()), -int((raw == c).sum()), -float(centre.max()), int(c)))
    relabel = {key[-1]: i for i, key in enumerate(sorted(keys))}
    labels = np.array([relabel[int(c)] for c in raw])
    pref = {relabel[key[-1]]: key[0] for key in keys}
    order = sorted(range(n_units), key=lambda i: (labels[i], -data[i, pref[labels[i]]], i))
    return UnitClusters(torch.as_tensor(labels), best, scores, torch.tensor(order), units, x)

