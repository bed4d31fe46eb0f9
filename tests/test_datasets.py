"""Datasets: offline loaders, determinism, file formats, safe unpickling."""

import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from bionn.tasks.datasets import (
    DATASETS,
    iterate_minibatches,
    load_cifar10,
    load_dataset,
    load_digits,
    load_idx_dataset,
    load_mnist1d,
    read_idx,
    split_validation,
)
from dataset_files import idx_bytes, write_cifar, write_idx

# --------------------------------------------------------------------------- digits


def test_digits_shapes_balance_and_determinism():
    pytest.importorskip("sklearn")
    data = load_digits(seed=0)
    assert data.x_train.shape[1:] == (1, 8, 8) and data.input_shape == (1, 8, 8)
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.n_classes == 10 and data.x_train.dtype == torch.float32
    test_counts = torch.bincount(data.y_test, minlength=10)
    train_counts = torch.bincount(data.y_train, minlength=10)
    assert test_counts.max() - test_counts.min() <= 2  # stratified: ~36 per class
    assert train_counts.min() >= 139
    frac = test_counts.float() / (test_counts + train_counts).float()
    assert torch.allclose(frac, torch.full((10,), 0.2), atol=0.01)
    # standardised with train statistics
    flat = data.x_train.flatten(1)
    assert flat.mean().abs() < 1e-4
    again = load_digits(seed=0)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    other = load_digits(seed=1)
    assert not torch.equal(other.y_test, data.y_test)
    flat_data = load_digits(flatten=True, val_size=100)
    assert flat_data.x_train.shape[1:] == (64,) and flat_data.x_val.shape == (100, 64)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)
    big = load_digits(seed=0, size=28, standardize=False)
    assert big.x_train.shape[1:] == (1, 28, 28) and torch.equal(big.y_test, data.y_test)
    # bilinear upsampling keeps each image's mean brightness (away from the border)
    small = load_digits(seed=0, standardize=False)
    torch.testing.assert_close(big.x_train.mean((1, 2, 3)), small.x_train.mean((1, 2, 3)),
                               atol=0.03, rtol=0)
    with pytest.raises(ValueError, match="size"):
        load_digits(size=4)


# --------------------------------------------------------------------------- MNIST-1D


def test_mnist1d_shapes_and_determinism():
    data = load_mnist1d()
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.input_shape == (40,) and data.n_classes == 10
    assert set(data.y_train.tolist()) == set(range(10))
    again = load_mnist1d()
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    assert not torch.equal(load_mnist1d(seed=0).x_train, data.x_train)
    state = np.random.get_state()[1].copy()
    load_mnist1d(num_samples=50)
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG untouched


def test_mnist1d_matches_reference_package():
    mnist1d_data = pytest.importorskip("mnist1d.data")
    saved = np.random.get_state()
    try:
        ref = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
    finally:
        np.random.set_state(saved)
    data = load_mnist1d()
    np.testing.assert_allclose(data.x_train.numpy(), ref["x"], atol=1e-5)
    np.testing.assert_allclose(data.x_test.numpy(), ref["x_test"], atol=1e-5)
    assert np.array_equal(data.y_train.numpy(), ref["y"])
    assert np.array_equal(data.y_test.numpy(), ref["y_test"])


def test_mnist1d_mlp_beats_chance():
    from bionn.models import mlp_mnist1d

    data = load_mnist1d()
    torch.manual_seed(0)
    model = mlp_mnist1d()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    steps = 0
    while steps < 400:
        for xb, yb in iterate_minibatches(data.x_train, data.y_train, 100, gen):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
            steps += 1
    with torch.no_grad():
        acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    assert acc > 0.4, acc  # chance is 0.1


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_plain_and_gz(tmp_path, gz):
    arrays = write_idx(tmp_path, gz=gz)
    data = load_idx_dataset(tmp_path, "mnist", normalize=False)
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (5, 1, 28, 28)
    expected = torch.as_tensor(arrays["train-images-idx3-ubyte"] / 255.0, dtype=torch.float32)
    assert torch.allclose(data.x_train[:, 0], expected)
    assert data.y_test.tolist() == [0, 1, 2, 3, 4] and data.y_train.dtype == torch.int64
    norm = load_idx_dataset(tmp_path, "fashion_mnist", flatten=True, val_size=2)
    assert norm.name == "fashion_mnist" and norm.x_train.shape == (10, 784)
    assert norm.x_val.shape == (2, 784)
    assert norm.x_train.mean().abs() < 0.1  # standardised on the training part


def test_idx_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, gz=True)
    assert len(load_dataset("mnist", root=tmp_path).x_train) == 12


