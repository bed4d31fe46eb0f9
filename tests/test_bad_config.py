"""Bad configs, driven through the command line: each ends with one clear message naming
the file or field, exit status 2, no traceback and nothing written (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bionn._core.errors import ConfigError
from bionn._core.safe_yaml import MAX_CONFIG_BYTES, load_yaml_text, read_config_file


def _bomb(levels: int = 9, width: int = 9) -> str:
    """Nested anchors: ``width ** levels`` values from a file of a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['1'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    lines.append(f"model: {{tau: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


FILES: dict[str, bytes] = {
    "bomb.yaml": _bomb().encode(),
    "loop.yaml": b"a: &a [1, *a]\nmodel: {tau: *a}\n",
    "binary.yaml": b"\xff\xfe\x00\x81binary\x00",
    "empty.yaml": b"",
    "comments.yaml": b"# nothing\n\n# but comments\n",
    "big.yaml": b"#" * (MAX_CONFIG_BYTES + 10),
    "nan_steps.yaml": b"training: {steps: .nan}\n",
    "inf_lr.yaml": b"training: {optimizer: {type: adam, lr: .inf}}\n",
    "sim_nan.yaml": b"network: {name: coba, params: {we: .nan}}\n",
    "sweep_dir.yaml": b"base: confdir\ngrid: {training.steps: [1]}\n",
    "sweep_bool.yaml": b"base: bool_steps.yaml\ngrid: {model.n_hidden: [8]}\n",
    "bool_steps.yaml": b"training: {steps: true}\n",
}

CASES = [
    # (command line, pieces the message must hold)
    (["run", "bomb.yaml"], ["bomb.yaml", "aliases", "10000"]),
    (["run", "loop.yaml"], ["loop.yaml", "alias"]),
    (["run", "binary.yaml"], ["binary.yaml", "UTF-8"]),
    (["run", "confdir"], ["confdir", "directory"]),
    (["run", "empty.yaml"], ["empty.yaml", "empty"]),
    (["run", "comments.yaml"], ["comments.yaml", "empty"]),
    (["run", "big.yaml"], ["big.yaml", f"{MAX_CONFIG_BYTES + 10:,} bytes", "1 MB"]),
    (["run", "nan_steps.yaml"], ["training.steps", "nan"]),
    (["run", "inf_lr.yaml"], ["training.optimizer", "lr", "inf"]),
    (["run", "training.optimizer.lr=.inf"], ["training.optimizer", "lr", "inf"]),
    (["run", "model.preact_noise=inf"], ["model.preact_noise", "finite", "inf"]),
    (["run", "task.dt=-.inf"], ["task.dt", "finite"]),
    (["run", "task.params={coherences: [1, .nan]}"], ["task.params", "coherences.1", "finite"]),
    (["run", "training.steps=true"], ["training.steps", "boolean", "True"]),
    (["run", "model.n_hidden=1e2.5"], ["model.n_hidden", "1e2.5", "looks like a number"]),
    (["simulate", "bomb.yaml"], ["bomb.yaml", "aliases"]),
    (["simulate", "binary.yaml"], ["binary.yaml", "UTF-8"]),
    (["simulate", "confdir"], ["confdir", "directory"]),
    (["simulate", "comments.yaml"], ["comments.yaml", "empty"]),
    (["simulate", "sim_nan.yaml"], ["network.params", "we", "nan"]),
    (["simulate", "coba", "network.params.we=inf"], ["network.params", "we", "inf"]),
    (["simulate", "coba", "run.duration=.inf"], ["run.duration", "finite"]),
    (["sweep", "bomb.yaml"], ["bomb.yaml", "aliases"]),
    (["sweep", "empty.yaml"], ["empty.yaml", "empty"]),
    (["sweep", "confdir"], ["confdir", "directory"]),
    (["sweep", "sweep_dir.yaml"], ["base", "confdir"]),
    (["sweep", "sweep_bool.yaml"], ["training.steps", "boolean"]),
]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv, pieces", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_config_exits_2_with_message_and_writes_nothing(tmp_path, argv, pieces):
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "confdir").mkdir()
    before = _snapshot(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "bionn", *argv, "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"bionn {argv[0]}: "), proc.stderr
    for piece in pieces:
        assert piece in proc.stderr, f"{piece!r} missing from: {proc.stderr}"
    assert _snapshot(tmp_path) == before  # nothing written, changed or created


def test_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(levels=12, width=10))  # 10**12 values if expanded
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases"):
        read_config_file(path)
    assert time.perf_counter() - start < 1.0


def test_a_few_aliases_are_still_data():
    assert load_yaml_text("a: &a {x: 1}\nb: *a\nc: {<<: *a, y: 2}") == {
        "a": {"x": 1}, "b": {"x": 1}, "c": {"x": 1, "y": 2}}


@pytest.mark.parametrize("text, value", [
    ("1e2", 100.0), ("1.0e38", 1.0e38), ("-3e-4", -3e-4), ("+2E3", 2000.0), (".5e1", 5.0),
    ("3", 3), ("0.5", 0.5), ("1_000", 1000), ("1e2x", "1e2x"), ("e5", "e5"), ("1.2.3", "1.2.3"),
])
def test_exponent_floats_are_numbers(text, value):
    got = load_yaml_text(f"v: {text}")["v"]
    assert got == value and type(got) is type(value)


def test_a_model_too_large_for_memory_is_refused_before_any_work(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "big"
    proc = subprocess.run([sys.executable, "-m", "bionn", "run", "model.n_hidden=10000000",
                           "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "model.n_hidden" in proc.stderr and "GB" in proc.stderr and "experiment.force" in proc.stderr
    assert not out.exists()
