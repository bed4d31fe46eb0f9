r"""Fixed and slow points of trained recurrent networks, and their linearization.

For a rate model of the recurrent core with a constant input ``u``, one step is a map of the
pre-activation state, ``h' = F(h, u)`` (for a CTRNN with Euler step ``alpha = dt / tau``:
``F(h, u) = (1 - alpha) h + alpha (W_rec f(h) + W_in u + b)``). A fixed point is a zero of

    q(h) = 1/2 |F(h, u) - h|^2,

and a slow point a small local minimum of ``q`` (Sussillo & Barak 2013). As in
FixedPointFinder (Golub & Sussillo 2018), :func:`find_fixed_points` minimises ``q`` from
many initial states (by default sampled from the model's own trajectories), then refines
every candidate with Newton steps (``h <- h - (J - I)^{-1} (F(h) - h)``, accepted only
where they lower ``q``), keeps the points with ``q`` below a threshold, removes duplicates
and outliers, and linearizes the map at each point:

* ``J = dF/dh`` (the discrete-time Jacobian) and its eigenvalues ``lambda``;
* the continuous-time linearization ``dh/dt = (F(h) - h) / dt``, ``A = (J - I) / dt``
  (per ms), eigenvalues ``(lambda - 1) / dt``;
* a point is *stable* when every ``|lambda| < 1``, *unstable* when every ``|lambda| > 1``,
  else a *saddle*; ``n_unstable`` counts its unstable modes.

:func:`linearize` gives the eigen-decomposition at one state with right and left
eigenvectors, slowest mode first: a line attractor has one continuous-time eigenvalue near
0 and its left eigenvector is the *selection vector* of Mante et al. (2013).

The search runs on a float64 copy of the model with its noise switched off; the model
itself is left unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["FixedPoints", "Linearization", "SelectionVectors", "find_fixed_points",
           "hidden_trajectories", "linearize", "selection_vectors", "step_map"]

Map = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- the map
def _analysis_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A float64, noise-free, eval-mode copy (the model is not touched)."""
    net = copy.deepcopy(model).to(dtype).eval()
    for name in ("preact_noise", "postact_noise"):
        if hasattr(net, name):
            setattr(net, name, 0.0)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _check_rate_model(model: nn.Module) -> None:
    from bionn.functional.rate import RateState

    ok = all(hasattr(model, k) for k in ("initial_state", "rate_function", "step"))
    if ok:
        ok = isinstance(model.initial_state(1), RateState)
    if not ok:
        raise TypeError(f"{type(model).__name__} is not a rate model of the recurrent core (a state "
                        "RateState(h, r) with r = f(h): CTRNN, ConnectomeRNN, ...); give the map "
                        "F(h) as a callable instead")


def step_map(model: nn.Module, inputs: Tensor) -> Map:
    """``F(h) = h'``: one step of a rate model of the recurrent core from the state
    ``(h, f(h))`` with the constant input ``inputs`` ``(n_input,)``; ``h`` ``(K, N)``.

    Example:
        >>> from bionn import CTRNN
        >>> net = CTRNN(2, 4, 1, dt=10, tau=100)
        >>> F = step_map(net, torch.zeros(2))
        >>> F(torch.zeros(3, 4)).shape
        torch.Size([3, 4])
    """
    from bionn.functional.rate import RateState

    _check_rate_model(model)
    prepared = model.prepare()

    def F(h: Tensor) -> Tensor:
        u = inputs.to(h).expand(h.shape[0], -1)
        return model.step(RateState(h, model.rate_function(h)), u, prepared)[2].h

    return F


@torch.no_grad()
def hidden_trajectories(model: nn.Module, x: Tensor) -> Tensor:
    """The pre-activation states ``h`` ``(batch, time, N)`` of a rate model of the core
    run on the input sequences ``x`` ``(batch, time, n_input)`` from its initial state."""
    _check_rate_model(model)
    p = model.prepare()
    state = model.initial_state(x.shape[0])
    hs = []
    for x_t in x.unbind(1):
        state = model.step(state, x_t, p)[2]
        hs.append(state.h)
    return torch.stack(hs, 1)