def test_idx_missing_files_are_named(tmp_path):
    write_idx(tmp_path, skip=("t10k-images-idx3-ubyte", "train-labels-idx1-ubyte"))
    with pytest.raises(FileNotFoundError) as err:
        load_idx_dataset(tmp_path, "mnist")
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg
    assert str(tmp_path) in msg
    assert "missing IDX file(s) ['train-labels-idx1-ubyte', 't10k-images-idx3-ubyte']" in msg
    with pytest.raises(ValueError, match="unknown IDX dataset 'kmnist'"):
        load_idx_dataset(tmp_path, "kmnist")


def test_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "y"
    short.write_bytes(idx_bytes(np.zeros((3, 4)))[:-2])
    with pytest.raises(ValueError, match="header says shape"):
        read_idx(short)


# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_loader(tmp_path, protocol):
    folder = write_cifar(tmp_path, protocol=protocol)
    data = load_cifar10(tmp_path, normalize=False)
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    assert data.y_train.dtype == torch.int64 and data.y_test.tolist() == [5, 6, 7, 8, 9, 0]
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    with open(folder / "test_batch", "rb") as fh:
        raw = pickle.load(fh)[b"data"]
    assert torch.allclose(data.x_test * 255, torch.as_tensor(raw.reshape(-1, 3, 32, 32)).float())
    # the folder itself as root, validation split, per-channel normalisation
    val = load_cifar10(folder, val_size=5, seed=0)
    assert val.x_train.shape[0] == 25 and val.x_val.shape == (5, 3, 32, 32)
    assert val.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    again = load_cifar10(folder, val_size=5, seed=0)
    assert torch.equal(again.y_val, val.y_val)


def test_cifar_str_keys(tmp_path):
    write_cifar(tmp_path, str_keys=True)
    assert load_cifar10(tmp_path).n_classes == 10


def test_cifar_missing_files(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file\(s\) \['data_batch_3'\]") as err:
        load_cifar10(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_cifar10(tmp_path / "nowhere")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("handmade", [False, True])
def test_cifar_refuses_malicious_pickle(tmp_path, monkeypatch, handmade):
    folder = write_cifar(tmp_path)
    with open(folder / "data_batch_2", "wb") as fh:
        if handmade:  # protocol 0: os.system("echo pwned")
            fh.write(b"cos\nsystem\n(S'echo pwned > /dev/null'\ntR.")
        else:
            pickle.dump({b"data": _Evil(), b"labels": []}, fh, protocol=2)
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global .*system") as err:
        load_cifar10(tmp_path)
    assert "data_batch_2" in str(err.value)
    assert calls == []


def test_cifar_refuses_arbitrary_class(tmp_path):
    folder = write_cifar(tmp_path)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": _Lbl()}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_cifar10(tmp_path)


class _Lbl(list):
    pass


def test_cifar_rejects_wrong_content(tmp_path):
    folder = write_cifar(tmp_path)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match="3072"):
        load_cifar10(tmp_path)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.float64), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match="uint8"):
        load_cifar10(tmp_path)


# --------------------------------------------------------------------------- helpers


def test_iterate_minibatches():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    batches = list(iterate_minibatches(x, y, 4, torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    for xb, yb in batches:
        assert torch.equal(xb[:, 0].long(), yb)
    again = list(iterate_minibatches(x, y, 4, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))
    assert len(list(iterate_minibatches(x, y, 4, shuffle=False, drop_last=True))) == 2
    with pytest.raises(ValueError, match="same length"):
        next(iterate_minibatches(x, y[:3], 2))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        next(iterate_minibatches(x, y, 0))


def test_split_validation_and_registry():
    xt, yt, xv, yv = split_validation(torch.arange(20), torch.arange(20), 5, seed=3)
    assert len(xt) == 15 and len(xv) == 5
    assert sorted(torch.cat([yt, yv]).tolist()) == list(range(20))
    with pytest.raises(ValueError, match="val_size must be smaller"):
        split_validation(torch.arange(3), torch.arange(3), 3)
    assert set(DATASETS) == {"digits", "mnist1d", "yin_yang", "mnist", "fashion_mnist", "cifar10"}
    with pytest.raises(ValueError, match="unknown dataset 'svhn'.*cifar10"):
        load_dataset("svhn")


def test_cifar_numpy1_style_pickle(tmp_path):
    """Real CIFAR batches were pickled by Python 2 / numpy 1 (``numpy.core.multiarray``)."""
    folder = write_cifar(tmp_path)
    raw = pickle.dumps({b"data": np.full((2, 3072), 7, np.uint8), b"labels": [3, 4]}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    (folder / "test_batch").write_bytes(raw)
    data = load_cifar10(tmp_path, normalize=False)
    assert data.y_test.tolist() == [3, 4]
    assert torch.allclose(data.x_test * 255, torch.full((2, 3, 32, 32), 7.0))
