r"""Fit a recurrent network so that some of its units reproduce recorded activity.

:func:`fit` trains ``model`` (in place) so that its hidden units ``units`` (one per recorded
neuron, in the recording's order) reproduce the :class:`~bionn.analysis.fitting.Recording`,
the other units left free. The network is driven by the recording's inputs or, without
inputs, by zeros of the model's ``n_input``, and starts every trial from its own initial state
(``initial_state="model"``) or with the target units set to the first frame of the data
(``"data"``: ``h_i = atanh(d_i(0))``, tanh models only).

Methods:

* ``"bptt"``: Adam on all the model's trainable parameters, full batch of the training
  trials, gradient norm clipped to ``grad_clip``; any rate model of the recurrent core
  (``model(x, state) -> (outputs, rates)``), its constraints kept.

  - ``loss="mse"`` (``kind="rates"``): mean over trials, time and target units of
    ``(r_i(t) - d_i(t))^2``.
  - ``loss="poisson"`` (``kind="counts"``): the Poisson negative log-likelihood of the counts
    with expected count per bin ``lambda = g(r) * rate_scale * dt / 1000``: the units' rates
    read as spikes/s (times ``rate_scale``), ``g`` the identity floored at ``1e-6``
    (``poisson_link="rate"``: non-negative activations such as relu or softplus) or
    ``softplus`` (``poisson_link="softplus"``: any activation).

* Spiking models of the core (:class:`~bionn.spiking.SpikingRNN`: a state
  :class:`~bionn.spiking.CellState`) are fitted by BPTT through their surrogate gradient.
  A unit's activity is its firing rate in spikes/s: its spikes filtered by
  ``r_t = d r_{t-1} + (1 - d) z_t 1000 / dt`` (``d = exp(-dt / rate_tau)``, ``dt`` the
  model's step in ms; ``rate_tau = 0``: no filter), averaged over each bin. The recorded
  rates must be in spikes/s; for counts the expected count per bin is
  ``max(r, 1e-6) * bin / 1000`` (``poisson_link="rate"``).

* ``steps_per_bin = k``: the model steps ``k`` times per bin of the recording (its ``dt`` is
  the recording's divided by ``k``), each input held over its bin, and its activity is
  averaged over each bin's ``k`` steps (BPTT only).

* ``"force"`` / ``"full_force"``: recursive least squares on the recurrent weights (and, with
  ``train_input``, on the input weights and bias) of a tanh :class:`~bionn.rate.CTRNN` or
  :class:`~bionn.analysis.fitting.ForceNetwork` (see :mod:`bionn.analysis.fitting.force`);
  ``steps`` counts passes over the training trials, ``lr`` is not used, ``rls_alpha`` sets
  ``P_0 = I / rls_alpha``. Rates only (``loss="mse"``).

The :class:`FitResult` reports pVar (:func:`~bionn.analysis.fitting.pvar`) of the free-running
fitted network on the training trials and on the held-out ones (``train_trials`` chooses the
split); for counts it compares expected counts with counts and adds bits per spike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from bionn.analysis.fitting.data import Recording
from bionn.analysis.fitting.force import CLIP, rls_train
from bionn.analysis.fitting.metrics import co_smoothing_bits_per_spike, pvar
from bionn.recurrent import RateState

__all__ = ["FitResult", "METHODS", "fit", "is_spiking", "predict"]

METHODS = ("bptt", "force", "full_force")
LOSSES = ("mse", "poisson")


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the fitted model (the one given, trained in place).
        method, loss: as given.
        units: the model's units fitted to the recorded neurons ``(n_neurons,)``.
        train_trials, test_trials: trial indices of the split (``test_trials`` may be empty).
        curve: the training loss per step (BPTT) or the target units' rate MSE per pass (RLS).
        pvar_train, pvar_test: pVar of the free-running network on each split (``None`` with
            no held-out trial).
        prediction: ``(trials, time, n_neurons)`` the fitted units on every trial (rates, or
            expected counts per bin for ``kind="counts"``).
        metrics: every score by name (``pvar_train``, ``pvar_test``,
            ``bits_per_spike_train``, ...).
    """

    model: nn.Module
    method: str
    loss: str
    units: Tensor
    train_trials: Tensor
    test_trials: Tensor
    curve: list[float]
    pvar_train: float
    pvar_test: float | None
    prediction: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def _n_hidden(model: nn.Module) -> int:
    n = getattr(model, "n_hidden", None)
    if n is None:
        shape = getattr(model, "unit_shape", None)
        if shape is None or len(shape) != 1:
            raise TypeError(f"{type(model).__name__} is not a rate model with one axis of hidden units "
                            "(n_hidden or unit_shape=(N,))")
        n = shape[0]
    return int(n)


