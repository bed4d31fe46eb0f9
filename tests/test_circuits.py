import pytest
import torch

from bionn.circuits import (
    Circuit,
    Connectivity,
    MultiArea,
    MultiAreaEI,
    RandomInput,
    fixed_prob,
)


def test_multi_area_block_densities_follow_the_matrix():
    density = [[0.5, 0.0, 0.0], [0.3, 0.5, 0.0], [0.0, 0.3, 0.5]]  # feedforward chain 0 -> 1 -> 2
    c = MultiArea([200, 200, 200], density, n_input=2, n_output=1, input_areas=[0],
                  readout_areas=[2]).build(torch.Generator().manual_seed(0))
    m = c.recurrent.mask
    blocks = [slice(0, 200), slice(200, 400), slice(400, 600)]
    for i, post in enumerate(blocks):
        for j, pre in enumerate(blocks):
            assert abs(m[post, pre].mean().item() - density[i][j]) < 0.02, (i, j)
    assert (torch.diagonal(m) == 0).all()  # no autapses by default
    assert (c.input_mask[:200] == 1).all() and (c.input_mask[200:] == 0).all()
    assert (c.readout_mask[:, 400:] == 1).all() and (c.readout_mask[:, :400] == 0).all()
    assert c.area.tolist() == [0] * 200 + [1] * 200 + [2] * 200


def test_multi_area_ei_only_chosen_pathways_cross_areas():
    c = MultiAreaEI([50, 50], 1.0, n_input=1, n_output=1, e_fraction=[0.8, 0.6],
                    cross_pathways=("E->E",)).build(torch.Generator().manual_seed(0))
    sign, area, m = c.sign, c.area, c.recurrent.mask
    assert int((sign[:50] > 0).sum()) == 40 and int((sign[50:] > 0).sum()) == 30
    cross = area[:, None] != area[None, :]
    pre_e, post_e = (sign > 0)[None, :], (sign > 0)[:, None]
    assert (m[cross & pre_e & post_e] == 1).all()
    assert (m[cross & ~(pre_e & post_e)] == 0).all()
    within = ~cross & ~torch.eye(100, dtype=torch.bool)
    assert (m[within] == 1).all()
    # readout from E neurons of the last area only
    ro = c.readout_mask[0]
    assert (ro[:50] == 0).all() and (ro[50:] == (sign[50:] > 0).float()).all()


def test_random_input_subsets_and_overlap():
    c = RandomInput(200, 3, 2, input_fraction=0.25, readout_fraction=0.2, overlap=0.5).build(
        torch.Generator().manual_seed(3))
    inp = c.input_mask[:, 0] == 1
    out = c.readout_mask[0] == 1
    assert int(inp.sum()) == 50 and int(out.sum()) == 40
    assert int((inp & out).sum()) == 20
    assert (c.input_mask == c.input_mask[:, :1]).all()  # every channel, same subset
    with pytest.raises(ValueError, match="overlap"):
        RandomInput(10, 1, 1, input_fraction=0.9, readout_fraction=0.5, overlap=0.0)


def test_builders_are_reproducible_under_a_seed():
    spec = MultiAreaEI([30, 20], 0.3, n_input=2, n_output=2)
    a = spec.build(torch.Generator().manual_seed(5)).recurrent.mask
    b = spec.build(torch.Generator().manual_seed(5)).recurrent.mask
    c = spec.build(torch.Generator().manual_seed(6)).recurrent.mask
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MultiArea([10, -1]), "area_sizes"),
        (lambda: MultiArea([10, 10], [[0.1, 0.2]]), "2x2"),
        (lambda: MultiArea([10, 10], 1.5), r"\[0, 1\]"),
        (lambda: MultiArea([10, 10], input_areas=[2]), "input_areas"),
        (lambda: MultiAreaEI([10, 10], e_fraction=[0.5]), "e_fraction"),
        (lambda: MultiAreaEI([10], e_fraction=0.99), "e_fraction"),
        (lambda: MultiAreaEI([10, 10], cross_pathways=["E->X"]), "cross_pathways"),
        (lambda: Connectivity(torch.ones(2, 3), sign=torch.ones(2)), "presynaptic"),
        (lambda: Circuit(Connectivity(torch.ones(3, 3)), input_mask=torch.ones(2, 1)), "input_mask"),
        (lambda: fixed_prob(3, 3, 2.0), "probability"),
    ],
)
def test_bad_structures_fail_clearly(make, match):
    with pytest.raises(ValueError, match=match):
        make()
