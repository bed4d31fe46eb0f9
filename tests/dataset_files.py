"""Tiny MNIST (IDX) and CIFAR-10 (python batches) files for loader and runner tests."""

import gzip
import pickle
import struct

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(root, n_train=12, n_test=5, gz=False, skip=()):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, arr in arrays.items():
        if stem in skip:
            continue
        raw = idx_bytes(arr)
        if gz:
            (root / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (root / stem).write_bytes(raw)
    return arrays


def write_cifar(root, n=6, protocol=2, str_keys=False):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(n) + i) % 10]
        key = (lambda s: s) if str_keys else (lambda s: s.encode())
        batch = {key("data"): data, key("labels"): labels, key("batch_label"): b"x"}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
    return folder
