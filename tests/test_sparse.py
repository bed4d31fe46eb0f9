"""bionn.sparse: spmm against dense matmul, gradients, determinism, O(nnz) value gradient."""

import sys

import pytest
import torch

from bionn.sparse import SparseStructure, spmm, value_grad


def _random(n_post=40, n_pre=30, density=0.1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_post, n_pre, generator=g) < density
    post, pre = mask.nonzero(as_tuple=True)
    perm = torch.randperm(post.numel(), generator=g)  # unsorted input order
    post, pre = post[perm], pre[perm]
    s, order = SparseStructure.from_edges(post, pre, (n_post, n_pre))
    vals_edge = torch.randn(post.numel(), generator=g, dtype=dtype)
    dense = torch.zeros(n_post, n_pre, dtype=dtype)
    dense[post, pre] = vals_edge
    return s, vals_edge[order], dense, g


def test_structure_order_and_transpose():
    s, v, dense, _ = _random()
    assert torch.equal(s.to_dense(v), dense)
    assert torch.equal(s.csr(v).to_dense(), dense)
    assert torch.equal(s.csr_t(v).to_dense(), dense.t())
    assert s.nnz == int((dense != 0).sum())


def test_transpose_order_is_computed_once_on_first_use():
    """The transpose order (8 bytes per synapse) is computed when PyTorch's path first
    needs it, kept, and never by the compiled passes."""
    from bionn.sparse import _native

    s, v, dense, g = _random(50, 60, 0.2, dtype=torch.float32)
    assert s.transpose_cache == {}  # from_edges computes no transpose order
    if _native.applies(s.crow, s.col, v, torch.ones(2, 60), torch.ones(2, 60)):
        vv, x = v.clone().requires_grad_(True), torch.randn(2, 60, requires_grad=True)
        spmm(vv, s, x).sum().backward()
        assert s.transpose_cache == {}  # the compiled passes did not need it
    row, col = s.row.long(), s.col.long()
    expected = torch.sort(col * 50 + row, stable=True).indices  # by column, then row
    t_perm = s.t_perm
    assert torch.equal(t_perm.long(), expected) and torch.equal(s.t_col.long(), row[expected])
    assert t_perm.dtype == s.col.dtype and s.t_perm is t_perm  # computed once, kept
    moved = s.to("cpu")
    assert moved.transpose_cache == {} and torch.equal(moved.t_perm, t_perm)
    shared = SparseStructure(s.shape, s.crow, s.col, s.t_crow, s.transpose_cache)
    assert shared.t_perm is t_perm  # a model hands one cache to every structure it builds


def test_models_keep_no_transpose_order_until_it_is_needed():
    from bionn.circuits import Connectome
    from bionn.rate import ConnectomeRNN

    torch.manual_seed(0)
    n = 20
    mask = torch.rand(n, n) < 0.2
    post, pre = mask.nonzero(as_tuple=True)
    c = Connectome(n, pre=pre, post=post, weight=1.0, sign=1.0)
    m = ConnectomeRNN(c, n_input=2, n_output=1)
    names = {k for k, _ in m.named_buffers()}
    assert not any("t_perm" in k or "t_col" in k for k in names)
    first = m.structure.t_perm
    assert m.structure.t_perm is first  # kept by the model across structures


