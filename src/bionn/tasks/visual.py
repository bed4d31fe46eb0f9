"""Procedurally generated visual tasks: contour integration, motion direction, maze
connectivity, and the 8x8 digits as images.

Every generator returns a :class:`VisualBatch` ``(x, y, info)`` with ``x`` float32
``(n, 1, H, W)`` (static images) or ``(n, T, 1, H, W)`` (movies, batch first),
``y`` int64 ``(n,)`` and ``info`` a dict of per-sample tensors (first dimension ``n``).
Nothing is downloaded. Randomness comes only from ``generator``: a
``torch.Generator`` (one 63-bit seed is drawn from it), an ``int`` seed, or ``None``
(a seed drawn from torch's global RNG); the same generator state gives the same
tensors. Labels of the binary tasks are balanced exactly (``n // 2`` or ``n // 2 + 1``
per class) and correct by construction.

- :func:`contour_integration`: short bars on a jittered grid; in positive images a
  chain of bars follows a smooth path (Field, Hess & Hayes 1993), in negative images
  the same path carries randomly oriented bars.
- :func:`motion_direction`: random-dot kinematograms (Newsome & Pare 1988); a fraction
  ``coherence`` of the dots moves in one of ``n_directions`` directions.
- :func:`maze_connectivity`: a random spanning-tree maze cut into two parts, two marked
  cells; label 1 when free space joins them (Linsley et al. 2018's pathfinder and
  the mazes of torch-biopl are relatives).
- :func:`digits_images`: scikit-learn's 8x8 digits as images, optionally upsampled.

:data:`VISUAL_TASKS` maps names to generators and :func:`make_visual_dataset` wraps
any of them as a :class:`bionn.tasks.datasets.Dataset` for the classification runner.

Example:
    >>> import torch
    >>> from bionn.tasks.visual import make_visual_dataset
    >>> data = make_visual_dataset("maze", n_train=40, n_test=10, seed=0, size=15)
    >>> data.x_train.shape, data.n_classes
    (torch.Size([40, 1, 15, 15]), 2)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bionn.tasks.datasets import Dataset, finish_dataset, sklearn_digits

__all__ = [
    "VisualBatch",
    "contour_integration",
    "motion_direction",
    "maze_connectivity",
    "digits_images",
    "VISUAL_TASKS",
    "make_visual_dataset",
]

GeneratorLike = torch.Generator | int | None


@dataclass
class VisualBatch:
    """A batch of a visual task.

    Attributes:
        x: float32 images ``(n, C, H, W)`` or movies ``(n, T, C, H, W)``.
        y: int64 labels ``(n,)``, ``0 .. n_classes - 1``.
        info: per-sample tensors (first dimension ``n``) describing each sample.
        n_classes: number of classes.
        name: task name (a key of :data:`VISUAL_TASKS`).
    """

    x: Tensor
    y: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)
    n_classes: int = 2
    name: str = ""

    @property
    def chance(self) -> float:
        """Accuracy of always answering the most frequent label of this batch."""
        if len(self.y) == 0:
            return 1.0 / self.n_classes
        counts = torch.bincount(self.y, minlength=self.n_classes)
        return float(counts.max()) / len(self.y)

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return (
            f"VisualBatch(name={self.name!r}, x={tuple(self.x.shape)}, n_classes={self.n_classes}, "
            f"info={sorted(self.info)})"
        )


# --------------------------------------------------------------------------- helpers


def _check_int(value: Any, arg: str, low: int = 0, high: int | None = None) -> int:
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{arg} must be an int {allowed}, got {value!r}")
    return int(value)


def _check_float(
    value: Any, arg: str, low: float, high: float = math.inf, low_open: bool = False
) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v):
        raise ValueError(f"{arg} must be a finite number, got {value!r}")
    if (v <= low if low_open else v < low) or v > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{arg} must lie in {bracket}{low}, {high}], got {value!r}")
    return v


def _rng(generator: GeneratorLike) -> np.random.Generator:
    """A numpy Generator seeded from an int or from one draw of a torch generator."""
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    elif generator is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    elif isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        seed = int(generator)
    else:
        raise ValueError(
            f"generator must be a torch.Generator, an int seed or None, got {generator!r}"
        )
    return np.random.default_rng(seed)


def _balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def _splat_bilinear(xy: Tensor, size: int) -> Tensor:
    """Draw points ``(..., D, 2)`` (x = column, y = row, pixel centres at +0.5) into
    ``(..., size, size)`` images by bilinear splatting with periodic wrap, clipped at 1."""
    lead = xy.shape[:-2]
    d = xy.shape[-2]
    p = xy.reshape(-1, d, 2) - 0.5
    base = torch.floor(p)
    frac = p - base
    base = base.long()
    img = torch.zeros(p.shape[0], size * size, dtype=torch.float32)
    for dx in (0, 1):
        for dy in (0, 1):
            wx = frac[..., 0] if dx else 1 - frac[..., 0]
            wy = frac[..., 1] if dy else 1 - frac[..., 1]
            col = (base[..., 0] + dx) % size
            row = (base[..., 1] + dy) % size
            img.scatter_add_(1, row * size + col, (wx * wy).float())
    return img.clamp_(max=1.0).reshape(*lead, size, size)


def _render_bars(
    xy: Tensor, theta: Tensor, active: Tensor, size: int, length: float
) -> Tensor:
    """Anti-aliased bars: centres ``xy (n, E, 2)``, orientations ``theta (n, E)``
    (radians, counter-clockwise from the x axis with y pointing up), ``active (n, E)``.
    A bar adds ``clip(1 - distance to the segment, 0, 1)`` to a pixel; the sum is clipped
    at 1. Summing (not taking the maximum) keeps the total ink of two bars independent of
    how their halos overlap, so collinear neighbours do not darken the image (a cue)."""
    n, e, _ = xy.shape
    r = int(math.ceil(length / 2 + 1.5))
    off = torch.arange(-r, r + 1)
    oy, ox = torch.meshgrid(off, off, indexing="ij")
    col = torch.floor(xy[..., 0]).long()[..., None] + ox.reshape(-1)  # (n, E, P)
    row = torch.floor(xy[..., 1]).long()[..., None] + oy.reshape(-1)
    dxp = col + 0.5 - xy[..., 0:1]
    dyp = -(row + 0.5 - xy[..., 1:2])  # y up
    c, s = torch.cos(theta)[..., None], torch.sin(theta)[..., None]
    along = dxp * c + dyp * s
    perp = -dxp * s + dyp * c
    dist = torch.sqrt((along.abs() - length / 2).clamp(min=0) ** 2 + perp**2)
    val = (1 - dist).clamp(min=0) * active[..., None]
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    flat = torch.where(inside, row * size + col, torch.zeros_like(col))
    val = torch.where(inside, val, torch.zeros_like(val)).float()
    img = torch.zeros(n, size * size)
    img.scatter_add_(1, flat.reshape(n, -1), val.reshape(n, -1))
    return img.clamp_(max=1.0).reshape(n, 1, size, size)


# --------------------------------------------------------------------------- contours


def contour_integration(
    n: int,
    size: int = 32,
    *,
    contour_length: int = 5,
    spacing: float = 4.0,
    bar_length: float = 3.0,
    curvature: float = math.pi / 8,
    orientation_jitter: float = 0.0,
    jitter: float = 0.5,
    n_distractors: int | None = None,
    generator: GeneratorLike = None,
) -> VisualBatch:
    """Contour detection among distractors (Field, Hess & Hayes 1993): label 1 when a
    chain of bars is aligned along a smooth path.

    Generative rule, per image:

    1. A path of ``contour_length`` points ``spacing`` pixels apart: a random start
       heading ``phi``; at each step the heading turns by ``U(-curvature, curvature)``.
       The path is placed uniformly at random where it fits (bars stay inside).
    2. A bar of ``bar_length`` pixels sits on every path point. Positive (label 1):
       its orientation is the path tangent (mean of the headings in and out of the
       point) plus ``U(-orientation_jitter, orientation_jitter)``. Negative (label 0):
       a uniformly random orientation. Bar *positions* follow the same law in both
       classes, so alignment is the only cue.
    3. Distractors with random orientations sit on a ``size // spacing``-square grid
       (centres jittered by ``U(-jitter, jitter)`` pixels per axis); grid sites
       closer than ``max(0.8 spacing, bar_length + 1)`` to a path bar are left empty.
       ``n_distractors`` keeps that many of the free sites at random (all when None).

    Bars add up (clipped at 1), so collinear neighbours do not change the total ink.
    Keep ``(contour_length - 1) * spacing`` well below ``size``: paths that barely fit
    tie bar orientation to position near the borders, a cue that a linear readout of
    the pixels picks up (test accuracy about 0.6 at ``size=20, contour_length=5``;
    chance at ``size=24``). Orientations are counter-clockwise from the x axis with y
    pointing up.
    ``info``: ``contour_length`` (0 for negatives), ``n_distractors`` (drawn),
    ``element_xy`` ``(n, E, 2)`` bar centres in pixels (x = column, y = row from the
    top; path bars first), ``element_theta`` ``(n, E)``, ``element_active`` ``(n, E)``
    bool, ``is_path`` ``(n, E)`` bool (the path's bars in both classes).

    Example:
        >>> b = contour_integration(4, size=20, generator=0)
        >>> b.x.shape, b.y.bincount().tolist(), b.n_classes
        (torch.Size([4, 1, 20, 20]), [2, 2], 2)
    """
    n = _check_int(n, "n", 1)
    size = _check_int(size, "size", 8)
    length = _check_int(contour_length, "contour_length", 2)
    spacing = _check_float(spacing, "spacing", 2.0, size / 2)
    bar_length = _check_float(bar_length, "bar_length", 0.0, spacing, low_open=True)
    curvature = _check_float(curvature, "curvature", 0.0, math.pi / 2)
    orientation_jitter = _check_float(orientation_jitter, "orientation_jitter", 0.0, math.pi / 2)
    jitter = _check_float(jitter, "jitter", 0.0, spacing / 2)
    grid = int(size // spacing)
    if n_distractors is not None:
        n_distractors = _check_int(n_distractors, "n_distractors", 0, grid * grid)
    margin = bar_length / 2 + 0.5
    if (length - 1) * spacing > size - 2 * margin:
        raise ValueError(
            f"contour_length={length} with spacing={spacing} does not fit in size={size}: "
            f"need (contour_length - 1) * spacing <= {size - 2 * margin:g}"
        )
    rng = _rng(generator)
    y = _balanced_labels(n, 2, rng)

    # 1. paths, resampled until they fit
    pts = np.zeros((n, length, 2))
    headings = np.zeros((n, length - 1))
    todo = np.arange(n)
    for _ in range(200):
        m = len(todo)
        phi = rng.uniform(0, 2 * np.pi, (m, 1)) + np.cumsum(
            np.concatenate(
                [np.zeros((m, 1)), rng.uniform(-curvature, curvature, (m, length - 2))], 1
            ),
            1,
        )
        steps = spacing * np.stack([np.cos(phi), -np.sin(phi)], -1)  # y down in pixels
        p = np.concatenate([np.zeros((m, 1, 2)), np.cumsum(steps, 1)], 1)
        lo, hi = p.min(1), p.max(1)
        room = (size - 2 * margin) - (hi - lo)  # (m, 2)
        ok = (room >= 0).all(1)
        shift = margin - lo + rng.uniform(0, 1, (m, 2)) * np.maximum(room, 0)
        pts[todo[ok]] = p[ok] + shift[ok, None]
        headings[todo[ok]] = phi[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            break
    else:
        raise ValueError(
            f"could not place contours of contour_length={length} in size={size}; "
            f"use a shorter contour, smaller spacing or lower curvature"
        )
    tangent = np.concatenate([headings[:, :1], headings], 1)
    tangent[:, 1:-1] = headings[:, :-1] + 0.5 * np.angle(
        np.exp(1j * (headings[:, 1:] - headings[:, :-1]))
    )
    tangent[:, -1] = headings[:, -1]
    tangent = tangent + rng.uniform(-orientation_jitter, orientation_jitter, (n, length))
    random_theta = rng.uniform(0, np.pi, (n, length))
    path_theta = np.where(y[:, None] == 1, tangent, random_theta) % np.pi

    # 2. distractor grid
    offset = (size - grid * spacing) / 2
    centres = offset + spacing * (np.arange(grid) + 0.5)
    gx, gy = np.meshgrid(centres, centres, indexing="xy")
    gxy = np.stack([gx.ravel(), gy.ravel()], -1)[None] + rng.uniform(
        -jitter, jitter, (n, grid * grid, 2)
    )
    d_theta = rng.uniform(0, np.pi, (n, grid * grid))
    exclusion = max(0.8 * spacing, bar_length + 1)
    dist = np.linalg.norm(gxy[:, :, None] - pts[:, None], axis=-1).min(-1)
    free = dist >= exclusion
    if n_distractors is not None:
        keys = np.where(free, rng.uniform(size=free.shape), np.inf)
        rank = np.argsort(np.argsort(keys, 1), 1)
        free &= rank < n_distractors

    xy = torch.as_tensor(np.concatenate([pts, gxy], 1), dtype=torch.float32)
    theta = torch.as_tensor(np.concatenate([path_theta, d_theta], 1), dtype=torch.float32)
    active = torch.as_tensor(np.concatenate([np.ones((n, length), bool), free], 1))
    is_path = torch.zeros_like(active)
    is_path[:, :length] = True
    x = _render_bars(xy, theta, active, size, bar_length)
    yt = torch.as_tensor(y, dtype=torch.int64)
    info = {
        "contour_length": yt * length,
        "n_distractors": torch.as_tensor(free.sum(1), dtype=torch.int64),
        "element_xy": xy,
        "element_theta": theta,
        "element_active": active,
        "is_path": is_path,
    }
    return VisualBatch(x, yt, info, 2, "contour")


# --------------------------------------------------------------------------- motion


def motion_direction(
    n: int,
    size: int = 32,
    frames: int = 8,
    *,
    coherence: float | Sequence[float] = 0.5,
    n_directions: int = 4,
    n_dots: int = 30,
    speed: float = 1.0,
    generator: GeneratorLike = None,
) -> VisualBatch:
    """Random-dot kinematograms (Newsome & Pare 1988): name the direction of coherent
    motion.

    Generative rule, per movie: ``n_dots`` dots start uniformly in the ``size x size``
    frame. The label ``k`` (balanced over ``0 .. n_directions - 1``) sets the signal
    direction ``theta_k = 2 pi k / n_directions``, counter-clockwise from the x axis
    (``k = 0`` moves right, ``theta = pi / 2`` moves up the screen). A fixed subset of
    ``round(coherence * n_dots)`` signal dots moves by ``speed * (cos theta_k,
    -sin theta_k)`` pixels (column, row) per frame; every other dot moves ``speed``
    pixels in a direction drawn afresh each frame. Dots wrap around the edges
    (periodic boundary). Dots are drawn by bilinear splatting (sub-pixel positions,
    intensity clipped at 1). ``coherence`` is one value or a sequence of values drawn
    uniformly per movie.

    Returns ``x`` of shape ``(n, frames, 1, size, size)``. ``info``: ``coherence``,
    ``theta`` (radians), ``dot_xy`` ``(n, frames, n_dots, 2)`` (x = column, y = row,
    pixel centres at +0.5, before wrapping into the frame), ``signal`` ``(n, n_dots)``
    bool.

    Example:
        >>> b = motion_direction(8, size=16, frames=4, generator=0)
        >>> b.x.shape, b.n_classes, b.chance
        (torch.Size([8, 4, 1, 16, 16]), 4, 0.25)
    """
    n = _check_int(n, "n", 1)
    size = _check_int(size, "size", 4)
    frames = _check_int(frames, "frames", 2)
    n_dirs = _check_int(n_directions, "n_directions", 2)
    n_dots = _check_int(n_dots, "n_dots", 1)
    speed = _check_float(speed, "speed", 0.0, size / 2, low_open=True)
    values = (
        [coherence] if isinstance(coherence, (int, float, np.floating)) else list(coherence)
    )
    if not values:
        raise ValueError("coherence must be a number in [0, 1] or a non-empty sequence of them")
    values = [_check_float(c, "coherence", 0.0, 1.0) for c in values]
    rng = _rng(generator)
    y = _balanced_labels(n, n_dirs, rng)
    coh = np.asarray(values)[rng.integers(0, len(values), n)]
    theta = 2 * np.pi * y / n_dirs
    n_signal = np.rint(coh * n_dots).astype(int)
    signal = rng.uniform(size=(n, n_dots)).argsort(1).argsort(1) < n_signal[:, None]
    start = rng.uniform(0, size, (n, 1, n_dots, 2))
    noise_dir = rng.uniform(0, 2 * np.pi, (n, frames - 1, n_dots))
    step_noise = speed * np.stack([np.cos(noise_dir), -np.sin(noise_dir)], -1)
    step_signal = speed * np.stack([np.cos(theta), -np.sin(theta)], -1)[:, None, None, :]
    steps = np.where(signal[:, None, :, None], step_signal, step_noise)
    xy = np.concatenate([start, start + np.cumsum(steps, 1)], 1)
    xy_t = torch.as_tensor(xy, dtype=torch.float32)
    x = _splat_bilinear(xy_t % size, size).unsqueeze(2)
    info = {
        "coherence": torch.as_tensor(coh, dtype=torch.float32),
        "theta": torch.as_tensor(theta, dtype=torch.float32),
        "dot_xy": xy_t,
        "signal": torch.as_tensor(signal),
    }
    return VisualBatch(x, torch.as_tensor(y, dtype=torch.int64), info, n_dirs, "motion")


# --------------------------------------------------------------------------- mazes


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _spanning_tree(c: int, rng: np.random.Generator, algorithm: str) -> list[tuple[int, int]]:
    """Edges of a uniformly shuffled random spanning tree of the ``c x c`` grid graph."""
    ncell = c * c
    if algorithm == "kruskal":
        h = [(i, i + 1) for i in range(ncell) if i % c != c - 1]
        v = [(i, i + c) for i in range(ncell - c)]
        edges = h + v
        parent = list(range(ncell))
        tree = []
        for k in rng.permutation(len(edges)).tolist():
            a, b = edges[k]
            ra, rb = _find(parent, a), _find(parent, b)
            if ra != rb:
                parent[ra] = rb
                tree.append((a, b))
                if len(tree) == ncell - 1:
                    break
        return tree
    # randomized depth-first search (recursive backtracker): long winding corridors
    visited = [False] * ncell
    start = int(rng.integers(ncell))
    visited[start] = True
    stack = [start]
    tree = []
    rand = rng.random(4 * ncell).tolist()
    t = 0
    while stack:
        cur = stack[-1]
        r, col = divmod(cur, c)
        nbrs = []
        if r > 0 and not visited[cur - c]:
            nbrs.append(cur - c)
        if r < c - 1 and not visited[cur + c]:
            nbrs.append(cur + c)
        if col > 0 and not visited[cur - 1]:
            nbrs.append(cur - 1)
        if col < c - 1 and not visited[cur + 1]:
            nbrs.append(cur + 1)
        if not nbrs:
            stack.pop()
            continue
        nxt = nbrs[int(rand[t % len(rand)] * len(nbrs))]
        t += 1
        visited[nxt] = True
        tree.append((cur, nxt))
        stack.append(nxt)
    return tree


def _components(ncell: int, edges: list[tuple[int, int]]) -> np.ndarray:
    parent = list(range(ncell))
    for a, b in edges:
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[ra] = rb
    return np.asarray([_find(parent, i) for i in range(ncell)])


def _bfs_distance(ncell: int, edges: list[tuple[int, int]], src: int, dst: int) -> int:
    adj: list[list[int]] = [[] for _ in range(ncell)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    dist = [-1] * ncell
    dist[src] = 0
    q = deque([src])
    while q:
        u = q.popleft()
        if u == dst:
            return dist[u]
        for w in adj[u]:
            if dist[w] < 0:
                dist[w] = dist[u] + 1
                q.append(w)
    return -1


def maze_connectivity(
    n: int,
    size: int = 32,
    *,
    algorithm: str = "dfs",
    loops: int = 0,
    min_part: float = 0.25,
    min_distance: float = 0.0,
    point_value: float = 0.5,
    generator: GeneratorLike = None,
) -> VisualBatch:
    """Maze connectivity: label 1 when the two marked cells are joined by free space.

    Generative rule, per image: a maze of ``c x c`` cells, ``c = (size - 1) // 2``,
    drawn in pixels with cells at odd coordinates ``(2i + 1, 2j + 1)`` and walls between
    (pixels outside the ``(2c + 1)``-square are wall). Free space is 1, walls 0.

    1. A random spanning tree of the cell grid: ``algorithm="dfs"`` (randomized
       depth-first search, long winding corridors) or ``"kruskal"`` (randomized
       Kruskal, many short dead ends). Every tree edge opens the wall between two
       cells; the maze is then fully connected.
    2. One tree edge is closed again, chosen at random among those that leave at least
       ``min_part`` of the cells on each side (the most balanced edge when none does):
       the maze falls into exactly two parts.
    3. ``loops`` further walls are opened at random between cells of the *same* part
       (alternative routes; the two parts stay separate).
    4. Positive (label 1): two distinct cells of one part (chosen with probability
       proportional to its size); negative: one cell in each part. Both are at least
       ``min_distance`` cells apart (Euclidean). They are drawn with intensity
       ``point_value`` (default 0.5, between wall and free space).

    Labels are correct by construction (union-find on the opened walls); ``info``:
    ``path_length`` (cells on the shortest route minus one; -1 when not connected),
    ``distance`` (Euclidean, in cells), ``points`` ``(n, 2, 2)`` pixel (row, column)
    of the two marks, ``part_size`` ``(n, 2)`` cells in the two parts.

    Example:
        >>> b = maze_connectivity(4, size=11, generator=0)
        >>> b.x.shape, b.y.bincount().tolist(), sorted(b.x.unique().tolist())
        (torch.Size([4, 1, 11, 11]), [2, 2], [0.0, 0.5, 1.0])
    """
    n = _check_int(n, "n", 1)
    size = _check_int(size, "size", 5)
    if algorithm not in ("dfs", "kruskal"):
        raise ValueError(f"algorithm must be one of ['dfs', 'kruskal'], got {algorithm!r}")
    loops = _check_int(loops, "loops", 0)
    min_part = _check_float(min_part, "min_part", 0.0, 0.5)
    point_value = _check_float(point_value, "point_value", 0.0, 1.0, low_open=True)
    if point_value == 1.0:
        raise ValueError("point_value must lie in (0, 1) to differ from free space, got 1.0")
    c = (size - 1) // 2
    ncell = c * c
    max_d = math.hypot(c - 1, c - 1)
    min_distance = _check_float(min_distance, "min_distance", 0.0, max_d / 2)
    rng = _rng(generator)
    y = _balanced_labels(n, 2, rng)
    x = np.zeros((n, size, size), np.float32)
    points = np.zeros((n, 2, 2), np.int64)
    path_len = np.full(n, -1, np.int64)
    dist_out = np.zeros(n, np.float32)
    part_size = np.zeros((n, 2), np.int64)
    rc = np.stack(np.divmod(np.arange(ncell), c), -1)  # (ncell, 2) row, col of cells
    h_all = [(i, i + 1) for i in range(ncell) if i % c != c - 1]
    v_all = [(i, i + c) for i in range(ncell - c)]
    all_edges = h_all + v_all
    for s in range(n):
        tree = _spanning_tree(c, rng, algorithm)
        # subtree sizes of the tree rooted at cell 0 -> balance of each cut
        adj: list[list[int]] = [[] for _ in range(ncell)]
        for a, b in tree:
            adj[a].append(b)
            adj[b].append(a)
        order, par = [0], [-1] * ncell
        par[0] = 0
        for u in order:
            for w in adj[u]:
                if par[w] < 0:
                    par[w] = u
                    order.append(w)
        sub = [1] * ncell
        for u in reversed(order[1:]):
            sub[par[u]] += sub[u]
        small = np.asarray([min(sub[w], ncell - sub[w]) for w in order[1:]])
        ok = np.flatnonzero(small >= min_part * ncell)
        if len(ok) == 0:
            ok = np.flatnonzero(small == small.max())
        cut_child = order[1:][int(ok[rng.integers(len(ok))])]
        cut = (par[cut_child], cut_child)
        open_edges = [e for e in tree if e != cut and e[::-1] != cut]
        comp = _components(ncell, open_edges)
        if loops:
            tree_set = set(open_edges) | {cut, cut[::-1]}
            cand = [e for e in all_edges if e not in tree_set and e[::-1] not in tree_set
                    and comp[e[0]] == comp[e[1]]]
            if cand:
                pick = rng.permutation(len(cand))[:loops]
                open_edges += [cand[k] for k in pick.tolist()]
        roots = np.unique(comp)
        parts = [np.flatnonzero(comp == r) for r in roots]
        part_size[s] = [len(p) for p in parts]
        for _ in range(1000):
            if y[s] == 1:
                k = int(rng.choice(2, p=np.asarray(part_size[s], float) / ncell))
                if len(parts[k]) < 2:
                    continue
                a, b = rng.choice(parts[k], 2, replace=False)
            else:
                a, b = rng.choice(parts[0]), rng.choice(parts[1])
                if rng.random() < 0.5:
                    a, b = b, a
            d = float(np.hypot(*(rc[a] - rc[b])))
            if d >= min_distance:
                break
        else:
            raise ValueError(
                f"could not place two points min_distance={min_distance} apart; lower it"
            )
        dist_out[s] = d
        img = x[s]
        img[1 : 2 * c : 2, 1 : 2 * c : 2] = 1.0
        ends = np.asarray(open_edges, dtype=np.int64).reshape(-1, 2)
        wall = rc[ends[:, 0]] + rc[ends[:, 1]] + 1  # pixel between the two cells
        img[wall[:, 0], wall[:, 1]] = 1.0
        points[s, 0] = 2 * rc[a] + 1
        points[s, 1] = 2 * rc[b] + 1
        img[tuple(points[s, 0])] = point_value
        img[tuple(points[s, 1])] = point_value
        if y[s] == 1:
            path_len[s] = _bfs_distance(ncell, open_edges, int(a), int(b))
    info = {
        "path_length": torch.as_tensor(path_len),
        "distance": torch.as_tensor(dist_out),
        "points": torch.as_tensor(points),
        "part_size": torch.as_tensor(part_size),
    }
    return VisualBatch(
        torch.as_tensor(x).unsqueeze(1), torch.as_tensor(y, dtype=torch.int64), info, 2, "maze"
    )


# --------------------------------------------------------------------------- digits


def digits_images(
    n: int | None = None,
    size: int = 8,
    *,
    generator: GeneratorLike = None,
) -> VisualBatch:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes) as images.

    Pixels are scaled to [0, 1] (raw 0..16 divided by 16). ``n`` images are drawn
    without replacement in a random order (all 1797, shuffled, when None); with
    ``size > 8`` they are upsampled by bilinear interpolation
    (``torch.nn.functional.interpolate``, ``align_corners=False``) and clipped to
    [0, 1]. Needs scikit-learn (the data ship inside it; nothing is downloaded).
    ``info``: ``index`` (row in scikit-learn's array).

    Example:
        >>> b = digits_images(6, size=16, generator=0)  # doctest: +SKIP
        >>> b.x.shape, b.n_classes  # doctest: +SKIP
        (torch.Size([6, 1, 16, 16]), 10)
    """
    total = 1797
    n = total if n is None else _check_int(n, "n", 1, total)
    size = _check_int(size, "size", 8)
    rng = _rng(generator)
    images, labels = sklearn_digits(size, "digits_images")
    idx = rng.permutation(total)[:n]
    x, y = images[torch.as_tensor(idx)], labels[torch.as_tensor(idx)]
    return VisualBatch(x, y, {"index": torch.as_tensor(idx)}, 10, "digits")


# --------------------------------------------------------------------------- registry

VISUAL_TASKS: dict[str, Callable[..., VisualBatch]] = {
    "contour": contour_integration,
    "motion": motion_direction,
    "maze": maze_connectivity,
    "digits": digits_images,
}


def make_visual_dataset(
    name: str,
    n_train: int = 1000,
    n_test: int = 200,
    seed: int = 0,
    val_size: int = 0,
    **params: Any,
) -> Dataset:
    """A visual task of :data:`VISUAL_TASKS` as a :class:`~bionn.tasks.datasets.Dataset`.

    Train and test sets are drawn independently from the generator (each under its own
    seed derived from ``seed``, so they do not depend on each other's size); for
    ``"digits"`` they are disjoint subsets of the 1797 images. ``params`` go to the
    generator (e.g. ``size``, ``coherence``); ``val_size`` training samples are moved to
    a validation split. Movies keep their time axis: ``input_shape`` is
    ``(T, 1, H, W)`` for ``"motion"``.

    Example:
        >>> data = make_visual_dataset("contour", n_train=20, n_test=10, size=20)
        >>> data.name, data.input_shape, data.y_train.bincount().tolist()
        ('contour', (1, 20, 20), [10, 10])
    """
    if name not in VISUAL_TASKS:
        raise ValueError(f"unknown visual task {name!r}; allowed: {sorted(VISUAL_TASKS)}")
    n_train = _check_int(n_train, "n_train", 1)
    n_test = _check_int(n_test, "n_test", 1)
    seed = _check_int(seed, "seed", 0)
    val_size = _check_int(val_size, "val_size", 0)
    if "generator" in params or "n" in params:
        raise ValueError("make_visual_dataset sets n and generator itself; pass n_train, "
                         "n_test and seed instead")
    fn = VISUAL_TASKS[name]
    if name == "digits":
        if n_train + n_test > 1797:
            raise ValueError(f"n_train + n_test must be <= 1797 for digits, got {n_train + n_test}")
        both = fn(n_train + n_test, generator=seed, **params)
        train = VisualBatch(both.x[:n_train], both.y[:n_train], {}, 10)
        test = VisualBatch(both.x[n_train:], both.y[n_train:], {}, 10)
    else:
        seeds = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
        train = fn(n_train, generator=int(seeds[0]), **params)
        test = fn(n_test, generator=int(seeds[1]), **params)
    return finish_dataset(name, train.x, train.y, test.x, test.y, train.n_classes, val_size, seed)

