"""Microcircuit motifs: registry, connection patterns, modification, spatial and non-spatial builds."""

import pytest
import torch

from bionn.circuits import MOTIFS, list_motifs, motif
from bionn.rate import CTRNN
from bionn.rate.spatial import SpatialArea
from bionn.viz import plot_motif


def test_registry_lists_four_motifs_with_references():
    assert list_motifs() == ["E-I", "feedforward-inhibition", "disinhibition", "E-PV-SST-VIP"]
    for m in MOTIFS.values():
        assert m.references and m.description
        assert m.build.__doc__ and any(ref.split(",")[0].split(" ")[0] in m.build.__doc__
                                       for ref in m.references)


def test_unknown_motif():
    with pytest.raises(ValueError, match="motifs are"):
        motif("V1")


def test_canonical_pattern_follows_pfeffer_2013():
    t = motif("E-PV-SST-VIP")
    has = lambda pre, post: t.connection(pre, post) is not None  # noqa: E731
    # PV inhibits E and PV; SST inhibits E, PV, VIP but not SST; VIP inhibits SST.
    assert has("PV", "E") and has("PV", "PV")
    assert has("SST", "E") and has("SST", "PV") and has("SST", "VIP") and not has("SST", "SST")
    assert has("VIP", "SST") and not has("VIP", "E")
    assert all(has("E", post) for post in ("E", "PV", "SST", "VIP"))
    assert {x.name: x.sign for x in t.types} == {"E": 1, "PV": -1, "SST": -1, "VIP": -1}


def test_feedforward_inhibition_and_disinhibition():
    ffi = motif("feedforward-inhibition")
    assert set(ffi.inputs) == {"E", "PV"} and ffi.connection("PV", "E") is not None
    assert ffi.connection("E", "PV") is None
    dis = motif("disinhibition")
    assert dis.connection("VIP", "SST") is not None and dis.connection("SST", "E") is not None
    assert "VIP" in dis.inputs


def test_motif_is_fresh_and_modifiable():
    t = motif("E-PV-SST-VIP").connect("VIP", "PV", strength=0.2).update("PV", "E", strength=3.0)
    assert t.connection("VIP", "PV").strength == 0.2
    assert motif("E-PV-SST-VIP").connection("VIP", "PV") is None  # the registry is untouched
    assert t.connection("PV", "E").strength == 3.0


@pytest.mark.parametrize("name", list_motifs())
def test_builds_spatial_and_nonspatial(name):
    t = motif(name, channels=4)
    net = CTRNN.from_cell_types(t, 1, 2, dt=5.0)
    out, rates = net(torch.rand(2, 4, 1))
    assert out.shape == (2, 4, 2) and torch.isfinite(rates).all()
    w = net.weight_rec.detach()
    mask = t.connection_mask()
    assert (w[mask == 0] == 0).all()
    area = SpatialArea(t, (6, 6), in_channels=1, dt=5.0)
    assert isinstance(area, SpatialArea)
    r, h = area(torch.rand(2, 1, 6, 6), steps=3)
    assert r.shape == (2, 3, t.n_neurons(), 6, 6) and torch.isfinite(r).all()


def test_diagram_png(tmp_path):
    plot_motif(motif("E-PV-SST-VIP"), tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_motif_names_ignore_case_and_separators():
    assert motif("e_pv_sst_vip").names == motif("E-PV-SST-VIP").names
    assert motif("e-i").names == motif("E-I").names
    with pytest.raises(ValueError, match="motifs are"):
        motif("E-PV-SST")
