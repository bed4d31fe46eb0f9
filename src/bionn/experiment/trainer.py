"""Rate-task runs: the :class:`RateJob` that :class:`bionn.experiment.runner.Runner` trains.

The job supplies what is particular to a recurrent model on a cognitive task:

- data from a :class:`TrialSampler` whose global batch at step ``k`` depends only on
  ``(seed, k)`` (so resume is exact) and whose rank ``r`` trains on slice ``r``;
- the :class:`bionn.losses.RNNLoss` (masked task loss plus regularisers; under
  ``torchrun`` rescaled to the global batch; ``training.bptt`` chunks);
- the held-out evaluation every ``eval_every`` steps, the alignment batch (training
  batch 0), the figures (recurrent weights, example trials, accuracy by condition);
- for ``model.method: eprop`` (a ``model.kind: spiking`` network), the e-prop rule
  (:class:`bionn.learning.EProp`, held by the job, its ``B`` in the checkpoint), which
  puts the gradient of the run's masked task loss into ``.grad`` instead of
  ``loss.backward()`` (L2 terms are added by autograd: they do not go through time).

The model is any rate model of :data:`bionn.experiment.models.MODEL_KINDS` (through
its protocol: ``forward(x, state=None, return_state=False)``, ``connection_weights()``),
never a particular class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bionn._core.errors import ConfigError
from bionn.experiment.config import RunConfig
from bionn.experiment.distributed import DistContext, mean_across_ranks
from bionn.experiment.models import build_rate_model
from bionn.experiment.runner import FEEDBACK_SEED_OFFSET, Job
from bionn.experiment.schema import EPROP_METHOD
from bionn.losses import TASK_LOSSES, RNNLoss
from bionn.recurrent import detach_state
from bionn.tasks import Task, TrialBatch

EVAL_SEED_OFFSET = 1_000_003


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


def build_model(cfg: RunConfig, task: Task) -> torch.nn.Module:
    """The model a rate config describes (``model.kind``; weights drawn from
    ``experiment.seed``)."""
    return build_rate_model(cfg.model, task, cfg.experiment.seed)


def _channel_names(names: tuple[str, ...] | None, n: int) -> tuple[str, ...] | None:
    """The task's channel names when there is one per channel, else None."""
    return tuple(names) if names is not None and len(names) == n else None


