"""Models keep every tensor on the model's device and dtype (float64 on CPU here; CUDA where
present, compared with the CPU)."""

import pytest
import torch

from bionn import CTRNN
from bionn.circuits import Connectome
from bionn.rate import ConnectomeRNN
from bionn.spiking.networks import coba


def _connectome():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(30, 30, generator=g) < 0.15
    mask.fill_diagonal_(False)
    post, pre = mask.nonzero(as_tuple=True)
    e = post.numel()
    return Connectome(30, pre=pre, post=post, weight=torch.rand(e, generator=g),
                      sign=torch.where(torch.rand(e, generator=g) < 0.8, 1.0, -1.0),
                      types=tuple("ab"[i % 2] for i in range(30)))


def _all_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _all_tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _all_tensors(v)


def _run_all(device, dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=dtype, device=device)
    rnn = CTRNN(3, 16, 2, e_fraction=0.75, preact_noise=0.0).to(device=device, dtype=dtype)
    out_rnn, rates, state = rnn(x, return_state=True)
    crnn = ConnectomeRNN(_connectome(), 3, 2).to(device=device, dtype=dtype)
    out_c, _ = crnn(x)
    res = coba(200, generator=torch.Generator().manual_seed(0)).run(
        5.0, seed=0, progress=False, device=device, dtype=dtype)
    return out_rnn, rates, state, out_c, res


def test_cpu_float64_stays_float64():
    out_rnn, rates, state, out_c, res = _run_all("cpu", torch.float64)
    for t in [out_rnn, rates, *state, out_c]:
        assert t.dtype == torch.float64
    floats = [t for t in _all_tensors(res.state) if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float64 for t in floats)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_matches_cpu():  # pragma: no cover - runs where a GPU exists
    cpu = _run_all("cpu", torch.float64)
    gpu = _run_all("cuda", torch.float64)
    for a, b in zip(cpu[:2] + (cpu[3],), gpu[:2] + (gpu[3],), strict=True):
        assert b.is_cuda
        torch.testing.assert_close(b.cpu(), a, rtol=1e-6, atol=1e-8)
    assert all(t.is_cuda for t in _all_tensors(gpu[4].state))
    assert abs(gpu[4].spikes["P"].count() - cpu[4].spikes["P"].count()) <= 0.05 * max(
        1, cpu[4].spikes["P"].count())
