"""Ablation of the synaptic-diversity transforms: each one on alone, all on, and none.

For each classification config (default: ``configs/sd_digits_mlp.yaml``,
``configs/sd_digits_lenet.yaml`` (digits upsampled to 28x28), ``configs/sd_mnist1d_mlp.yaml``,
``configs/sd_mnist1d_conv.yaml``; SGD) and each seed, the
run is repeated with ``synaptic_diversity`` set to: nothing (``baseline``), one transform
(with the config's parameters), rejuvenation with ``replacement: small``, volume-dependent
rates with a 10x learning rate (they scale the gradient by about 0.1), or every transform
of the config (``all``). Each run is an
ordinary ``bionn run`` (:func:`bionn.experiment.classify.train_classifier`).

Reported per config and variant (mean +- std over seeds): the final test accuracy and the
learning-curve area, the mean test accuracy over the epochs (higher = learns faster). A
run whose loss becomes NaN is stopped and counted at chance level (10 %) from then on.
Writes ``results.json``, ``table.md`` and ``learning_curves.png`` into ``--out``.

    python examples/synaptic_diversity_ablation.py                 # 4 configs x 10 variants x 3 seeds
    python examples/synaptic_diversity_ablation.py --seeds 0 --epochs 2 --out /tmp/sd  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bionn.experiment.classify import train_classifier, validate_classify_config
from bionn.experiment.config import read_yaml

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 0.1  # 10 classes
CONFIGS = ("sd_digits_mlp", "sd_digits_lenet", "sd_mnist1d_mlp", "sd_mnist1d_conv")
TRANSFORMS = ("fuzzy_learning_rates", "crystallization", "volume_dependent_lr", "rejuvenation",
              "weight_splitting", "dale")
SHORT = {"fuzzy_learning_rates": "fuzzy LR", "crystallization": "crystallisation",
         "volume_dependent_lr": "volume LR", "rejuvenation": "rejuvenation",
         "weight_splitting": "splitting", "dale": "Dale", "baseline": "baseline", "all": "all",
         "rejuvenation_small": "rejuvenation (small regrowth)",
         "volume_dependent_lr_x10": "volume LR, lr x10"}


def variants(sd: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """``baseline`` (no section), one entry per transform of ``sd``, and ``all``."""
    extra = {k: v for k, v in sd.items() if k not in TRANSFORMS}
    out: dict[str, dict[str, Any] | None] = {"baseline": None}
    for name in TRANSFORMS:
        if sd.get(name) not in (None, False):
            out[name] = {**extra, name: sd[name]}
    if sd.get("volume_dependent_lr") not in (None, False):
        # volume-dependent rates scale the gradient by ~0.1: the same with a 10x learning rate
        out["volume_dependent_lr_x10"] = {**extra, "volume_dependent_lr": sd["volume_dependent_lr"]}
    if sd.get("rejuvenation") not in (None, False):
        rej = {} if sd["rejuvenation"] is True else dict(sd["rejuvenation"])
        out["rejuvenation_small"] = {**extra, "rejuvenation": {**rej, "replacement": "small"}}
    out["all"] = dict(sd)
    return out


def run_one(data: dict[str, Any], out: Path) -> dict[str, Any]:
    """One run; a run whose loss becomes NaN/inf counts as chance level (0.1) from the
    epoch it diverged in, and is flagged ``diverged``."""
    cfg = validate_classify_config(data)
    diverged = False
    try:
        summary = train_classifier(cfg, out, progress=False)
        final = summary["test_accuracy"]
    except FloatingPointError:
        diverged, final = True, CHANCE
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [r["test_accuracy"] for r in recs]
    curve += [CHANCE] * (cfg.training.epochs - len(curve))
    return {"final": final, "area": sum(curve) / len(curve), "curve": curve,
            "diverged": diverged}


def _ms(xs: list[float]) -> str:
    m = 100 * statistics.fmean(xs)
    s = 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.1f} ± {s:.1f}"


def table(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    lines = ["| config | variant | final test acc. (%) | curve area (%) | Δ final vs baseline "
             "| diverged |", "| --- | --- | --- | --- | --- | --- |"]
    for config, by_var in results.items():
        base = statistics.fmean(r["final"] for r in by_var["baseline"])
        for var, runs in by_var.items():
            finals = [r["final"] for r in runs]
            delta = "" if var == "baseline" else f"{100 * (statistics.fmean(finals) - base):+.1f}"
            div = sum(r["diverged"] for r in runs)
            lines.append(f"| {config} | {SHORT[var]} | {_ms(finals)} | "
                         f"{_ms([r['area'] for r in runs])} | {delta} | {div}/{len(runs)} |")
    return "\n".join(lines)


def figure(results: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> None:
    from bionn.viz._common import _new_figure, save_figure

    fig = _new_figure((4.4 * len(results), 3.4), layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False).ravel()
    for ax, (config, by_var) in zip(axes, results.items(), strict=True):
        for i, (var, runs) in enumerate(by_var.items()):
            n = min(len(r["curve"]) for r in runs)
            mean = [statistics.fmean(r["curve"][e] for r in runs) for e in range(n)]
            style = {"lw": 2.2, "color": "k"} if var == "baseline" else {"lw": 1.2}
            ax.plot(range(1, n + 1), [100 * m for m in mean], label=SHORT[var],
                    ls="--" if var == "all" else "-", color=style.get("color", f"C{i}"),
                    lw=style["lw"])
        ax.set_title(config)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="config names in configs/ or paths, comma-separated")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    parser.add_argument("--steps", type=int, default=None, help="override training.steps "
                                                                  "(smoke runs)")
    parser.add_argument("--variants", default=None,
                        help="only these variants, comma-separated (default: all of them)")
    parser.add_argument("--out", default="runs/sd_ablation")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    jobs = []
    for name in args.configs.split(","):
        path = Path(name) if name.endswith(".yaml") else ROOT / "configs" / f"{name}.yaml"
        data = read_yaml(path)
        sd = data.pop("synaptic_diversity", None) or {}
        if args.epochs:
            data.setdefault("training", {})["epochs"] = args.epochs
        if args.steps:
            data.setdefault("training", {})["steps"] = args.steps
        for var, section in variants(sd).items():
            if args.variants and var not in args.variants.split(","):
                continue
            for seed in seeds:
                d = json.loads(json.dumps(data))
                d.setdefault("experiment", {}).update(seed=seed, name=f"{path.stem}-{var}")
                if section is not None:
                    d["synaptic_diversity"] = section
                if var.endswith("_x10"):
                    d["training"]["optimizer"]["lr"] = 10 * d["training"]["optimizer"]["lr"]
                validate_classify_config(d)  # every config is checked before any run
                jobs.append((path.stem, var, seed, d))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for config, var, seed, d in tqdm(jobs, desc="ablation", unit="run", dynamic_ncols=True):
        r = run_one(d, out / config / var / f"seed{seed}")
        results.setdefault(config, {}).setdefault(var, []).append({"seed": seed, **r})
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = table(results)
    (out / "table.md").write_text(md + "\n")
    figure(results, out / "learning_curves.png")
    print(md)
    print(f"results in {out}/ (results.json, table.md, learning_curves.png)", file=sys.stderr)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
