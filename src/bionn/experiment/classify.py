"""Classification runs: the :class:`ClassifyJob` that :class:`bionn.experiment.runner.Runner` trains.

    bionn run CONFIG.yaml [key=value ...] [--out DIR] [--resume] [--quiet]

``bionn run`` trains a classifier when the YAML file has a top-level ``data`` section
(sections ``experiment``, ``data``, ``model``, ``training``, ``synaptic_diversity``). The
model (a key of :data:`bionn.models.MODELS`) is converted by :func:`bionn.learning.convert`
to the chosen credit-assignment ``method`` by the runner, which owns the loop (the same
as for rate-task runs: mirror steps for ``wm``, synaptic diversity, DDP, the non-finite
guard, checkpoints and exact resume). Everything is validated (field names,
dataset/model/method names, loader and factory arguments) before any output folder is
made.

Example config (``configs/ca_digits_mlp.yaml``)::

    experiment: {name: ca_digits_mlp, seed: 0, device: cpu, threads: 1}
    data: {dataset: digits, val_size: 200}
    model: {architecture: mlp, params: {hidden: [100, 100]}, method: fa}
    training: {epochs: 20, batch_size: 32, optimizer: {type: sgd, lr: 0.05, momentum: 0.9}}

The out folder receives ``config.yaml`` (resolved), ``metrics.jsonl`` (one record per
epoch: ``loss``, ``accuracy`` (train, running), ``eval_accuracy`` (validation, when
``data.val_size`` > 0), ``test_accuracy``, ``test_error`` (top-1, %), per layer
``weight_angle/<layer>`` (W vs B) and ``grad_angle/<layer>`` (this method's dW vs
backprop's on a fixed training batch) and their means), ``checkpoint.pt`` (at each
epoch's end), ``final.json`` and ``figures/`` (training curve, alignment angles).
Nothing is selected on the test set: the reported test error is the one after the last
epoch. The last stdout line is one JSON object: the summary plus ``"out"``.

Example:
    >>> cfg = load_classify_config(None, ["data.dataset=digits", "model.method=usf"])
    >>> cfg.model.architecture, cfg.training.optimizer.type, cfg.training.epochs
    ('mlp', 'sgd', 10)
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError, field_validator, model_validator

from bionn._core.errors import ConfigError, format_errors
from bionn.experiment.config import apply_overrides, read_yaml
from bionn.experiment.distributed import DistContext
from bionn.experiment.runner import Job, Runner
from bionn.experiment.schema import (
    CreditAssignmentFields,
    ExperimentSection,
    OptimizerConfig,
    Strict,
    check_shape,
)
from bionn.plasticity.diversity import SynapticDiversityConfig

__all__ = [
    "ClassifyConfig",
    "ClassifyJob",
    "is_classify_config",
    "load_classify_config",
    "train_classifier",
    "validate_classify_config",
]

FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10")


def _datasets() -> dict:
    """The data sets of :data:`bionn.tasks.datasets.DATASETS` and the visual tasks of
    :data:`bionn.tasks.visual.VISUAL_TASKS` (generated, ``n_train``/``n_test``/``seed`` and
    the generator's own arguments as ``data.params``)."""
    from functools import partial

    from bionn.tasks.datasets import DATASETS
    from bionn.tasks.visual import VISUAL_TASKS, make_visual_dataset

    visual = {name: partial(make_visual_dataset, name) for name in VISUAL_TASKS if name not in DATASETS}
    return {**DATASETS, **visual}


def _models() -> dict:
    from bionn.experiment.models import RECURRENT_CLASSIFIERS
    from bionn.models import MODELS

    return {**MODELS, **RECURRENT_CLASSIFIERS}


def _parameters(fn: Any) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(fn).parameters)
    return {k: p for k, p in params.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}


def _takes_kwargs(fn: Any) -> bool:
    return any(p.kind == inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(fn).parameters.values())


