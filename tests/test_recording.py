"""Chunked recording to disk gives exactly the long in-memory run, with bounded memory."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from bionn.spiking.networks import coba
from bionn.spiking.recording import load_recording, run_to_disk


def _net():
    return coba(300, generator=torch.Generator().manual_seed(3))


def test_chunks_equal_one_long_run(tmp_path):
    kw = dict(dt=0.1, batch=2, record={"P": ["V", "refractory"]}, record_every=5,
              record_neurons={"P": [0, 7, 123]})
    full = _net().run(30.0, generator=torch.Generator().manual_seed(11), progress=False, **kw)
    rec = run_to_disk(_net(), 30.0, tmp_path, chunk_ms=7.5, progress=False,
                      generator=torch.Generator().manual_seed(11), **kw)
    assert rec.n_chunks == 4  # 7.5, 7.5, 7.5, 7.5 ms
    got = load_recording(tmp_path)
    assert full.spikes["P"].count() > 0
    for f in ("trial", "step", "neuron"):
        assert torch.equal(getattr(got.spikes["P"], f), getattr(full.spikes["P"], f))
    for key in full.traces:
        torch.testing.assert_close(got.traces[key], full.traces[key], rtol=0, atol=0)
    torch.testing.assert_close(got.trace_times, full.trace_times)
    torch.testing.assert_close(rec.state["P"]["V"], full.state["P"]["V"], rtol=0, atol=0)
    # each chunk file holds only its own time window (what is in memory at once)
    index = json.loads((tmp_path / "index.json").read_text())
    for c in index["chunks"]:
        with np.load(tmp_path / c["file"]) as z:
            steps = z["spikes/P"][:, 1]
            assert steps.size == 0 or (steps.min() >= c["first_step"]
                                       and steps.max() < c["first_step"] + c["n_steps"])
            assert z["traces/P.V"].shape[1] == c["n_steps"] // 5
    window = load_recording(tmp_path, t_range=(10.0, 20.0))
    assert window.spikes["P"].times.min() > 10.0 and window.spikes["P"].times.max() <= 20.0
    assert window.trace_times.min() > 10.0 and window.trace_times.max() <= 20.0


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_chunk_files_get_the_permissions_of_any_run_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        run_to_disk(_net(), 2.0, tmp_path / "rec", chunk_ms=1.0, progress=False, seed=0)
        with open(tmp_path / "plain.txt", "w"):
            pass
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o666 & ~umask
    files = sorted((tmp_path / "rec").iterdir())
    assert [f.name for f in files] == ["chunk_00000.npz", "chunk_00001.npz", "index.json"]
    for f in files:  # no temporary files left, every file with the mode of open(path, "w")
        assert stat.S_IMODE(f.stat().st_mode) == want, f.name


def test_bad_chunks_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="record_every"):
        run_to_disk(_net(), 10.0, tmp_path / "a", chunk_ms=0.3, record_every=2, progress=False)
    with pytest.raises(ValueError, match="chunk_ms"):
        run_to_disk(_net(), 10.0, tmp_path / "b", chunk_ms=0.05, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(FileNotFoundError, match="index.json"):
        load_recording(tmp_path)


def test_bionn_simulate_with_chunked_recording(tmp_path, capsys):
    from bionn.experiment.cli import main

    base = ["simulate", "coba", "network.params.n=300", "run.duration=30",
            "run.record={P: [V]}", "run.record_neurons={P: 3}", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "mem")]) == 0
    assert main([*base, "run.record_chunk_ms=10", "--out", str(tmp_path / "disk")]) == 0
    with np.load(tmp_path / "mem" / "spikes.npz") as a, np.load(tmp_path / "disk" / "spikes.npz") as b:
        assert set(a.files) == set(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k
    assert len(list((tmp_path / "disk" / "recording").glob("chunk_*.npz"))) == 3
    m_mem = json.loads((tmp_path / "mem" / "measures.json").read_text())
    m_disk = json.loads((tmp_path / "disk" / "measures.json").read_text())
    assert m_mem["P"] == m_disk["P"]
    capsys.readouterr()
    assert main([*base, "run.record_chunk_ms=0.25", "run.record_every=2",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "run.record_chunk_ms" in capsys.readouterr().err
