"""A tour of the microcircuit motifs: list, inspect, modify, build.

    python examples/motifs_tour.py [--out runs/motifs]

For every registered motif this prints its table and writes a table figure and a
circuit diagram (PNG). It then modifies the canonical E-PV-SST-VIP circuit (adds the
weak VIP -> PV connection, makes SST -> E wider and stronger, gives PV a sigmoid),
builds a non-spatial rate network (a CTRNN with block-structured Dale masks) and
a spatially embedded area from it, runs both on a short input and checks that the
connection pattern and signs hold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bionn.circuits import MOTIFS, list_motifs, motif
from bionn.rate import CTRNN
from bionn.rate.spatial import SpatialNetwork, TopDown
from bionn.viz import plot_activity_maps, plot_cell_type_table, plot_motif


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs") / "motifs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. List and inspect.
    for name in list_motifs():
        m = MOTIFS[name]
        table = motif(name)
        print(f"== {name}: {m.description}")
        print("   sources: " + "; ".join(m.references))
        print(table.summary())
        plot_cell_type_table(table, args.out / f"{name}_table.png")
        plot_motif(table, args.out / f"{name}_diagram.png")

    # 2. Modify the canonical circuit (a new table; the registry is untouched).
    t = (motif("E-PV-SST-VIP", channels=8)
         .connect("VIP", "PV", strength=0.2, extent=3)
         .update("SST", "E", strength=1.2, extent=7)
         .update_type("PV", nonlinearity="sigmoid"))
    print("\n== modified E-PV-SST-VIP\n" + t.to_markdown())
    plot_cell_type_table(t, args.out / "modified_table.png")
    plot_motif(t, args.out / "modified_diagram.png")

    # 3. Non-spatial: a CTRNN with the type-block mask (needs one nonlinearity).
    t_rate = t.update_type("PV", nonlinearity="relu")
    net = CTRNN.from_cell_types(t_rate, n_input=2, n_output=1, n=None, dt=5.0, learn_tau=True)
    out, rates = net(torch.rand(4, 20, 2))
    w = net.weight_rec.detach()
    mask = t_rate.connection_mask()
    assert (w[mask == 0] == 0).all() and (w[:, net.sign < 0] <= 0).all()
    print(f"CTRNN({net.extra_repr()}): rates {tuple(rates.shape)}")

    # 4. Spatial: two areas of the modified circuit, top-down input onto VIP (disinhibition).
    snet = SpatialNetwork(t, [(16, 16), (8, 8)], in_channels=1, n_output=2, dt=5.0,
                          top_down=[TopDown(1, 0, cell_types=("VIP",), delay=1)])
    x = torch.zeros(1, 1, 16, 16)
    x[..., 6:10, 6:10] = 1.0
    out, rates = snet(x, steps=12)
    rec = snet.record(rates)
    print(f"spatial network: outputs {tuple(out.shape)}; area0 rates {tuple(rec.rates[0].shape)}")
    for ct in t.names:
        print(f"  area0 {ct:<4} mean rate at the end: {rec.query(0, ct, t=-1).mean().item():.4f}")
    plot_activity_maps(rec, 0, path=args.out / "activity_area0.png")
    print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
