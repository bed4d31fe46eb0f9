"""Adapter that turns any NeuroGym environment into a bionn :class:`Task`.

NeuroGym (Molano-Mazón et al. 2022, https://neurogym.github.io) is optional:
it is imported when a :class:`NeuroGymTask` is built, not when bionn is.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bionn.tasks._common import check_outputs, check_positive, check_sample_args
from bionn.tasks.base import Task, TrialBatch

__all__ = ["NeuroGymTask"]

_INSTALL_HINT = "NeuroGymTask needs the optional dependency neurogym: pip install bionn[neurogym]"


def _import_neurogym() -> Any:
    try:
        import neurogym
    except ImportError as err:  # pragma: no cover - exercised only without neurogym
        raise ImportError(_INSTALL_HINT) from err
    return neurogym


def _known_env_ids() -> list[str]:
    try:
        from neurogym.envs.registration import all_envs

        return list(all_envs())
    except Exception:  # pragma: no cover - registry layout differs across versions
        return []


class NeuroGymTask(Task):
    """Any NeuroGym environment with a ``Discrete`` action space as a
    :class:`Task`.

    One batch element is one NeuroGym trial: ``env.unwrapped.new_trial()``,
    then ``ob = env.unwrapped.ob`` (``(T, n_input)``) and ``gt =
    env.unwrapped.gt`` (``(T,)``). Trials are padded to the longest one.

    * ``inputs`` = ``ob`` (0 on padding);
    * ``targets`` = one-hot of ``gt`` over the ``n_output = action_space.n``
      actions (0 on padding); in NeuroGym action 0 is fixation;
    * ``mask`` = 1 on the trial's steps, 0 on padding;
    * ``labels`` = ``gt`` at the trial's last step;
    * ``info``: ``trial_length`` (steps, long) and every scalar numeric entry of
      the NeuroGym trial dict (e.g. ``ground_truth``, ``coh``).

    Accuracy (NeuroGym's supervised PyTorch example rule): correct iff the
    argmax of the output at the trial's last valid step equals ``gt[-1]``.

    Reproducibility: each :meth:`sample` draws one integer from ``generator``
    and reseeds the environment with it (``env.unwrapped.seed(seed)``, which
    reseeds its ``numpy`` RNG, its action space and its timing samplers), so
    the same generator state gives the same batch.

    Args:
        env_id: a registered NeuroGym id, e.g. ``"PerceptualDecisionMaking-v0"``.
        dt: time step in ms, passed to the environment.
        env_kwargs: further keyword arguments of the environment (not ``dt``).

    Example:
        >>> import torch
        >>> task = NeuroGymTask("GoNogo-v0", dt=20)  # doctest: +SKIP
        >>> batch = task.sample(4, torch.Generator().manual_seed(0))  # doctest: +SKIP
        >>> task.accuracy(batch.targets, batch).all()  # doctest: +SKIP
        tensor(True)
    """

    name = "neurogym"

    def __init__(
        self,
        env_id: str,
        dt: float = 20.0,
        env_kwargs: Mapping[str, Any] | None = None,
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
        ngym = _import_neurogym()
        import gymnasium

        dt_arg: float | int = int(self.dt) if float(self.dt).is_integer() else self.dt
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                env = ngym.make(env_id, dt=dt_arg, **self.env_kwargs)
        except gymnasium.error.Error as err:
            known = _known_env_ids()
            hint = f"; known NeuroGym ids: {', '.join(known)}" if known else ""
            raise ValueError(f"env_id: unknown NeuroGym environment {env_id!r}{hint}") from err
        except TypeError as err:
            raise TypeError(f"env_kwargs {self.env_kwargs!r} rejected by {env_id}: {err}") from err
        self.env = env.unwrapped
        action_space = self.env.action_space
        if not isinstance(action_space, gymnasium.spaces.Discrete):
            raise ValueError(
                f"env_id: {env_id} has action space {action_space}; only Discrete action "
                "spaces can be turned into one-hot targets"
            )
        obs_shape = self.env.observation_space.shape
        if obs_shape is None or len(obs_shape) != 1:
            raise ValueError(f"env_id: {env_id} has observation shape {obs_shape}; need a 1-D one")
        self.n_input = int(obs_shape[0])
        self.n_output = int(action_space.n)

    def _one_trial(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        env = self.env
        trial = env.new_trial()
        if not getattr(env, "_gt_built", True) or getattr(env, "gt", None) is None:
            raise ValueError(f"{self.env_id} defines no ground truth (gt); it cannot be used here")
        ob = np.asarray(env.ob, dtype=np.float32)
        gt = np.asarray(env.gt).reshape(-1)
        if ob.shape[0] != gt.shape[0] or ob.shape[0] == 0:
            raise ValueError(
                f"{self.env_id}: trial with {ob.shape[0]} observation steps and "
                f"{gt.shape[0]} ground-truth steps"
            )
        return ob.reshape(ob.shape[0], -1), gt.astype(np.int64), dict(trial or {})

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` NeuroGym trials (see the class docstring)."""
        b = check_sample_args(batch_size, generator)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        self.env.seed(seed)
        trials = [self._one_trial() for _ in range(b)]
        lengths = torch.tensor([ob.shape[0] for ob, _, _ in trials], dtype=torch.long)
        n_steps = int(lengths.max())
        inputs = torch.zeros(b, n_steps, self.n_input)
        gt = torch.zeros(b, n_steps, dtype=torch.long)
        for i, (ob, g, _) in enumerate(trials):
            inputs[i, : ob.shape[0]] = torch.from_numpy(ob)
            gt[i, : g.shape[0]] = torch.from_numpy(g)
        valid = torch.arange(n_steps) < lengths[:, None]
        targets = torch.nn.functional.one_hot(gt, self.n_output).float() * valid[..., None]
        labels = gt.gather(1, (lengths - 1)[:, None]).squeeze(1)
        info = _scalar_info([t for _, _, t in trials])
        info["trial_length"] = lengths
        return TrialBatch(inputs, targets, valid.float(), labels, info)

    def accuracy(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """Correct iff ``argmax(outputs[i, last_valid_step_i]) == labels[i]``."""
        check_outputs(outputs, batch, self.n_output)
        if "trial_length" in batch.info:
            last = batch.info["trial_length"].to(outputs.device) - 1
        else:
            steps = torch.arange(batch.mask.shape[1], device=outputs.device)
            last = ((batch.mask.to(outputs.device) > 0) * steps).argmax(1)
        final = outputs.gather(1, last[:, None, None].expand(-1, 1, outputs.shape[-1])).squeeze(1)
        return final.argmax(-1) == batch.labels.to(outputs.device)

    def __repr__(self) -> str:
        return f"NeuroGymTask(env_id={self.env_id!r}, dt={self.dt}, env_kwargs={self.env_kwargs})"


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
