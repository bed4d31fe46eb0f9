"""Tests of bionn._core: one atomic writer, one permission policy for every run file."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from bionn._core import io as core_io
from bionn._core.errors import ConfigError, format_errors
from bionn._core.io import atomic_write, atomic_write_bytes, atomic_write_text
from bionn.experiment.checkpoint import load_checkpoint, save_checkpoint
from bionn.experiment.config import load_config
from bionn.experiment.runner import RunWriter
from bionn.viz import save_figure

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _figure() -> Figure:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(value: int) -> int:
        os.umask(value)
        return value

    yield set_umask
    os.umask(saved)


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_run_files_share_one_permission_policy(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / "plain.txt", "w") as fh:  # what an ordinary open() gives
        fh.write("x")
    expected = _mode(tmp_path / "plain.txt")
    assert expected == 0o666 & ~mask

    run = tmp_path / "run"
    writer = RunWriter(run)
    writer.start(load_config(), resume_step=0)  # config.yaml and metrics.jsonl
    writer.close()
    save_checkpoint(run / "checkpoint.pt", {"step": 1})
    save_figure(_figure(), run / "figures" / "curve.png")
    atomic_write_bytes(run / "spikes.npz", b"\x00")

    modes = {name: _mode(run / name) for name in
             ["config.yaml", "metrics.jsonl", "checkpoint.pt", "figures/curve.png", "spikes.npz"]}
    assert modes == dict.fromkeys(modes, expected)
    assert _leftovers(run) == []


@posix_only
def test_replacing_a_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "config.yaml"
    atomic_write_text(path, "a: 1\n")
    os.chmod(path, 0o640)
    atomic_write_text(path, "a: 2\n")
    assert path.read_text() == "a: 2\n" and _mode(path) == 0o640
    os.chmod(path, 0o444)  # a read-only target is replaced and stays read-only
    save_figure(_figure(), path.with_suffix(".png"))
    os.chmod(path.with_suffix(".png"), 0o444)
    save_figure(_figure(), path.with_suffix(".png"))
    atomic_write_text(path, "a: 3\n")
    assert path.read_text() == "a: 3\n"
    assert _mode(path) == 0o444 and _mode(path.with_suffix(".png")) == 0o444


def test_failed_text_write_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    atomic_write_text(path, '{"step": 1}\n')

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(core_io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, '{"step": 2}\n')
    assert path.read_text() == '{"step": 1}\n'
    assert _leftovers(tmp_path) == []


def test_failed_callback_write_leaves_old_file(tmp_path):
    path = tmp_path / "data.bin"
    atomic_write_bytes(path, b"old")

    def half_then_interrupt(tmp):
        tmp.write_bytes(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_interrupt)
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_failed_checkpoint_leaves_old_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails with a version-dependent type
        save_checkpoint(path, {"step": 2, "fn": lambda: 0})
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert _leftovers(tmp_path) == []


def test_failed_figure_leaves_old_png(tmp_path, monkeypatch):
    path = tmp_path / "figures" / "curve.png"
    save_figure(_figure(), path)
    before = path.read_bytes()
    fig = _figure()

    def broken_savefig(fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="renderer failed"):
        save_figure(fig, path)
    assert path.read_bytes() == before
    with pytest.raises(ValueError):  # an unknown format: nothing written at all
        save_figure(_figure(), tmp_path / "figures" / "curve.notaformat")
    assert sorted(p.name for p in path.parent.iterdir()) == ["curve.png"]


def test_callback_sees_the_target_suffix(tmp_path):
    """Writers that add or read a suffix (numpy, matplotlib) write the target itself."""
    path = tmp_path / "arrays.npz"
    atomic_write(path, lambda tmp: np.savez(tmp, x=np.arange(3)))
    assert np.load(path)["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz"]


def test_config_error_is_shared():
    from bionn.experiment import ConfigError as public
    from bionn.experiment.config import format_errors as from_config

    assert public is ConfigError and from_config is format_errors
    assert issubclass(ConfigError, ValueError)


def test_low_layers_do_not_import_experiment():
    """The spiking package (and the root package) load without configs, YAML or pydantic."""
    import subprocess

    code = ("import sys, bionn, bionn.spiking, bionn._core\n"
            "bad = sorted(m for m in sys.modules if m.startswith('bionn.experiment')"
            " or m.split('.')[0] in ('pydantic', 'yaml'))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
