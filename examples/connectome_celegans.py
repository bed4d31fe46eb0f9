"""Train a C. elegans connectome RNN on perceptual decision making.

The recurrent matrix is the hermaphrodite connectome (302 neurons, OpenWorm
unified data shipped in ``cect``: ``pip install --no-deps cect``) with signs from
transmitter identity; inputs reach the sensory neurons, the readout sees the motor
neurons. Trained: one strength per (pre type, post type) pair scaled by synapse
counts, a time constant and a bias per neuron class, input and readout weights.

Writes ``connectome_celegans/`` with ``training.png`` (loss and accuracy),
``tau_by_type.png`` (learned time constants per neuron class) and ``metrics.json``.

    python examples/connectome_celegans.py            # ~1-2 min on one CPU core
    python examples/connectome_celegans.py --quick    # a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bionn import RNNLoss  # noqa: E402
from bionn.circuits.connectome import celegans  # noqa: E402
from bionn.rate import ConnectomeRNN  # noqa: E402
from bionn.tasks import make_task  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("connectome_celegans"))
    p.add_argument("--quick", action="store_true", help="tiny run for tests")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.batch = 3, 8
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    worm = celegans("OpenWormUnified")
    dt = 20.0
    task = make_task("perceptual_decision_making", dt=dt)
    net = ConnectomeRNN(worm, task.n_input, task.n_output, input_neurons="sensory",
                        output_neurons="motor", dt=dt, tau=100.0, weight_sharing="type",
                        tau_mode="type", gain=0.8, preact_noise=0.05)
    tau0 = net.type_tau()
    loss_fn = RNNLoss(rate_mean=1e-3)
    # time constants (ms) move on a larger scale than the strengths: their own learning rate
    tau_raw = net.time_constants.parametrizations.tau.original
    rest = [p for p in net.parameters() if p is not tau_raw]
    opt = torch.optim.Adam([{"params": rest, "lr": 1e-2}, {"params": [tau_raw], "lr": 1.0}])
    g = torch.Generator().manual_seed(args.seed)
    test = task.sample(256 if not args.quick else 16, torch.Generator().manual_seed(10_000 + args.seed))
    history = []
    bar = tqdm(range(args.steps), desc="train", disable=args.quick)
    for step in bar:
        batch = task.sample(args.batch, g)
        out, rates = net(batch.inputs)
        loss, _ = loss_fn(out, batch.targets, rates, batch.mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec = {"step": step, "loss": loss.item()}
        if step % 25 == 0 or step == args.steps - 1:
            with torch.no_grad():
                rec["accuracy"] = float(task.accuracy(net(test.inputs)[0], test).float().mean())
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['accuracy']:.2f}")
        history.append(rec)

    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot([h["step"] for h in history], [h["loss"] for h in history])
    ax[0].set(xlabel="step", ylabel="loss", title="training loss", yscale="log")
    acc = [(h["step"], h["accuracy"]) for h in history if "accuracy" in h]
    ax[1].plot(*zip(*acc, strict=True), marker="o")
    ax[1].axhline(1 / (task.n_output - 1), color="gray", ls="--", label="chance")
    ax[1].set(xlabel="step", ylabel="held-out accuracy", ylim=(0, 1), title="accuracy")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(args.out / "training.png", dpi=120)
    plt.close(fig)

    tau = net.type_tau()
    order = sorted(tau, key=tau.get)
    fig, ax = plt.subplots(figsize=(max(8, len(order) * 0.09), 3.5))
    ax.bar(range(len(order)), [tau[t] for t in order], color="C0", label="learned")
    ax.plot(range(len(order)), [tau0[t] for t in order], "k_", label="initial")
    ax.axhline(dt, color="r", lw=0.8, ls=":", label="dt (lower bound)")
    ax.set_xticks(range(len(order)), order, rotation=90, fontsize=5)
    ax.set(ylabel="tau (ms)", title="C. elegans connectome RNN: learned time constant per neuron class")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "tau_by_type.png", dpi=120)
    plt.close(fig)

    result = {"final_accuracy": acc[-1][1], "chance": 1 / (task.n_output - 1), "steps": args.steps,
              "neurons": worm.n, "synapses": worm.nnz, "trainable": sum(p.numel() for p in net.parameters())}
    (args.out / "metrics.json").write_text(json.dumps({"result": result, "history": history}, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