class DataSection(Strict):
    """A dataset of :data:`bionn.tasks.datasets.DATASETS` and its loader's arguments."""

    dataset: str = "digits"
    root: str | None = Field(None, description="folder of the files (mnist, fashion_mnist, "
                                               "cifar10)")
    params: dict[str, Any] = Field(default_factory=dict)
    val_size: int = Field(0, ge=0, description="training samples held out for validation")

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in _datasets():
            raise ValueError(f"unknown dataset {v!r}; allowed: {sorted(_datasets())}")
        return v

    @model_validator(mode="after")
    def _check(self) -> DataSection:
        from bionn.tasks.datasets import DATASETS
        from bionn.tasks.visual import VISUAL_TASKS

        loader = _datasets()[self.dataset]
        allowed = set(_parameters(loader)) - {"root", "val_size", "name"}
        if self.dataset not in DATASETS:  # a visual task: its generator's arguments too
            allowed |= set(_parameters(VISUAL_TASKS[self.dataset])) - {"n", "generator"}
        bad = sorted(set(self.params) - allowed)
        if bad:
            raise ValueError(f"data.params: unknown argument(s) {bad} for dataset "
                             f"{self.dataset!r}; allowed: {sorted(allowed)}")
        if self.dataset in FILE_DATASETS and not self.root:
            raise ValueError(f"data.root: dataset {self.dataset!r} is read from files; "
                             f"give the folder that holds them")
        if self.root and self.dataset not in FILE_DATASETS:
            raise ValueError(f"data.root: dataset {self.dataset!r} needs no files; "
                             f"root applies to {list(FILE_DATASETS)}")
        return self


class ModelSection(CreditAssignmentFields):
    """Architecture (a key of ``MODELS``), its factory's arguments, and the
    credit-assignment method with :func:`bionn.learning.convert` options.

    ``num_classes``, ``in_features``, ``in_channels`` and ``input_size`` are filled
    from the dataset when the factory takes them and ``params`` leaves them out.
    """

    architecture: str = "mlp"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("architecture")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        if v not in _models():
            raise ValueError(f"unknown architecture {v!r}; allowed: {sorted(_models())}")
        return v

    @model_validator(mode="after")
    def _params(self) -> ModelSection:
        factory = _models()[self.architecture]
        allowed = set(_parameters(factory))
        if self.architecture == "spatial_network":
            from bionn.experiment.models import spatial_network_arguments

            allowed |= set(spatial_network_arguments())
        elif _takes_kwargs(factory):
            return self  # e.g. lenet_mnist(**kwargs): checked when the model is built
        bad = sorted(set(self.params) - allowed)
        if bad:
            raise ValueError(f"model.params: unknown argument(s) {bad} for architecture "
                             f"{self.architecture!r}; allowed: {sorted(allowed)}")
        return self


class LRSchedule(Strict):
    """Multiply the learning rate by ``gamma`` at each epoch of ``milestones``."""

    type: Literal["multistep"] = "multistep"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0, allow_inf_nan=False)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v) or v != sorted(set(v)):
            raise ValueError(f"milestones must be increasing epochs >= 1; got {v}")
        return v


class MetricsSection(Strict):
    alignment_every: int = Field(1, ge=0, description="epochs between alignment measurements "
                                                      "(0: only at the end)")
    alignment_batch: int = Field(256, ge=1, description="training samples of the fixed batch")


class TrainingSection(Strict):
    """Budget (``epochs``, or ``steps`` to stop early inside an epoch), batches, optimizer."""

    epochs: int = Field(10, ge=1)
    steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(32, ge=1)
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(type="sgd", lr=0.05, momentum=0.9),
        description="{type: adam | adamw | sgd | rmsprop, lr: ..., <the optimizer's arguments>}")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm (None: no clip)")
    checkpoint_every: int | None = Field(None, ge=1, description="steps between checkpoints "
                                                                 "(None: at each epoch's end)")
    lr_schedule: LRSchedule | None = None
    metrics: MetricsSection = Field(default_factory=MetricsSection)


class ClassifyConfig(Strict):
    """A classification run: ``bionn run`` validates a YAML file with a ``data`` section
    into this."""

    experiment: ExperimentSection = Field(default_factory=ExperimentSection)
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    synaptic_diversity: SynapticDiversityConfig | None = Field(
        None, description="spine-dynamics transforms (bionn.plasticity.BioConverter), applied "
                          "by the optimizer; its seed defaults to experiment.seed")


def validate_classify_config(data: dict[str, Any]) -> ClassifyConfig:
    """Validate a nested dict; raises :class:`ConfigError` naming every bad field (or,
    for a config of the old shape, what changed)."""
    check_shape(data)
    try:
        return ClassifyConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, ClassifyConfig)) from None


def load_classify_config(path: str | Path | None,
                         overrides: list[str] | None = None) -> ClassifyConfig:
    """Load a YAML config (``{}`` when ``path`` is None), apply ``key=value`` overrides,
    validate."""
    data = {} if path is None else read_yaml(path)
    return validate_classify_config(apply_overrides(data, overrides or []))