def _jacobians(F: Map, h: Tensor) -> Tensor:
    """``dF/dh`` at each row of ``h`` ``(K, N)`` -> ``(K, N, N)`` (row i = d F_i / d h):
    the points are independent, so N backward passes give every Jacobian."""
    K, N = h.shape
    x = h.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = F(x)
        rows = []
        for i in range(N):
            (g,) = torch.autograd.grad(y[:, i].sum(), x, retain_graph=i < N - 1)
            rows.append(g)
    return torch.stack(rows, 1)


def _q(F: Map, h: Tensor) -> Tensor:
    return 0.5 * (F(h) - h).pow(2).sum(-1)


# --------------------------------------------------------------------------- results
@dataclass
class Linearization:
    """The map linearized at one state, modes sorted slowest first (by the distance of the
    continuous-time eigenvalue from 0, ``|lambda_ct|``).

    Attributes:
        state: ``(N,)``; jacobian: ``J = dF/dh`` ``(N, N)``.
        eigenvalues: of ``J`` (complex, ``(N,)``); eigenvalues_ct: ``(lambda - 1) / dt`` (1/ms).
        right: right eigenvectors as columns ``(N, N)``; left: left eigenvectors as rows
            (``left @ right = I``): ``left[k]`` projects a perturbation onto mode ``k``.
        dt: the step (ms).
    """

    state: Tensor
    jacobian: Tensor
    eigenvalues: Tensor
    eigenvalues_ct: Tensor
    right: Tensor
    left: Tensor
    dt: float

    def slow_mode_ratio(self) -> float:
        """``|lambda_ct[1]| / |lambda_ct[0]|``: how many times farther from 0 the second
        slowest mode is than the slowest (>= 10: one isolated slow mode, a line attractor)."""
        a = self.eigenvalues_ct.abs()
        return float(a[1] / a[0].clamp_min(1e-300))


def _linearization(state: Tensor, jac: Tensor, dt: float) -> Linearization:
    lam, vec = torch.linalg.eig(jac)
    ct = (lam - 1.0) / dt
    order = torch.argsort(ct.abs())
    lam, ct, vec = lam[order], ct[order], vec[:, order]
    return Linearization(state, jac, lam, ct, vec, torch.linalg.inv(vec), dt)


def linearize(model: nn.Module | Map, state: Tensor, inputs: Tensor | None = None, *,
              dt: float | None = None) -> Linearization:
    """Linearize a rate model of the core (or a map ``F``) at ``state`` ``(N,)`` with the
    constant input ``inputs``: Jacobian, discrete and continuous-time eigenvalues, right
    and left eigenvectors, slowest mode first.

    Example:
        >>> from bionn import CTRNN
        >>> net = CTRNN(1, 3, 1, dt=10, tau=100)
        >>> lin = linearize(net, torch.zeros(3), torch.zeros(1))
        >>> lin.eigenvalues_ct.shape, lin.dt
        (torch.Size([3]), 10.0)
    """
    if isinstance(model, nn.Module):
        net = _analysis_copy(model, torch.float64)
        F = step_map(net, inputs)
        dt = float(net.dt)
    else:
        F = model
        if dt is None:
            raise ValueError("give dt (ms) with a map F")
    h = state.to(torch.float64).reshape(1, -1)
    return _linearization(h[0], _jacobians(F, h)[0], float(dt))


@dataclass
class FixedPoints:
    """Fixed (and slow) points found by :func:`find_fixed_points`, best ``q`` first.

    Attributes:
        states: ``(K, N)`` the points ``h*``; q: ``(K,)`` ``1/2 |F(h*) - h*|^2``.
        jacobians: ``(K, N, N)`` ``dF/dh`` at each point.
        eigenvalues: ``(K, N)`` complex, of the discrete-time map, largest modulus first.
        eigenvalues_ct: ``(K, N)`` complex, of the continuous-time linearization,
            ``(lambda - 1) / dt`` (1/ms), in the same order.
        n_unstable: ``(K,)`` number of modes with ``|lambda| > 1``.
        stability: per point ``"stable"``, ``"saddle"`` or ``"unstable"``.
        inputs: the constant input; dt: the step (ms).
        trajectories: ``(batch, time, N)`` the model's states the search started from, if any.
    """

    states: Tensor
    q: Tensor
    jacobians: Tensor
    eigenvalues: Tensor
    eigenvalues_ct: Tensor
    n_unstable: Tensor
    stability: list[str]
    inputs: Tensor
    dt: float
    trajectories: Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.states.shape[0]

    def counts(self) -> dict[str, int]:
        """Number of points by stability."""
        return {k: self.stability.count(k) for k in ("stable", "saddle", "unstable")}

    def linearization(self, i: int) -> Linearization:
        """The linearization at point ``i`` (eigenvectors included), slowest mode first."""
        return _linearization(self.states[i], self.jacobians[i], self.dt)

    def plot(self, trajectories: Tensor | None = None, path: Any = None, *, title: str | None = None):
        """:func:`bionn.viz.plot_fixed_points` of these points (saddles with their most
        unstable direction) among ``trajectories`` (default: those the search started from).
        Returns the figure; saves a PNG when given ``path``."""
        from bionn.viz import plot_fixed_points

        dirs = torch.zeros_like(self.states)
        for i, s in enumerate(self.stability):
            if s == "saddle":
                lin = self.linearization(i)
                dirs[i] = lin.right[:, int(torch.argmax(lin.eigenvalues.abs()))].real
        traj = self.trajectories if trajectories is None else trajectories
        return plot_fixed_points(self.states, self.stability, traj, dirs, path, title=title)


