"""Supervised classification datasets as tensors, offline and deterministic.

Every loader returns a :class:`Dataset` (train/test tensors, optional validation
split, class count, input shape) and never touches the network:

- :func:`load_digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images),
  fixed stratified train/test split, standardised with train-set statistics.
- :func:`load_mnist1d`: MNIST-1D (Greydanus 2020) generated procedurally here, a
  numpy-only port of the reference generator (same random draws, same data).
- :func:`load_yin_yang`: the Yin-Yang dataset (Kriener, Göltz & Petrovici 2022), generated
  procedurally from its geometric definition.
- :func:`load_idx_dataset`: MNIST / Fashion-MNIST from the standard IDX files in a
  folder you provide.
- :func:`load_cifar10`: CIFAR-10 from the python batches in a folder you provide,
  unpickled with a restricted unpickler.

Any of them becomes spike trains with :func:`spiking_dataset` (an encoder of
:mod:`bionn.tasks.encoders` applied to every split).

Model selection should use a validation split (``val_size``), never the test set.

Example:
    >>> import torch
    >>> from bionn.tasks.datasets import load_mnist1d, iterate_minibatches
    >>> data = load_mnist1d(num_samples=500)
    >>> data.x_train.shape, data.x_test.shape, data.n_classes
    (torch.Size([400, 40]), torch.Size([100, 40]), 10)
    >>> xb, yb = next(iterate_minibatches(data.x_train, data.y_train, 32,
    ...                                   torch.Generator().manual_seed(0)))
    >>> xb.shape, yb.dtype
    (torch.Size([32, 40]), torch.int64)
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import pickle
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bionn.tasks.encoders import ENCODERS

__all__ = [
    "Dataset",
    "DATASETS",
    "load_dataset",
    "load_digits",
    "load_mnist1d",
    "load_yin_yang",
    "YIN_YANG_CLASSES",
    "spiking_dataset",
    "load_idx_dataset",
    "load_cifar10",
    "read_idx",
    "split_validation",
    "iterate_minibatches",
]


@dataclass
class Dataset:
    """A classification dataset held as tensors.

    Attributes:
        x_train, y_train: training inputs ``(N, *input_shape)`` float32 and labels ``(N,)`` int64.
        x_test, y_test: test inputs and labels (report on these once, at the end).
        n_classes: number of classes (labels are ``0 .. n_classes - 1``).
        input_shape: shape of one input, e.g. ``(1, 28, 28)`` or ``(40,)``.
        name: dataset name.
        x_val, y_val: optional validation split carved out of the training data
            (``None`` when no ``val_size`` was asked for).
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    input_shape: tuple[int, ...]
    name: str
    x_val: Tensor | None = None
    y_val: Tensor | None = None

    def __repr__(self) -> str:
        val = "" if self.x_val is None else f", val={len(self.x_val)}"
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}{val}, "
            f"test={len(self.x_test)}, n_classes={self.n_classes}, input_shape={self.input_shape})"
        )


# --------------------------------------------------------------------------- helpers