def is_classify_config(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` is a classification config (top-level ``data``)."""
    try:
        return "data" in read_yaml(path)
    except ConfigError:
        return False


def _model_params(cfg: ClassifyConfig, data: Any) -> dict[str, Any]:
    factory = _models()[cfg.model.architecture]
    names = set(_parameters(factory)) | ({"in_channels", "input_size"}
                                         if _takes_kwargs(factory) else set())
    params = dict(cfg.model.params)
    shape = tuple(data.input_shape)
    auto = {"num_classes": int(data.n_classes), "in_features": int(math.prod(shape))}
    if len(shape) in (3, 4):  # (C, H, W) images, (T, C, H, W) movies
        auto.update(in_channels=int(shape[-3]), input_size=int(shape[-1]))
    for key, value in auto.items():
        if key in names and key not in params:
            params[key] = value
    return params


@torch.no_grad()
def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
              chunk: int = 1000) -> float:
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), chunk):
        out = model(x[i:i + chunk].to(device))
        correct += int((out.argmax(1).cpu() == y[i:i + chunk]).sum())
    model.train(was)
    return correct / max(len(x), 1)


#: data order: each epoch's permutation is drawn from a generator seeded by ``seed + 2``
DATA_SEED_OFFSET = 2


class ClassifyJob(Job):
    """A classifier of :data:`bionn.models.MODELS` trained on a data set of
    :data:`bionn.tasks.datasets.DATASETS` by epochs of shuffled minibatches.

    The batch of step ``k`` is slice ``k % steps_per_epoch`` of epoch ``k //
    steps_per_epoch``'s permutation; the generator state at the start of the current
    epoch is checkpointed, so a run resumes mid-epoch exactly. Under ``torchrun`` every
    rank draws the same global minibatch and trains on its slice (``torch.tensor_split``),
    its loss weighted by the slice's share, so that DDP's average of the ranks' gradients
    is the global batch's mean-loss gradient; epoch sums are summed over the ranks.
    """

    x_key = "epoch"
    curve_keys = ("loss", "accuracy", "test_error")
    budget_keys = ("training.steps", "training.epochs")

    def setup(self, device: torch.device, ctx: DistContext) -> None:
        super().setup(device, ctx)
        cfg, tc = self.config, self.config.training
        kwargs = dict(cfg.data.params)
        if cfg.data.root:
            kwargs["root"] = cfg.data.root
        if cfg.data.val_size:
            kwargs["val_size"] = cfg.data.val_size
        try:
            self.data = _datasets()[cfg.data.dataset](**kwargs)
        except (TypeError, ValueError, OSError, ImportError) as e:
            raise ConfigError(f"data: dataset {cfg.data.dataset!r} cannot be loaded: {e}") from None
        n = len(self.data.x_train)
        self.steps_per_epoch = math.ceil(n / tc.batch_size)
        self._total = self.steps_per_epoch * tc.epochs if tc.steps is None else min(
            tc.steps, self.steps_per_epoch * tc.epochs)
        self._gen = torch.Generator().manual_seed(int(cfg.experiment.seed) + DATA_SEED_OFFSET)
        self._epoch, self._epoch_state, self._order = -1, None, None
        self.sums = [0.0, 0.0, 0.0]  # loss * samples, correct, samples of the current epoch
        self.scheduler = None
        self.last: dict[str, Any] = {}

    def build_model(self) -> torch.nn.Module:
        cfg, data = self.config, self.data
        params = _model_params(cfg, data)
        try:
            model = _models()[cfg.model.architecture](**params)
            with torch.no_grad():
                model.eval()(data.x_train[:2])
            model.train()
        except (TypeError, ValueError, RuntimeError) as e:
            raise ConfigError(f"model.params: architecture {cfg.model.architecture!r} cannot be "
                              f"built for dataset {cfg.data.dataset!r} (input shape "
                              f"{tuple(data.input_shape)}) with {params}: {e}") from None
        return model

    def convert_kwargs(self) -> dict[str, Any]:
        return {"output_dim": int(self.data.n_classes)}

    @property
    def total_steps(self) -> int:
        return self._total

    @property
    def checkpoint_every(self) -> int:
        return self.config.training.checkpoint_every or self.steps_per_epoch

    def describe(self, model: torch.nn.Module) -> str:
        d = self.data
        return (f"{self.config.data.dataset} ({len(d.x_train)} train / {len(d.x_test)} test), "
                f"{self.config.model.architecture}")

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        ls = self.config.training.lr_schedule
        if ls is not None:
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones=ls.milestones, gamma=ls.gamma)
        self.optimizer = optimizer

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch_state = self._gen.get_state()
            self._order = torch.randperm(len(self.data.x_train), generator=self._gen)
            self._epoch = epoch
        bs = self.config.training.batch_size
        idx = self._order[i * bs:(i + 1) * bs]
        return self.data.x_train[idx], self.data.y_train[idx]

    def train_step(self, net: torch.nn.Module, model: torch.nn.Module,
                   step: int) -> dict[str, torch.Tensor]:
        xb, yb = self._batch(step)
        n_global, ctx = len(yb), self.ctx
        if ctx.enabled:  # this rank's slice of the global minibatch
            part = torch.tensor_split(torch.arange(n_global), ctx.world_size)[ctx.rank]
            xb, yb = xb[part], yb[part]
        xb, yb = xb.to(self.device), yb.to(self.device)
        logits = net(xb)
        raw = F.cross_entropy(logits, yb)
        loss = raw * (len(yb) * ctx.world_size / n_global) if ctx.enabled else raw
        loss.backward()
        raw = raw.detach()
        return {"loss": raw, "loss_sum": raw * len(yb),
                "correct": (logits.detach().argmax(1) == yb).sum().double(),
                "seen": torch.tensor(float(len(yb)))}

    def end_step(self, model: torch.nn.Module, step: int,
                 metrics: dict[str, float]) -> dict[str, Any] | None:
        ws = self.ctx.world_size  # the runner averaged over ranks: sums are mean * ranks
        for j, k in enumerate(("loss_sum", "correct", "seen")):
            self.sums[j] += metrics[k] * ws
        epoch_end = step % self.steps_per_epoch == 0
        if not (epoch_end or step == self._total):
            return None
        loss_sum, correct, seen = self.sums
        if epoch_end:
            self.sums = [0.0, 0.0, 0.0]
            if self.scheduler is not None:
                self.scheduler.step()
        data, device = self.data, self.device
        test_acc = _accuracy(model, data.x_test, data.y_test, device)
        rec: dict[str, Any] = {
            "epoch": math.ceil(step / self.steps_per_epoch), "step": step,
            "loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1),
            "test_accuracy": test_acc, "test_error": 100.0 * (1.0 - test_acc),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if data.x_val is not None:
            rec["eval_accuracy"] = _accuracy(model, data.x_val, data.y_val, device)
        self.last = rec
        return rec

    def align_at(self, step: int, record: dict[str, Any]) -> bool:
        every = self.config.training.metrics.alignment_every
        return step == self._total or bool(every and record["epoch"] % every == 0)

    def alignment_batch(self):
        n = min(self.config.training.metrics.alignment_batch, len(self.data.x_train))
        return (F.cross_entropy, self.data.x_train[:n].to(self.device),
                self.data.y_train[:n].to(self.device))

    def postfix(self, metrics: dict[str, float], record: dict[str, Any] | None) -> dict[str, str]:
        out = {"loss": f"{metrics['loss']:.3f}"}
        if self.last:
            out["test_err"] = f"{self.last['test_error']:.1f}%"
        return out

    def summary(self, model: torch.nn.Module, last: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        return {
            "dataset": cfg.data.dataset, "architecture": cfg.model.architecture,
            "epochs": last.get("epoch"), "train_loss": last.get("loss"),
            "train_accuracy": last.get("accuracy"), "val_accuracy": last.get("eval_accuracy"),
            "test_accuracy": last.get("test_accuracy"), "test_error": last.get("test_error"),
            "weight_angle": last.get("weight_angle"), "grad_angle": last.get("grad_angle"),
            "weight_angles": {k.split("/", 1)[1]: v for k, v in last.items()
                              if k.startswith("weight_angle/")},
            "grad_angles": {k.split("/", 1)[1]: v for k, v in last.items()
                            if k.startswith("grad_angle/")},
        }

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "epoch_state": self._epoch_state, "sums": list(self.sums),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = [float(v) for v in state["sums"]]
        if state.get("scheduler") is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("epoch_state") is not None:  # redraw the current epoch's permutation
            self._gen.set_state(state["epoch_state"])
            self._epoch_state = state["epoch_state"]
            self._order = torch.randperm(len(self.data.x_train), generator=self._gen)
            self._epoch = int(state["epoch"])


def train_classifier(cfg: ClassifyConfig, out: str | Path, progress: bool = True,
                     resume: bool = False, ctx: DistContext | None = None) -> dict[str, Any]:
    """Train ``cfg`` into the folder ``out`` with the one runner; returns the summary
    (also written to ``final.json``)."""
    return Runner(cfg, out, resume=resume, progress=progress, ctx=ctx).fit()
