"""Adapter that turns any NeuroGym environment into a bionn :class:`Task`.

NeuroGym (Molano-Mazón et al. 2022, https://neurogym.github.io) is optional:
it is imported when a :class:`NeuroGymTask` is built, not when bionn is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from bionn.tasks._common import check_outputs, check_positive, check_sample_args
from bionn.tasks.base import Task, TrialBatch

__all__ = ["NeuroGymTask"]

_INSTALL_HINT = "NeuroGymTask needs the optional dependency neurogym: pip install bionn[neurogym]"

#: NeuroGym classes whose ground truth is a reach angle in radians, although
#: their action space is ``Discrete`` (closed-loop "move left / right" steps).
_ANGLE_ENVS = frozenset({"Reaching1D", "Reaching1DWithSelfDistraction"})

#: default ``tolerance`` per target kind: action units (Box), degrees (angle)
_DEFAULT_TOLERANCE = {"box": 0.1, "angle": 10.0}

TargetKind = Literal["one_hot", "box", "angle"]


def _import_neurogym() -> Any:
    try:
        import neurogym
    except ImportError as err:  # pragma: no cover - exercised only without neurogym
        raise ImportError(_INSTALL_HINT) from err
    return neurogym


def _known_env_ids() -> list[str]:
    """Every registered NeuroGym id, the collections (e.g. ``yang19.go-v0``) included."""
    try:
        from neurogym.envs.registration import all_envs

        try:
            return list(all_envs(collections=True))
        except TypeError:  # pragma: no cover - older signature
            return list(all_envs())
    except Exception:  # pragma: no cover - registry layout differs across versions
        return []


class NeuroGymTask(Task):
    """A NeuroGym environment with a ground truth (``gt``) as a :class:`Task`.

    One batch element is one NeuroGym trial: ``env.unwrapped.new_trial()``,
    then ``ob = env.unwrapped.ob`` (``(T, n_input)``) and ``gt =
    env.unwrapped.gt``. Trials are padded to the longest one. How ``gt``
    becomes ``targets`` depends on the environment (``target_kind``):

    * ``"one_hot"`` (``Discrete`` actions, most environments): ``targets`` =
      one-hot of ``gt`` over the ``n_output = action_space.n`` actions (action 0
      is fixation); ``labels`` = ``gt`` at the trial's last step; accuracy
      (NeuroGym's supervised example rule): correct iff the argmax of the
      output at the trial's last valid step equals ``labels``. ``loss = None``:
      ``mse`` and ``cross_entropy`` both fit.
    * ``"box"`` (``Box`` actions, e.g. ``ReachingDelayResponse-v0``,
      ``SpatialSuppressMotion-v0``): regression. ``targets`` = ``gt`` as floats,
      ``(batch, time, n_output)`` with ``n_output`` the Box's flat size;
      ``loss = "mse"``; ``measures`` gives ``error``, the per-trial mean absolute
      error over the scored steps and action dimensions (action units); a trial
      is correct iff ``error < tolerance`` (default 0.1).
    * ``"angle"`` (``Reaching1D-v0``, ``Reaching1DWithSelfDistraction-v0``):
      their ``gt`` is the angle to reach, in radians (pi, the start position,
      during fixation; the target direction in the reach period), not an
      action index. ``targets`` = ``(cos gt, sin gt)`` (``n_output = 2``);
      ``loss = "mse"``; ``error`` = per-trial mean absolute angular error, in
      degrees, of ``atan2(out[..., 1], out[..., 0])`` over the scored steps; a
      trial is correct iff ``error < tolerance`` (default 10 degrees). Trials
      are drawn open loop, so the hand-position feedback NeuroGym adds while
      stepping is absent: Reaching1D's ``self`` inputs are 0, and
      Reaching1DWithSelfDistraction has no self-distraction.

    For every kind: ``mask`` = 1 on the steps where the environment sets a
    target, 0 elsewhere and on padding; ``labels`` = 0 for the regression kinds;
    ``info``: ``trial_length`` (steps, long) and every scalar numeric entry of
    the NeuroGym trial dict (e.g. ``ground_truth``, ``coh``). ``input_names`` /
    ``output_names`` come from the spaces' ``name`` dicts where NeuroGym gives
    them (a multi-channel entry ``stimulus`` becomes ``stimulus 1``, ...).

    Refused with a ValueError naming the environment: those without a ground
    truth (reward-only tasks such as ``Bandit-v0``, ``DawTwoStep-v0``,
    ``EconomicDecisionMaking-v0``: they need reward-based training), ground
    truths that are not action indices, and other action spaces.

    Reproducibility: each :meth:`sample` draws one integer from ``generator``
    and reseeds the environment with it (``env.unwrapped.seed(seed)``, which
    reseeds its ``numpy`` RNG, its action space and its timing samplers), so
    the same generator state gives the same batch (environments that keep
    state across trials, e.g. block or sequence counters, only from a fresh task).

    Args:
        env_id: a registered NeuroGym id, e.g. ``"PerceptualDecisionMaking-v0"``.
        dt: time step in ms, passed to the environment.
        env_kwargs: further keyword arguments of the environment (not ``dt``).
        tolerance: regression kinds only: the largest ``error`` of a correct trial
            (``box``: action units, default 0.1; ``angle``: degrees, default 10).

    Example:
        >>> import torch
        >>> task = NeuroGymTask("GoNogo-v0", dt=20)  # doctest: +SKIP
        >>> batch = task.sample(4, torch.Generator().manual_seed(0))  # doctest: +SKIP
        >>> task.accuracy(batch.targets, batch).all()  # doctest: +SKIP
        tensor(True)
    """

    name = "neurogym"
    #: the task loss (a run config's ``loss.task``) the targets need; None: any
    loss: str | None = None

    def __init__(
        self,
        env_id: str,
        dt: float = 20.0,
        env_kwargs: Mapping[str, Any] | None = None,
        tolerance: float | None = None,
    ) -> None:
        if not isinstance(env_id, str) or not env_id:
            raise TypeError(f"env_id must be a NeuroGym environment id (str), got {env_id!r}")
        self.dt = check_positive("dt", dt)
        if env_kwargs is None:
            env_kwargs = {}
        if not isinstance(env_kwargs, Mapping):
            raise TypeError(f"env_kwargs must be a dict or None, got {env_kwargs!r}")
        if "dt" in env_kwargs:
            raise ValueError(
                "env_kwargs must not contain 'dt'; pass dt=... to NeuroGymTask instead"
            )
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs)
        self.env = self._make()
        import gymnasium

        action_space = self.env.action_space
        if isinstance(action_space, gymnasium.spaces.Discrete):
            kind: TargetKind = "angle" if type(self.env).__name__ in _ANGLE_ENVS else "one_hot"
        elif isinstance(action_space, gymnasium.spaces.Box):
            kind = "box"
        else:
            raise ValueError(
                f"env_id: {env_id} has action space {action_space}; only Discrete (one-hot "
                "targets) and Box (regression targets) action spaces are supported"
            )
        self.target_kind: TargetKind = kind
        obs_shape = self.env.observation_space.shape
        if obs_shape is None or len(obs_shape) != 1:
            raise ValueError(f"env_id: {env_id} has observation shape {obs_shape}; need a 1-D one")
        self.n_input = int(obs_shape[0])
        self.input_names = _channel_names(self.env.observation_space, self.n_input)
        if kind == "one_hot":
            self.n_output = int(action_space.n)
            self.output_names = _channel_names(action_space, self.n_output)
        elif kind == "box":
            self.n_output = math.prod(action_space.shape)
            self.output_names = _channel_names(action_space, self.n_output)
        else:
            self.n_output = 2
            self.output_names = ("cos angle", "sin angle")
        if kind == "one_hot":
            if tolerance is not None:
                raise ValueError(
                    f"tolerance: {env_id} has one-hot targets scored by argmax; tolerance "
                    "applies only to regression (Box or reach-angle) targets"
                )
            self.tolerance: float | None = None
        else:
            self.loss = "mse"
            self.tolerance = (
                _DEFAULT_TOLERANCE[kind] if tolerance is None else check_positive("tolerance", tolerance)
            )
            _float_ground_truth(self.env)
        # Refuse an environment without a usable ground truth now, not at the first
        # sample: one trial of a separate instance (this one's state stays untouched).
        probe = self._make()
        if kind != "one_hot":
            _float_ground_truth(probe)
        probe.seed(0)
        self._one_trial(probe)

    def _make(self) -> Any:
        """A fresh unwrapped environment."""
        ngym = _import_neurogym()
        import gymnasium

        dt_arg: float | int = int(self.dt) if float(self.dt).is_integer() else self.dt
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                env = ngym.make(self.env_id, dt=dt_arg, **self.env_kwargs)
        except gymnasium.error.Error as err:
            known = _known_env_ids()
            hint = f"; known NeuroGym ids: {', '.join(known)}" if known else ""
            raise ValueError(
                f"env_id: unknown NeuroGym environment {self.env_id!r}{hint}"
            ) from err
        except TypeError as err:
            raise TypeError(
                f"env_kwargs {self.env_kwargs!r} rejected by {self.env_id}: {err}"
            ) from err
        return env.unwrapped

    def _one_trial(self, env: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, dict]:
        """``(ob (T, n_input), targets (T, n_output), scored (T,) bool, label, trial)``."""
        trial = env.new_trial()
        if not getattr(env, "_gt_built", True) or getattr(env, "gt", None) is None:
            raise ValueError(
                f"env_id: {self.env_id} defines no ground truth (gt) for its trials; it is a "
                "reward-only task that needs reward-based training (e.g. reinforcement "
                "learning), and NeuroGymTask trains on gt"
            )
        ob = np.asarray(env.ob, dtype=np.float32)
        gt = np.asarray(env.gt)
        if ob.ndim == 0 or ob.shape[0] != gt.shape[0] or ob.shape[0] == 0:
            raise ValueError(
                f"env_id: {self.env_id}: trial with {ob.shape[:1]} observation steps and "
                f"{gt.shape[0]} ground-truth steps"
            )
        ob = ob.reshape(ob.shape[0], -1)
        n_steps = ob.shape[0]
        label = 0
        if self.target_kind == "one_hot":
            gt = gt.reshape(n_steps)
            if not (np.all(np.isfinite(gt)) and np.array_equal(gt, np.round(gt))
                    and gt.min() >= 0 and gt.max() < self.n_output):
                raise ValueError(
                    f"env_id: {self.env_id} gives ground-truth values {_few(gt)}, which are not "
                    f"its action indices 0..{self.n_output - 1} (action space "
                    f"{env.action_space}); only action indices can become one-hot targets"
                )
            idx = gt.astype(np.int64)
            targets = np.eye(self.n_output, dtype=np.float32)[idx]
            scored = np.ones(n_steps, dtype=bool)
            label = int(idx[-1])
        elif self.target_kind == "box":
            gt = gt.reshape(n_steps, -1).astype(np.float64)
            scored = np.isfinite(gt).all(-1)
            targets = np.where(scored[:, None], gt, 0.0).astype(np.float32)
        else:
            angle = gt.reshape(n_steps).astype(np.float64)
            scored = np.isfinite(angle)
            angle = np.where(scored, angle, 0.0)
            targets = np.stack([np.cos(angle), np.sin(angle)], -1).astype(np.float32)
            targets[~scored] = 0.0
        if not scored.any():
            raise ValueError(f"env_id: {self.env_id} sets no ground truth on any step of a trial")
        return ob, targets, scored, label, dict(trial or {})

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` NeuroGym trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        self.env.seed(seed)
        if isinstance(getattr(self.env, "_rng", None), np.random.Generator):
            self.env._rng = np.random.default_rng(seed)  # AnnubesEnv draws from its own
        trials = [self._one_trial(self.env) for _ in range(b)]
        lengths = torch.tensor([t[0].shape[0] for t in trials], dtype=torch.long)
        n_steps = int(lengths.max())
        inputs = torch.zeros(b, n_steps, self.n_input)
        targets = torch.zeros(b, n_steps, self.n_output)
        mask = torch.zeros(b, n_steps)
        for i, (ob, tgt, scored, _, _) in enumerate(trials):
            n = ob.shape[0]
            inputs[i, :n] = torch.from_numpy(ob)
            targets[i, :n] = torch.from_numpy(tgt)
            mask[i, :n] = torch.from_numpy(scored.astype(np.float32))
        labels = torch.tensor([t[3] for t in trials], dtype=torch.long)
        info = _scalar_info([t[4] for t in trials])
        info["trial_length"] = lengths
        return TrialBatch(inputs, targets, mask, labels, info)

    def accuracy(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """One-hot kind: ``argmax(outputs[i, last_valid_step_i]) == labels[i]``;
        regression kinds: ``measures(outputs, batch)["error"] < tolerance``."""
        check_outputs(outputs, batch, self.n_output)
        if self.target_kind != "one_hot":
            return self.measures(outputs, batch)["error"] < self.tolerance
        if "trial_length" in batch.info:
            last = batch.info["trial_length"].to(outputs.device) - 1
        else:
            steps = torch.arange(batch.mask.shape[1], device=outputs.device)
            last = ((batch.mask.to(outputs.device) > 0) * steps).argmax(1)
        final = outputs.gather(1, last[:, None, None].expand(-1, 1, outputs.shape[-1])).squeeze(1)
        return final.argmax(-1) == batch.labels.to(outputs.device)

    def measures(self, outputs: Tensor, batch: TrialBatch) -> dict[str, Tensor]:
        """Regression kinds: ``{"error": (batch,)}``, the mean over the scored steps of
        the absolute error (``box``: averaged over action dimensions, action units;
        ``angle``: angular, degrees). One-hot kind: none."""
        if self.target_kind == "one_hot":
            return {}
        check_outputs(outputs, batch, self.n_output)
        targets = batch.targets.to(outputs.device, outputs.dtype)
        if self.target_kind == "box":
            err = (outputs - targets).abs().mean(-1)
        else:
            diff = torch.atan2(outputs[..., 1], outputs[..., 0]) - torch.atan2(
                targets[..., 1], targets[..., 0]
            )
            err = torch.rad2deg(torch.atan2(torch.sin(diff), torch.cos(diff)).abs())
        w = (batch.mask.to(outputs.device) > 0).to(err.dtype)
        return {"error": (err * w).sum(1) / w.sum(1).clamp_min(1.0)}

    def __repr__(self) -> str:
        tol = "" if self.tolerance is None else f", tolerance={self.tolerance}"
        return (f"NeuroGymTask(env_id={self.env_id!r}, dt={self.dt}, "
                f"env_kwargs={self.env_kwargs}{tol})")


def _float_ground_truth(env: Any) -> None:
    """Make ``env`` build its ``gt`` as float64 filled with NaN, so that a regression
    target keeps its value (NeuroGym allocates ``gt`` with the action space's
    dtype, which truncates Reaching1D's angles to integers) and the steps the
    environment never sets stay NaN (not scored)."""

    def _init_gt() -> None:
        shape = env.action_space.shape or ()
        env.gt = np.full([int(env._tmax / env.dt), *shape], np.nan)
        env._gt_built = True

    env._init_gt = _init_gt


def _channel_names(space: Any, n: int) -> tuple[str, ...] | None:
    """One name per channel from a NeuroGym space's ``name`` dict (``{'fixation': 0,
    'stimulus': [1, 2]}`` -> ``('fixation', 'stimulus 1', 'stimulus 2')``); None when
    the space has none or they do not name each of the ``n`` channels exactly once."""
    names = getattr(space, "name", None)
    if not isinstance(names, Mapping) or not names:
        return None
    out: list[str | None] = [None] * n
    for key, where in names.items():
        if np.ndim(where) == 0:
            indices = [where]
        else:
            try:
                indices = list(where)
            except TypeError:
                return None
        for k, index in enumerate(indices):
            if not _is_numeric_scalar(index) or float(index) != int(index):
                return None
            i = int(index)
            if not 0 <= i < n or out[i] is not None:
                return None
            out[i] = str(key) if len(indices) == 1 else f"{key} {k + 1}"
    if any(name is None for name in out):
        return None
    return tuple(name for name in out if name is not None)


def _few(values: np.ndarray, k: int = 8) -> str:
    """The first ``k`` distinct values, for an error message."""
    distinct = np.unique(values)
    text = ", ".join(f"{v:g}" for v in distinct[:k].tolist())
    return f"[{text}{', ...' if distinct.size > k else ''}]"


def _scalar_info(trials: list[dict[str, Any]]) -> dict[str, Tensor]:
    """Per-trial tensors of the trial-dict entries that are numeric scalars in every trial."""
    if not trials:
        return {}
    out: dict[str, Tensor] = {}
    for key in trials[0]:
        values = [t.get(key) for t in trials]
        if not all(_is_numeric_scalar(v) for v in values):
            continue
        arr = np.asarray(values)
        if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
            out[str(key)] = torch.as_tensor(arr.astype(np.int64))
        else:
            out[str(key)] = torch.as_tensor(arr.astype(np.float32))
    return out


def _is_numeric_scalar(value: object) -> bool:
    return isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating))
