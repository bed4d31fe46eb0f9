"""bionn.analysis.similarity: CKA, Procrustes shape distance, RDMs and RSA.

Oracles: invariances with known answers (a rotated, scaled and translated copy has CKA 1 and
Procrustes distance 0), metric axioms, scipy's pdist, and rsatoolbox 0.3.2 on the same data.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bionn.analysis.similarity import linear_cka, procrustes_distance, rdm, rsa

F64 = torch.float64


def _orthogonal(p: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=F64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


def _similar_copy(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``s x Q + b``: rotated (random orthogonal Q), isotropically scaled, translated."""
    q = _orthogonal(x.shape[1], g)
    b = torch.randn(x.shape[1], generator=g, dtype=F64) * 5
    return 2.7 * x @ q + b


# --------------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("n,p", [(200, 50), (30, 80)])  # feature-space and Gram branches
def test_rotated_scaled_translated_copy_has_cka_one_and_procrustes_zero(n, p):
    g = torch.Generator().manual_seed(n + p)
    x = torch.randn(n, p, generator=g, dtype=F64) @ torch.randn(p, p, generator=g, dtype=F64)
    y = _similar_copy(x, g)
    assert abs(linear_cka(x, y) - 1.0) < 1e-10
    assert procrustes_distance(x, y) < 1e-7
    assert procrustes_distance(x, y, angular=True) < 1e-7
    # a float32 tensor (converted to float64 inside) still passes the oracle
    assert abs(linear_cka(x.float(), y) - 1.0) < 1e-6


def test_independent_representations_have_small_cka_and_large_procrustes():
    # For independent isotropic Gaussian x, y (n conditions, p units each) linear CKA is biased
    # up to about p / (n + p) (0.2 at n=200, p=50; measured mean 0.199, sd 0.005 over 200
    # draws), so "small" means near that null value, and it shrinks with more conditions.
    g = torch.Generator().manual_seed(1)
    for n, p in [(200, 50), (2000, 50)]:
        x = torch.randn(n, p, generator=g, dtype=F64)
        y = torch.randn(n, p, generator=g, dtype=F64)
        cka = linear_cka(x, y)
        assert 0.0 <= cka < 0.25
        assert abs(cka - p / (n + p)) < 0.03
        assert procrustes_distance(x, y) > 0.5
    assert linear_cka(x, y) < 0.05  # n = 2000


def test_cka_scale_invariant_but_not_invariant_to_a_non_orthogonal_linear_map():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(100, 10, generator=g, dtype=F64)
    y = x @ torch.randn(10, 6, generator=g, dtype=F64) + 0.5 * torch.randn(100, 6, generator=g,
                                                                             dtype=F64)
    base = linear_cka(x, y)
    assert 0.1 < base < 0.99
    assert abs(linear_cka(7.5 * x, y) - base) < 1e-12
    assert abs(linear_cka(x, 0.01 * y) - base) < 1e-12
    assert abs(linear_cka(x @ _orthogonal(10, g), y) - base) < 1e-12
    # an invertible, strongly anisotropic (non-orthogonal) map changes CKA
    a = torch.diag(torch.logspace(0, 2, 10, dtype=F64)) @ _orthogonal(10, g)
    assert torch.linalg.matrix_rank(a) == 10
    assert abs(linear_cka(x @ a, y) - base) > 0.05
    # and CKA(x, x A) < 1 though x A is an invertible function of x
    assert linear_cka(x, x @ a) < 0.9


def test_cka_matches_the_hsic_definition_and_numpy_input():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 7)), rng.standard_normal((40, 12))
    h = np.eye(40) - 1.0 / 40
    k, ell = h @ x @ x.T @ h, h @ y @ y.T @ h
    ref = np.trace(k @ ell) / math.sqrt(np.trace(k @ k) * np.trace(ell @ ell))
    assert abs(linear_cka(x, y) - ref) < 1e-12
    assert abs(linear_cka(y, x) - ref) < 1e-12