def _choices(task: Task, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor | None:
    """``(batch,)`` the channel each trial responded with, as the task's accuracy reads it:
    the argmax of the output averaged over the decision period (the native tasks), or of
    the output at the trial's last valid step (``trial_length``, NeuroGym's rule); None
    when neither is known."""
    decision_mean = getattr(task, "_decision_mean", None)
    if decision_mean is not None and "decision_start" in batch.info:
        return decision_mean(outputs, batch).argmax(-1).cpu()
    if "trial_length" in batch.info:
        last = batch.info["trial_length"].to(outputs.device) - 1
        return outputs[torch.arange(len(batch), device=outputs.device), last].argmax(-1).cpu()
    return None


def psychometric_data(info: dict[str, torch.Tensor], choices: torch.Tensor,
                      labels: torch.Tensor, output_names: tuple[str, ...] | None = None,
                      ) -> dict[str, Any] | None:
    """What :func:`bionn.viz.plot_psychometric` needs from a two-choice task's trials, or
    None when the trials do not carry it.

    The evidence is the stimulus strength the task records, signed by the correct side:
    ``+|strength|`` where the first of the two choice channels (the smaller label) is
    correct, ``-|strength|`` where the second is; the strength is ``coherence`` (or
    NeuroGym's ``coh``), the cued coherence of ``coherence_motion``/``coherence_color``
    (one curve per ``context``), or ``f1 - f2``. Only the trials that chose one of the two
    channels count; ``chose`` is whether it was the first.
    """
    options = sorted(int(v) for v in labels.unique() if int(v) > 0)
    if len(options) != 2:
        return None
    first = options[0]
    out: dict[str, Any] = {}
    if "coherence" in info or "coh" in info:
        key = "coherence" if "coherence" in info else "coh"
        strength = info[key].double().abs()
    elif {"coherence_motion", "coherence_color", "context"} <= set(info):
        key = "cued coherence"
        ctx = info["context"].long()
        strength = torch.where(ctx == 0, info["coherence_motion"], info["coherence_color"])
        strength = strength.double().abs()
        out["groups"], out["group_names"] = ctx, {0: "motion context", 1: "colour context"}
    elif {"f1", "f2"} <= set(info):
        key = "f1 - f2 (Hz)"
        strength = (info["f1"] - info["f2"]).double().abs()
    else:
        return None
    responded = (choices == options[0]) | (choices == options[1])
    if not bool(responded.any()):
        return None
    sign = torch.where(labels == first, 1.0, -1.0).double()
    name = (output_names[first] if output_names is not None and len(output_names) > first
            else f"choice {first}")
    if "groups" in out:
        out["groups"] = out["groups"][responded]
    return {"evidence": (sign * strength)[responded], "chose": (choices == first)[responded],
            "xlabel": f"{key}, signed (+: {name} correct)", "ylabel": f"P({name})", **out}


class RateJob(Job):
    """A recurrent model trained on a task of :mod:`bionn.tasks` (see the module docstring)."""

    @property
    def curve_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        """Loss and accuracy, and for a multitask run the held-out accuracy of each task."""
        names = getattr(getattr(self, "task", None), "task_names", None) or ()
        return ("loss", "accuracy", *(f"accuracy_{n}" for n in names))

    def setup(self, device: torch.device, ctx: DistContext) -> None:
        super().setup(device, ctx)
        cfg, tc = self.config, self.config.training
        if ctx.enabled and tc.bptt.mode != "full":
            raise ConfigError(f"training.bptt.mode: {tc.bptt.mode!r} is not supported under "
                              "torchrun (data-parallel); use 'full'")
        if tc.batch_size % ctx.world_size:
            raise ConfigError(f"training.batch_size: {tc.batch_size} must be divisible by the "
                              f"number of processes ({ctx.world_size})")
        self.task = cfg.task.build()
        self.sampler = TrialSampler(self.task, tc.batch_size, cfg.experiment.seed, ctx.rank,
                                    ctx.world_size)
        lc = cfg.loss
        self.loss_fn = RNNLoss(lc.task, lc.l2, lc.rate_mean, lc.rate_std, lc.rate_cv)
        self.rule: torch.nn.Module | None = None
        if cfg.model.method == EPROP_METHOD:
            self._check_eprop(ctx)
        self.last_eval: dict[str, float] = {}
        self._eval_trials: tuple | None = None
        self._eval_choices: tuple[torch.Tensor, torch.Tensor] | None = None

    def _check_eprop(self, ctx: DistContext) -> None:
        """Refuse what e-prop cannot do in this run (it does not backpropagate through time)."""
        cfg = self.config
        rates = [k for k in ("rate_mean", "rate_std", "rate_cv") if getattr(cfg.loss, k)]
        if rates:
            raise ConfigError(f"loss.{rates[0]}: the rate regularisers need gradients through "
                              "time, which model.method: eprop does not compute (set them to 0 "
                              "or train with bp); e-prop applies loss.task and loss.l2")
        if cfg.training.bptt.mode != "full":
            raise ConfigError(f"training.bptt.mode: {cfg.training.bptt.mode!r} does not apply to "
                              "model.method: eprop (no backpropagation through time); use 'full'")
        if ctx.enabled:
            raise ConfigError("model.method: eprop is not supported under torchrun "
                              "(data-parallel); run it in one process")

    def build_model(self) -> torch.nn.Module:
        model = build_model(self.config, self.task)
        if self.config.model.method == EPROP_METHOD:
            self.rule = self._eprop_rule(model)
        return model

    def _eprop_rule(self, model: torch.nn.Module) -> torch.nn.Module:
        """The e-prop rule of ``model`` on the run's masked task loss (``B`` drawn from
        ``experiment.seed + FEEDBACK_SEED_OFFSET``, like the feedback of ``convert``)."""
        from bionn.learning import EProp

        task_loss = TASK_LOSSES[self.loss_fn.task]

        def loss(outputs: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            return task_loss(outputs, *target)  # target: (targets, mask)

        g = torch.Generator().manual_seed(int(self.config.experiment.seed) + FEEDBACK_SEED_OFFSET)
        rule = EProp(model, feedback=self.config.model.options.get("feedback", "symmetric"),
                     loss=loss, generator=g)
        return rule.to(self.device)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Adaptive e-prop: ``B`` joins the optimizer and, just before each step (after the
        runner's gradient clipping), takes ``W_out``'s gradient, so that ``B`` gets exactly
        ``W_out``'s update (and its weight decay)."""
        if self.rule is None or self.rule.kind != "adaptive":
            return
        b, w_out = self.rule.feedback_weight, self.rule.model.weight_out
        optimizer.add_param_group({"params": [b]})

        def copy_grad(*_: Any) -> None:
            if w_out.grad is not None:
                b.grad = w_out.grad.detach().clone()

        optimizer.register_step_pre_hook(copy_grad)

    @property
    def total_steps(self) -> int:
        return self.config.training.steps

    def describe(self, model: torch.nn.Module) -> str:
        n = next((int(getattr(model, a)) for a in ("n_hidden", "n_neurons") if hasattr(model, a)),
                 None)
        sign = getattr(model, "sign", None)
        ei = ""
        if n is not None and isinstance(sign, torch.Tensor) and sign.numel() == n:
            n_e = int((sign > 0).sum())
            ei = f" ({n_e} E / {n - n_e} I)"
        name = type(model).__name__.removeprefix("Parametrized")  # parametrize's subclass
        return (f"{self.config.task.name} (dt {self.task.dt:g} ms), {name}"
                + (f" {n} units{ei}" if n is not None else ""))

    def _weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        return model.connection_weights() if self.loss_fn.l2 else None

    def _reduce(self, values: dict[str, float]) -> dict[str, float]:
        if not self.ctx.enabled:
            return values
        return mean_across_ranks(values, self.device if self.device.type == "cuda" else "cpu")

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
        scale = counts * self.ctx.world_size / total.clamp_min(1e-12)
        terms = dict(terms)
        terms["task"] = terms["task"] * scale[0]
        if "rate_mean" in terms:
            terms["rate_mean"] = terms["rate_mean"] * scale[1]
        return torch.stack(list(terms.values())).sum(), terms

    def train_step(self, net: torch.nn.Module, model: torch.nn.Module,
                   step: int) -> dict[str, torch.Tensor]:
        batch = self.sampler.batch(step).to(self.device)
        if self.rule is not None:
            out, loss, terms = self._eprop_step(model, batch)
        elif self.config.training.bptt.mode == "full":
            out, rates = net(batch.inputs)[:2]
            loss, terms = self.loss_fn(out, batch.targets, rates, batch.mask, self._weights(model))
            if self.ctx.enabled:
                loss, terms = self._global_terms(terms, batch.mask)
            loss.backward()
        else:  # backward inside, chunk by chunk
            out, loss, terms = self._chunked_step(net, model, batch)
        with torch.no_grad():
            acc = self.task.accuracy(out, batch).float().mean()
        return {"loss": loss.detach(), "accuracy": acc, **{k: v.detach() for k, v in terms.items()}}

    def _eprop_step(self, model: torch.nn.Module, batch: TrialBatch,
                    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """e-prop's gradients of the masked task loss into ``.grad`` (no backward through
        time), plus autograd's of the L2 terms; the terms as :class:`RNNLoss` gives them."""
        res = self.rule(batch.inputs, (batch.targets, batch.mask))
        loss, terms = self.loss_fn(res.outputs, batch.targets, res.spikes, batch.mask,
                                   self._weights(model))
        l2 = [v for k, v in terms.items() if k.startswith("l2_")]
        if l2:
            torch.stack(l2).sum().backward()
        return res.outputs, loss, terms

    def _chunked_step(self, net: torch.nn.Module, model: torch.nn.Module,
                      batch: TrialBatch) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Forward and backward of one batch in time chunks (``training.bptt``).

        The loss is split exactly over chunks: each chunk's masked means are weighted by
        the chunk's share of the trial's mask (and of its counted steps for the rate
        penalty), the L2 terms are counted once. ``rate_std``/``rate_cv`` are weighted
        the same way, which is exact only for the linear terms.
        """
        bp, loss_fn = self.config.training.bptt, self.loss_fn
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
            loss, terms = loss_fn(out, batch.targets, rates, mask, self._weights(model))
            loss.backward()
            return out, loss, terms
        for i, t0 in enumerate(chunks):
            sl = slice(t0, t0 + bp.chunk)
            o, r, state = net(x[:, sl], state, True)
            _, terms = loss_fn(o, batch.targets[:, sl], r, mask[:, sl], self._weights(model))
            share_m, share_c = mask[:, sl].sum() / m_total, (mask[:, sl] > 0).sum() / c_total
            terms = {k: (v * share_m if k == "task" else v * share_c if k.startswith("rate_")
                         else v) for k, v in terms.items() if i == 0 or not k.startswith("l2_")}
            torch.stack(list(terms.values())).sum().backward()
            state = detach_state(state)
            outs.append(o.detach())
            for k, v in terms.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + v.detach()
        loss = torch.stack(list(terms_sum.values())).sum()
        return torch.cat(outs, 1), loss, terms_sum

    def _evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        correct = total = 0
        loss_sum = 0.0
        measure_sums: dict[str, float] = {}
        measure_counts: dict[str, int] = {}  # a measure is NaN on trials it does not apply to
        per_trial, info, choices, labels = [], [], [], []
        seed = self.config.experiment.seed
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + EVAL_SEED_OFFSET)
            for batch in self.sampler.eval_batches(self.config.training.eval_trials):
                batch = batch.to(self.device)
                out, rates = model(batch.inputs)[:2]
                loss, _ = self.loss_fn(out, batch.targets, rates, batch.mask, self._weights(model))
                ok = self.task.accuracy(out, batch)
                for name, value in self.task.measures(out, batch).items():
                    finite = ~torch.isnan(value)
                    measure_sums[name] = measure_sums.get(name, 0.0) + float(value[finite].sum())
                    measure_counts[name] = measure_counts.get(name, 0) + int(finite.sum())
                correct += int(ok.sum())
                loss_sum += float(loss) * len(batch)
                total += len(batch)
                per_trial.append(ok.cpu())
                info.append({k: v.cpu() for k, v in batch.info.items()})
                choices.append(_choices(self.task, out, batch))
                labels.append(batch.labels.cpu())
        # Kept for the accuracy-by-condition and psychometric figures of the final evaluation.
        self._eval_trials = (
            torch.cat(per_trial), {k: torch.cat([i[k] for i in info]) for k in info[0]})
        self._eval_choices = (None if any(c is None for c in choices)
                              else (torch.cat(choices), torch.cat(labels)))
        return self._reduce({"eval_accuracy": correct / total, "eval_loss": loss_sum / total,
                             **{f"eval_{k}": v / measure_counts[k] for k, v in measure_sums.items()
                                if measure_counts[k]}})

    def end_step(self, model: torch.nn.Module, step: int,
                 metrics: dict[str, float]) -> dict[str, Any]:
        record: dict[str, Any] = {"step": step, **metrics}
        tc = self.config.training
        if step % tc.eval_every == 0 or step == tc.steps:
            self.last_eval = self._evaluate(model)
            record.update(self.last_eval)
        return record

    def align_at(self, step: int, record: dict[str, Any]) -> bool:
        # e-prop converts no layer: the angles of convert()'s layers do not apply
        return self.config.model.method not in ("bp", EPROP_METHOD) and "eval_accuracy" in record

    def alignment_batch(self):
        """Training batch 0, task loss only."""
        batch = self.sampler.batch(0).to(self.device)
        task_loss = TASK_LOSSES[self.loss_fn.task]

        def loss_fn(out: tuple[torch.Tensor, ...], b: TrialBatch) -> torch.Tensor:
            return task_loss(out[0], b.targets, b.mask)

        return loss_fn, batch.inputs, batch

    def postfix(self, metrics: dict[str, float], record: dict[str, Any] | None) -> dict[str, str]:
        return {"loss": f"{metrics['loss']:.4f}", "acc": f"{metrics['accuracy']:.2f}",
                "eval": f"{self.last_eval.get('eval_accuracy', float('nan')):.3f}"}

    def summary(self, model: torch.nn.Module, last: dict[str, Any]) -> dict[str, Any]:
        if not self.last_eval or self._eval_trials is None:
            self.last_eval = self._evaluate(model)
        return {"task": self.config.task.name, "accuracy": self.last_eval.get("eval_accuracy"),
                "loss": self.last_eval.get("eval_loss"), "train_loss": last.get("loss"),
                "weight_angle": last.get("weight_angle"), "grad_angle": last.get("grad_angle"),
                **{k[5:]: v for k, v in self.last_eval.items()
                   if k not in ("eval_accuracy", "eval_loss")}}

    def figures(self, model: torch.nn.Module, folder: Path) -> list[Path]:
        from bionn import viz

        n_trials = self.config.training.example_trials
        with torch.no_grad():
            ex = next(self.sampler.eval_batches(n_trials)).to(self.device)
            out, rates = model(ex.inputs)[:2]
        ex, out, rates = ex.to("cpu"), out.cpu(), rates.cpu()
        n = rates.shape[-1]
        sign = getattr(model, "sign", None)
        sign = sign.cpu() if isinstance(sign, torch.Tensor) and sign.numel() == n else None
        paths = []
        w = model.connection_weights().get("recurrent")
        if w is not None and w.dim() == 2:
            area = getattr(model, "area", None)
            paths.append(folder / "recurrent_weights.png")
            viz.plot_weight_matrix(
                w.detach().cpu(), paths[-1], sign=sign,
                groups=area.cpu() if area is not None and int(area.max()) > 0 else None,
                group_names=getattr(model, "area_names", None),
                title="recurrent weights W_rec (post, pre)")
        paths.append(folder / "example_trials.png")
        viz.plot_example_trials(
            ex.inputs, ex.targets, out, rates, paths[-1], mask=ex.mask, n_trials=n_trials,
            dt=self.task.dt, sign=sign,
            outputs_as="probability" if self.loss_fn.task == "cross_entropy" else "value",
            input_names=_channel_names(self.task.input_names, ex.inputs.shape[-1]),
            output_names=_channel_names(self.task.output_names, out.shape[-1]))
        if bool(torch.isin(rates, torch.tensor([0.0, 1.0])).all()):  # a spiking network
            per_neuron = rates.mean((0, 1)) * (1000.0 / self.task.dt)  # Hz over the trials
            groups = ({"E": per_neuron[sign > 0].numpy(), "I": per_neuron[sign < 0].numpy()}
                      if sign is not None and bool((sign < 0).any()) else per_neuron.numpy())
            paths.append(folder / "firing_rates.png")
            viz.plot_rate_histogram(groups, path=paths[-1],
                                    title=f"hidden firing rates ({len(ex)} example trials)")
            if callable(getattr(model, "traces", None)):
                paths.append(folder / "membrane_traces.png")
                _membrane_figure(model.traces(ex.inputs[:1].to(self.device)), sign,
                                 self.task.dt, paths[-1])
        if self._eval_trials is not None:
            try:
                viz.plot_accuracy_by_condition(*self._eval_trials,
                                               folder / "accuracy_by_condition.png")
                paths.append(folder / "accuracy_by_condition.png")
            except ValueError:
                pass  # the task records no condition with a few discrete levels
        if self._eval_trials is not None and self._eval_choices is not None:
            data = psychometric_data(self._eval_trials[1], *self._eval_choices,
                                     self.task.output_names)
            if data is not None:
                paths.append(folder / "psychometric.png")
                viz.plot_psychometric(data.pop("evidence"), data.pop("chose"), paths[-1], **data)
        return paths

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"last_eval": self.last_eval}
        if self.rule is not None:  # e-prop's B (random: fixed; adaptive: learned)
            state["eprop"] = self.rule.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_eval = dict(state.get("last_eval", {}))
        if self.rule is not None and "eprop" in state:
            self.rule.load_state_dict(state["eprop"])


def _membrane_figure(traces: dict[str, torch.Tensor], sign: torch.Tensor | None, dt: float,
                     path: Path) -> None:
    """Membrane potential (solid), threshold (dashed) and spikes (ticks) of the two most
    active E and the two most active I neurons (four neurons without Dale's law) on the
    first example trial."""
    from bionn import viz
    from bionn.viz._common import E_COLOR, I_COLOR

    v, th, z = (traces[k][0].cpu() for k in ("V", "threshold", "spikes"))
    counts = z.sum(0)
    if sign is not None and bool((sign < 0).any()):
        kinds = [(sign > 0, 2), (sign < 0, 2)]
    else:
        kinds = [(torch.ones_like(counts, dtype=torch.bool), 4)]
    picks: list[int] = []
    for kind, k in kinds:
        idx = kind.nonzero().flatten()
        picks += idx[counts[idx].argsort(descending=True)[:k]].tolist()
    t = torch.arange(v.shape[0], dtype=v.dtype) * dt
    fig = viz.plot_voltage_traces((t.numpy(), v.numpy()), neurons=picks, spikes=False,
                                  title="membrane potential (solid), threshold (dashed)")
    for ax, n in zip(fig.axes, picks, strict=False):
        if sign is not None and ax.lines:
            ax.lines[0].set_color(E_COLOR if sign[n] > 0 else I_COLOR)
        ax.plot(t.numpy(), th[:, n].numpy(), ls="--", lw=0.9, color="0.3")
        hits = t[z[:, n] > 0].numpy()
        top = float(max(v[:, n].max(), th[:, n].max()))
        ax.plot(hits, [top] * len(hits), "|", color="k", ms=6)
    viz.save_figure(fig, path)
