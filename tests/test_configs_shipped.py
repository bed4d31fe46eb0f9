"""Every config in configs/ validates and runs a few steps."""

import importlib.util
from pathlib import Path

import pytest

from bionn.experiment import Runner, load_config
from bionn.experiment.classify import is_classify_config
from bionn.experiment.config import DEFAULT_CONFIG

CONFIGS = sorted(
    p for p in (Path(__file__).parents[1] / "configs").glob("*.yaml")
    if not p.stem.startswith(("sim_", "sweep_")) and not is_classify_config(p)
)  # sim_*.yaml are `bionn simulate` configs (test_simulate.py), sweep_*.yaml sweep files
#    (test_sweep.py); configs with a `data` section are classification configs
#    (test_classify.py, test_synaptic_diversity.py)


def test_configs_exist():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_runs(path, tmp_path):
    cfg = load_config(path)
    if cfg.task.name == "neurogym" and importlib.util.find_spec("neurogym") is None:
        pytest.skip("neurogym not installed (pip install bionn[neurogym])")
    short = load_config(path, ["training.steps=3", "training.eval_trials=32", "training.batch_size=8"])
    summary = Runner(short, tmp_path / path.stem, progress=False).fit()
    assert summary["steps"] == 3 and 0.0 <= summary["accuracy"] <= 1.0


def test_default_config_file_matches_the_shipped_copy():
    assert load_config(DEFAULT_CONFIG) == load_config(Path(__file__).parents[1] / "configs/ei_ctrnn_pdm.yaml")
