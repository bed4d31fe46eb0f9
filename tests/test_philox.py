"""The compiled counter-based generator (bionn.functional.philox): Philox4x32-10 against
Random123's known answers, the distributions of its uniforms and normals, streams and
keys, and brSF's one-pass draw."""

import pytest
import torch

from bionn.functional import philox

pytestmark = pytest.mark.skipif(not philox.available(),
                                reason="no C++ compiler: the generator cannot be built")


def test_philox4x32_10_known_answers():
    assert philox.philox4x32((0, 0, 0, 0), (0, 0)) == (
        0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert philox.philox4x32((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2) == (
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert philox.philox4x32((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
                             (0xA4093822, 0x299F31D0)) == (
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


def test_normals_are_standard_normal_per_stream_and_key():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed")
    xi = philox.normal(1_000_000, key=2026, stream=0)
    assert stats.kstest(xi.double().numpy(), "norm").pvalue > 1e-3
    assert abs(float(xi.mean())) < 5e-3 and abs(float(xi.std()) - 1) < 5e-3
    assert 4.5 < float(xi.abs().max()) < 5.78  # tails reached; |z| <= sqrt(2 ln 2**24)
    other = philox.normal(1_000_000, key=2026, stream=1)
    assert abs(float(torch.corrcoef(torch.stack([xi, other]))[0, 1])) < 5e-3
    assert torch.equal(philox.normal(1000, key=2026, stream=0), xi[:1000])  # by index
    assert not torch.equal(philox.normal(1000, key=2027, stream=0), xi[:1000])
    # pairs (k, k + 16) of a chunk share one Box-Muller draw: cos and sin parts
    lag = torch.corrcoef(torch.stack([xi[:-16], xi[16:]]))[0, 1]
    assert abs(float(lag)) < 5e-3


def test_uniforms_are_uniform_on_the_24_bit_grid():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed")
    u = philox.uniform(1_000_000, key=7)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert torch.equal(u * 2**24, (u * 2**24).round())
    assert stats.kstest(u.double().numpy(), "uniform").pvalue > 1e-3
    with torch.random.fork_rng():
        torch.manual_seed(0)
        k1 = philox.draw_key()
        torch.manual_seed(0)
        assert philox.draw_key() == k1  # the key follows torch.manual_seed


def test_sign_concordant_draw_in_one_pass():
    w = torch.randn(37, 29)
    w[0, :3] = 0.0
    m, b = torch.empty_like(w), torch.empty_like(w)
    philox.sign_concordant_uniform_(w, m, b, 0.25, key=11)
    assert torch.equal(m, 0.25 * philox.uniform(w.numel(), key=11).view_as(w))
    assert torch.equal(b, torch.sign(w) * m)
