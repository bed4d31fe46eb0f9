"""Time one training step of each credit-assignment method: bionn vs plain backprop vs BioTorch.

One step = ``zero_grad`` + forward + cross-entropy + backward + ``SGD.step``
(+ ``bionn.learning.mirror(model)`` for ``wm``), batch 128, 10 classes, random
data, on ONE CPU thread, for two architectures:

* ``lenet``: ``bionn.models.lenet_mnist()`` on 1x28x28 inputs (2 conv + 3 linear layers);
* ``mlp``: ``bionn.models.MLP(784, hidden=(256, 256))`` (3 linear layers, relu).

Variants per architecture, all built from deep copies of the same model:

* ``plain``: the unconverted model, ordinary PyTorch autograd (the reference);
* ``bionn/<method>``: ``bionn.learning.convert(model, method)`` for every method
  ``bp fa dfa usf brsf frsf wm kp`` (``kp``: optimizer built after converting,
  so ``B`` is trained too);
* ``biotorch/<method>``: BioTorch 0.0.16's ``BioModule(model, mode=...)`` for the
  methods it has (``backpropagation`` for ``bp``, ``fa dfa usf brsf frsf``);
  DFA trains through ``model(x, targets, loss_function)`` as BioTorch requires.
  No ``wm``/``kp`` in BioTorch: null.
* ``bionn/wm_every``: ``wm`` with ``mirror(model, every=MIRROR_EVERY)``: one mirror
  update per ``MIRROR_EVERY`` steps. Its time per step is the mean over the
  ``MIRROR_EVERY`` steps that one update serves: in each round, the step of that model
  (a training step plus a skipped ``mirror`` call; about 1 in ``MIRROR_EVERY`` timed
  steps also mirrors, which the medians leave out) plus one mirror update
  (``bionn/wm_mirror``: ``mirror(model)`` on another ``wm`` copy, timed in the same
  round) divided by ``MIRROR_EVERY``. Reported under the top-level ``wm_mirror_every``
  key, with ``mirror_update_ms``.

BioTorch is loaded with a plain ``import biotorch.module.biomodule``: its
top-level ``__init__`` is empty and the ``module``/``layers``/``autograd``
subpackages import only torch, so torchvision (a declared dependency that the
benchmark does not need) may be absent. If the import fails, the BioTorch
columns are null and the reason goes to stderr. BioTorch layers get
``layer_config={"type": mode}``, i.e. its default options (xavier init; its
``brsf`` crashes with any other init), and bionn gets ``init="xavier"`` too.
Both keep the model's forward weights (``copy_weights=True``).

All variants of one architecture are timed in interleaved rounds (one step of
each per round, in shuffled order, after warm-up). ``ms_per_step`` is the median over
the rounds; a ratio is the median over the rounds of the two steps' ratio within the
round (``_harness.paired_ratio``: the machine's speed switches between periods lasting
several rounds, which a ratio of two medians does not cancel). The last stdout line
is one JSON object. Run: ``python benchmarks/credit_assignment.py`` (``--quick``
for a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared _harness module
from _harness import interleaved_times, medians_ms, package_version, paired_ratio  # noqa: E402
from bionn.learning import convert, mirror
from bionn.models import MLP, lenet_mnist

BIOTORCH_ERROR: str | None = None
try:  # optional reference package (pip install biotorch==0.0.16 --no-deps)
    from biotorch.module.biomodule import BioModule
except Exception as exc:  # pragma: no cover - depends on the environment
    BioModule = None
    BIOTORCH_ERROR = f"{type(exc).__name__}: {exc}"

METHODS = ("bp", "fa", "dfa", "usf", "brsf", "frsf", "wm", "kp")
BIOTORCH_MODES = {"bp": "backpropagation", "fa": "fa", "dfa": "dfa", "usf": "usf",
                  "brsf": "brsf", "frsf": "frsf"}
BIOTORCH_VERSION = package_version("biotorch", BioModule is not None)
BATCH, N_CLASSES, LR = 128, 10, 0.01
MIRROR_EVERY = 25  # the wm_every variant: one mirror update per 25 steps
ARCHS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "lenet": (lambda: lenet_mnist(num_classes=N_CLASSES), (1, 28, 28)),
    "mlp": (lambda: MLP(784, hidden=(256, 256), num_classes=N_CLASSES), (1, 28, 28)),
}


# ----------------------------------------------------------------------- timing
# ----------------------------------------------------------------------- steps
def sgd_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, after_step=None,
             dfa_biotorch: bool = False) -> Callable[[], float]:
    """One training step (zero_grad, forward, CE, backward, SGD) of ``net`` as a closure."""
    opt = torch.optim.SGD(net.parameters(), lr=LR)

    def step() -> float:
        opt.zero_grad()
        out = net(x, y, F.cross_entropy) if dfa_biotorch else net(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(net)
        return loss.item()

    return step


def bionn_model(base: nn.Module, method: str) -> nn.Module:
    return convert(copy.deepcopy(base), method, init="xavier",
                   output_dim=N_CLASSES if method == "dfa" else None).model


def biotorch_model(base: nn.Module, method: str) -> nn.Module | None:
    if BioModule is None or method not in BIOTORCH_MODES:
        return None
    mode = BIOTORCH_MODES[method]
    with contextlib.redirect_stdout(sys.stderr):  # BioTorch prints a conversion summary
        return BioModule(copy.deepcopy(base), mode=mode, copy_weights=True,
                         layer_config={"type": mode},
                         output_dim=N_CLASSES if mode == "dfa" else None)


def build_steps(arch: str, seed: int = 0) -> dict[str, Callable[[], float]]:
    factory, shape = ARCHS[arch]
    torch.manual_seed(seed)
    base = factory()
    x = torch.randn(BATCH, *shape)
    y = torch.randint(0, N_CLASSES, (BATCH,))
    fns = {"plain": sgd_step(copy.deepcopy(base), x, y)}
    for method in METHODS:
        fns[f"bionn/{method}"] = sgd_step(bionn_model(base, method), x, y,
                                          after_step=mirror if method == "wm" else None)
    fns["bionn/wm_every"] = sgd_step(bionn_model(base, "wm"), x, y,
                                     after_step=lambda net: mirror(net, every=MIRROR_EVERY))
    mirrored = bionn_model(base, "wm")

    def mirror_update() -> float:
        mirror(mirrored)
        return 0.0

    fns["bionn/wm_mirror"] = mirror_update
    for method in METHODS:
        net = biotorch_model(base, method)
        if net is not None:
            fns[f"biotorch/{method}"] = sgd_step(net, x, y, dfa_biotorch=method == "dfa")
    return fns


# ----------------------------------------------------------------------- main
def run_arch(arch: str, warmup: int, rounds: int) -> dict[str, dict]:
    fns = build_steps(arch)
    times = interleaved_times(fns, warmup, rounds)
    med = medians_ms(times)
    for name, fn in fns.items():
        loss = fn()
        if not math.isfinite(loss):
            print(f"warning: {arch} {name}: non-finite loss after timing", file=sys.stderr)
    plain = med["plain"]
    out: dict[str, dict] = {}
    for method in METHODS:
        ms = med[f"bionn/{method}"]
        bt = med.get(f"biotorch/{method}")
        out[method] = {
            "ms_per_step": round(ms, 3),
            "plain_bp_ms_per_step": round(plain, 3),
            "biotorch_ms_per_step": None if bt is None else round(bt, 3),
            "ratio_vs_plain": round(paired_ratio(times[f"bionn/{method}"], times["plain"]), 3),
            "ratio_vs_biotorch": None if bt is None else round(
                paired_ratio(times[f"bionn/{method}"], times[f"biotorch/{method}"]), 3),
        }
    # one mirror update serves MIRROR_EVERY steps: its time spread over them
    every = [s + m / MIRROR_EVERY
             for s, m in zip(times["bionn/wm_every"], times["bionn/wm_mirror"], strict=True)]
    out["wm_every"] = {"ms_per_step": round(1e3 * statistics.median(every), 3),
                       "plain_bp_ms_per_step": round(plain, 3),
                       "ratio_vs_plain": round(paired_ratio(every, times["plain"]), 3),
                       "mirror_update_ms": round(med["bionn/wm_mirror"], 3)}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # BioTorch's DFA layers use the legacy register_backward_hook (a FutureWarning per model)
    warnings.filterwarnings("ignore", message="Using a non-full backward hook")
    if BioModule is None:
        print(f"BioTorch not usable, its columns are null: {BIOTORCH_ERROR}", file=sys.stderr)

    warmup, rounds = (1, 3) if args.quick else (5, 101)
    results = {arch: run_arch(arch, warmup, rounds) for arch in ARCHS}
    every = {"every": MIRROR_EVERY, **{arch: res.pop("wm_every") for arch, res in results.items()}}

    print(f"Credit assignment, one SGD training step: batch {BATCH}, {N_CLASSES} classes, "
          f"1 thread, torch {torch.__version__}, BioTorch {BIOTORCH_VERSION}; "
          f"medians of {rounds} interleaved rounds (ratios: of the per-round ratios)")
    print("ratios = bionn / other (lower is better; targets: vs plain <= 1.1, vs BioTorch <= 1)")
    for arch, res in results.items():
        print(f"\n{arch} (plain backprop {res['bp']['plain_bp_ms_per_step']:.2f} ms/step)")
        print(f"{'method':<8}{'bionn ms':>10}{'BioTorch ms':>13}{'x plain':>9}{'x BioTorch':>12}")
        for method, r in res.items():
            bt = "n/a" if r["biotorch_ms_per_step"] is None else f"{r['biotorch_ms_per_step']:.2f}"
            rb = "n/a" if r["ratio_vs_biotorch"] is None else f"{r['ratio_vs_biotorch']:.2f}"
            print(f"{method:<8}{r['ms_per_step']:>10.2f}{bt:>13}{r['ratio_vs_plain']:>9.2f}"
                  f"{rb:>12}")
        r = every[arch]
        print(f"{'wm/' + str(MIRROR_EVERY):<8}{r['ms_per_step']:>10.2f}{'n/a':>13}"
              f"{r['ratio_vs_plain']:>9.2f}{'n/a':>12}   (mirror every {MIRROR_EVERY} steps)")

    result = {
        "benchmark": "credit_assignment",
        **results,
        "wm_mirror_every": every,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "biotorch": BIOTORCH_VERSION,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
