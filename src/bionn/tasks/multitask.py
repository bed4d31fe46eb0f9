r"""Several tasks in one network, with a rule input per task (Yang et al. 2019).

Yang, Joglekar, Song, Newsome & Wang (2019, Nat. Neurosci. 22:297) trained one recurrent
network on 20 cognitive tasks at once; a one-hot *rule* input tells it which task a trial
belongs to, and the units that emerge cluster by the tasks they serve.
:class:`MultiTask` does the same with any tasks of the registry (the native tasks, or NeuroGym
environments through ``{"name": "neurogym", "env_id": ...}``, e.g. NeuroGym's own
``yang19.*`` collection where the installed NeuroGym has it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from bionn.tasks._common import check_outputs, check_positive, check_sample_args
from bionn.tasks.base import Task, TrialBatch

__all__ = ["MultiTask"]


class MultiTask(Task):
    r"""Trials of several tasks, each with its rule input on (Yang et al. 2019).

    Each trial belongs to one task, drawn with probabilities ``weights`` (equal by
    default); trials of different lengths are padded at the end (mask 0 there).

    Inputs (``n_input = sum_k n_input_k + n_tasks``): each task has its own block of input
    channels (zero on other tasks' trials), followed by one rule channel per task, 1 for the
    whole trial of that task. Outputs (``n_output = max_k n_output_k``): shared; task ``k``
    uses the first ``n_output_k`` (its targets are zero on the others). ``labels``: each
    task's own label. ``info``: ``task`` (the task's index), and each task's own conditions
    as ``"<task>.<key>"`` (``-1`` on the other tasks' trials).

    Accuracy: each trial is scored by its own task's rule on its own output channels and
    steps. :meth:`measures` gives the accuracy per task (``accuracy_<task>``), which a run
    reports as ``eval_accuracy_<task>``.

    Args:
        dt: time step (ms), given to every task.
        tasks: registry names, or dicts ``{"name": ..., **params}`` (at least 2).
        weights: relative frequency of each task (default equal).

    Example:
        >>> mt = MultiTask(dt=20, tasks=["go_no_go", "perceptual_decision_making"])
        >>> b = mt.sample(6, torch.Generator().manual_seed(0))
        >>> mt.n_input, mt.n_output, mt.task_names
        (8, 3, ['go_no_go', 'perceptual_decision_making'])
        >>> bool(mt.accuracy(b.targets, b).all())  # the targets themselves are correct
        True
    """

    name = "multitask"

    def __init__(self, dt: float = 20.0,
                 tasks: Sequence[str | Mapping[str, Any]] = (
                     "perceptual_decision_making", "go_no_go", "anti_saccade", "delayed_match_to_sample"),
                 weights: Sequence[float] | None = None) -> None:
        from bionn.tasks.registry import make_task

        self.dt = check_positive("dt", dt)
        if isinstance(tasks, (str, Mapping)) or len(tasks) < 2:
            raise ValueError(f"tasks must list at least 2 tasks; got {tasks!r}")
        self.tasks: list[Task] = []
        self.task_names: list[str] = []
        for i, spec in enumerate(tasks):
            if isinstance(spec, str):
                name, params = spec, {}
            elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
                params = {k: v for k, v in spec.items() if k != "name"}
                name = spec["name"]
            else:
                raise ValueError(f"tasks[{i}] must be a task name or a dict with 'name'; got {spec!r}")
            if name == self.name:
                raise ValueError(f"tasks[{i}]: a multitask cannot contain a multitask")
            if "dt" in params:
                raise ValueError(f"tasks[{i}]: dt is the multitask's (one time step for all tasks)")
            try:
                task = make_task(name, dt=self.dt, **params)
            except (TypeError, ValueError) as e:
                raise ValueError(f"tasks[{i}] ({name}): {e}") from None
            label = params.get("env_id", name) if name == "neurogym" else name
            while label in self.task_names:
                label = f"{label}_{i}"
            self.tasks.append(task)
            self.task_names.append(str(label))
        k = len(self.tasks)
        w = torch.ones(k) if weights is None else torch.as_tensor(list(weights), dtype=torch.float64)
        if w.shape != (k,) or not bool((w >= 0).all()) or float(w.sum()) <= 0:
            raise ValueError(f"weights must be {k} non-negative numbers, not all 0; got {weights!r}")
        self.weights = (w / w.sum()).double()
        self._offsets, off = [], 0
        for t in self.tasks:
            self._offsets.append(off)
            off += t.n_input
        self.n_input = off + k
        self.n_output = max(t.n_output for t in self.tasks)
        names = []
        for t, tn in zip(self.tasks, self.task_names, strict=True):
            own = t.input_names or tuple(f"input {j}" for j in range(t.n_input))
            names += [f"{tn}: {n}" for n in own]
        self.input_names = (*names, *(f"rule: {tn}" for tn in self.task_names))
        outs = []  # a shared channel is named by every task's name for it
        for j in range(self.n_output):
            here = [t.output_names[j] if t.output_names else f"output {j}" for t in self.tasks
                    if t.n_output > j]
            outs.append(" / ".join(dict.fromkeys(here)))
        self.output_names = tuple(outs)
        # each task's condition keys and their dtypes (to rebuild its own batch for scoring)
        probe = torch.Generator().manual_seed(0)
        self._keys = [{key: v.dtype for key, v in t.sample(1, probe).info.items()} for t in self.tasks]

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TrialBatch:
        """Draw ``batch_size`` trials of the tasks (see the class docstring)."""
        n = check_sample_args(batch_size, generator)
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self._sample(which, generator)

    def sample_task(self, task: int | str, batch_size: int,
                    generator: torch.Generator | None = None) -> TrialBatch:
        """``batch_size`` trials of one task (its index or name), in the multitask's format
        (its input block and rule on): e.g. for the task variance of each unit."""
        n = check_sample_args(batch_size, generator)
        k = self.task_names.index(task) if isinstance(task, str) else int(task)
        if not 0 <= k < len(self.tasks):
            raise ValueError(f"task must be one of {self.task_names} or an index below {len(self.tasks)}; "
                             f"got {task!r}")
        return self._sample(torch.full((n,), k, dtype=torch.long), generator)

    def _sample(self, which: Tensor, generator: torch.Generator | None) -> TrialBatch:
        n = len(which)
        subs: list[tuple[int, Tensor, TrialBatch]] = []
        for k, task in enumerate(self.tasks):
            idx = (which == k).nonzero().flatten()
            if len(idx):
                subs.append((k, idx, task.sample(len(idx), generator)))
        T = max(b.inputs.shape[1] for _, _, b in subs)
        inputs = torch.zeros(n, T, self.n_input)
        targets = torch.zeros(n, T, self.n_output)
        mask = torch.zeros(n, T)
        labels = torch.zeros(n, dtype=torch.long)
        info: dict[str, Tensor] = {"task": which.clone()}
        for k, keys in enumerate(self._keys):
            for key, dtype in keys.items():
                info[f"{self.task_names[k]}.{key}"] = torch.full((n,), -1, dtype=dtype)
        for k, idx, b in subs:
            t_k, off = b.inputs.shape[1], self._offsets[k]
            inputs[idx, :t_k, off:off + self.tasks[k].n_input] = b.inputs
            inputs[idx, :, self.n_input - len(self.tasks) + k] = 1.0
            targets[idx, :t_k, : self.tasks[k].n_output] = b.targets
            mask[idx, :t_k] = b.mask
            labels[idx] = b.labels
            for key, v in b.info.items():
                info[f"{self.task_names[k]}.{key}"][idx] = v.to(self._keys[k][key])
        return TrialBatch(inputs, targets, mask, labels, info)

    def _sub_batch(self, batch: TrialBatch, k: int, idx: Tensor, outputs: Tensor) -> tuple[Tensor, TrialBatch]:
        """Task ``k``'s own trials, channels and steps (through its last scored step)."""
        task, off = self.tasks[k], self._offsets[k]
        steps = (batch.mask[idx] > 0).any(0).nonzero()
        t_k = int(steps.max()) + 1 if len(steps) else batch.mask.shape[1]
        for key in ("decision_end", "trial_length"):
            name = f"{self.task_names[k]}.{key}"
            if name in batch.info:
                t_k = max(t_k, int(batch.info[name][idx].max()))
        info = {key: batch.info[f"{self.task_names[k]}.{key}"][idx] for key in self._keys[k]}
        sub = TrialBatch(batch.inputs[idx, :t_k, off:off + task.n_input],
                         batch.targets[idx, :t_k, : task.n_output], batch.mask[idx, :t_k],
                         batch.labels[idx], info)
        return outputs[idx, :t_k, : task.n_output], sub

    def accuracy(self, outputs: Tensor, batch: TrialBatch) -> Tensor:
        """Per trial, its own task's accuracy rule on its own output channels and steps."""
        check_outputs(outputs, batch, self.n_output)
        ok = torch.zeros(len(batch), dtype=torch.bool, device=outputs.device)
        which = batch.info["task"]
        for k, task in enumerate(self.tasks):
            idx = (which == k).nonzero().flatten()
            if len(idx):
                out_k, sub = self._sub_batch(batch, k, idx, outputs)
                ok[idx] = task.accuracy(out_k, sub).to(ok.device)
        return ok

    def measures(self, outputs: Tensor, batch: TrialBatch) -> dict[str, Tensor]:
        """``accuracy_<task>``: 1/0 on that task's trials, NaN on the others (a run averages
        the finite values)."""
        ok = self.accuracy(outputs, batch).double()
        which = batch.info["task"].to(ok.device)
        return {f"accuracy_{name}": torch.where(which == k, ok, torch.full_like(ok, float("nan")))
                for k, name in enumerate(self.task_names)}