def _check_int(value, arg: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    return int(value)


def split_validation(
    x: Tensor, y: Tensor, val_size: int, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split ``(x, y)`` into ``(x_train, y_train, x_val, y_val)`` with ``val_size``
    samples drawn uniformly at random under ``seed`` (order otherwise kept).

    Example:
        >>> import torch
        >>> xt, yt, xv, yv = split_validation(torch.arange(10.0), torch.arange(10), 3, seed=0)
        >>> len(xt), len(xv)
        (7, 3)
    """
    n = len(x)
    val_size = _check_int(val_size, "val_size")
    if val_size >= n:
        raise ValueError(f"val_size must be smaller than the {n} training samples, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx = perm[:val_size].sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[val_idx] = False
    return x[keep], y[keep], x[val_idx], y[val_idx]


def finish_dataset(
    name: str,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    n_classes: int,
    val_size: int,
    seed: int,
) -> Dataset:
    x_val = y_val = None
    if val_size:
        x_train, y_train, x_val, y_val = split_validation(x_train, y_train, val_size, seed)
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        n_classes=n_classes,
        input_shape=tuple(x_train.shape[1:]),
        name=name,
        x_val=x_val,
        y_val=y_val,
    )


def iterate_minibatches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x_batch, y_batch)`` over one epoch, without a ``DataLoader``.

    Args:
        x, y: tensors with the same first dimension.
        batch_size: samples per batch (the last one may be smaller unless ``drop_last``).
        generator: drives the shuffle; pass a seeded one for reproducible epochs
            (``None`` uses torch's global RNG).
        shuffle: permute the samples first.
        drop_last: skip a final incomplete batch.

    Example:
        >>> import torch
        >>> batches = list(iterate_minibatches(torch.arange(5), torch.arange(5), 2, shuffle=False))
        >>> [b[0].tolist() for b in batches]
        [[0, 1], [2, 3], [4]]
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    batch_size = _check_int(batch_size, "batch_size", low=1)
    n = len(x)
    if shuffle:
        order = torch.randperm(n, generator=generator, device="cpu").to(x.device)
    else:
        order = None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield x[idx], y[idx.to(y.device)]


# --------------------------------------------------------------------------- digits


def sklearn_digits(size: int = 8, caller: str = "sklearn_digits") -> tuple[Tensor, Tensor]:
    """All 1797 of scikit-learn's digits as ``(x (1797, 1, size, size) in [0, 1], y)``;
    above 8 pixels the images are upsampled bilinearly. ``caller`` names the function in
    the error raised without scikit-learn."""
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{caller} needs scikit-learn (its bundled copy of the digits); "
            "install it with `pip install scikit-learn` or `pip install bionn[data]`"
        ) from err
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (the digits are 8x8), got {size!r}")
    raw = _sk_load_digits()
    x = torch.as_tensor(raw.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False).clamp_(0.0, 1.0)
    return x, torch.as_tensor(raw.target, dtype=torch.int64)


def load_digits(
    flatten: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
    val_size: int = 0,
    size: int = 8,
) -> Dataset:
    """scikit-learn's bundled handwritten digits: 1797 grey 8x8 images, 10 classes.

    The data ship inside scikit-learn (``sklearn.datasets.load_digits``); nothing is
    downloaded. The train/test split is stratified: in each class ``round(test_fraction
    * class size)`` samples go to the test set, chosen with a ``torch.Generator`` seeded
    with ``seed``. With ``standardize`` every pixel is centred and scaled by the
    training-set mean and standard deviation (pixels constant on the training set,
    such as the always-blank corners, become 0).

    Args:
        flatten: return ``(N, 64)`` instead of ``(N, 1, 8, 8)``.
        test_fraction: share of each class held out for testing, in (0, 1).
        seed: seeds the split (and the validation split).
        standardize: standardise pixels with train statistics; otherwise raw 0..16 / 16.
        val_size: samples moved from train into a validation split (0: none).
        size: image side; above 8 the images are upsampled bilinearly (e.g. 28 for
            LeNet), before standardisation.

    Example:
        >>> data = load_digits()  # doctest: +SKIP
        >>> data.x_train.shape, data.x_test.shape  # doctest: +SKIP
        (torch.Size([1437, 1, 8, 8]), torch.Size([360, 1, 8, 8]))
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    x, y = sklearn_digits(size, "load_digits")
    x = x.flatten(1) * 16.0  # values 0..16 as shipped (upsampled when size > 8)
    gen = torch.Generator().manual_seed(seed)
    test_idx = []
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        k = int(round(test_fraction * len(idx)))
        test_idx.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    test_mask = torch.zeros(len(y), dtype=torch.bool)
    test_mask[torch.cat(test_idx)] = True
    x_train, y_train = x[~test_mask], y[~test_mask]
    x_test, y_test = x[test_mask], y[test_mask]
    if standardize:
        mean = x_train.mean(0)
        std = x_train.std(0)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        x_train = (x_train - mean) / std
        x_test = (x_test - mean) / std
    else:
        x_train, x_test = x_train / 16.0, x_test / 16.0
    if not flatten:
        x_train = x_train.reshape(-1, 1, size, size)
        x_test = x_test.reshape(-1, 1, size, size)
    return finish_dataset("digits", x_train, y_train, x_test, y_test, 10, val_size, seed)


# --------------------------------------------------------------------------- MNIST-1D


def _mnist1d_templates() -> tuple[np.ndarray, np.ndarray]:
    """The 10 digit templates (12 points each) and their time axis, as in mnist1d."""
    d = np.asarray(
        [
            [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
            [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
            [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
            [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
            [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
            [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
            [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
            [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
            [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
            [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
        ],
        dtype=np.float64,
    )
    d -= d.mean(1, keepdims=True)
    d /= d.std(1, keepdims=True)
    d -= d[:, :1]  # start and end at 0
    t = np.linspace(-5, 5, d.shape[1]) / 6.0
    return d / 6.0, t


def _gaussian_filter1d(x: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter`` for a 1-D array (mode ``reflect``), numpy only."""
    radius = int(truncate * sigma + 0.5)
    k = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (k / sigma) ** 2)
    w /= w.sum()
    padded = np.pad(x, radius, mode="symmetric")  # scipy's "reflect" is numpy's "symmetric"
    return np.convolve(padded, w[::-1], mode="valid")


def _interpolate(x: np.ndarray, n: int) -> np.ndarray:
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(x)), x)


def _mnist1d_transform(x: np.ndarray, rng: np.random.RandomState, p: dict) -> np.ndarray:
    """One random MNIST-1D sample from template ``x`` (the reference ``transform``)."""
    low, high = p["padding"]
    x = x + 1e-8
    pad = low + int(rng.rand() * (high - low + 1))  # pad with zeros on the right
    x = np.concatenate([x, np.zeros(pad)])
    x = _interpolate(x, p["template_len"] + high)  # dilate
    x = x * (1 + p["scale_coeff"] * (rng.rand() - 0.5))  # scale
    k = rng.choice(p["max_translation"])  # circular translation
    x = np.concatenate([x[-k:], x[:-k]])
    mask = x != 0
    corr = _gaussian_filter1d(p["corr_noise_scale"] * rng.randn(*x.shape), 2)
    x = mask * x + (1 - mask) * corr  # correlated noise where the signal is 0
    x = x + p["iid_noise_scale"] * rng.randn(*x.shape)
    coeff = p["shear_scale"] * (rng.rand() - 0.5)  # shear
    x = x - coeff * np.linspace(-0.5, 0.5, len(x))
    return _interpolate(x, p["final_seq_length"])


def load_mnist1d(
    num_samples: int = 5000,
    train_split: float = 0.8,
    seed: int = 42,
    val_size: int = 0,
    *,
    template_len: int = 12,
    padding: tuple[int, int] = (36, 60),
    scale_coeff: float = 0.4,
    max_translation: int = 48,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
    shear_scale: float = 0.75,
    final_seq_length: int = 40,
) -> Dataset:
    """MNIST-1D (Greydanus 2020, arXiv 2011.14439), generated procedurally.

    A numpy-only port of the reference generator (``mnist1d.data.make_dataset``,
    Apache-2.0): each of 10 one-dimensional digit templates (12 points) is padded with a
    random number of zeros, resampled, randomly scaled and circularly translated,
    filled with Gaussian-smoothed (correlated) noise where it is zero, given i.i.d.
    noise and a random linear shear, and resampled to ``final_seq_length`` points.
    Samples are made class by class, shuffled, standardised as a whole, and split.
    It draws the same random numbers in the same order from a private
    ``numpy.random.RandomState(seed)``, so with the defaults (5000 samples, 80 % train,
    seed 42) it reproduces the published dataset up to floating-point rounding
    (4000 train / 1000 test, 40 points), without touching the global RNG or the network.

    Args:
        num_samples: total samples (``num_samples // 10`` per class).
        train_split: share of samples in the training set.
        seed: generator seed (42 is the published dataset).
        val_size: samples moved from train into a validation split (0: none).
        template_len, padding, scale_coeff, max_translation, corr_noise_scale,
            iid_noise_scale, shear_scale, final_seq_length: generator parameters, with
            the reference defaults.

    Example:
        >>> data = load_mnist1d(num_samples=200, seed=0)
        >>> data.x_train.shape, data.y_train.unique().numel()
        (torch.Size([160, 40]), 10)
    """
    num_samples = _check_int(num_samples, "num_samples", low=10)
    if not 0.0 < float(train_split) < 1.0:
        raise ValueError(f"train_split must lie in (0, 1), got {train_split!r}")
    low, high = (int(v) for v in padding)
    if not 0 <= low <= high:
        raise ValueError(f"padding must be (low, high) with 0 <= low <= high, got {padding!r}")
    if not 1 <= max_translation <= template_len + high:
        raise ValueError(
            f"max_translation must lie in [1, template_len + padding[1]] = "
            f"[1, {template_len + high}], got {max_translation!r}"
        )
    params = dict(
        template_len=template_len,
        padding=(low, high),
        scale_coeff=scale_coeff,
        max_translation=max_translation,
        corr_noise_scale=corr_noise_scale,
        iid_noise_scale=iid_noise_scale,
        shear_scale=shear_scale,
        final_seq_length=_check_int(final_seq_length, "final_seq_length", low=2),
    )
    templates, _ = _mnist1d_templates()
    rng = np.random.RandomState(seed)
    per_class = num_samples // 10
    xs, ys = [], []
    for label in range(10):
        for _ in range(per_class):
            xs.append(_mnist1d_transform(templates[label], rng, params))
            ys.append(label)
    order = rng.permutation(len(ys))
    x = np.stack(xs)[order]
    y = np.asarray(ys)[order]
    x = (x - x.mean()) / x.std()
    split = int(len(y) * train_split)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    return finish_dataset("mnist1d", xt[:split], yt[:split], xt[split:], yt[split:], 10, val_size, seed)


# --------------------------------------------------------------------------- Yin-Yang

#: Class names of :func:`load_yin_yang`, by label (the reference repository's order).
YIN_YANG_CLASSES = ("yin", "yang", "dot")


def _yin_yang_labels(x: np.ndarray, y: np.ndarray, r_small: float, r_big: float) -> np.ndarray:
    """Labels 0/1/2 of points inside the big circle (the reference ``which_class``)."""
    d_right = np.hypot(x - 1.5 * r_big, y - r_big)
    d_left = np.hypot(x - 0.5 * r_big, y - r_big)
    is_dot = (d_right < r_small) | (d_left < r_small)
    in_1 = (
        (d_right <= r_small)
        | ((d_left > r_small) & (d_left <= 0.5 * r_big))
        | ((y > r_big) & (d_right > 0.5 * r_big))
    )
    return np.where(is_dot, 2, in_1.astype(np.int64))


def _yin_yang_points(
    n: int, rng: np.random.Generator, r_small: float, r_big: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points, classes balanced exactly (counts differ by at most one), by rejection."""
    labels = rng.permutation(np.arange(n) % 3)
    xy = np.zeros((n, 2))
    for c in range(3):
        slots = np.flatnonzero(labels == c)
        got: list[np.ndarray] = []
        need = len(slots)
        while need > 0:
            cand = rng.random((max(256, 20 * need), 2)) * 2.0 * r_big
            inside = np.hypot(cand[:, 0] - r_big, cand[:, 1] - r_big) <= r_big
            cand = cand[inside]
            cand = cand[_yin_yang_labels(cand[:, 0], cand[:, 1], r_small, r_big) == c][:need]
            got.append(cand)
            need -= len(cand)
        xy[slots] = np.concatenate(got) if got else np.zeros((0, 2))
    return xy, labels


def load_yin_yang(
    n_train: int = 5000,
    n_test: int = 1000,
    seed: int = 42,
    val_size: int = 0,
    *,
    r_small: float = 0.1,
    r_big: float = 0.5,
) -> Dataset:
    r"""The Yin-Yang dataset (Kriener, Göltz & Petrovici 2022, ICONS; "The Yin-Yang dataset",
    arXiv 2102.08211), generated procedurally from its definition.

    Points :math:`(x, y)` are drawn uniformly in the square :math:`[0, 2R]^2` and kept when
    inside the big circle :math:`\lVert (x, y) - (R, R) \rVert \le R` (``R = r_big = 0.5``).
    With :math:`d_r, d_l` the distances to the dot centres :math:`(1.5R, R)` and
    :math:`(0.5R, R)` and ``r = r_small = 0.1``, the class is

    * 2 (``"dot"``): :math:`d_r < r` or :math:`d_l < r`;
    * 1 (``"yang"``): otherwise, when :math:`d_r \le r`, or :math:`r < d_l \le R/2`, or
      (:math:`y > R` and :math:`d_r > R/2`);
    * 0 (``"yin"``): the rest of the disc.

    (Labels and names as in the reference repository, ``YIN_YANG_CLASSES``.) Each sample
    first gets its class, then points are drawn until one falls in that class (rejection
    sampling), so the classes are balanced; here the class counts of a split differ by at
    most one (the reference draws each sample's class at random). Inputs are
    :math:`(x, y, 2R - x, 2R - y)` = ``(x, y, 1 - x, 1 - y)`` with the defaults, so that
    every input carries information under rate or latency coding. Published accuracies:
    a 4-120-3 ANN 98.7 ± 0.3 %, a linear (shallow) classifier 64.3 ± 0.2 %.

    The reference split is 5000 train / 1000 validation / 1000 test: ``n_train=6000,
    val_size=1000``. Train and test come from independent streams of a
    ``numpy.random.Generator`` seeded from ``seed`` (the points are not the published
    files' points, which come from numpy's global RNG).

    Args:
        n_train: training samples (before the validation split).
        n_test: test samples.
        seed: generator seed (train and test streams derived from it; also seeds the
            validation split).
        val_size: training samples moved into a validation split (0: none).
        r_small: radius of the dots.
        r_big: radius of the symbol (the square has side ``2 * r_big``).

    Example:
        >>> data = load_yin_yang(n_train=300, n_test=30, seed=0)
        >>> data.x_train.shape, data.n_classes, data.y_train.bincount().tolist()
        (torch.Size([300, 4]), 3, [100, 100, 100])
    """
    n_train = _check_int(n_train, "n_train", low=3)
    n_test = _check_int(n_test, "n_test", low=3)
    if not (isinstance(r_big, (int, float)) and r_big > 0):
        raise ValueError(f"r_big must be > 0, got {r_big!r}")
    if not (isinstance(r_small, (int, float)) and 0 < r_small < 0.5 * r_big):
        raise ValueError(f"r_small must lie in (0, r_big / 2) = (0, {0.5 * r_big}), got {r_small!r}")
    streams = np.random.SeedSequence(_check_int(seed, "seed")).spawn(2)
    out = []
    for n, stream in zip((n_train, n_test), streams, strict=True):
        xy, labels = _yin_yang_points(n, np.random.default_rng(stream), r_small, r_big)
        x = np.concatenate([xy, 2.0 * r_big - xy], axis=1)
        out.append((torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)))
    (xtr, ytr), (xte, yte) = out
    return finish_dataset("yin_yang", xtr, ytr, xte, yte, 3, val_size, seed)


# --------------------------------------------------------------------------- IDX (MNIST)

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_SUBDIRS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into a numpy array.

    The format: two zero bytes, a type byte (0x08 = uint8, ...), the number of
    dimensions, each dimension as a big-endian int32, then the data.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw[4:header], dtype=">i4"))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{str(path)!r}: header says shape {shape} ({count * dtype.itemsize} bytes of data) "
            f"but the file holds {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


def _find_idx_files(root: Path, name: str) -> dict[str, Path]:
    folders = [root, root / _IDX_SUBDIRS[name] / "raw"]  # also torchvision's layout
    found: dict[str, Path] = {}
    for key, stem in _IDX_FILES.items():
        for folder in folders:
            for candidate in (folder / stem, folder / (stem + ".gz")):
                if candidate.is_file():
                    found[key] = candidate
                    break
            if key in found:
                break
    missing = [stem for key, stem in _IDX_FILES.items() if key not in found]
    if missing:
        raise FileNotFoundError(
            f"{name}: missing IDX file(s) {missing} (each may also be gzipped, '<name>.gz') "
            f"in root {str(root)!r}; put the four standard files "
            f"{list(_IDX_FILES.values())} directly in that folder "
            f"(or in {str(root / _IDX_SUBDIRS[name] / 'raw')!r}). bionn never downloads data."
        )
    return found


def load_idx_dataset(
    root: str | Path,
    name: str = "mnist",
    flatten: bool = False,
    normalize: bool = True,
    val_size: int = 0,
    seed: int = 0,
) -> Dataset:
    """MNIST or Fashion-MNIST from the four standard IDX files in ``root``.

    Expected files (plain or ``.gz``): ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    directly in ``root`` or in torchvision's ``root/MNIST/raw`` (``FashionMNIST/raw``).
    Missing files raise ``FileNotFoundError`` naming each one and the root; nothing is
    downloaded.

    Args:
        root: folder with the files.
        name: ``"mnist"`` or ``"fashion_mnist"`` (same format; sets the name and subfolder).
        flatten: return ``(N, 784)`` instead of ``(N, 1, 28, 28)``.
        normalize: standardise with the training-set pixel mean and std (one scalar
            each); otherwise pixels are scaled to [0, 1].
        val_size: training samples moved into a validation split, drawn with ``seed``
            (e.g. 5000, so that model selection never sees the test set).
        seed: seeds the validation split.
    """
    if name not in _IDX_SUBDIRS:
        raise ValueError(f"name: unknown IDX dataset {name!r}; allowed: {sorted(_IDX_SUBDIRS)}")
    root = Path(root)
    files = _find_idx_files(root, name)
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        xi, yi = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi):
            raise ValueError(
                f"{name}: {split} images must be (N, H, W) and labels (N,), got "
                f"{xi.shape} and {yi.shape} from {str(files[split + '_images'])!r}"
            )
    x_train = torch.as_tensor(arrays["train_images"].astype(np.float32) / 255.0).unsqueeze(1)
    x_test = torch.as_tensor(arrays["test_images"].astype(np.float32) / 255.0).unsqueeze(1)
    y_train = torch.as_tensor(arrays["train_labels"].astype(np.int64))
    y_test = torch.as_tensor(arrays["test_labels"].astype(np.int64))
    return _finish_images(
        name, x_train, y_train, x_test, y_test, 10, flatten, normalize, val_size, seed, False
    )


def _finish_images(
    name: str,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    n_classes: int,
    flatten: bool,
    normalize: bool,
    val_size: int,
    seed: int,
    per_channel: bool,
) -> Dataset:
    """:func:`finish_dataset` (validation split), then normalisation with the statistics of the
    remaining training images and optional flattening."""
    data = finish_dataset(name, x_train, y_train, x_test, y_test, n_classes, val_size, seed)
    xs = [data.x_train, data.x_test, data.x_val]
    if normalize:  # statistics from the (remaining) training data only
        reduce = (0, 2, 3) if per_channel else (0, 1, 2, 3)
        mean = xs[0].mean(dim=reduce, keepdim=True)
        std = xs[0].std(dim=reduce, keepdim=True).clamp_min(1e-6)
        xs = [None if x is None else (x - mean) / std for x in xs]
    if flatten:
        xs = [None if x is None else x.flatten(1) for x in xs]
    return dataclasses.replace(data, x_train=xs[0], x_test=xs[1], x_val=xs[2],
                               input_shape=tuple(xs[0].shape[1:]))


# --------------------------------------------------------------------------- CIFAR-10


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves no global except numpy's array reconstructors.

    Dicts, lists, str, bytes and ints come from pickle opcodes and need no global.
    The only callables allowed are those that rebuild a plain numpy array (the
    ``data`` field of a CIFAR batch): ``ndarray``, ``dtype``, ``_reconstruct`` and
    ``_frombuffer``, plus ``_codecs.encode`` (bytes in protocol-2 pickles). Any other
    global (``os.system``, ``builtins.eval``, a class, ...) raises ``UnpicklingError``.
    """

    def find_class(self, module: str, name: str):
        key = (module, name)
        if key in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[key]
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only plain numpy arrays, dicts, "
            "lists, str, bytes and numbers are allowed in dataset files"
        )


def _safe_globals() -> dict[tuple[str, str], object]:
    import codecs

    try:
        from numpy._core import multiarray as _ma
        from numpy._core import numeric as _num
    except ImportError:  # numpy < 2
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
        from numpy.core import numeric as _num  # type: ignore[no-redef]
    table: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for pkg in ("numpy.core", "numpy._core"):
        table[(f"{pkg}.multiarray", "_reconstruct")] = _ma._reconstruct
        table[(f"{pkg}.numeric", "_frombuffer")] = _num._frombuffer
    return table


_SAFE_GLOBALS = _safe_globals()


def _load_pickle_restricted(path: Path) -> object:
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(f"{str(path)!r}: {err}") from None


_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch"]


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    obj = _load_pickle_restricted(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{str(path)!r}: expected a dict, got {type(obj).__name__}")
    get = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in get or "labels" not in get:
        raise ValueError(f"{str(path)!r}: expected keys 'data' and 'labels', got {sorted(get)}")
    data = get["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{str(path)!r}: 'data' must be a 2-D uint8 array")
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{str(path)!r}: 'data' rows must hold 3072 values, got {data.shape[1]}")
    labels = get["labels"]
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise ValueError(f"{str(path)!r}: 'labels' must be a list of {len(data)} ints")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{str(path)!r}: labels must lie in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(
    root: str | Path,
    normalize: bool = True,
    val_size: int = 0,
    seed: int = 0,
) -> Dataset:
    """CIFAR-10 from the python batches (``cifar-10-batches-py``) in ``root``.

    ``root`` is the folder holding ``cifar-10-batches-py/`` or that folder itself; it
    must contain ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``. These files
    are pickles; they are read with a restricted unpickler that builds only dicts,
    lists, str, bytes, ints and plain numpy arrays and refuses every other global (so a
    tampered file cannot run code). Nothing is downloaded.

    Args:
        root: data folder.
        normalize: standardise each colour channel with the training-set mean and std;
            otherwise pixels are scaled to [0, 1].
        val_size: training images moved into a validation split drawn with ``seed``;
            5000 gives BioTorch's ``cifar10_benchmark`` 45k/5k split (a different random
            draw), so that model selection never uses the test set.
        seed: seeds the validation split.

    Returns:
        a :class:`Dataset` with images ``(N, 3, 32, 32)``.
    """
    root = Path(root)
    folder = root if (root / "test_batch").is_file() else root / "cifar-10-batches-py"
    missing = [f for f in _CIFAR_TRAIN + _CIFAR_TEST if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"cifar10: missing file(s) {missing} in {str(folder)!r} (root {str(root)!r}); "
            "put the CIFAR-10 python batches (data_batch_1..5, test_batch) in "
            "<root>/cifar-10-batches-py/. bionn never downloads data."
        )
    train = [_read_cifar_batch(folder / f) for f in _CIFAR_TRAIN]
    xte, yte = _read_cifar_batch(folder / "test_batch")
    x_train = torch.as_tensor(np.concatenate([b[0] for b in train]), dtype=torch.float32) / 255
    y_train = torch.as_tensor(np.concatenate([b[1] for b in train]))
    x_test = torch.as_tensor(xte, dtype=torch.float32) / 255
    y_test = torch.as_tensor(yte)
    return _finish_images(
        "cifar10", x_train, y_train, x_test, y_test, 10, False, normalize, val_size, seed, True
    )


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "yin_yang": load_yin_yang,
    "mnist": partial(load_idx_dataset, name="mnist"),
    "fashion_mnist": partial(load_idx_dataset, name="fashion_mnist"),
    "cifar10": load_cifar10,
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """Load a dataset from :data:`DATASETS` by name (file-based ones need ``root=``).

    Example:
        >>> load_dataset("mnist1d", num_samples=100).input_shape
        (40,)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {sorted(DATASETS)}")
    return DATASETS[name](**kwargs)


# --------------------------------------------------------------------------- spikes


def spiking_dataset(
    data: str | Dataset,
    encoder: str = "poisson",
    steps: int | None = 100,
    *,
    encoder_params: Mapping[str, Any] | None = None,
    encoder_seed: int = 0,
    max_gib: float = 2.0,
    **loader_kwargs: Any,
) -> Dataset:
    r"""A dataset of :data:`DATASETS` (or a :class:`Dataset`) as spike trains.

    A thin composition of a loader and an encoder of :mod:`bionn.tasks.encoders`:

    1. load ``data`` by name with ``loader_kwargs`` (or take the given :class:`Dataset`);
    2. map the inputs to intensities in [0, 1] with the *training* set's global minimum and
       maximum, :math:`u = (x - \min x_{train}) / (\max x_{train} - \min x_{train})`,
       clipped to [0, 1] on the validation and test sets (a single affine map, so the
       relative structure of every sample is kept);
    3. encode every split: ``"poisson"`` and ``"latency"`` turn each sample
       ``(*features)`` into ``(steps, *features)``; ``"delta"`` reads each sample as a time
       series along its first axis (MNIST-1D's 40 points are 40 steps; a 1-D sample gets a
       feature axis of size 1), so ``steps`` must be None there.

    Labels, class count and splits are those of the loader; ``input_shape`` becomes the
    spike shape of one sample (time first). Poisson spikes are drawn once (frozen noise)
    from a ``torch.Generator`` seeded with ``encoder_seed``; for fresh noise every epoch,
    encode minibatches yourself with :func:`bionn.tasks.encoders.encode`.

    Args:
        data: a registry name (``"digits"``, ``"mnist1d"``, ``"yin_yang"``, ...) or a Dataset.
        encoder: ``"poisson"``, ``"latency"`` or ``"delta"``.
        steps: time steps per sample (``"poisson"``, ``"latency"``); None for ``"delta"``.
        encoder_params: further encoder arguments (``dt``, ``max_rate``, ``mapping``,
            ``tau``, ``threshold``, ``mode``, ``channels``).
        encoder_seed: seeds the Poisson draws.
        max_gib: refuse (``ValueError``) when the float32 spikes would exceed this many GiB.
        loader_kwargs: passed to the loader (e.g. ``num_samples=``, ``flatten=True``).

    Example:
        >>> data = spiking_dataset("mnist1d", "poisson", steps=20, num_samples=100,
        ...                        encoder_params={"max_rate": 200.0, "dt": 1.0})
        >>> data.x_train.shape, data.input_shape, data.name
        (torch.Size([80, 20, 40]), (20, 40), 'mnist1d_poisson')
        >>> sorted(data.x_train.unique().tolist())
        [0.0, 1.0]
    """
    if encoder not in ENCODERS:
        raise ValueError(f"encoder: unknown encoder {encoder!r}; allowed: {', '.join(ENCODERS)}")
    if isinstance(data, Dataset):
        if loader_kwargs:
            raise TypeError(
                f"loader arguments {sorted(loader_kwargs)} need a dataset name, not a Dataset"
            )
        base = data
    elif isinstance(data, str):
        base = load_dataset(data, **loader_kwargs)
    else:
        raise TypeError(f"data must be a dataset name or a Dataset, got {type(data).__name__}")
    params = dict(encoder_params or {})
    for key in ("x", "steps", "generator"):
        if key in params:
            raise TypeError(f"encoder_params must not set {key!r}; it is set by spiking_dataset")
    if encoder == "delta":
        if steps is not None:
            raise ValueError(
                "steps must be None for the 'delta' encoder: each sample is read as a time "
                f"series along its first axis (here {base.input_shape[0]} steps), got {steps!r}"
            )
    else:
        steps = _check_int(steps, "steps", low=1)
    lo, hi = float(base.x_train.min()), float(base.x_train.max())
    scale = hi - lo if hi > lo else 1.0
    splits = [base.x_train, base.x_val, base.x_test]
    n_total = sum(len(x) for x in splits if x is not None)
    feat = int(np.prod(base.input_shape))
    per_sample = feat * (steps if steps is not None else 2)
    gib = n_total * per_sample * 4 / 2**30
    if gib > max_gib:
        raise ValueError(
            f"{base.name}: the spikes would take {gib:.2f} GiB (> max_gib = {max_gib}); encode "
            "minibatches with bionn.tasks.encoders.encode instead, or raise max_gib"
        )
    gen = torch.Generator().manual_seed(_check_int(encoder_seed, "encoder_seed"))

    def run(x: Tensor | None) -> Tensor | None:
        if x is None:
            return None
        u = ((x - lo) / scale).clamp(0.0, 1.0)
        if encoder == "delta":
            return ENCODERS["delta"](u if u.dim() > 2 else u.unsqueeze(-1), **params)
        if encoder == "poisson":
            return ENCODERS["poisson"](u, steps, generator=gen, **params)
        return ENCODERS[encoder](u, steps, **params)

    x_train, x_val, x_test = (run(x) for x in splits)
    return dataclasses.replace(
        base,
        x_train=x_train,
        x_val=x_val,
        x_test=x_test,
        input_shape=tuple(x_train.shape[1:]),
        name=f"{base.name}_{encoder}",
    )
