"""Train a two-area E/I spatially embedded network with inter-areal feedback on a visual task.

Area 0 (V1-like, a ``size x size`` sheet) and area 1 (half the size) each hold
excitatory and inhibitory cell types (motif ``E-I``) connected by convolutions
(Dale's law by construction); area 0 feeds area 1 (pooled), area 1 feeds back to
area 0 (additive by default, or ``--feedback multiplicative``) with a delay; time
constants are learned (their own learning rate, ``--tau-lr``, as they are in ms).
The readout pools area 1's E rates; the loss is the cross entropy averaged over the
last ``--readout-steps`` steps plus ``--rate-reg`` times the mean squared rate.

    python examples/spatial_two_area.py contour      # or motion, maze, digits

Per-task settings are in ``TASKS``. The maze (``maze_connectivity``) is run small
(9x9 pixels, 4x4 cells) with 20 steps of 10 ms, extent-3 kernels (so activity cannot
jump a one-pixel wall), the input onto E and I (feedforward inhibition) and the two
marks given as a second input channel; larger mazes stayed at chance in our runs.

Writes to ``--out`` (default ``runs/spatial_<task>``): ``result.json`` (one JSON line,
also printed: held-out accuracy vs chance), ``celltype_table.png``,
``activity_area0.png``, ``activity_area1.png``, ``time_constants.png``,
``training.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bionn.circuits import motif
from bionn.rate.spatial import SpatialNetwork, TopDown
from bionn.tasks.visual import make_visual_dataset
from bionn.viz import plot_activity_maps, plot_cell_type_table, plot_time_constants, save_figure
from bionn.viz._common import _new_figure

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

# Per task: sheet size, samples, epochs, task parameters (and overrides of the defaults
# steps=10, dt=5 ms, the motif's extents and strengths, input onto E only).
TASKS = {
    "contour": {"size": 20, "n_train": 4000, "n_test": 1000, "epochs": 12, "params": {}},
    "motion": {"size": 16, "n_train": 3000, "n_test": 1000, "epochs": 10, "params": {"frames": 8}},
    "maze": {"size": 9, "n_train": 4000, "n_test": 1000, "epochs": 12, "steps": 20, "dt": 10.0,
             "extent": 3, "ee_strength": 0.9, "input_types": "E,I", "split_marks": True,
             "params": {"algorithm": "kruskal"}},
    "digits": {"size": 16, "n_train": 1437, "n_test": 360, "epochs": 12, "params": {}},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="steps for static images (default per task)")
    ap.add_argument("--dt", type=float, default=None, help="step in ms (default per task)")
    ap.add_argument("--size", type=int, default=None, help="sheet / image size (default per task)")
    ap.add_argument("--extent", type=int, default=None,
                    help="spatial extent of every recurrent connection (default: the motif's)")
    ap.add_argument("--ee-strength", type=float, default=None, help="initial E->E strength")
    ap.add_argument("--input-types", default=None,
                    help="comma-separated cell types that receive the input, e.g. E,I (default per task)")
    ap.add_argument("--readout-steps", type=int, default=3)
    ap.add_argument("--channels", type=int, default=8, help="E channels per position (I: a quarter)")
    ap.add_argument("--feedback", choices=["additive", "multiplicative"], default="additive")
    ap.add_argument("--delay", type=int, default=1, help="feedback conduction delay (steps)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--tau-lr", type=float, default=0.05,
                    help="learning rate of the time constants (their raw values are in ms)")
    ap.add_argument("--rate-reg", type=float, default=1e-3, help="penalty on mean squared rates")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = TASKS[args.task]
    out = args.out or Path("runs") / f"spatial_{args.task}"
    out.mkdir(parents=True, exist_ok=True)
    size = args.size or cfg["size"]
    n_train = args.n_train or cfg["n_train"]
    n_test = args.n_test or cfg["n_test"]
    epochs = args.epochs or cfg["epochs"]

    t0 = time.time()
    data = make_visual_dataset(args.task, n_train=n_train, n_test=n_test, seed=args.seed,
                               size=size, **cfg["params"])
    x_tr, y_tr, x_te, y_te = data.x_train, data.y_train, data.x_test, data.y_test
    sequence = x_tr.dim() == 5
    steps = None if sequence else (args.steps or cfg.get("steps", 10))
    dt = args.dt or cfg.get("dt", 5.0)
    if cfg.get("split_marks"):
        # Maze images hold free space (1), walls (0) and two marks (0.5): give the marks
        # their own input channel, so that channel 0 is free space and channel 1 the marks.
        x_tr, x_te = (torch.cat([(v == 1).float(), ((v > 0) & (v < 1)).float()], -3) for v in (x_tr, x_te))
    mean, std = x_tr.mean(), x_tr.std().clamp_min(1e-6)
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    chance = float(torch.bincount(y_te, minlength=data.n_classes).max()) / len(y_te)

    table = motif("E-I", channels=args.channels)
    extent = args.extent or cfg.get("extent")
    if extent:
        for c in table.active_connections:
            table = table.update(c.pre, c.post, extent=extent)
    input_types = args.input_types or cfg.get("input_types")
    if input_types:
        table = table.with_io(inputs=input_types.split(","))
    ee = args.ee_strength or cfg.get("ee_strength")
    if ee:
        table = table.update("E", "E", strength=ee)
    plot_cell_type_table(table, out / "celltype_table.png")
    gen = torch.Generator().manual_seed(args.seed)
    net = SpatialNetwork(
        table, [(size, size), (size // 2, size // 2)], in_channels=x_tr.shape[-3],
        n_output=data.n_classes, dt=dt, learn_tau=True, tau_mode="channel",
        top_down=[TopDown(1, 0, mode=args.feedback, delay=args.delay)],
        readout_size=2, generator=gen)
    tau0 = net.tau_by_type()
    tau_params = [p for n, p in net.named_parameters() if "tau" in n]
    other = [p for n, p in net.named_parameters() if "tau" not in n]
    opt = torch.optim.Adam([{"params": other}, {"params": tau_params, "lr": args.tau_lr}], lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    k = args.readout_steps

    def loss_and_acc(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, rates = net(x, steps=steps)
        last = logits[:, -k:]
        loss = F.cross_entropy(last.reshape(-1, last.shape[-1]), y.repeat_interleave(last.shape[1]))
        loss = loss + args.rate_reg * sum(r.pow(2).mean() for r in net.record(rates).rates)
        return loss, (last.mean(1).argmax(-1) == y).float()

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> float:
        net.eval()
        with torch.no_grad():
            accs = [loss_and_acc(x[i:i + 256], y[i:i + 256])[1] for i in range(0, len(y), 256)]
        net.train()
        return float(torch.cat(accs).mean())

    history = []
    n_batches = (len(y_tr) + args.batch_size - 1) // args.batch_size
    bar = tqdm(total=epochs * n_batches, desc=args.task, unit="batch") if tqdm else None
    for epoch in range(epochs):
        perm = torch.randperm(len(y_tr), generator=gen)
        run_loss = 0.0
        for b in range(n_batches):
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            loss, acc = loss_and_acc(x_tr[idx], y_tr[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            run_loss += loss.item()
            if bar:
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc.mean().item():.2f}")
        sched.step()
        history.append(run_loss / n_batches)
        if not bar:
            print(f"epoch {epoch + 1}/{epochs} loss {history[-1]:.4f}", flush=True)
    if bar:
        bar.close()

    test_acc = evaluate(x_te, y_te)
    with torch.no_grad():
        record = net.record(net(x_te[:4], steps=steps)[1])
    plot_activity_maps(record, 0, path=out / "activity_area0.png")
    plot_activity_maps(record, 1, path=out / "activity_area1.png")
    plot_time_constants(net.tau_by_type(), tau0, dt=net.dt, path=out / "time_constants.png")
    fig = _new_figure((4, 3))
    ax = fig.add_subplot()
    ax.plot(range(1, epochs + 1), history, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(args.task)
    save_figure(fig, out / "training.png")
    result = {"task": args.task, "test_accuracy": round(test_acc, 4), "chance": round(chance, 4),
              "n_train": len(y_tr), "n_test": len(y_te), "epochs": epochs, "size": size,
              "feedback": args.feedback, "delay": args.delay, "seed": args.seed,
              "steps": record.steps, "dt": dt,
              "wall_s": round(time.time() - t0, 1)}
    line = json.dumps(result)
    (out / "result.json").write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
