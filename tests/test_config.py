"""Bad configs fail before any work starts, naming the field, the value and what is allowed."""

import numpy as np
import pytest

from bionn.experiment import ConfigError, dump_config, load_config, validate_config
from bionn.experiment.config import apply_overrides, read_yaml


def test_default_config_is_valid_and_round_trips():
    cfg = load_config()
    assert cfg.model.e_fraction == 0.8 and cfg.task.name == "perceptual_decision_making"
    import yaml

    again = validate_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(None, ["model.n_hidden=64", "model.tau=[" + ",".join(["50"] * 64) + "]",
                             "loss.l2={recurrent: 0.01}", "training.grad_clip=null"])
    assert cfg.model.n_hidden == 64 and cfg.model.tau[0] == 50
    assert cfg.loss.l2 == {"recurrent": 0.01} and cfg.training.grad_clip is None


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.foo=1", ["model.foo", "unknown key", "n_hidden"]),
        ("bogus=1", ["bogus", "unknown key", "training"]),
        ("model.n_hidden=abc", ["model.n_hidden", "integer", "'abc'"]),
        ("model.n_hidden=-3", ["model.n_hidden", "greater than 0", "-3"]),
        ("model.tau=-5", ["model.tau", "> 0", "-5"]),
        ("task.dt=200", ["model.tau", "task.dt", "200"]),
        ("model.e_fraction=1.5", ["model.e_fraction", "less than 1", "1.5"]),
        ("model.e_fraction=0", ["model.e_fraction", "greater than 0"]),
        ("model.rec_mask=[[1,0],[0,1]]", ["model.rec_mask", "(2, 2)", "(100, 100)"]),
        ("model.activation=gelu", ["model.activation", "gelu", "relu"]),
        ("task.name=nope", ["task.name", "nope", "perceptual_decision_making"]),
        ("training.optimizer=lbfgs", ["training.optimizer", "adam", "lbfgs"]),
        ("training.lr=0", ["training.lr", "greater than 0"]),
        ("loss.l2={recurrent: -1}", ["l2", "recurrent", ">= 0"]),
        ("model.circuit={kind: multi_area_ei, params: {area_sizes: [50, 40]}}",
         ["model.circuit", "area_sizes", "n_hidden=100"]),
        ("model.circuit={kind: ring}", ["model.circuit.kind", "multi_area"]),
        ("model.method=dfa", ["model.method", "dfa", "CTRNN", "kp"]),
        ("model.method=xyz", ["method", "xyz", "usf"]),
        ("model.options={init: bogus}", ["options.init", "bogus", "xavier"]),
        ("model.options={constrain_norm: true}", ["model.options.constrain_norm", "CTRNN"]),
    ],
)
def test_bad_values_name_field_value_and_allowed(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    msg = str(info.value)
    for piece in expected:
        assert piece in msg, f"{piece!r} missing from: {msg}"
    assert "Traceback" not in msg


def test_mask_files_are_checked(tmp_path):
    good = tmp_path / "mask.npy"
    np.save(good, (np.random.default_rng(0).random((100, 100)) < 0.5).astype(np.float32))
    assert load_config(None, [f"model.rec_mask={good}"]).model.rec_mask == str(good)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((100, 99), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"\(100, 99\)"):
        load_config(None, [f"model.rec_mask={bad}"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, [f"model.rec_mask={tmp_path / 'missing.npy'}"])
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises((ConfigError, ValueError)):
        load_config(None, [f"model.rec_mask={pickled}"])  # never unpickled


def test_yaml_files_are_data(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(evil)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_yaml(listy)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["model.n_hidden"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"model": 3}, ["model.n_hidden=4"])