@dataclass
class SelectionVectors:
    """The slow mode at each state and what each input does to it (Mante et al. 2013).

    Attributes:
        states: ``(K, N)``; eigenvalues_ct: ``(K,)`` the slow mode's continuous-time
            eigenvalue (1/ms).
        line: ``(K, N)`` the slow mode's right eigenvector (unit norm): the direction of the
            line attractor.
        selection: ``(K, N)`` its left eigenvector, scaled so ``selection . line = 1``: the
            direction an input must have to move the state along the line.
        input_projection: ``(K, n_input)`` ``selection . dF/du_j``: how far one step of unit
            input ``j`` pushes the state along the line (the input is *selected* when large).
        input_alignment: ``(K, n_input)`` ``|cos|`` between ``dF/du_j`` and the selection vector.
    """

    states: Tensor
    eigenvalues_ct: Tensor
    line: Tensor
    selection: Tensor
    input_projection: Tensor
    input_alignment: Tensor


def selection_vectors(model: nn.Module, inputs: Tensor, states: Tensor) -> SelectionVectors:
    """At each of ``states`` ``(K, N)`` (e.g. the slow points of one context), the slowest
    mode's line direction and selection vector, and each input's projection onto it
    (Mante et al. 2013, Nature 503:78: in each context the relevant input is aligned with
    the selection vector, the irrelevant one is not). ``inputs`` ``(n_input,)``: the constant
    input of the context. The input directions are ``dF/du`` at each state (for a CTRNN
    ``alpha W_in``). The slow mode should be real (a line attractor); for a complex pair the
    real parts of its eigenvectors are returned.

    Example:
        >>> from bionn import CTRNN
        >>> net = CTRNN(2, 4, 1, dt=10, tau=100, activation="tanh")
        >>> with torch.no_grad():  # unit 0 integrates (a line attractor along it)
        ...     _ = net.weight_rec.copy_(torch.diag(torch.tensor([1.0, 0.5, 0.2, 0.1])))
        ...     _ = net.bias_rec.zero_()
        >>> sv = selection_vectors(net, torch.zeros(2), torch.zeros(3, 4))
        >>> sv.input_projection.shape, bool(torch.allclose((sv.selection * sv.line).sum(1),
        ...                                                  torch.ones(3, dtype=torch.float64)))
        (torch.Size([3, 2]), True)
    """
    net = _analysis_copy(model, torch.float64)
    _check_rate_model(net)
    u0 = torch.as_tensor(inputs, dtype=torch.float64).flatten()
    h = states.detach().to(torch.float64).reshape(-1, states.shape[-1])
    F = step_map(net, u0)
    dt = float(net.dt)
    jac = _jacobians(F, h)
    from bionn.functional.rate import RateState

    prepared = net.prepare()
    lines, sels, lams, b_all = [], [], [], []
    for k in range(h.shape[0]):
        lin = _linearization(h[k], jac[k], dt)
        right, left = lin.right[:, 0], lin.left[0]
        norm = right.abs().pow(2).sum().sqrt()
        # a real slow mode has a real eigenvector up to a phase: rotate it onto the reals
        phase = right[int(torch.argmax(right.abs()))] / right[int(torch.argmax(right.abs()))].abs()
        right, left = right / (phase * norm), left * (phase * norm)
        lines.append(right.real)
        sels.append(left.real)
        lams.append(lin.eigenvalues_ct[0])

        def G(u: Tensor, hk: Tensor = h[k : k + 1]) -> Tensor:
            return net.step(RateState(hk, net.rate_function(hk)), u.reshape(1, -1), prepared)[2].h[0]

        b_all.append(torch.autograd.functional.jacobian(G, u0))  # (N, n_input)
    line, sel = torch.stack(lines), torch.stack(sels)
    B = torch.stack(b_all)
    proj = torch.einsum("kn,kni->ki", sel, B)
    cos = proj.abs() / (sel.norm(dim=1, keepdim=True) * B.norm(dim=1)).clamp_min(1e-300)
    return SelectionVectors(h, torch.stack(lams), line, sel, proj, cos)


