"""The anatomy examples run end to end on tiny budgets (their full runs are in docs/anatomy.md)."""

import json
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")


@pytest.mark.parametrize("task", ["contour", "motion", "maze", "digits"])
def test_spatial_two_area_example(task, tmp_path, monkeypatch, capsys):
    if task == "digits":
        pytest.importorskip("sklearn", reason="the digits ship with scikit-learn")
    out = tmp_path / task
    size = ["--size", "12"] if task == "motion" else []
    _run("spatial_two_area.py", [task, "--epochs", "1", "--n-train", "64", "--n-test", "32",
                                 "--channels", "4", *size, "--out", str(out)], monkeypatch)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["test_accuracy"] <= 1.0 and 0 < result["chance"] < 1
    pngs = {p.name for p in out.glob("*.png")}
    assert "celltype_table.png" in pngs and len(pngs) >= 3, pngs


def test_motifs_tour_example(tmp_path, monkeypatch):
    _run("motifs_tour.py", ["--out", str(tmp_path)], monkeypatch)
    assert len(list(tmp_path.glob("*.png"))) >= 4