def test_structure_rejects_duplicates_and_range():
    with pytest.raises(ValueError, match="duplicate"):
        SparseStructure.from_edges(torch.tensor([0, 0]), torch.tensor([1, 1]), (2, 2))
    with pytest.raises(ValueError, match="post indices"):
        SparseStructure.from_edges(torch.tensor([2]), torch.tensor([0]), (2, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spmm_matches_dense(dtype):
    s, v, dense, g = _random(dtype=dtype)
    x = torch.randn(5, 30, generator=g, dtype=dtype)
    v1 = v.clone().requires_grad_(True)
    x1 = x.clone().requires_grad_(True)
    y = spmm(v1, s, x1)
    d2 = dense.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    y2 = x2 @ d2.t()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y, y2, atol=tol, rtol=tol)
    gy = torch.randn_like(y)
    y.backward(gy)
    y2.backward(gy)
    torch.testing.assert_close(x1.grad, x2.grad, atol=tol, rtol=tol)
    torch.testing.assert_close(v1.grad, d2.grad[s.row.long(), s.col.long()], atol=tol, rtol=tol)
    assert v1.grad.shape == (s.nnz,)  # gradient only on stored entries


def test_spmm_leading_dims_and_errors():
    s, v, dense, g = _random(dtype=torch.float32)
    x = torch.randn(2, 3, 30, generator=g)
    torch.testing.assert_close(spmm(v, s, x), x @ dense.t(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="presynaptic"):
        spmm(v, s, torch.randn(2, 31))
    with pytest.raises(ValueError, match="one per stored entry"):
        spmm(v[:-1], s, x)
    with pytest.raises(TypeError, match="dtype"):
        spmm(v.double(), s, x)


def test_gradcheck():
    s, v, _, g = _random(12, 9, 0.3)
    x = torch.randn(3, 9, generator=g, dtype=torch.float64, requires_grad=True)
    v = v.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda vv, xx: spmm(vv, s, xx), (v, x))


def test_value_grad_methods_agree():
    s, _, _, g = _random(50, 60, 0.2, dtype=torch.float32)
    gg, x = torch.randn(4, 50, generator=g), torch.randn(4, 60, generator=g)
    ref = (gg[:, s.row.long()] * x[:, s.col.long()]).sum(0)
    torch.testing.assert_close(value_grad(s, gg, x, method="sampled"), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value_grad(s, gg, x, method="chunked"), ref, atol=1e-5, rtol=1e-5)


def test_deterministic_bitwise():
    s, v, _, g = _random(300, 300, 0.05, dtype=torch.float32)
    x = torch.randn(8, 300, generator=g)
    gy = torch.randn(8, 300, generator=g)

    def run():
        vv, xx = v.clone().requires_grad_(True), x.clone().requires_grad_(True)
        y = spmm(vv, s, xx)
        y.backward(gy)
        return y, vv.grad, xx.grad

    a, b = run(), run()
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p, q)


def test_empty_rows_and_no_grad_inputs():
    s, _ = SparseStructure.from_edges(torch.tensor([3]), torch.tensor([0]), (5, 2))
    v = torch.tensor([2.0], requires_grad=True)
    y = spmm(v, s, torch.ones(1, 2))
    assert y.tolist() == [[0.0, 0.0, 0.0, 2.0, 0.0]]
    y.sum().backward()
    assert v.grad.tolist() == [1.0]


def test_value_grad_and_transpose_write_into_a_given_buffer():
    s, v, dense, g = _random(50, 60, 0.2, dtype=torch.float32)
    gg, x = torch.randn(4, 50, generator=g), torch.randn(4, 60, generator=g)
    for method in ("sampled", "chunked"):
        buf = torch.full((s.nnz,), float("nan"))
        out = value_grad(s, gg, x, method=method, values=v, out=buf)
        assert out.data_ptr() == buf.data_ptr()
        torch.testing.assert_close(out, value_grad(s, gg, x, method=method), atol=0, rtol=0)
    buf = torch.empty(s.nnz)
    assert torch.equal(s.csr_t(v, out=buf).to_dense(), dense.t()) and torch.equal(buf, v[s.t_perm.long()])


@pytest.mark.parametrize("need", ["both", "values", "x"])
def test_backward_shares_one_buffer_and_matches_dense(need):
    """The transpose's values and then the value gradient share one (nnz,) buffer."""
    s, v, dense, g = _random(40, 30, 0.3, dtype=torch.float64)
    x = torch.randn(5, 30, generator=g, dtype=torch.float64)
    gy = torch.randn(5, 40, generator=g, dtype=torch.float64)
    vv, xx = v.clone().requires_grad_(need != "x"), x.clone().requires_grad_(need != "values")
    spmm(vv, s, xx).backward(gy)
    dd = dense.clone().requires_grad_(True)
    xd = x.clone().requires_grad_(True)
    (xd @ dd.t()).backward(gy)
    if need != "x":
        torch.testing.assert_close(vv.grad, dd.grad[s.row.long(), s.col.long()])
    if need != "values":
        torch.testing.assert_close(xx.grad, xd.grad)


