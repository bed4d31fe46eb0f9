"""The one training loop behind ``bionn run``, ``bionn compare`` and ``bionn sweep``.

A run is a validated config plus a :class:`Job`: the job says what differs between
kinds of run (how the batch of step ``k`` is drawn, the loss, the evaluation metrics,
the job's own figures and summary fields); the :class:`Runner` owns everything else:

- credit assignment: :func:`bionn.learning.convert` with the feedback matrices drawn from
  ``experiment.seed + 1000`` (one rule for every run), :func:`bionn.learning.mirror` after
  each step for ``wm``, and the alignment angles at the job's evaluation points;
- synaptic diversity (:class:`bionn.plasticity.BioConverter` attached to the optimizer);
- the optimizer (:func:`bionn.experiment.schema.build_optimizer`), gradient clipping;
- DistributedDataParallel under ``torchrun``, one reduction point for metrics, rank 0 writes;
- the non-finite guard: a NaN/inf loss term, metric or gradient norm stops the run with
  :class:`NonFiniteError` naming the step and the quantity (``bionn run`` exits 1);
- the progress bar, checkpoints (atomic), exact resume, Ctrl-C/SIGTERM (a checkpoint,
  then exit 130), the output folder (:class:`RunWriter`), figures and ``final.json``.

A new kind of run (spiking, say) is one more :class:`Job` subclass registered in
:data:`JOBS` under its config class.

Example:
    >>> from bionn.experiment.runner import Runner, load_run_config
    >>> cfg = load_run_config(None, ["training.steps=5", "training.eval_trials=50"])
    >>> summary = Runner(cfg, "runs/doc-example", progress=False).fit()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bionn._core.errors import ConfigError
from bionn.experiment.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    read_jsonl,
    save_checkpoint,
)
from bionn.experiment.config import apply_overrides, read_yaml
from bionn.experiment.distributed import DistContext, mean_across_ranks
from bionn.experiment.schema import EPROP_METHOD, build_optimizer, pick_device

__all__ = ["FEEDBACK_SEED_OFFSET", "JOBS", "Job", "NonFiniteError", "RunWriter", "Runner",
           "load_run_config", "make_job"]

#: feedback matrices of credit-assignment methods are drawn from ``seed + FEEDBACK_SEED_OFFSET``
#: (their own stream: the weights' seed would give ``B == W``)
FEEDBACK_SEED_OFFSET = 1000


class NonFiniteError(FloatingPointError):
    """A loss term, metric or gradient norm became NaN or infinite; the message names the
    step and the quantity."""


class Job:
    """What one kind of run supplies to the :class:`Runner` (subclass and override).

    Call order: :meth:`setup` (everything that can fail, before any output),
    :meth:`build_model`; then for each step :meth:`train_step` (forward, loss, backward)
    and :meth:`end_step` (the record to log, with evaluations at the job's points);
    finally :meth:`summary` and :meth:`figures`. :meth:`state_dict` /
    :meth:`load_state_dict` carry the job's own state (data order, schedules) through
    checkpoints.
    """

    #: abscissa of the evaluation records (``step`` or ``epoch``)
    x_key = "step"
    #: panels of the training-curve figure
    curve_keys: tuple[str, ...] = ("loss", "accuracy")
    #: dotted config keys that may change on ``--resume`` (the budget)
    budget_keys: tuple[str, ...] = ("training.steps",)

    def __init__(self, config: Any):
        self.config = config
        self.device = torch.device("cpu")
        self.ctx = DistContext()

    # -- the run's shape ----------------------------------------------------------------
    def setup(self, device: torch.device, ctx: DistContext) -> None:
        self.device, self.ctx = device, ctx

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def convert_kwargs(self) -> dict[str, Any]:
        """Extra arguments of :func:`bionn.learning.convert` (e.g. ``output_dim``)."""
        return {}

    @property
    def total_steps(self) -> int:
        raise NotImplementedError

    @property
    def checkpoint_every(self) -> int:
        return self.config.training.checkpoint_every

    def describe(self, model: torch.nn.Module) -> str:
        """One line on the run for the person watching."""
        return type(model).__name__

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Called once the optimizer exists (e.g. for a learning-rate schedule)."""

    # -- per step -------------------------------------------------------------------------
    def train_step(self, net: torch.nn.Module, model: torch.nn.Module,
                   step: int) -> dict[str, torch.Tensor]:
        """Forward, loss and backward of the batch of step ``step`` (0-based); ``net`` is
        ``model`` or its DDP wrapper. Returns scalar metrics, ``"loss"`` first."""
        raise NotImplementedError

    def end_step(self, model: torch.nn.Module, step: int,
                 metrics: dict[str, float]) -> dict[str, Any] | None:
        """After the optimizer step ``step`` (1-based): the record to log (or None)."""
        return {"step": step, **metrics}

    def align_at(self, step: int, record: dict[str, Any]) -> bool:
        """Whether to add the alignment angles to this record."""
        return False

    def alignment_batch(self) -> tuple[Callable, Any, Any]:
        """``(loss_fn, x, y)`` for :func:`bionn.learning.gradient_alignment`."""
        raise NotImplementedError

    def postfix(self, metrics: dict[str, float], record: dict[str, Any] | None) -> dict[str, str]:
        return {"loss": f"{metrics['loss']:.4f}"}

    # -- the end --------------------------------------------------------------------------
    def summary(self, model: torch.nn.Module, last: dict[str, Any]) -> dict[str, Any]:
        """The job's fields of ``final.json`` (``last``: the last logged record)."""
        return {}

    def figures(self, model: torch.nn.Module, folder: Path) -> list[Path]:
        """The job's own figures (the runner draws the training curve and alignment)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _jobs() -> dict[type, type[Job]]:
    from bionn.experiment.classify import ClassifyConfig, ClassifyJob
    from bionn.experiment.config import RunConfig
    from bionn.experiment.trainer import RateJob

    return {RunConfig: RateJob, ClassifyConfig: ClassifyJob}


#: config class -> :class:`Job` class (filled on first use)
JOBS: dict[type, type[Job]] = {}


def make_job(config: Any) -> Job:
    """The :class:`Job` for a validated config (a rate-task or a classification run)."""
    if not JOBS:
        JOBS.update(_jobs())
    for cls, job in JOBS.items():
        if isinstance(config, cls):
            return job(config)
    raise TypeError(f"no job runs a {type(config).__name__}; known: {[c.__name__ for c in JOBS]}")


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None):
    """Load any ``bionn run`` config: a classification run when it has a ``data`` section
    (:class:`~bionn.experiment.classify.ClassifyConfig`), else a rate-task run
    (:class:`~bionn.experiment.config.RunConfig`; the embedded default when ``path`` is
    None and no override names ``data``)."""
    from bionn.experiment.classify import validate_classify_config
    from bionn.experiment.config import DEFAULT_CONFIG, validate_config

    overrides = list(overrides or [])
    if path is None:
        data = {} if any(o.split("=", 1)[0].split(".")[0] == "data" for o in overrides) \
            else read_yaml(DEFAULT_CONFIG)
    else:
        data = read_yaml(path)
    data = apply_overrides(data, overrides)
    return validate_classify_config(data) if "data" in data else validate_config(data)


#: where and how a run computes, not what it computes: a run may resume elsewhere
MACHINE_KEYS = ("experiment.device", "experiment.threads", "experiment.force")


def config_identity(config: Any, budget_keys: tuple[str, ...]) -> dict[str, Any]:
    """The config minus the budget and :data:`MACHINE_KEYS` (what a resumed run must
    match), as plain data."""
    data = config.model_dump(mode="json")
    for key in (*budget_keys, *MACHINE_KEYS):
        *parents, last = key.split(".")
        node = data
        for p in parents:
            node = node.get(p, {})
        node.pop(last, None)
    return data


def config_fingerprint(config: Any, budget_keys: tuple[str, ...]) -> str:
    """Hash of :func:`config_identity`: a resumed run must match it."""
    data = config_identity(config, budget_keys)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``"key: old -> new"`` for every dotted key whose value differs.

    Example:
        >>> config_differences({"model": {"n": 16, "a": 1}}, {"model": {"n": 20, "a": 1}})
        ['model.n: 16 -> 20']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += config_differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


class RunWriter:
    """The one place a run touches the file system and stdout (rank 0 only).

    Output folder: ``config.yaml`` (resolved), ``metrics.jsonl`` (the logged records),
    ``checkpoint.pt`` (atomic), ``figures/*.png`` and ``final.json``.
    """

    def __init__(self, out_dir: str | Path, enabled: bool = True):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self._fh = None

    def start(self, config: Any, resume_step: int) -> None:
        """Write the resolved ``config`` and open ``metrics.jsonl`` (records after
        ``resume_step`` are dropped: those steps will be redone)."""
        if not self.enabled:
            return
        from bionn.experiment.config import dump_config

        (self.out_dir / "figures").mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / "config.yaml", dump_config(config))
        # Records after the checkpoint were computed by steps that will be redone.
        kept = [r for r in read_jsonl(self.metrics_path) if r.get("step", 0) <= resume_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(self.metrics_path, "a")

    def announce(self, text: str) -> None:
        """A line for the person watching (stderr; stdout is kept for the final JSON)."""
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def log(self, record: dict[str, Any]) -> None:
        if self.enabled and self._fh is not None:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()

    def checkpoint(self, state: dict[str, Any]) -> None:
        if self.enabled:
            save_checkpoint(self.checkpoint_path, state)

    def final(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_text(self.out_dir / "final.json", json.dumps(summary, indent=2) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@contextmanager
def deferred_interrupts():
    """Turn SIGINT/SIGTERM into a flag checked between steps, so a step is never
    cut in half and the checkpoint written on interrupt is consistent."""
    flag: dict[str, Any] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["signal"] is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        flag["signal"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _guard(values: dict[str, float], step: int, hint: str) -> None:
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        shown = ", ".join(f"{k} = {values[k]}" for k in bad)
        raise NonFiniteError(f"training stopped at step {step}: {shown} (not finite); {hint}")


class Runner:
    """Train the run a validated config describes and write its output folder.

    Args:
        config: a :class:`~bionn.experiment.config.RunConfig` (rate task) or
            :class:`~bionn.experiment.classify.ClassifyConfig` (classification).
        out_dir: the output folder; refused if it already holds a run, unless ``resume``.
        resume: continue the run in ``out_dir`` from its checkpoint (any change to the
            config other than the budget is refused).
        progress: show a progress bar.
        ctx: the data-parallel context (:func:`bionn.experiment.distributed.init_from_env`).

    Everything that can fail (data, model, conversion, optimizer) is prepared in the
    constructor, before any output.
    """

    def __init__(self, config: Any, out_dir: str | Path, *, resume: bool = False,
                 progress: bool = True, ctx: DistContext | None = None):
        self.config, self.out_dir = config, Path(out_dir)
        self.resume, self.progress = resume, progress
        self.ctx = ctx or DistContext()
        self.job = make_job(config)
        self.writer = RunWriter(self.out_dir, enabled=self.ctx.rank == 0)
        ckpt = self.writer.checkpoint_path
        if resume and not ckpt.exists():
            raise ConfigError(f"--resume: no checkpoint at {ckpt}")
        if not resume and ckpt.exists():
            raise ConfigError(f"{self.out_dir} already holds a run (checkpoint.pt); use --resume "
                              "to continue it or --out to choose another folder")
        exp = config.experiment
        self.device = pick_device(exp.device)
        if self.ctx.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())  # LOCAL_RANK's GPU
        self.job.setup(self.device, self.ctx)
        self._prepare()

    # -- preparation: everything before any output --------------------------------------
    def _prepare(self) -> None:
        cfg, job = self.config, self.job
        seed, method = int(cfg.experiment.seed), cfg.model.method
        torch.manual_seed(seed)
        try:
            model = job.build_model()
        except ConfigError:
            raise
        except (TypeError, ValueError, RuntimeError) as e:
            raise ConfigError(f"model: cannot be built: {e}") from None
        from bionn.learning import convert

        if method != EPROP_METHOD:  # e-prop: the job's rule computes the gradients, no conversion
            try:  # bp too: its layers compute backprop's gradient and report the alignment
                model, report = convert(model, method, inplace=True, **cfg.model.options,
                                        generator=torch.Generator().manual_seed(seed + FEEDBACK_SEED_OFFSET),
                                        **job.convert_kwargs())
            except (TypeError, ValueError) as e:
                raise ConfigError(f"model.options: cannot convert to {method!r}: {e}") from None
            if method != "bp" and not report.layers:
                raise ConfigError(f"model.method: {method!r} found no layer to convert in "
                                  f"{type(model).__name__}; use bp")
        model = model.to(self.device)
        self.diversity = None
        if cfg.synaptic_diversity is not None:
            from bionn.plasticity import BioConverter

            sd = cfg.synaptic_diversity
            if "seed" not in sd.model_fields_set:
                sd = sd.model_copy(update={"seed": seed})
            try:
                self.diversity = BioConverter(sd).convert(model, inplace=True)
            except ValueError as e:
                raise ConfigError(f"synaptic_diversity: {e}") from None
        try:
            self.optimizer = build_optimizer(cfg.training.optimizer, model.parameters())
        except (TypeError, ValueError) as e:
            raise ConfigError(f"training.optimizer: {e}") from None
        if self.diversity is not None:
            self.diversity.attach(self.optimizer)  # the transforms run inside optimizer.step()
        job.attach(self.optimizer)
        self.model = model
        self.fingerprint = config_fingerprint(cfg, job.budget_keys)

    def _reduce(self, values: dict[str, float]) -> dict[str, float]:
        """The one reduction point of metrics across data-parallel ranks (their mean)."""
        if not self.ctx.enabled:
            return values
        return mean_across_ranks(values, self.device if self.device.type == "cuda" else "cpu")

    def alignment(self, model: torch.nn.Module) -> dict[str, float]:
        """Per layer, angle(W, B) and angle(this method's dW, backprop's dW) on the job's
        fixed batch, plus their means ``weight_angle`` and ``grad_angle``."""
        from bionn.learning import gradient_alignment, weight_angles

        loss_fn, x, y = self.job.alignment_batch()
        rec: dict[str, float] = {}
        for kind, angles in (("weight_angle", weight_angles(model)),
                             ("grad_angle", gradient_alignment(model, loss_fn, x, y))):
            rec.update({f"{kind}/{k}": v for k, v in angles.items()})
            if angles:
                rec[kind] = sum(angles.values()) / len(angles)
        return self._reduce(rec)

    def _state(self, step: int) -> dict[str, Any]:
        state = {"step": step, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state(),
                 "fingerprint": self.fingerprint, "job": self.job.state_dict(),
                 "config": json.dumps(config_identity(self.config, self.job.budget_keys))}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore(self) -> int:
        state = load_checkpoint(self.writer.checkpoint_path, map_location=self.device)
        if state.get("fingerprint") != self.fingerprint:
            diff = []
            if isinstance(state.get("config"), str):
                diff = config_differences(json.loads(state["config"]),
                                          config_identity(self.config, self.job.budget_keys))
            what = ("; it differs in " + "; ".join(diff[:10]) + (" ..." if len(diff) > 10 else "")
                    if diff else "; compare with config.yaml in the output folder")
            raise ConfigError("--resume: the config must match the checkpointed run except "
                              f"{', '.join(self.job.budget_keys)}{what}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.job.load_state_dict(state.get("job", {}))
        step = int(state["step"])
        if self.diversity is not None:
            self.diversity.steps = step  # weight-side schedules continue where they stopped
        return step

    # -- the loop -----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to the budget (continuing from the checkpoint if resuming); returns the
        summary (also written to ``final.json``)."""
        threads = torch.get_num_threads()
        if self.config.experiment.threads is not None:
            torch.set_num_threads(int(self.config.experiment.threads))
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)
            self.writer.close()

    def _fit(self) -> dict[str, Any]:
        cfg, job, model, opt = self.config, self.job, self.model, self.optimizer
        exp, tc = cfg.experiment, cfg.training
        method = cfg.model.method
        torch.manual_seed(int(exp.seed))
        step = self._restore() if self.resume else 0
        total = job.total_steps
        done = self._finished_summary(step, total)
        if done is not None:  # resumed at its end: the results stand as they are
            self.writer.announce(f"bionn run {exp.name}: already finished at step {step} of "
                                 f"{total}; nothing to do (final.json left as it is)")
            return done
        net = model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.writer.start(cfg, step)
        n_params = sum(p.numel() for p in model.parameters())
        self.writer.announce(
            f"bionn run {exp.name}: {job.describe(model)}, {n_params} parameters, "
            f"method {method}, device {self.device}, "
            + (f"resuming at step {step}, " if step else "") + f"output {self.out_dir}")
        hint = ("lower training.optimizer.lr" + (", set training.grad_clip"
                                                 if tc.grad_clip is None else ""))
        mirror_kw = cfg.model.mirror.model_dump() if method == "wm" else None
        bar = tqdm(total=total, initial=step, disable=not self.progress or self.ctx.rank != 0,
                   desc=exp.name if method == "bp" else f"{exp.name} [{method}]", unit="step",
                   dynamic_ncols=True, mininterval=0.5)
        t0 = time.perf_counter()
        last: dict[str, Any] = {}
        diverged: NonFiniteError | None = None
        try:
            with deferred_interrupts() as interrupted:
                while step < total:
                    model.train()
                    opt.zero_grad(set_to_none=True)
                    out = job.train_step(net, model, step)
                    metrics = self._reduce({k: float(v) for k, v in out.items()})
                    _guard(metrics, step + 1, hint)
                    if tc.grad_clip is not None:
                        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                        _guard({"gradient norm": float(norm)}, step + 1, hint)
                    opt.step()
                    if mirror_kw is not None:
                        from bionn.learning import mirror

                        mirror(model, **mirror_kw)
                    step += 1
                    record = job.end_step(model, step, metrics)
                    if record is not None:
                        if job.align_at(step, record):
                            record.update(self.alignment(model))
                        record["time_s"] = round(time.perf_counter() - t0, 3)
                        self.writer.log(record)
                        last = record
                    bar.update(1)
                    bar.set_postfix(job.postfix(metrics, record))
                    if step % job.checkpoint_every == 0 or step == total:
                        self.writer.checkpoint(self._state(step))
                    if interrupted["signal"] is not None:
                        self.writer.checkpoint(self._state(step))
                        raise KeyboardInterrupt(f"interrupted at step {step}; checkpoint written")
        except NonFiniteError as e:
            diverged = e
        finally:
            bar.close()
        status = "finished"
        if diverged is not None:  # report the last good state: the last checkpoint
            status, bad_step = "diverged", step + 1
            step = self._restore_last_good()
            last = {}
        if not last:  # resumed at the end of the budget, or diverged: the last logged record
            records = read_jsonl(self.writer.metrics_path) if self.writer.enabled else []
            last = next((r for r in reversed(records) if r.get("step", 0) <= step), {})
        summary: dict[str, Any] = {"name": exp.name, "seed": int(exp.seed), "method": method,
                                   "status": status,
                                   **(job.summary(model, last) if step > 0 or status == "finished"
                                      else {}),
                                   "steps": step, "wall_s": round(time.perf_counter() - t0, 3),
                                   "device": str(self.device)}
        if diverged is not None:
            summary["diverged_at_step"] = bad_step
        model.eval()
        if self.diversity is not None:
            summary["synaptic_diversity"] = self.diversity.config.enabled
        summary["figures"] = [str(p) for p in self._figures(model, with_model=step > 0 or
                                                             status == "finished")]
        summary["out"] = str(self.out_dir)
        self.writer.final(summary)
        if diverged is not None:
            kept = (f"checkpoint.pt, final.json (status 'diverged') and figures/ hold the last "
                    f"good state, step {step}" if step > 0 else
                    "it diverged before the first checkpoint, so there is no good state to keep: "
                    "final.json (status 'diverged') records where")
            raise NonFiniteError(f"{diverged}. {kept}") from None
        return summary

    def _finished_summary(self, step: int, total: int) -> dict[str, Any] | None:
        """The ``final.json`` of a run resumed at the end of its budget that finished
        there, else None."""
        path = self.out_dir / "final.json"
        if not (self.resume and step >= total and self.writer.enabled and path.is_file()):
            return None
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # unreadable: written again below
        ok = isinstance(summary, dict) and summary.get("status") == "finished" \
            and summary.get("steps") == step
        return summary if ok else None

    def _restore_last_good(self) -> int:
        """After a divergence: model and optimizer back to the last checkpoint (the last state
        whose loss was finite at a checkpoint step); its step, or 0 without one."""
        path = self.writer.checkpoint_path
        if not path.exists():
            return 0
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.job.load_state_dict(state.get("job", {}))  # e.g. e-prop's adaptive feedback
        return int(state["step"])

    def _figures(self, model: torch.nn.Module, with_model: bool = True) -> list[Path]:
        if not self.writer.enabled:
            return []
        from bionn import viz

        folder = self.out_dir / "figures"
        records = read_jsonl(self.writer.metrics_path)
        paths = []
        if records:  # none when training diverged before its first record
            paths.append(folder / "training_curve.png")
            viz.plot_training_curve(records, paths[0], keys=self.job.curve_keys)
        if any(k.startswith(("weight_angle/", "grad_angle/")) for r in records for k in r):
            paths.append(folder / "alignment.png")
            viz.plot_alignment(records, paths[-1], x=self.job.x_key,
                               title=self.config.model.method)
        return [*paths, *(self.job.figures(model, folder) if with_model else [])]