# --------------------------------------------------------------------------- Procrustes
def test_procrustes_is_a_metric_on_random_triples():
    g = torch.Generator().manual_seed(4)
    n = 25
    for trial in range(20):
        widths = torch.randint(2, 9, (3,), generator=g).tolist()
        if trial % 2:
            widths[1] = widths[0]
        reps = [torch.randn(n, w, generator=g, dtype=F64) for w in widths]
        if trial % 2:  # make some of them close, so the inequality is not trivially slack
            reps[1] = reps[0] + 0.1 * reps[1]
        for angular in (False, True):
            d = {(i, j): procrustes_distance(reps[i], reps[j], angular=angular)
                 for i, j in itertools.permutations(range(3), 2)}
            for i, j in itertools.permutations(range(3), 2):
                assert abs(d[i, j] - d[j, i]) < 1e-12
                assert d[i, j] >= 0
            for i, j, k in itertools.permutations(range(3), 3):
                assert d[i, k] <= d[i, j] + d[j, k] + 1e-12
            bound = math.pi / 2 if angular else math.sqrt(2)
            assert max(d.values()) <= bound + 1e-12


def test_procrustes_matches_a_brute_force_optimal_rotation_and_the_chord_angle_relation():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(30, 4, generator=g, dtype=F64)
    y = torch.randn(30, 3, generator=g, dtype=F64)
    d, theta = procrustes_distance(x, y), procrustes_distance(x, y, angular=True)
    assert abs(d - 2 * math.sin(theta / 2)) < 1e-12
    # independent computation: the optimal Q = V U^T and ||X - Y Q||_F
    xn = x - x.mean(0)
    xn = xn / xn.norm()
    yn = y - y.mean(0)
    yn = torch.nn.functional.pad(yn / yn.norm(), (0, 1))
    u, _, vh = torch.linalg.svd(xn.T @ yn)
    q = vh.T @ u.T
    assert abs(float(torch.linalg.norm(xn - yn @ q)) - d) < 1e-12
    # no other orthogonal matrix does better
    for _ in range(50):
        assert float(torch.linalg.norm(xn - yn @ _orthogonal(4, g))) >= d - 1e-12


# --------------------------------------------------------------------------- RDM
@pytest.mark.parametrize("metric", ["correlation", "euclidean", "sqeuclidean"])
def test_rdm_symmetric_zero_diagonal_and_matches_pdist(metric):
    distance = pytest.importorskip("scipy.spatial.distance", reason="scipy not installed")

    rng = np.random.default_rng(6)
    x = rng.standard_normal((15, 9)) + 3.0
    d = rdm(torch.from_numpy(x), metric)
    assert isinstance(d, np.ndarray) and d.dtype == np.float64 and d.shape == (15, 15)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    ref = distance.squareform(distance.pdist(x, metric))
    np.testing.assert_allclose(d, ref, rtol=1e-12, atol=1e-12)


def test_rdm_matches_a_hand_computation():
    x = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 0.0, 2.0]])
    # correlation: rows centred [-1, 0, 1], [1, 0, -1], [0, -1, 1] (norms sqrt 2)
    r = np.array([[1.0, -1.0, 0.5], [-1.0, 1.0, -0.5], [0.5, -0.5, 1.0]])
    np.testing.assert_allclose(rdm(x), 1.0 - r, atol=1e-15)
    sq = np.array([[0.0, 8.0, 5.0], [8.0, 0.0, 9.0], [5.0, 9.0, 0.0]])
    np.testing.assert_allclose(rdm(x, "sqeuclidean"), sq, atol=1e-13)
    np.testing.assert_allclose(rdm(x, "euclidean"), np.sqrt(sq), atol=1e-13)


# --------------------------------------------------------------------------- RSA
@pytest.mark.parametrize("metric", ["correlation", "euclidean", "sqeuclidean"])
@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_rsa_of_a_representation_with_itself_is_one(metric, compare):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(12, 5, generator=g, dtype=F64)
    assert abs(rsa(x, x, metric, compare) - 1.0) < 1e-12