def _check_units(units: Any, n_neurons: int, n_hidden: int) -> Tensor:
    if units is None:
        if n_neurons > n_hidden:
            raise ValueError(f"units: the recording has {n_neurons} neurons but the model only "
                             f"{n_hidden} hidden units")
        return torch.arange(n_neurons)
    try:
        u = torch.as_tensor(units)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"units must be a sequence of hidden-unit indices; got {units!r}") from e
    if u.is_floating_point() or u.dim() != 1:
        raise ValueError(f"units must be a 1-D sequence of integer hidden-unit indices; got {units!r}")
    u = u.long()
    if u.numel() != n_neurons:
        raise ValueError(f"units has {u.numel()} indices but the recording has {n_neurons} neurons "
                         "(one model unit per recorded neuron)")
    if int(u.min()) < 0 or int(u.max()) >= n_hidden:
        raise ValueError(f"units must lie in [0, {n_hidden}) (the model's hidden units); got "
                         f"{int(u.min())}..{int(u.max())}")
    if torch.unique(u).numel() != u.numel():
        raise ValueError("units must not repeat a hidden unit")
    return u


def _split(n: int, train_trials: Any, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    if train_trials is None:
        return torch.arange(n), torch.arange(0)
    if isinstance(train_trials, bool):
        raise ValueError(f"train_trials must be None, a count, a fraction or indices; got {train_trials!r}")
    if isinstance(train_trials, (int, float)):
        k = train_trials if isinstance(train_trials, int) else round(train_trials * n)
        if isinstance(train_trials, float) and not 0 < train_trials <= 1:
            raise ValueError(f"train_trials as a fraction must lie in (0, 1]; got {train_trials!r}")
        if not 1 <= k <= n:
            raise ValueError(f"train_trials must keep between 1 and {n} trials; got {train_trials!r}")
        perm = torch.randperm(n, generator=generator)
        return perm[:k].sort().values, perm[k:].sort().values
    idx = torch.as_tensor(train_trials).long().flatten()
    if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= n or torch.unique(idx).numel() != idx.numel():
        raise ValueError(f"train_trials must be distinct trial indices in [0, {n}); got {train_trials!r}")
    rest = torch.ones(n, dtype=torch.bool)
    rest[idx] = False
    return idx, torch.arange(n)[rest]


def _initial_h(model: nn.Module, data: Tensor, units: Tensor, mode: str) -> Tensor | None:
    """Initial pre-activations ``(B, N)``, or None for the model's own."""
    if mode == "model":
        return None
    if mode != "data":
        raise ValueError(f"initial_state must be 'model' or 'data'; got {mode!r}")
    if getattr(model, "activation_name", None) != "tanh":
        raise ValueError("initial_state='data' inverts tanh (h = atanh(d)); the model's activation is "
                         f"{getattr(model, 'activation_name', None)!r}")
    h = model.initial_state(data.shape[0]).h.detach().clone()
    h[:, units] = torch.atanh(data[:, 0].clamp(-CLIP, CLIP)).to(h)
    return h


def is_spiking(model: nn.Module) -> bool:
    """Whether ``model`` is a spiking model of the recurrent core (its state a
    :class:`~bionn.spiking.CellState`): its activity is spikes, not rates."""
    from bionn.spiking import CellState

    init = getattr(model, "initial_state", None)
    return callable(init) and isinstance(init(1), CellState)


@dataclass(frozen=True)
class _Readout:
    """How a model's activity becomes one value per recording bin."""

    steps_per_bin: int = 1
    spiking: bool = False
    rate_tau: float = 0.0  # ms, spiking only
    dt: float = 1.0  # the model's step (ms)


def _run(model: nn.Module, x: Tensor, h0: Tensor | None, how: _Readout = _Readout()) -> Tensor:
    """The model's activity per bin ``(batch, bins, N)`` on the per-bin inputs ``x``:
    rates, or firing rates in spikes/s for a spiking model."""
    k = how.steps_per_bin
    if k > 1:
        x = x.repeat_interleave(k, 1)
    state = None if h0 is None else RateState(h0, model.rate_function(h0))
    act = model(x, state)[1]
    if how.spiking:
        act = act * (1000.0 / how.dt)
        if how.rate_tau > 0:
            from bionn.spiking.trainable import _leaky

            act = _leaky(act, math.exp(-how.dt / how.rate_tau))
    if k > 1:
        act = act.reshape(act.shape[0], -1, k, act.shape[-1]).mean(2)
    return act


def _to_counts(rates: Tensor, dt: float, link: str, rate_scale: float) -> Tensor:
    r = F.softplus(rates) if link == "softplus" else rates.clamp_min(1e-6)
    return r * (rate_scale * dt / 1000.0)


def _readout(model: nn.Module, recording: Recording, steps_per_bin: int, rate_tau: float) -> _Readout:
    if not (isinstance(steps_per_bin, int) and not isinstance(steps_per_bin, bool) and steps_per_bin >= 1):
        raise ValueError(f"steps_per_bin must be a positive integer; got {steps_per_bin!r}")
    if not (isinstance(rate_tau, (int, float)) and not isinstance(rate_tau, bool) and rate_tau >= 0):
        raise ValueError(f"rate_tau must be >= 0 ms; got {rate_tau!r}")
    dt_model = float(getattr(model, "dt", recording.dt / steps_per_bin))
    if not math.isclose(dt_model * steps_per_bin, recording.dt, rel_tol=1e-9):
        per = "" if steps_per_bin == 1 else f" / steps_per_bin ({steps_per_bin})"
        raise ValueError(f"the model's dt ({dt_model:g} ms) must equal recording.dt ({recording.dt:g} ms)"
                         f"{per}; build the model with that dt or set steps_per_bin")
    return _Readout(steps_per_bin, is_spiking(model), float(rate_tau), dt_model)


@torch.no_grad()
def predict(model: nn.Module, recording: Recording, units: Any = None, *, initial_state: str = "model",
            loss: str = "mse", poisson_link: str = "rate", rate_scale: float = 1.0,
            steps_per_bin: int = 1, rate_tau: float = 0.0) -> Tensor:
    """The free-running model's units ``units`` on every trial of ``recording``
    ``(trials, time, n_neurons)``: rates (spikes/s for a spiking model), or expected counts
    per bin with ``loss="poisson"``."""
    units = _check_units(units, recording.n_neurons, _n_hidden(model))
    how = _readout(model, recording, steps_per_bin, rate_tau)
    ref = next(iter(model.parameters()))
    x = recording.input_sequence(model.n_input).to(ref)
    h0 = _initial_h(model, recording.data.to(ref), units, initial_state)
    out = _run(model, x, h0, how)[..., units]
    return _to_counts(out, recording.dt, poisson_link, rate_scale) if loss == "poisson" else out


def _bptt(model: nn.Module, x: Tensor, y: Tensor, units: Tensor, h0: Tensor | None, *, loss: str,
          steps: int, lr: float, grad_clip: float | None, dt: float, link: str, rate_scale: float,
          progress: bool, how: _Readout) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter for method='bptt'")
    opt = torch.optim.Adam(params, lr=lr)
    curve = []
    for _ in tqdm(range(steps), disable=not progress, desc="bptt"):
        opt.zero_grad(set_to_none=True)
        pred = _run(model, x, h0, how)[..., units]
        if loss == "mse":
            value = F.mse_loss(pred, y)
        else:
            value = F.poisson_nll_loss(_to_counts(pred, dt, link, rate_scale), y, log_input=False)
        value.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        curve.append(float(value.detach()))
        if not math.isfinite(curve[-1]):
            raise FloatingPointError(f"bptt: the loss became {curve[-1]} at step {len(curve)}; lower lr")
    return curve


def fit(model: nn.Module, recording: Recording, units: Sequence[int] | Tensor | None = None, *,
        method: str = "bptt", loss: str = "mse", steps: int = 500, lr: float = 1e-2,
        train_trials: int | float | Sequence[int] | Tensor | None = None,
        generator: torch.Generator | None = None, progress: bool = False,
        initial_state: str = "model", grad_clip: float | None = 1.0, poisson_link: str = "rate",
        rate_scale: float = 1.0, rls_alpha: float = 1.0, learn_every: int = 1,
        train_input: bool = True, steps_per_bin: int = 1, rate_tau: float = 0.0) -> FitResult:
    """Train ``model`` so that its hidden units ``units`` reproduce ``recording``.

    Args:
        model: a rate or spiking model of the recurrent core (``CTRNN``, ``ConnectomeRNN``,
            ``SpikingRNN``, ...; a tanh ``CTRNN``/``ForceNetwork`` for FORCE), ``dt`` equal
            to the recording's divided by ``steps_per_bin``.
        recording: the :class:`~bionn.analysis.fitting.Recording` (one trial for a trial
            average: ``recording.trial_average()``).
        units: the hidden unit of each recorded neuron (default ``0..n_neurons-1``).
        method: ``"bptt"``, ``"force"`` or ``"full_force"`` (see the module docstring).
        loss: ``"mse"`` (rates) or ``"poisson"`` (counts; BPTT only).
        steps: Adam steps (BPTT) or passes over the training trials (RLS).
        lr: Adam's learning rate (BPTT).
        train_trials: ``None`` (all trials, nothing held out), a number or fraction of trials
            drawn at random (``generator``), or the training trials' indices; the others are
            held out.
        generator: random generator of the split.
        progress: show a progress bar.
        initial_state: ``"model"`` or ``"data"`` (see the module docstring).
        grad_clip: BPTT gradient norm clip (None: none).
        poisson_link, rate_scale: the expected count of a unit's rate (``loss="poisson"``).
        rls_alpha, learn_every, train_input: RLS settings (see
            :func:`~bionn.analysis.fitting.force.rls_train`).
        steps_per_bin: model steps per bin of the recording (BPTT).
        rate_tau: ms, the filter of a spiking model's spikes (0: none).

    Example:
        >>> from bionn import CTRNN
        >>> rec = Recording(torch.sin(torch.linspace(0, 3, 20))[None, :, None].expand(2, 20, 1), dt=10)
        >>> res = fit(CTRNN(1, 8, 1, dt=10, tau=50, activation="tanh"), rec, [0], steps=5,
        ...           train_trials=[0])
        >>> len(res.curve), res.prediction.shape, res.test_trials.tolist()
        (5, torch.Size([2, 20, 1]), [1])
    """
    if not isinstance(recording, Recording):
        raise TypeError(f"recording must be a Recording; got {type(recording).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a bionn rate model (nn.Module); got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    if loss == "poisson" and recording.kind != "counts":
        raise ValueError("loss='poisson' fits spike counts; the recording holds rates (kind='rates')")
    if loss == "mse" and recording.kind != "rates":
        raise ValueError("loss='mse' fits rates; the recording holds spike counts: use loss='poisson'")
    if loss == "poisson" and method != "bptt":
        raise ValueError(f"method={method!r} fits rates by least squares; loss='poisson' needs method='bptt'")
    if poisson_link not in ("rate", "softplus"):
        raise ValueError(f"poisson_link must be 'rate' or 'softplus'; got {poisson_link!r}")
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative integer; got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be > 0; got {lr!r}")
    if not (isinstance(rate_scale, (int, float)) and rate_scale > 0):
        raise ValueError(f"rate_scale must be > 0; got {rate_scale!r}")
    n_hidden = _n_hidden(model)
    how = _readout(model, recording, steps_per_bin, rate_tau)
    if method != "bptt" and (how.spiking or steps_per_bin != 1):
        what = "a spiking model" if how.spiking else f"steps_per_bin={steps_per_bin}"
        raise ValueError(f"method={method!r} (recursive least squares on a tanh rate network, one "
                         f"step per bin) cannot fit {what}; use method='bptt'")
    if how.spiking and initial_state != "model":
        raise ValueError("initial_state='data' sets rate units' pre-activations; a spiking model "
                         "starts from its own initial state (initial_state='model')")
    if how.spiking and poisson_link != "rate":
        raise ValueError("a spiking model's rates are spikes/s >= 0: its expected count per bin is "
                         "the rate itself (poisson_link='rate')")
    n_input = getattr(model, "n_input", None)
    if n_input is None:
        raise TypeError(f"{type(model).__name__} has no n_input")
    units = _check_units(units, recording.n_neurons, n_hidden)
    train, test = _split(recording.n_trials, train_trials, generator)
    ref = next(iter(model.parameters()))
    x_all = recording.input_sequence(n_input).to(ref)
    y_all = recording.data.to(ref)
    x, y = x_all[train], y_all[train]
    h0 = _initial_h(model, y, units, initial_state)

    if method == "bptt":
        model.train()
        curve = _bptt(model, x, y, units, h0, loss=loss, steps=steps, lr=float(lr), grad_clip=grad_clip,
                      dt=recording.dt, link=poisson_link, rate_scale=float(rate_scale), progress=progress,
                      how=how)
    else:
        if h0 is None:
            h0 = model.initial_state(len(train)).h.detach()
        curve = rls_train(model, x, y, units, h0, method=method, passes=steps, rls_alpha=rls_alpha,
                          learn_every=learn_every, train_input=train_input, progress=progress)

    pred = predict(model, recording, units, initial_state=initial_state, loss=loss,
                   poisson_link=poisson_link, rate_scale=rate_scale, steps_per_bin=steps_per_bin,
                   rate_tau=rate_tau).detach().cpu()
    data = recording.data
    metrics: dict[str, float] = {"pvar_train": pvar(pred[train], data[train])}
    if len(test):
        metrics["pvar_test"] = pvar(pred[test], data[test])
    if recording.kind == "counts":
        hz = pred * (1000.0 / recording.dt)
        for name, idx in (("train", train), ("test", test)):
            if len(idx) and float(data[idx].sum()) > 0:
                metrics[f"bits_per_spike_{name}"] = co_smoothing_bits_per_spike(hz[idx], data[idx], recording.dt)
    return FitResult(model, method, loss, units, train, test, curve, metrics["pvar_train"],
                     metrics.get("pvar_test"), pred, metrics)
