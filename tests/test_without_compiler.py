"""Without a C++ compiler every compiled pass falls back to PyTorch's operations."""

import os
import subprocess
import sys
import textwrap

SNIPPET = textwrap.dedent("""
    import torch
    from torch import nn
    from bionn._core import native
    from bionn.functional import philox
    from bionn.learning import convert
    from bionn.plasticity import BioConverter
    from bionn.sparse import SparseStructure, _native, spmm

    assert native.compiler() is None and not philox.available()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    bio = BioConverter({"fuzzy_learning_rates": True, "crystallization": True,
                        "volume_dependent_lr": True, "dale": {"skip_input": False}}).convert(net)
    opt = torch.optim.SGD(bio.model.parameters(), lr=0.1)
    bio.attach(opt)
    bio.model(torch.randn(4, 6)).sum().backward()
    opt.step()
    assert bio.backend == "torch" and "compiler" in bio.backend_reason, bio.backend_reason
    w = bio.model[2].weight
    assert type(w.grad_fn).__name__ != "_AbsTimesSignBackward"
    split = BioConverter(weight_splitting={"gamma": 2}).convert(net).model  # the fold on PyTorch
    xs = torch.randn(4, 6)
    h = net[0](xs)
    expected = h.unflatten(1, (4, 2)).sum(2).repeat_interleave(2, 1)
    assert torch.allclose(split[0](xs), expected, atol=1e-6)
    split(xs).sum().backward()
    assert torch.equal(split[0].weight.grad[0], split[0].weight.grad[1])
    for method in ("brsf", "wm"):
        m = convert(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)), method).model
        m(torch.randn(4, 6)).sum().backward()
        if method == "wm":
            m[2].rule.mirror(m[2].weight)
    s, _ = SparseStructure.from_edges(torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2]), (2, 3))
    v, x = torch.tensor([2.0, 3.0, -1.0], requires_grad=True), torch.ones(2, 3, requires_grad=True)
    assert not _native.applies(s.crow, s.col, v, x, x)
    spmm(v, s, x).sum().backward()
    assert v.grad.tolist() == [2.0, 2.0, 2.0] and x.grad.tolist() == [[3.0, 2.0, -1.0]] * 2
    try:
        BioConverter(volume_dependent_lr=True, backend="cpp").convert(nn.Linear(3, 2))
    except ValueError as e:
        assert "no C++ compiler" in str(e)
    else:
        raise AssertionError("backend 'cpp' without a compiler was accepted")
    print("ok")
""")


def test_every_compiled_pass_falls_back_without_a_compiler(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env.update(PATH=str(tmp_path), BIONN_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