def _grads(s, v, x, gy, need=(True, True)):
    vv, xx = v.clone().requires_grad_(need[0]), x.clone().requires_grad_(need[1])
    spmm(vv, s, xx).backward(gy)
    return vv.grad, xx.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3, 4, 8, 13, 16, 21])
def test_compiled_backward_matches_pytorch_path(dtype, batch, monkeypatch):
    """The one-pass compiled backward against the transpose / sampled_addmm path."""
    from bionn.sparse import _native

    s, v, dense, g = _random(70, 50, 0.2, dtype=dtype)
    x = torch.randn(batch, 50, generator=g, dtype=dtype)
    gy = torch.randn(batch, 70, generator=g, dtype=dtype)
    x[0, 3] = 0.0  # zeros and a row with no synapses are ordinary inputs
    if not _native.applies(s.crow, s.col, v, gy, x):
        pytest.skip("no C++ compiler: the compiled backward is not built")
    compiled = [_grads(s, v, x, gy, need) for need in ((True, True), (True, False), (False, True))]
    monkeypatch.setattr(_native, "applies", lambda *a: False)
    reference = [_grads(s, v, x, gy, need) for need in ((True, True), (True, False), (False, True))]
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    for a, b in zip(compiled, reference, strict=True):
        for p, q in zip(a, b, strict=True):
            assert (p is None) == (q is None)
            if p is not None:
                torch.testing.assert_close(p, q, **tol)
    dd = dense.clone().requires_grad_(True)
    (x @ dd.t()).backward(gy)
    torch.testing.assert_close(compiled[0][0], dd.grad[s.row.long(), s.col.long()], **tol)


@pytest.mark.parametrize("batch", [1, 8, 13])
def test_compiled_backward_is_the_same_at_any_thread_count(batch, monkeypatch):
    """Jobs split rows (value gradient) and columns (dx), each summed in one fixed order."""
    from bionn.sparse import _native

    s, v, _, g = _random(300, 280, 0.1, dtype=torch.float32)
    x, gy = torch.randn(batch, 280, generator=g), torch.randn(batch, 300, generator=g)
    if not _native.applies(s.crow, s.col, v, gy, x):
        pytest.skip("no C++ compiler: the compiled backward is not built")
    monkeypatch.setattr(_native, "_SYNAPSES_PER_THREAD", 64)  # several jobs on a small matrix
    old = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 5):
            torch.set_num_threads(threads)
            results += [_grads(s, v, x, gy, need) for need in ((True, True), (True, False), (False, True))]
    finally:
        torch.set_num_threads(old)
    for k in range(3, len(results)):
        for p, q in zip(results[k], results[k % 3], strict=True):
            assert (p is None and q is None) or torch.equal(p, q)


def test_backward_with_create_graph_is_differentiable(monkeypatch):
    """With create_graph the backward runs differentiable operations, not the compiled pass."""
    from bionn.sparse import _native

    s, v, _, g = _random(12, 9, 0.4, dtype=torch.float64)
    x, gy = torch.randn(4, 9, generator=g, dtype=torch.float64), torch.randn(4, 12, generator=g, dtype=torch.float64)
    vv, xx = v.clone().requires_grad_(True), x.clone().requires_grad_(True)
    calls = []
    monkeypatch.setattr(_native, "backward", lambda *a: calls.append(a))
    dv, dx = torch.autograd.grad(spmm(vv, s, xx), (vv, xx), gy, create_graph=True)
    assert not calls
    monkeypatch.undo()
    for p, q in zip((dv, dx), _grads(s, v, x, gy), strict=True):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradgradcheck(lambda a, b: spmm(a, s, b), (vv, xx))


