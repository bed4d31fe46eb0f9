"""The training loop behind ``bionn run``.

Structured so that data parallelism can be added without reshaping it:

- data comes from a :class:`TrialSampler` whose batch at step ``k`` depends only
  on ``(seed, k, rank)`` (so resume is exact and ranks can shard);
- metrics pass through one reduction point, :meth:`Trainer.reduce`;
- every side effect (files, figures, stdout) goes through :class:`RunWriter`.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bionn.circuits import Circuit, Connectivity
from bionn.experiment.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    read_jsonl,
    save_checkpoint,
)
from bionn.experiment.config import (
    OPTIMIZERS,
    ConfigError,
    RunConfig,
    build_circuit,
    dump_config,
    load_matrix,
)
from bionn.experiment.distributed import mean_across_ranks
from bionn.learning import convert, gradient_alignment, mirror, weight_angles
from bionn.losses import TASK_LOSSES, RNNLoss
from bionn.plasticity import BioConverter
from bionn.rate import CTRNN
from bionn.tasks import Task, TrialBatch

EVAL_SEED_OFFSET = 1_000_003
FEEDBACK_SEED_OFFSET = 1000


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but CUDA is not available (got 'cuda'; allowed: auto, cpu)")
    return torch.device(name)


class TrialSampler:
    """Deterministic batches: the global batch at ``step`` is drawn from a generator
    seeded by ``(seed, step)``, so any step can be redrawn after a resume; rank ``r``
    of a data-parallel run trains on its slice ``r`` of it, so the ranks together see
    exactly the batch one process would."""

    def __init__(self, task: Task, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by world_size {world_size}")
        self.task, self.seed, self.rank, self.world_size = task, seed, rank, world_size
        self.local_batch = batch_size // world_size

    def batch(self, step: int) -> TrialBatch:
        key = np.random.SeedSequence([self.seed, step, 0]).generate_state(1, np.uint64)[0]
        g = torch.Generator().manual_seed(int(key) & 0x7FFFFFFFFFFFFFFF)
        full = self.task.sample(self.local_batch * self.world_size, g)
        if self.world_size == 1:
            return full
        part = slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)
        return TrialBatch(full.inputs[part], full.targets[part], full.mask[part],
                          full.labels[part], {k: v[part] for k, v in full.info.items()})

    def eval_batches(self, n_trials: int, chunk: int = 500):
        """The held-out set: fixed trials from a seed disjoint from training."""
        g = torch.Generator().manual_seed(self.seed + EVAL_SEED_OFFSET)
        done = 0
        while done < n_trials:
            k = min(chunk, n_trials - done)
            yield self.task.sample(k, g)
            done += k


def build_model(cfg: RunConfig, task: Task) -> CTRNN:
    """The CTRNN a config describes (weights drawn from ``cfg.seed``)."""
    m = cfg.model
    g = torch.Generator().manual_seed(cfg.seed)
    circuit = None
    if m.circuit is not None:
        circuit = build_circuit(m.circuit, m.n_hidden, task.n_input, task.n_output).build(g)
    rec_mask = None
    if m.rec_mask is not None:
        rec_mask = load_matrix(m.rec_mask, "model.rec_mask")
    elif m.rec_density < 1.0:
        rec_mask = (torch.rand(m.n_hidden, m.n_hidden, generator=g) < m.rec_density).float()
    if circuit is not None and rec_mask is not None:
        circuit = Circuit(
            Connectivity(circuit.recurrent.mask * rec_mask, circuit.sign),
            circuit.input_mask, circuit.readout_mask, circuit.area, circuit.area_names,
        )
        rec_mask = None
    plasticity = {k: load_matrix(v, f"model.plasticity.{k}") for k, v in m.plasticity.items()}
    e_fraction = m.e_fraction if (circuit is None or circuit.sign is None) else None
    weight_init = m.weight_init if isinstance(m.weight_init, str) else dict(m.weight_init)
    return CTRNN(
        task.n_input, m.n_hidden, task.n_output,
        dt=cfg.task.dt, tau=m.tau_per_neuron(), learn_tau=m.learn_tau, activation=m.activation,
        e_fraction=e_fraction, circuit=circuit, rec_mask=rec_mask, plasticity=plasticity,
        preact_noise=m.preact_noise, postact_noise=m.postact_noise, init_state=m.init_state,
        weight_init=weight_init, spectral_radius=m.spectral_radius, readout=m.readout,
        positive_input=m.positive_input, generator=g,
    )


def config_fingerprint(cfg: RunConfig) -> str:
    """Hash of everything but the step budget: a resumed run must match it."""
    data = cfg.model_dump(mode="json")
    data["training"].pop("steps")
    data.pop("device")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class RunWriter:
    """The one place a run touches the file system and stdout.

    Output folder: ``config.yaml`` (resolved), ``metrics.jsonl`` (one record per
    step plus eval records), ``checkpoint.pt`` (atomic), ``figures/*.png`` and
    ``final.json``.
    """

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self._fh = None

    def start(self, cfg: RunConfig, resume_step: int) -> None:
        if not self.enabled:
            return
        (self.out_dir / "figures").mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / "config.yaml", dump_config(cfg))
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

    def figures(
        self, model: CTRNN, task: Task, batch: TrialBatch, outputs, rates, n_trials: int,
        eval_trials: tuple | None = None, method: str = "bp",
    ) -> list[Path]:
        if not self.enabled:
            return []
        from bionn import viz

        fig_dir = self.out_dir / "figures"
        paths = [fig_dir / "training_curve.png", fig_dir / "recurrent_weights.png", fig_dir / "example_trials.png"]
        if eval_trials is not None:
            try:
                viz.plot_accuracy_by_condition(*eval_trials, fig_dir / "accuracy_by_condition.png")
                paths.append(fig_dir / "accuracy_by_condition.png")
            except ValueError:
                pass  # the task records no condition with a few discrete levels
        viz.plot_training_curve(self.metrics_path, paths[0], keys=("loss", "accuracy"))
        if method != "bp":
            paths.append(fig_dir / "alignment.png")
            viz.plot_alignment(self.metrics_path, paths[-1], title=method)
        viz.plot_weight_matrix(
            model.weight_rec.detach(), paths[1], sign=model.sign,
            groups=model.area if model.area is not None and int(model.area.max()) > 0 else None,
            group_names=model.area_names, title="recurrent weights W_rec (post, pre)",
        )
        viz.plot_example_trials(
            batch.inputs, batch.targets, outputs, rates, paths[2], mask=batch.mask,
            n_trials=n_trials, dt=task.dt, sign=model.sign,
        )
        return paths

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
    flag = {"signal": None}
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


@dataclass
class Trainer:
    """Train the CTRNN a :class:`RunConfig` describes and write its output folder.

    Example:
        >>> from bionn.experiment import load_config, Trainer
        >>> cfg = load_config(None, ["training.steps=5", "training.eval_trials=50"])
        >>> summary = Trainer(cfg, "runs/doc-example", progress=False).fit()  # doctest: +SKIP
    """

    config: RunConfig
    out_dir: str | Path
    resume: bool = False
    progress: bool = True
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.device = pick_device(self.config.device)
        if self.world_size > 1 and self.config.training.bptt.mode != "full":
            raise ConfigError(f"training.bptt.mode: {self.config.training.bptt.mode!r} is not "
                              "supported under torchrun (data-parallel); use 'full'")
        if self.world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())  # LOCAL_RANK's GPU
        self.task = self.config.task.build()
        self.sampler = TrialSampler(
            self.task, self.config.training.batch_size, self.config.seed, self.rank, self.world_size
        )
        self.writer = RunWriter(self.out_dir, enabled=self.rank == 0)
        self._last_eval_trials: tuple | None = None
        ckpt = self.writer.checkpoint_path
        if self.resume and not ckpt.exists():
            raise ConfigError(f"--resume: no checkpoint at {ckpt}")
        if not self.resume and ckpt.exists():
            raise ConfigError(
                f"{self.out_dir} already holds a run (checkpoint.pt); use --resume to continue it "
                "or --out to choose another folder"
            )

    def reduce(self, metrics: dict[str, float]) -> dict[str, float]:
        """The single reduction point of metrics across data-parallel ranks (their mean)."""
        if self.world_size == 1:
            return metrics
        return mean_across_ranks(metrics, self.device if self.device.type == "cuda" else "cpu")

    def _global_terms(self, terms: dict[str, torch.Tensor], mask: torch.Tensor,
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Rescale a rank's masked means so that DDP's average of the ranks' gradients is
        the gradient of the loss on the whole global batch.

        The task loss and the mean-rate penalty divide by the rank's own mask total;
        multiplying by ``local_total * world_size / global_total`` turns that into the
        global denominator. The L2 terms are the same on every rank. ``rate_std`` and
        ``rate_cv`` (non-linear in the per-neuron rates) stay per rank: with them the
        run matches one process only approximately.
        """
        counts = torch.stack([mask.sum(), (mask > 0).sum().to(mask.dtype)]).detach()
        total = counts.clone()
        torch.distributed.all_reduce(total)
        scale = counts * self.world_size / total.clamp_min(1e-12)
        terms = dict(terms)
        terms["task"] = terms["task"] * scale[0]
        if "rate_mean" in terms:
            terms["rate_mean"] = terms["rate_mean"] * scale[1]
        return torch.stack(list(terms.values())).sum(), terms

    def _evaluate(self, model: CTRNN, loss_fn: RNNLoss) -> dict[str, float]:
        correct = total = 0
        loss_sum = 0.0
        per_trial, info = [], []
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed + EVAL_SEED_OFFSET)
            for batch in self.sampler.eval_batches(self.config.training.eval_trials):
                batch = batch.to(self.device)
                out, rates = model(batch.inputs)
                loss, _ = loss_fn(out, batch.targets, rates, batch.mask, model.connection_weights())
                ok = self.task.accuracy(out, batch)
                correct += int(ok.sum())
                loss_sum += float(loss) * len(batch)
                total += len(batch)
                per_trial.append(ok.cpu())
                info.append({k: v.cpu() for k, v in batch.info.items()})
        # Kept for the accuracy-by-condition figure of the final evaluation.
        self._last_eval_trials = (
            torch.cat(per_trial), {k: torch.cat([i[k] for i in info]) for k in info[0]}
        )
        return self.reduce({"eval_accuracy": correct / total, "eval_loss": loss_sum / total})

    def _chunked_step(self, net: torch.nn.Module, model: CTRNN, loss_fn: RNNLoss,
                      batch: TrialBatch) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Forward and backward of one batch in time chunks (``training.bptt``).

        The loss is split exactly over chunks: each chunk's masked means are weighted by
        the chunk's share of the trial's mask (and of its counted steps for the rate
        penalty), the L2 terms are counted once. ``rate_std``/``rate_cv`` are weighted
        the same way, which is exact only for the linear terms.
        """
        bp = self.config.training.bptt
        x, mask = batch.inputs, batch.mask
        m_total = mask.sum().clamp_min(1e-12)
        c_total = (mask > 0).sum().clamp_min(1)
        state = None
        outs, rates_all, terms_sum = [], [], {}
        chunks = list(range(0, x.shape[1], bp.chunk))
        if bp.mode == "checkpoint":
            from torch.utils.checkpoint import checkpoint

            for t0 in chunks:
                o, r, state = checkpoint(net, x[:, t0:t0 + bp.chunk], state, True,
                                         use_reentrant=False)
                outs.append(o)
                rates_all.append(r)
            out, rates = torch.cat(outs, 1), torch.cat(rates_all, 1)
            loss, terms = loss_fn(out, batch.targets, rates, mask, model.connection_weights())
            loss.backward()
            return out, loss, terms
        for i, t0 in enumerate(chunks):
            sl = slice(t0, t0 + bp.chunk)
            o, r, state = net(x[:, sl], state, True)
            _, terms = loss_fn(o, batch.targets[:, sl], r, mask[:, sl], model.connection_weights())
            share_m, share_c = mask[:, sl].sum() / m_total, (mask[:, sl] > 0).sum() / c_total
            terms = {k: (v * share_m if k == "task" else v * share_c if k.startswith("rate_")
                         else v) for k, v in terms.items() if i == 0 or not k.startswith("l2_")}
            torch.stack(list(terms.values())).sum().backward()
            state = type(state)(*(t.detach() for t in state))
            outs.append(o.detach())
            for k, v in terms.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + v.detach()
        loss = torch.stack(list(terms_sum.values())).sum()
        return torch.cat(outs, 1), loss, terms_sum

    def _alignment(self, model: CTRNN, loss_fn: RNNLoss) -> dict[str, float]:
        """Per weight, angle(W, B) and angle(this method's dW, BPTT's dW) on training batch 0
        (task loss only), plus their means ``weight_angle`` and ``grad_angle``."""
        batch = self.sampler.batch(0).to(self.device)

        def task_loss(out: tuple[torch.Tensor, torch.Tensor], b: TrialBatch) -> torch.Tensor:
            return TASK_LOSSES[loss_fn.task](out[0], b.targets, b.mask)

        rec: dict[str, float] = {}
        for kind, angles in (("weight_angle", weight_angles(model)),
                             ("grad_angle", gradient_alignment(model, task_loss, batch.inputs,
                                                               batch))):
            rec.update({f"{kind}/{k}": v for k, v in angles.items()})
            rec[kind] = sum(angles.values()) / len(angles)
        return self.reduce(rec)

    def fit(self) -> dict[str, Any]:
        """Train to ``training.steps`` (continuing from the checkpoint if resuming);
        returns the final metrics and the output folder."""
        cfg, tc = self.config, self.config.training
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, self.task)
        if cfg.model.method != "bp":
            # B drawn from its own stream: the weights' seed would give B == W
            model = convert(model, cfg.model.method, inplace=True, **cfg.model.options,
                            generator=torch.Generator().manual_seed(cfg.seed + FEEDBACK_SEED_OFFSET))
        model = model.to(self.device)
        diversity = None
        if cfg.synaptic_diversity is not None:
            sd = cfg.synaptic_diversity
            if "seed" not in sd.model_fields_set:
                sd = sd.model_copy(update={"seed": cfg.seed})
            try:
                diversity = BioConverter(sd).convert(model)
            except ValueError as e:
                raise ConfigError(f"synaptic_diversity: {e}") from None
        opt_cls = OPTIMIZERS[tc.optimizer]
        optimizer = opt_cls(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        if diversity is not None:
            diversity.attach(optimizer)  # the transforms run inside optimizer.step()
        loss_fn = RNNLoss(cfg.loss.task, cfg.loss.l2, cfg.loss.rate_mean, cfg.loss.rate_std, cfg.loss.rate_cv)
        fingerprint = config_fingerprint(cfg)
        step = 0
        last_eval: dict[str, float] = {}
        if self.resume:
            state = load_checkpoint(self.writer.checkpoint_path, map_location=self.device)
            if state["fingerprint"] != fingerprint:
                raise ConfigError(
                    "--resume: the config differs from the checkpointed run in more than "
                    "training.steps; compare with config.yaml in the output folder"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            step = int(state["step"])
            last_eval = dict(state.get("last_eval", {}))
            if diversity is not None:
                diversity.steps = step  # weight-side schedules continue where they stopped
        net = model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.writer.start(cfg, step)
        n_e = int((model.sign > 0).sum()) if model.sign is not None else None
        self.writer.announce(
            f"bionn run {cfg.name}: {cfg.task.name} (dt {cfg.task.dt:g} ms), CTRNN {model.n_hidden} units"
            + (f" ({n_e} E / {model.n_hidden - n_e} I)" if n_e is not None else "")
            + f", {sum(p.numel() for p in model.parameters())} parameters, device {self.device}, "
            + (f"resuming at step {step}, " if step else "")
            + f"output {self.out_dir}"
        )

        def checkpoint() -> None:
            self.writer.checkpoint({
                "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(), "fingerprint": fingerprint, "last_eval": last_eval,
            })

        bar = tqdm(
            total=tc.steps, initial=step, disable=not self.progress or self.rank != 0,
            desc=cfg.name, unit="step", dynamic_ncols=True, mininterval=0.5,
        )
        t0 = time.perf_counter()
        metrics: dict[str, float] = {}
        with deferred_interrupts() as interrupted:
            while step < tc.steps:
                model.train()
                batch = self.sampler.batch(step).to(self.device)
                optimizer.zero_grad(set_to_none=True)
                if tc.bptt.mode == "full":
                    out, rates = net(batch.inputs)
                    loss, terms = loss_fn(out, batch.targets, rates, batch.mask,
                                          model.connection_weights())
                    if self.world_size > 1:
                        loss, terms = self._global_terms(terms, batch.mask)
                    loss.backward()
                else:  # backward inside, chunk by chunk
                    out, loss, terms = self._chunked_step(net, model, loss_fn, batch)
                if tc.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()
                if cfg.model.method == "wm":
                    mirror(model, **cfg.model.mirror.model_dump())
                step += 1
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(
                        f"loss became {float(loss)} at step {step}; lower training.lr or model.spectral_radius"
                    )
                with torch.no_grad():
                    acc = float(self.task.accuracy(out, batch).float().mean())
                metrics = self.reduce(
                    {"loss": loss.item(), "accuracy": acc, **{k: v.item() for k, v in terms.items()}}
                )
                record = {"step": step, **metrics, "time_s": round(time.perf_counter() - t0, 3)}
                if step % tc.eval_every == 0 or step == tc.steps:
                    last_eval = self._evaluate(model, loss_fn)
                    if cfg.model.method != "bp":
                        last_eval.update(self._alignment(model, loss_fn))
                    record.update(last_eval)
                self.writer.log(record)
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{acc:.2f}",
                                eval=f"{last_eval.get('eval_accuracy', float('nan')):.3f}")
                if step % tc.checkpoint_every == 0 or step == tc.steps:
                    checkpoint()
                if interrupted["signal"] is not None:
                    checkpoint()
                    bar.close()
                    self.writer.close()
                    raise KeyboardInterrupt(f"interrupted at step {step}; checkpoint written")
        bar.close()
        if not last_eval or self._last_eval_trials is None:
            last_eval = self._evaluate(model, loss_fn)
        model.eval()
        with torch.no_grad():
            ex = next(self.sampler.eval_batches(tc.example_trials)).to(self.device)
            out, rates = model(ex.inputs)
        figures = self.writer.figures(
            model, self.task, ex.to("cpu"), out.cpu(), rates.cpu(), tc.example_trials,
            self._last_eval_trials, cfg.model.method,
        )
        summary = {
            "accuracy": last_eval.get("eval_accuracy"),
            "loss": last_eval.get("eval_loss"),
            "train_loss": metrics.get("loss"),
            "steps": step,
            "out_dir": str(self.out_dir),
            "figures": [str(p) for p in figures],
        }
        self.writer.final(summary)
        self.writer.close()
        self.model = model
        return summary