def test_rsa_spearman_is_unchanged_by_a_monotone_map_of_dissimilarities_pearson_is_not():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(10, 4, generator=g, dtype=F64)
    y = x + 0.7 * torch.randn(10, 4, generator=g, dtype=F64)
    assert rsa(x, y, "euclidean") == pytest.approx(rsa(x, y, "sqeuclidean"), abs=1e-14)
    p1, p2 = rsa(x, y, "euclidean", "pearson"), rsa(x, y, "sqeuclidean", "pearson")
    assert abs(p1 - p2) > 1e-4
    # hand check of Spearman with ties: rows placed on a line give tied distances
    a = np.array([[0.0], [1.0], [2.0], [3.0]])
    b = np.array([[0.0], [1.0], [3.0], [6.0]])
    # upper triangles (euclidean): a -> 1 2 3 1 2 1, b -> 1 3 6 2 5 3
    ra, rb = np.array([2, 4.5, 6, 2, 4.5, 2]), np.array([1, 3.5, 6, 2, 5, 3.5])
    assert rsa(a, b, "euclidean") == pytest.approx(np.corrcoef(ra, rb)[0, 1], abs=1e-14)


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs_are_refused_naming_the_argument():
    x, y = np.zeros((5, 3)) + np.arange(5)[:, None], np.ones((4, 3))
    rnd = np.random.default_rng(9).standard_normal((5, 3))
    with pytest.raises(ValueError, match="x and y must have the same conditions"):
        linear_cka(rnd, y)
    with pytest.raises(ValueError, match="x and y must have the same conditions"):
        procrustes_distance(rnd, y)
    with pytest.raises(ValueError, match="x and y must have the same conditions"):
        rsa(rnd, y)
    with pytest.raises(ValueError, match="x needs at least 2 conditions"):
        linear_cka(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="y needs at least 2 conditions"):
        procrustes_distance(np.ones((2, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="x needs at least 2 conditions"):
        rdm(np.ones((1, 3)))
    with pytest.raises(ValueError, match="x needs at least 3 conditions"):
        rsa(rnd[:2], rnd[:2])
    with pytest.raises(ValueError, match="x must be 2-D"):
        linear_cka(np.ones(5), rnd)
    with pytest.raises(ValueError, match="y must be 2-D"):
        procrustes_distance(rnd, torch.ones(5, 3, 1))
    with pytest.raises(ValueError, match="x must be 2-D"):
        rdm(torch.ones(5))
    with pytest.raises(ValueError, match="metric must be one of"):
        rdm(rnd, "cosine")
    with pytest.raises(ValueError, match="metric must be one of"):
        rsa(rnd, rnd, metric="manhattan")
    with pytest.raises(ValueError, match="compare must be one of"):
        rsa(rnd, rnd, compare="kendall")
    with pytest.raises(ValueError, match="y is constant across conditions"):
        linear_cka(rnd, np.ones((5, 3)))
    with pytest.raises(ValueError, match="x is constant across conditions"):
        procrustes_distance(np.ones((5, 3)), rnd)
    with pytest.raises(ValueError, match=r"y rows \[0, 1, 2, 3, 4\] are constant"):
        rsa(rnd, x)  # every row of x here is constant across its units
    with pytest.raises(ValueError, match="x has non-finite"):
        linear_cka(np.full((5, 3), np.nan), rnd)


# --------------------------------------------------------------------------- rsatoolbox
def _rsatoolbox():
    return pytest.importorskip(
        "rsatoolbox", reason="rsatoolbox not installed (pip install 'bionn[analysis]')")


@pytest.mark.reference
def test_rdm_matches_rsatoolbox():
    rsatoolbox = _rsatoolbox()
    rng = np.random.default_rng(10)
    x = rng.standard_normal((14, 30)) + 1.0
    ds = rsatoolbox.data.Dataset(x)
    ref_corr = rsatoolbox.rdm.calc_rdm(ds, method="correlation").get_matrices()[0]
    np.testing.assert_allclose(rdm(x, "correlation"), ref_corr, rtol=0, atol=1e-13)
    # rsatoolbox's "euclidean" RDM is the squared euclidean distance / number of channels
    ref_euc = rsatoolbox.rdm.calc_rdm(ds, method="euclidean").get_matrices()[0]
    np.testing.assert_allclose(rdm(x, "sqeuclidean") / x.shape[1], ref_euc, rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_allclose(rdm(x, "euclidean"), np.sqrt(ref_euc * x.shape[1]), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.reference
@pytest.mark.parametrize("metric,rsa_metric", [("correlation", "correlation"),
                                               ("euclidean", "sqeuclidean")])
@pytest.mark.parametrize("compare,method", [("spearman", "spearman"), ("pearson", "corr")])
def test_rsa_matches_rsatoolbox_compare(metric, rsa_metric, compare, method):
    rsatoolbox = _rsatoolbox()
    rng = np.random.default_rng(11)
    x = rng.standard_normal((16, 25))
    y = x[:, :12] @ rng.standard_normal((12, 9)) + 2.0 * rng.standard_normal((16, 9))
    rdm_x = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=metric)
    rdm_y = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(y), method=metric)
    ref = float(rsatoolbox.rdm.compare(rdm_x, rdm_y, method=method)[0, 0])
    ours = rsa(x, y, metric=rsa_metric, compare=compare)
    assert 0.05 < abs(ref) < 0.99  # a non-trivial comparison
    assert ours == pytest.approx(ref, abs=1e-12)