def test_empty_mapped_buffer_lives_with_its_tensor():
    """The gradient buffer in its own mapping: right size, writable, kept alive by the tensor."""
    import gc

    from bionn._core import native

    t = native.empty_mapped(3_000_001, torch.float32)
    assert t.shape == (3_000_001,) and t.dtype == torch.float32 and t.is_contiguous()
    t.fill_(2.5)
    gc.collect()
    assert float(t[-1]) == 2.5 and float(t.sum(dtype=torch.float64)) == 2.5 * 3_000_001
    if sys.platform.startswith("linux"):
        assert t.data_ptr() % (1 << 21) == 0  # its own 2 MB-aligned mapping (huge pages)
    d = native.empty_mapped(5, torch.float64)
    d.copy_(torch.arange(5.0, dtype=torch.float64))
    assert d.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_plain_eager_detects_dispatch_modes():
    from torch.utils._python_dispatch import TorchDispatchMode

    from bionn._core import native

    class Passthrough(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    t = torch.ones(3)
    assert native.plain_eager(t, torch.nn.Parameter(t))
    with Passthrough():
        assert not native.plain_eager(t)


def _pool_runs_a_job() -> bool:
    from bionn.sparse import _native

    return _native._pool().submit(lambda: 41 + 1).result(timeout=60) == 42


def test_backward_thread_pool_works_in_a_forked_child():
    """A child made by fork after the parent used the thread pool gets threads of its own
    (the parent's pool would take jobs and never run them)."""
    import multiprocessing as mp

    from bionn.sparse import _native

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork start method here")
    assert _pool_runs_a_job()  # the parent's pool now has a thread
    parent_pool = _native._pool()
    with mp.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_pool_runs_a_job).get(timeout=120)
    assert _native._pool() is parent_pool


@pytest.mark.parametrize("path", ["compiled", "torch"])
def test_empty_batch_and_no_synapses(path, monkeypatch):
    """A batch of 0 samples and a matrix with no entries give zero gradients of the right shapes."""
    from bionn.sparse import _native

    if path == "torch":
        monkeypatch.setattr(_native, "applies", lambda *a: False)
    s, _ = SparseStructure.from_edges(torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2]), (2, 3))
    v = torch.tensor([2.0, 3.0, -1.0], requires_grad=True)
    x = torch.zeros(0, 3, requires_grad=True)
    spmm(v, s, x).sum().backward()
    assert v.grad.tolist() == [0.0, 0.0, 0.0] and x.grad.shape == (0, 3)
    empty, _ = SparseStructure.from_edges(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), (2, 3))
    v0, x0 = torch.zeros(0, requires_grad=True), torch.ones(4, 3, requires_grad=True)
    spmm(v0, empty, x0).sum().backward()
    assert v0.grad.shape == (0,) and torch.equal(x0.grad, torch.zeros(4, 3))


def test_non_contiguous_indices_take_the_pytorch_path():
    from bionn.sparse import _native

    s, v, dense, g = _random(20, 15, 0.3, dtype=torch.float32)
    strided = torch.stack([s.col, s.col], 1)[:, 0]  # the same numbers, every other element
    assert not strided.is_contiguous()
    x, gy = torch.randn(3, 15, generator=g), torch.randn(3, 20, generator=g)
    assert not _native.applies(s.crow, strided, v, gy, x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3, 8, 16, 21])
def test_compiled_forward_matches_pytorch_path_at_any_thread_count(dtype, batch, monkeypatch):
    """The compiled forward (rows in CSR order) against torch.sparse.mm and the dense product."""
    from bionn.sparse import _native

    s, v, dense, g = _random(90, 70, 0.15, dtype=dtype)
    x = torch.randn(batch, 70, generator=g, dtype=dtype)
    if not _native.applies(s.crow, s.col, v, x, x):
        pytest.skip("no C++ compiler: the compiled forward is not built")
    monkeypatch.setattr(_native, "_SYNAPSES_PER_THREAD", 32)
    old = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(spmm(v, s, x))
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    torch.testing.assert_close(outs[0], x @ dense.t(), **tol)
    monkeypatch.setattr(_native, "applies", lambda *a: False)
    torch.testing.assert_close(outs[0], spmm(v, s, x), **tol)