# --------------------------------------------------------------------------- the search
def find_fixed_points(
    model: nn.Module | Map,
    inputs: Tensor | None = None,
    *,
    initial_states: Tensor | None = None,
    sample_from: Tensor | None = None,
    n_initial: int = 128,
    init_noise: float = 0.0,
    max_iters: int = 2000,
    lr: float = 0.05,
    newton_steps: int = 30,
    q_threshold: float = 1e-16,
    unique_tol: float = 1e-5,
    outlier_scale: float = 10.0,
    stability_tol: float = 1e-9,
    dt: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> FixedPoints:
    """Fixed (``q = 0``) and slow points of a rate model of the core with a constant input.

    Args:
        model: a rate model of the recurrent core (``CTRNN``, ``ConnectomeRNN``, ...) or a
            map ``F(h) -> h'`` on ``(K, N)`` (then give ``dt`` and ``initial_states``).
        inputs: the constant input ``(n_input,)`` (default zeros).
        initial_states: ``(K, N)`` where the search starts; else
        sample_from: input sequences ``(batch, time, n_input)``: the model runs on them and
            ``n_initial`` of its states ``h`` are drawn as starts (plus Gaussian noise of
            ``init_noise`` times their standard deviation).
        max_iters, lr: Adam on ``sum_k q(h_k)`` (the learning rate decays 100-fold).
        newton_steps: Newton refinements afterwards (each accepted only where it lowers q).
        q_threshold: points with a larger final ``q`` are dropped (raise it to keep slow
            points: ``q`` is in (state units)^2).
        unique_tol: points closer than this (max-norm) are one point.
        outlier_scale: with trajectories, points farther from their centre than this many
            times the farthest trajectory state are dropped.
        stability_tol: ``|lambda| > 1 + stability_tol`` counts as unstable.
        generator: for the draw of starts and their noise.
        progress: a progress bar over the iterations.

    Returns:
        :class:`FixedPoints` (float64).

    Example:
        >>> from bionn import CTRNN
        >>> net = CTRNN(1, 2, 1, dt=10, tau=100, activation="tanh")
        >>> with torch.no_grad():
        ...     _ = net.weight_rec.copy_(2.0 * torch.eye(2))  # each unit: h = 2 tanh(h) (+ bias)
        ...     _ = net.bias_rec.zero_()
        >>> fps = find_fixed_points(net, torch.zeros(1), initial_states=torch.randn(64, 2) * 3)
        >>> fps.counts()
        {'stable': 4, 'saddle': 4, 'unstable': 1}
    """
    if isinstance(model, nn.Module):
        net = _analysis_copy(model, torch.float64)
        _check_rate_model(net)
        n_in = int(getattr(net, "n_input", 0))
        inputs = torch.zeros(n_in, dtype=torch.float64) if inputs is None else inputs
        inputs = torch.as_tensor(inputs, dtype=torch.float64).flatten()
        if n_in and inputs.numel() != n_in:
            raise ValueError(f"inputs must have n_input={n_in} values; got {inputs.numel()}")
        F = step_map(net, inputs)
        dt = float(net.dt)
    else:
        F, net = model, None
        if dt is None:
            raise ValueError("give dt (ms) with a map F")
        inputs = torch.zeros(0, dtype=torch.float64) if inputs is None else torch.as_tensor(inputs)
    trajectories = None
    if initial_states is None:
        if sample_from is None:
            raise ValueError("give initial_states (K, N) or sample_from (input sequences "
                             "(batch, time, n_input), e.g. task.sample(64).inputs)")
        if net is None:
            raise ValueError("sample_from needs a model (a map F has no trajectories); give "
                             "initial_states")
        trajectories = hidden_trajectories(net, sample_from.to(torch.float64))
        flat = trajectories.reshape(-1, trajectories.shape[-1])
        idx = torch.randint(0, flat.shape[0], (int(n_initial),), generator=generator)
        initial_states = flat[idx].clone()
        if init_noise > 0:
            std = flat.std(0, keepdim=True)
            initial_states += init_noise * std * torch.randn(initial_states.shape, generator=generator,
                                                             dtype=torch.float64)
    h = initial_states.detach().to(torch.float64).clone()
    if h.dim() != 2:
        raise ValueError(f"initial_states must be (K, N); got shape {tuple(h.shape)}")

    # 1. gradient descent on q
    h.requires_grad_(True)
    opt = torch.optim.Adam([h], lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.01 ** (1.0 / max(max_iters, 1)))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iters, desc="fixed points", unit="it", leave=False, mininterval=0.5)
    for it in range(max_iters):
        with torch.enable_grad():
            q = _q(F, h)
            opt.zero_grad(set_to_none=True)
            q.sum().backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update()
            if it % 50 == 0:
                bar.set_postfix(q_max=f"{float(q.detach().max()):.1e}", refresh=False)
        if float(q.detach().max()) < q_threshold * 1e-2:
            break
    if bar is not None:
        bar.close()
    h = h.detach()

    # 2. Newton refinement, per point, only where it lowers q, only on points not yet converged
    with torch.no_grad():
        q = _q(F, h)
    eye = torch.eye(h.shape[1], dtype=h.dtype)
    for _ in range(newton_steps):
        active = torch.nonzero(q > min(q_threshold * 1e-4, 1e-20)).flatten()
        if active.numel() == 0:
            break
        ha = h[active]
        jac = _jacobians(F, ha) - eye
        with torch.no_grad():
            resid = F(ha) - ha
            # least squares, not LU: near a line attractor J - I is nearly singular, and an
            # exact solve would throw the point far along the attractor
            step = torch.linalg.lstsq(jac, -resid.unsqueeze(-1)).solution.squeeze(-1)
            cand = ha + step
            q_new = _q(F, cand)
            better = torch.isfinite(q_new) & (q_new < q[active])
        if not bool(better.any()):
            break
        h = h.index_copy(0, active[better], cand[better])
        q = q.index_copy(0, active[better], q_new[better])

    # 3. keep, de-duplicate, remove outliers
    keep = torch.isfinite(q) & (q <= q_threshold)
    h, q = h[keep], q[keep]
    order = torch.argsort(q)
    h, q = h[order], q[order]
    # greedy, best q first: a point is kept unless a kept one lies within unique_tol (max-norm);
    # the pairwise distances are computed once, not one tensor operation per pair
    close = (torch.cdist(h, h, p=float("inf")) <= unique_tol).tolist() if h.shape[0] else []
    chosen: list[int] = []
    for i, row in enumerate(close):
        if not any(row[j] for j in chosen):
            chosen.append(i)
    h, q = h[chosen], q[chosen]
    if trajectories is not None and h.shape[0]:
        flat = trajectories.reshape(-1, trajectories.shape[-1])
        centre = flat.mean(0)
        radius = (flat - centre).norm(dim=1).max()
        inside = (h - centre).norm(dim=1) <= outlier_scale * radius
        h, q = h[inside], q[inside]

    # 4. linearize
    N = initial_states.shape[1]
    if h.shape[0]:
        jac = _jacobians(F, h)
        lam = torch.linalg.eigvals(jac)
        order = torch.argsort(lam.abs(), dim=1, descending=True)
        lam = torch.gather(lam, 1, order)
    else:
        jac = torch.zeros(0, N, N, dtype=torch.float64)
        lam = torch.zeros(0, N, dtype=torch.complex128)
    n_unstable = (lam.abs() > 1.0 + stability_tol).sum(1)
    stability = ["stable" if int(k) == 0 else "unstable" if int(k) == N else "saddle"
                 for k in n_unstable]
    return FixedPoints(states=h, q=q, jacobians=jac, eigenvalues=lam,
                       eigenvalues_ct=(lam - 1.0) / dt, n_unstable=n_unstable,
                       stability=stability, inputs=inputs, dt=float(dt), trajectories=trajectories)
