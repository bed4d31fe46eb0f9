"""Time one training step with every synaptic-diversity transform on: bionn vs plain
training vs pytorch-bio-transformations (``bio_transformations``), in the same run.

One step = ``zero_grad`` + forward + cross-entropy + backward + ``SGD.step``, batch 128,
10 classes, random data, ONE CPU thread, for two architectures:

* ``mlp``: ``bionn.models.MLP(784, hidden=(256, 256))`` (3 linear layers, relu);
* ``lenet``: ``bionn.models.lenet_mnist()`` on 1x28x28 inputs (2 conv + 3 linear layers).

Variants, all from deep copies of the same model:

* ``plain``: the unconverted model;
* ``bionn``: ``bionn.plasticity.BioConverter`` with fuzzy learning rates, crystallisation
  (every step), volume-dependent learning rate, rejuvenation (every 100 steps), weight
  splitting (gamma 2, output layer skipped) and Dale's principle, attached to the
  optimizer (``loss.backward(); opt.step()`` runs everything);
* ``bionn_noise_every``: the same with ``volume_dependent_lr: {noise_every: NOISE_EVERY}``
  (one draw of the per-synapse noise kept for ``NOISE_EVERY`` steps instead of a fresh
  draw every step); reported per model under ``noise_every``. It is timed step by step
  like the others, and compared over whole cycles of ``NOISE_EVERY`` consecutive rounds
  (each holds exactly one step that draws): ``ms_per_step`` is the median cycle's time
  divided by ``NOISE_EVERY``, the ratio the median over cycles of its time over plain
  training's time in the same rounds, so the draw's cost is spread over the steps
  that use it;
* ``bionn_no_split``: every transform but weight splitting, reported per model under
  ``without_weight_splitting``: bionn folds a ``Linear`` layer's splitting into the layer
  (:class:`bionn.plasticity.diversity.NeuronSum`: each neuron's input computed once from
  its summed synapses), which does fewer multiply-adds than the plain layer; this line
  shows what the other transforms cost on their own;
* ``reference``: ``bio_transformations.BioConverter`` (v0.0.5) with the same transforms
  (``weight_splitting_Gamma=2``, ``apply_dales_principle=True``) and its documented loop:
  ``volume_dependent_lr(); crystallize(); fuzzy_learning_rates()`` before ``step()``,
  ``enforce_dales_principle()`` on every layer after it, ``rejuvenate_weights()`` every
  100 steps. Its output layer is marked to skip splitting (its own marker only looks at
  direct children, which would miss the nested heads of these models).

Interleaved rounds (one step of each variant per round, shuffled order) after warm-up:
``ms_per_step`` is the median over the rounds, a ratio the median of the per-round
ratios (``_harness.paired_ratio``: the machine's speed switches between periods lasting
several rounds, which a ratio of two medians does not cancel). The last stdout line is one JSON object whose top-level
``ms_per_step``, ``plain_ms_per_step`` and ``reference_ms_per_step`` are the MLP's
(the model where the transforms' share of the step is largest); per-model numbers are
nested under ``models``. Run ``python benchmarks/synaptic_diversity.py`` (``--quick``:
smoke run).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared _harness module
from _harness import (  # noqa: E402
    interleaved_times,
    medians_ms,
    package_version,
    paired_ratio,
    positive_int,
    window_sums,
)
from bionn.models import MLP, lenet_mnist
from bionn.plasticity import BioConverter

REFERENCE_ERROR: str | None = None
try:  # optional reference package (pip install pytorch-bio-transformations)
    from bio_transformations import BioConverter as RefConverter
    from bio_transformations.bio_config import BioConfig as RefConfig
except Exception as exc:  # pragma: no cover - depends on the environment
    RefConverter = RefConfig = None
    REFERENCE_ERROR = f"{type(exc).__name__}: {exc}"

REFERENCE_VERSION = package_version("pytorch-bio-transformations", RefConverter is not None)
BATCH, N_CLASSES, LR, REJUVENATE_EVERY = 128, 10, 0.01, 100
ARCHS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: MLP(784, hidden=(256, 256), num_classes=N_CLASSES), (1, 28, 28)),
    "lenet": (lambda: lenet_mnist(num_classes=N_CLASSES), (1, 28, 28)),
}
NOISE_EVERY = 10
BIONN_CONFIG = {
    "fuzzy_learning_rates": True,
    "crystallization": {"every": 1},
    "volume_dependent_lr": True,
    "rejuvenation": {"every": REJUVENATE_EVERY},
    "weight_splitting": {"gamma": 2},
    "dale": {"skip_input": False},
}


def plain_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
    return _loop(net, torch.optim.SGD(net.parameters(), lr=LR), x, y)


def bionn_step(base: nn.Module, x: torch.Tensor, y: torch.Tensor,
               noise_every: int = 1, drop: tuple[str, ...] = ()) -> Callable[[], float]:
    net = copy.deepcopy(base)
    config = dict(BIONN_CONFIG, volume_dependent_lr={"noise_every": noise_every})
    config = {k: v for k, v in config.items() if k not in drop}
    bio = BioConverter(config).convert(net, inplace=True)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    bio.attach(opt)
    return _loop(net, opt, x, y)


def _loop(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
          y: torch.Tensor) -> Callable[[], float]:
    def step() -> float:
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def reference_step(base: nn.Module, x: torch.Tensor,
                   y: torch.Tensor) -> Callable[[], float] | None:
    if RefConverter is None:
        return None
    net = copy.deepcopy(base)
    last = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    RefConverter.set_last_module_token_for_module(last)
    cfg = RefConfig(weight_splitting_Gamma=2, apply_dales_principle=True)
    net = RefConverter(cfg).convert(net)
    mods = [m.bio_mod for m in net.modules() if hasattr(m, "bio_mod")]
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    count = [0]

    def step() -> float:
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        net.volume_dependent_lr()
        net.crystallize()
        net.fuzzy_learning_rates()
        opt.step()
        for m in mods:
            m.enforce_dales_principle()
        count[0] += 1
        if count[0] % REJUVENATE_EVERY == 0:
            net.rejuvenate_weights()
        return loss.item()

    return step


def run_arch(arch: str, warmup: int, rounds: int) -> dict[str, Any]:
    factory, shape = ARCHS[arch]
    torch.manual_seed(0)
    base = factory()
    x = torch.randn(BATCH, *shape)
    y = torch.randint(0, N_CLASSES, (BATCH,))
    fns = {"plain": plain_step(copy.deepcopy(base), x, y), "bionn": bionn_step(base, x, y),
           "bionn_noise_every": bionn_step(base, x, y, NOISE_EVERY),
           "bionn_no_split": bionn_step(base, x, y, drop=("weight_splitting",))}
    ref = reference_step(base, x, y)
    if ref is not None:
        fns["reference"] = ref
    times = interleaved_times(fns, warmup, rounds)
    med = medians_ms(times)
    ms, plain, rf = med["bionn"], med["plain"], med.get("reference")
    # whole cycles of NOISE_EVERY rounds: each holds one step that draws
    every = window_sums(times["bionn_noise_every"], NOISE_EVERY)
    fast = 1e3 * statistics.median(every) / NOISE_EVERY
    return {
        "ms_per_step": round(ms, 3),
        "plain_ms_per_step": round(plain, 3),
        "reference_ms_per_step": None if rf is None else round(rf, 3),
        "ratio_vs_plain": round(paired_ratio(times["bionn"], times["plain"]), 3),
        "ratio_vs_reference": None if rf is None else round(
            paired_ratio(times["bionn"], times["reference"]), 3),
        "without_weight_splitting": {
            "ms_per_step": round(med["bionn_no_split"], 3),
            "ratio_vs_plain": round(paired_ratio(times["bionn_no_split"], times["plain"]), 3)},
        "noise_every": {
            "noise_every": NOISE_EVERY, "ms_per_step": round(fast, 3),
            "ratio_vs_plain": round(paired_ratio(times["bionn_noise_every"], times["plain"],
                                                 NOISE_EVERY), 3)},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    parser.add_argument("--rounds", type=positive_int, default=None,
                        help="timed rounds, >= 1 (default 201)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.WARNING)  # the reference logs every rejuvenation
    if RefConverter is None:
        print(f"bio_transformations not usable, its column is null: {REFERENCE_ERROR}",
              file=sys.stderr)
    warmup, rounds = (1, 3) if args.quick else (10, 201)
    if args.rounds:
        rounds = args.rounds
    models = {arch: run_arch(arch, warmup, rounds) for arch in ARCHS}

    print(f"Synaptic diversity, one SGD step with all transforms: batch {BATCH}, 1 thread, "
          f"torch {torch.__version__}, bio_transformations {REFERENCE_VERSION}; "
          f"medians of {rounds} interleaved rounds (ratios: of the per-round ratios)")
    print(f"{'model':<8}{'bionn ms':>10}{'plain ms':>10}{'ref ms':>10}{'x plain':>9}{'x ref':>8}")
    for arch, r in models.items():
        rf = "n/a" if r["reference_ms_per_step"] is None else f"{r['reference_ms_per_step']:.2f}"
        rr = "n/a" if r["ratio_vs_reference"] is None else f"{r['ratio_vs_reference']:.2f}"
        print(f"{arch:<8}{r['ms_per_step']:>10.2f}{r['plain_ms_per_step']:>10.2f}{rf:>10}"
              f"{r['ratio_vs_plain']:>9.2f}{rr:>8}")
        w = r["without_weight_splitting"]
        print(f"{'  -split':<8}{w['ms_per_step']:>10.2f}{'':>10}{'':>10}{w['ratio_vs_plain']:>9.2f}"
              "   (every transform but weight splitting)")
        n = r["noise_every"]
        print(f"{'  noise':<8}{n['ms_per_step']:>10.2f}{'':>10}{'':>10}{n['ratio_vs_plain']:>9.2f}"
              f"   (volume noise drawn every {NOISE_EVERY} steps)")
    result = {
        "benchmark": "synaptic_diversity",
        **{k: models["mlp"][k] for k in ("ms_per_step", "plain_ms_per_step",
                                         "reference_ms_per_step", "ratio_vs_plain",
                                         "ratio_vs_reference")},
        "models": models,
        "transforms": sorted(BIONN_CONFIG),
        "batch": BATCH,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "reference": REFERENCE_VERSION,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
