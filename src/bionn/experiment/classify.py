"""Classifiers trained by backprop or one of its biologically plausible variants.

    bionn run CONFIG.yaml [key=value ...] [--out DIR] [--quiet]

``bionn run`` dispatches here when the YAML file has a top-level ``data`` section
(BioTorch's layout: ``experiment``, ``data``, ``model``, ``training``). The model
(a key of :data:`bionn.models.MODELS`) is converted by :func:`bionn.learning.convert`
to the chosen credit-assignment ``method`` and trained with an ordinary loop
(``loss.backward(); opt.step()``, plus :func:`bionn.learning.mirror` for ``wm``).
Everything is validated (field names, dataset/model/method names, loader and
factory arguments) before any output folder is made.

Example config (``configs/ca_digits_mlp.yaml``)::

    experiment: {name: ca_digits_mlp, seed: 0}
    data: {dataset: digits, val_size: 200}
    model: {architecture: mlp, params: {hidden: [100, 100]}, method: fa}
    training: {epochs: 20, batch_size: 32, optimizer: {type: SGD, lr: 0.05, momentum: 0.9}}

The out folder receives (each file written atomically) ``config.yaml`` (resolved),
``metrics.jsonl`` (one record per epoch: ``loss``, ``accuracy`` (train, running),
``eval_accuracy`` (validation, when ``data.val_size`` > 0), ``test_accuracy``,
``test_error`` (top-1, %), per layer ``weight_angle/<layer>`` (W vs B) and
``grad_angle/<layer>`` (this method's dW vs backprop's on a fixed training batch) and
their means), ``checkpoint.pt``, ``final.json`` and ``figures/`` (training curve,
alignment angles). Nothing is selected on the test set: the reported test error is
the one after the last epoch. The last stdout line is one JSON object: the summary
plus ``"out"``.

Example:
    >>> cfg = load_classify_config(None, ["data.dataset=digits", "model.method=usf"])
    >>> cfg.model.architecture, cfg.training.optimizer.type, cfg.training.epochs
    ('mlp', 'SGD', 10)
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from tqdm.auto import tqdm

from bionn.experiment.checkpoint import atomic_write_text, default_out, save_checkpoint
from bionn.experiment.config import (
    ConfigError,
    CreditAssignmentFields,
    apply_overrides,
    format_errors,
    read_yaml,
)
from bionn.experiment.distributed import DistContext, init_from_env, mean_across_ranks
from bionn.plasticity.diversity import SynapticDiversityConfig

__all__ = [
    "ClassifyConfig",
    "cmd_classify",
    "is_classify_config",
    "load_classify_config",
    "prepare_classifier",
    "train_classifier",
    "validate_classify_config",
]

FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10")


def _datasets() -> dict:
    from bionn.tasks.datasets import DATASETS

    return DATASETS


def _models() -> dict:
    from bionn.models import MODELS

    return MODELS


def _parameters(fn: Any) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(fn).parameters)
    return {k: p for k, p in params.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}


def _takes_kwargs(fn: Any) -> bool:
    return any(p.kind == inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(fn).parameters.values())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentSection(_Strict):
    """Run name, seed (model init, feedback draws, batch order) and device."""

    name: str = "classify"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    threads: int | None = Field(None, ge=1, description="torch CPU threads during the run "
                                                        "(1 is fastest for small models)")


class DataSection(_Strict):
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
        loader = _datasets()[self.dataset]
        allowed = set(_parameters(loader)) - {"root", "val_size", "name"}
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
        if _takes_kwargs(factory):
            return self  # e.g. lenet_mnist(**kwargs): checked when the model is built
        allowed = set(_parameters(factory))
        bad = sorted(set(self.params) - allowed)
        if bad:
            raise ValueError(f"model.params: unknown argument(s) {bad} for architecture "
                             f"{self.architecture!r}; allowed: {sorted(allowed)}")
        return self


class OptimizerSection(_Strict):
    type: Literal["SGD", "Adam"] = "SGD"
    lr: float = Field(0.05, gt=0, allow_inf_nan=False)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by Adam)")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)


class LRSchedule(_Strict):
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


class MetricsSection(_Strict):
    alignment_every: int = Field(1, ge=0, description="epochs between alignment measurements "
                                                      "(0: only at the end)")
    alignment_batch: int = Field(256, ge=1, description="training samples of the fixed batch")


class TrainingSection(_Strict):
    """Budget (``epochs``, or ``steps`` to stop early inside an epoch), batches, optimizer."""

    epochs: int = Field(10, ge=1)
    steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(32, ge=1)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    lr_schedule: LRSchedule | None = None
    metrics: MetricsSection = Field(default_factory=MetricsSection)


class ClassifyConfig(_Strict):
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
    """Validate a nested dict; raises :class:`ConfigError` naming every bad field."""
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


def dump_classify_config(cfg: ClassifyConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------------------------
# Preparation: everything that can fail, before any output
# --------------------------------------------------------------------------------------------
class Prepared:
    """Data, converted model, optimizer, scheduler and device of a run (and the
    :class:`~bionn.plasticity.SynapticDiversity` attached to the optimizer, if any)."""

    diversity: Any = None

    def __init__(self, data: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Any, device: torch.device, model_params: dict[str, Any]):
        self.data, self.model, self.optimizer = data, model, optimizer
        self.scheduler, self.device, self.model_params = scheduler, device, model_params


def _model_params(cfg: ClassifyConfig, data: Any) -> dict[str, Any]:
    factory = _models()[cfg.model.architecture]
    names = set(_parameters(factory)) | ({"in_channels", "input_size"}
                                         if _takes_kwargs(factory) else set())
    params = dict(cfg.model.params)
    shape = tuple(data.input_shape)
    auto = {"num_classes": int(data.n_classes), "in_features": int(math.prod(shape))}
    if len(shape) == 3:
        auto.update(in_channels=int(shape[0]), input_size=int(shape[-1]))
    for key, value in auto.items():
        if key in names and key not in params:
            params[key] = value
    return params


def prepare_classifier(cfg: ClassifyConfig) -> Prepared:
    """Load the data, build and convert the model, build the optimizer;
    raises :class:`ConfigError` on any failure."""
    from bionn.learning import convert
    from bionn.models import build_model_by_name
    from bionn.tasks.datasets import load_dataset

    if cfg.experiment.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("experiment.device: 'cuda' was asked for but CUDA is not available; "
                          "allowed here: auto, cpu")
    device = torch.device("cuda" if cfg.experiment.device != "cpu"
                          and torch.cuda.is_available() else "cpu")
    kwargs = dict(cfg.data.params)
    if cfg.data.root:
        kwargs["root"] = cfg.data.root
    if cfg.data.val_size:
        kwargs["val_size"] = cfg.data.val_size
    try:
        data = load_dataset(cfg.data.dataset, **kwargs)
    except (TypeError, ValueError, OSError, ImportError) as e:
        raise ConfigError(f"data: dataset {cfg.data.dataset!r} cannot be loaded: {e}") from None
    params = _model_params(cfg, data)
    torch.manual_seed(int(cfg.experiment.seed))
    try:
        model = build_model_by_name(cfg.model.architecture, **params)
        with torch.no_grad():
            model.eval()(data.x_train[:2])
        model.train()
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"model.params: architecture {cfg.model.architecture!r} cannot be "
                          f"built for dataset {cfg.data.dataset!r} (input shape "
                          f"{tuple(data.input_shape)}) with {params}: {e}") from None
    gen = torch.Generator().manual_seed(int(cfg.experiment.seed) + 1)
    try:
        model = convert(model, cfg.model.method, output_dim=int(data.n_classes), generator=gen,
                        inplace=True, **cfg.model.options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.options: cannot convert to {cfg.model.method!r}: {e}") from None
    model = model.to(device)
    diversity = None
    if cfg.synaptic_diversity is not None:
        from bionn.plasticity.diversity import BioConverter

        sd = cfg.synaptic_diversity
        if "seed" not in sd.model_fields_set:
            sd = sd.model_copy(update={"seed": int(cfg.experiment.seed)})
        try:
            diversity = BioConverter(sd).convert(model)
        except ValueError as e:
            raise ConfigError(f"synaptic_diversity: {e}") from None
    oc = cfg.training.optimizer
    if oc.type == "SGD":
        opt = torch.optim.SGD(model.parameters(), lr=oc.lr, momentum=oc.momentum,
                              weight_decay=oc.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=oc.lr, weight_decay=oc.weight_decay)
    sched = None
    if cfg.training.lr_schedule is not None:
        ls = cfg.training.lr_schedule
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ls.milestones,
                                                     gamma=ls.gamma)
    prep = Prepared(data, model, opt, sched, device, params)
    if diversity is not None:
        prep.diversity = diversity.attach(opt)
    return prep


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
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


def _alignment(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> dict[str, float]:
    from bionn.learning import gradient_alignment, weight_angles

    rec: dict[str, float] = {}
    w = weight_angles(model)
    g = gradient_alignment(model, F.cross_entropy, xb, yb)
    for name, v in w.items():
        rec[f"weight_angle/{name}"] = v
    for name, v in g.items():
        rec[f"grad_angle/{name}"] = v
    if w:
        rec["weight_angle"] = sum(w.values()) / len(w)
    if g:
        rec["grad_angle"] = sum(g.values()) / len(g)
    return rec


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _fit(cfg: ClassifyConfig, prep: Prepared, metrics_path: Path | None, progress: bool,
         ctx: DistContext) -> tuple[list[dict[str, Any]], int, float]:
    """The training loop; one record per epoch appended to ``metrics_path`` (rank 0).

    Data-parallel (``ctx.world_size > 1``): every rank draws the same global minibatch
    and trains on its slice; the loss is weighted by the slice's share so that DDP's
    average of the ranks' gradients is the global batch's mean-loss gradient.
    """
    from bionn.learning import mirror
    from bionn.tasks.datasets import iterate_minibatches

    model, opt, data, device = prep.model, prep.optimizer, prep.data, prep.device
    net = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None)
    tc = cfg.training
    seed = int(cfg.experiment.seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 2)
    n_align = min(tc.metrics.alignment_batch, len(data.x_train))
    xa, ya = data.x_train[:n_align].to(device), data.y_train[:n_align].to(device)
    steps_per_epoch = math.ceil(len(data.x_train) / tc.batch_size)
    total = steps_per_epoch * tc.epochs if tc.steps is None else min(
        tc.steps, steps_per_epoch * tc.epochs)
    is_wm = cfg.model.method == "wm"
    mirror_kw = cfg.model.mirror.model_dump()
    records: list[dict[str, Any]] = []
    step = 0
    t0 = time.perf_counter()
    bar = tqdm(total=total, disable=not progress or ctx.rank != 0, desc=f"{cfg.experiment.name} "
               f"[{cfg.model.method}]", unit="step", dynamic_ncols=True, mininterval=0.5)
    with (metrics_path.open("a") if metrics_path is not None else contextlib.nullcontext()) as log:
        for epoch in range(1, tc.epochs + 1):
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for xb, yb in iterate_minibatches(data.x_train, data.y_train, tc.batch_size, gen):
                if step >= total:
                    break
                n_global = len(yb)
                if ctx.enabled:  # this rank's slice of the global minibatch
                    part = torch.tensor_split(torch.arange(n_global), ctx.world_size)[ctx.rank]
                    xb, yb = xb[part], yb[part]
                xb, yb = xb.to(device), yb.to(device)
                logits = net(xb)
                raw = F.cross_entropy(logits, yb)
                loss = raw * (len(yb) * ctx.world_size / n_global) if ctx.enabled else raw
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if is_wm:
                    mirror(model, **mirror_kw)
                step += 1
                if not math.isfinite(loss.item()):
                    bar.close()
                    raise FloatingPointError(f"loss became {float(loss)} at step {step} "
                                             f"(method {cfg.model.method}); lower "
                                             f"training.optimizer.lr")
                loss_sum += raw.item() * len(yb)
                correct += int((logits.argmax(1) == yb).sum())
                seen += len(yb)
                bar.update(1)
            if prep.scheduler is not None:
                prep.scheduler.step()
            last = step >= total or epoch == tc.epochs
            if ctx.enabled:  # sums over the ranks' slices
                sums = mean_across_ranks({"l": loss_sum, "c": correct, "n": seen},
                                         device if device.type == "cuda" else "cpu")
                loss_sum, correct, seen = (sums[k] * ctx.world_size for k in ("l", "c", "n"))
            test_acc = _accuracy(model, data.x_test, data.y_test, device)
            rec: dict[str, Any] = {
                "epoch": epoch, "step": step, "loss": loss_sum / max(seen, 1),
                "accuracy": correct / max(seen, 1), "test_accuracy": test_acc,
                "test_error": 100.0 * (1.0 - test_acc), "lr": opt.param_groups[0]["lr"],
            }
            if data.x_val is not None:
                rec["eval_accuracy"] = _accuracy(model, data.x_val, data.y_val, device)
            every = tc.metrics.alignment_every
            if last or (every and epoch % every == 0):
                rec.update(_alignment(model, xa, ya))
            records.append(rec)
            if log is not None:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.3f}", test_err=f"{rec['test_error']:.1f}%")
            if last:
                break
    bar.close()
    return records, step, time.perf_counter() - t0


def train_classifier(cfg: ClassifyConfig, out: str | Path, progress: bool = True,
                     prepared: Prepared | None = None,
                     ctx: DistContext | None = None) -> dict[str, Any]:
    """Train ``cfg`` and write its outputs into ``out``; returns the summary dict
    (also written to ``final.json``) plus ``"out"``. ``ctx``: the data-parallel rank
    (:func:`bionn.experiment.distributed.init_from_env`); only rank 0 writes."""
    ctx = ctx or DistContext()
    prep = prepared if prepared is not None else prepare_classifier(cfg)
    model, opt = prep.model, prep.optimizer
    folder = Path(out)
    writes = ctx.rank == 0
    metrics_path = folder / "metrics.jsonl" if writes else None
    if writes:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "config.yaml", dump_classify_config(cfg))
        metrics_path.write_text("")
    seed = int(cfg.experiment.seed)
    threads = torch.get_num_threads()
    if cfg.experiment.threads is not None:
        torch.set_num_threads(int(cfg.experiment.threads))
    try:
        records, step, wall = _fit(cfg, prep, metrics_path, progress, ctx)
    finally:
        torch.set_num_threads(threads)
    final = records[-1]
    if not writes:
        return {"steps": step, "test_error": final["test_error"], "out": str(folder)}
    save_checkpoint(folder / "checkpoint.pt", {
        "epoch": records[-1]["epoch"], "step": step, "model": model.state_dict(),
        "optimizer": opt.state_dict(), "method": cfg.model.method,
    })
    summary: dict[str, Any] = {
        "name": cfg.experiment.name, "dataset": cfg.data.dataset,
        "architecture": cfg.model.architecture, "method": cfg.model.method,
        "seed": seed, "epochs": final["epoch"], "steps": step,
        "train_loss": final["loss"], "train_accuracy": final["accuracy"],
        "val_accuracy": final.get("eval_accuracy"),
        "test_accuracy": final["test_accuracy"], "test_error": final["test_error"],
        "weight_angle": final.get("weight_angle"), "grad_angle": final.get("grad_angle"),
        "weight_angles": {k.split("/", 1)[1]: v for k, v in final.items()
                          if k.startswith("weight_angle/")},
        "grad_angles": {k.split("/", 1)[1]: v for k, v in final.items()
                        if k.startswith("grad_angle/")},
        "wall_s": round(wall, 3), "device": str(prep.device),
    }
    if prep.diversity is not None:
        summary["synaptic_diversity"] = prep.diversity.config.enabled
    atomic_write_text(folder / "final.json", json.dumps(summary, indent=2) + "\n")
    summary["figures"] = _figures(records, folder / "figures", cfg)
    summary["out"] = summary["out_dir"] = str(folder)
    return summary


def _figures(records: list[dict[str, Any]], folder: Path, cfg: ClassifyConfig) -> list[str]:
    from bionn.viz import plot_alignment, plot_training_curve, save_figure

    written = []
    fig = plot_training_curve(records, keys=("loss", "accuracy", "test_error"))
    save_figure(fig, folder / "training_curve.png")
    written.append(str(folder / "training_curve.png"))
    if any(k.startswith("weight_angle/") or k.startswith("grad_angle/")
           for r in records for k in r):
        plot_alignment(records, folder / "alignment.png", x="epoch", title=cfg.model.method)
        written.append(str(folder / "alignment.png"))
    return written


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def cmd_classify(args: Any, config_path: str, overrides: list[str]) -> int:
    """``bionn run CONFIG`` for a config with a ``data`` section."""
    if getattr(args, "resume", False):
        raise ConfigError("--resume is not supported for classification configs; "
                          "start a new run")
    cfg = load_classify_config(config_path, overrides)
    ctx = init_from_env()  # torchrun: DistributedDataParallel, one process per rank
    prep = prepare_classifier(cfg)  # (after: under nccl each rank has picked its GPU)
    try:
        out = ctx.broadcast(Path(args.out) if args.out else default_out(cfg.experiment.name))
        summary = train_classifier(cfg, out, progress=not args.quiet, prepared=prep, ctx=ctx)
    finally:
        ctx.close()
    if ctx.rank == 0:
        print(f"results in {out}/ (metrics.jsonl, final.json, checkpoint.pt, figures/): "
              f"test error {summary['test_error']:.2f}%", file=sys.stderr)
        print(json.dumps(summary))
    return 0
