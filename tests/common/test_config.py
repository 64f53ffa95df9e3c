"""Typed configs: defaults, JSON/YAML files, `--set` overrides, precedence, errors, hashes."""

import json
import re

import pytest

from common.config import config_hash, load_config, parse_override, save_config, to_dict
from common.errors import DataError
from stage2_visible_keypoints.config import DataConfig, Stage2Config


def write_yaml(path, text):
    path.write_text(text)
    return path


def test_defaults_without_file_or_overrides():
    cfg = load_config(Stage2Config)
    assert cfg == Stage2Config()
    assert cfg.data.input_size == (128, 128) and cfg.train.epochs == 30


def test_yaml_file_sets_nested_values_and_lists_become_tuples(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "data:\n  input_size: [64, 64]\n  heatmap_size: [32, 32]\n"
                                           "  sigma: 1.5\ntrain:\n  epochs: 3\n")
    cfg = load_config(Stage2Config, path)
    assert cfg.data.input_size == (64, 64) and cfg.data.heatmap_size == (32, 32)
    assert isinstance(cfg.data.input_size, tuple)
    assert cfg.data.sigma == 1.5 and cfg.train.epochs == 3
    # Untouched fields keep their defaults.
    assert cfg.data.crop_size == (1000, 1000) and cfg.train.batch_size == 128


def test_json_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"decoder_filters": [8, 8, 8, 8], "debias": True}}))
    cfg = load_config(Stage2Config, path)
    assert cfg.model.decoder_filters == (8, 8, 8, 8) and cfg.model.debias is True


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert load_config(Stage2Config, write_yaml(tmp_path / "c.yaml", "")) == Stage2Config()


def test_overrides_are_yaml_typed():
    cfg = load_config(Stage2Config, overrides=[
        "train.epochs=3", "train.learning_rate=1e-3", "model.debias=true", "train.precision=float32",
        "data.input_size=[64, 96]", "data.heatmap_size=[32, 48]", "use.pck_thresholds=[1, 2]",
        "train.seed=4.0",  # an integral float is accepted for an int
    ])
    assert cfg.train.epochs == 3 and type(cfg.train.epochs) is int
    assert cfg.train.learning_rate == 1e-3 and type(cfg.train.learning_rate) is float
    assert cfg.model.debias is True
    assert cfg.train.precision == "float32"
    assert cfg.data.input_size == (64, 96) and cfg.data.heatmap_size == (32, 48)
    assert cfg.use.pck_thresholds == (1, 2)
    assert cfg.train.seed == 4 and type(cfg.train.seed) is int


def test_parse_override():
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert parse_override(" data.sigma = 0.5") == (["data", "sigma"], 0.5)
    assert parse_override("a.b=x=y") == (["a", "b"], "x=y")
    with pytest.raises(DataError, match="--set"):
        parse_override("train.epochs")


def test_overrides_beat_the_file_and_later_overrides_win(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "train:\n  epochs: 3\n  batch_size: 16\n")
    cfg = load_config(Stage2Config, path, ["train.epochs=7", "train.seed=1", "train.seed=2"])
    assert cfg.train.epochs == 7  # override beats file
    assert cfg.train.batch_size == 16  # file beats default
    assert cfg.train.seed == 2


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    path = write_yaml(tmp_path / "typo.yaml", "train:\n  epohcs: 3\n")
    with pytest.raises(DataError) as info:
        load_config(Stage2Config, path)
    assert "epohcs" in str(info.value) and "typo.yaml" in str(info.value)


def test_unknown_section_in_file(tmp_path):
    path = write_yaml(tmp_path / "typo.yaml", "trian:\n  epochs: 3\n")
    with pytest.raises(DataError, match="typo.yaml.*trian"):
        load_config(Stage2Config, path)


def test_unknown_key_in_override_names_key_and_override():
    with pytest.raises(DataError) as info:
        load_config(Stage2Config, overrides=["data.sigmaa=3"])
    assert "sigmaa" in str(info.value) and "--set data.sigmaa=3" in str(info.value)


def test_override_of_a_section_with_a_scalar():
    with pytest.raises(DataError, match="--set data=3.*mapping"):
        load_config(Stage2Config, overrides=["data=3"])


@pytest.mark.parametrize("override, key", [
    ("train.epochs=abc", "epochs"),
    ("train.epochs=2.5", "epochs"),
    ("model.debias=1", "debias"),
    ("data.sigma=[1, 2]", "sigma"),
])
def test_wrong_type_is_a_data_error_naming_the_key(override, key):
    with pytest.raises(DataError, match=f"'{key}'"):
        load_config(Stage2Config, overrides=[override])


def test_wrong_type_in_file(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "train:\n  batch_size: many\n")
    with pytest.raises(DataError) as info:
        load_config(Stage2Config, path)
    assert "c.yaml" in str(info.value) and "batch_size" in str(info.value) and "many" in str(info.value)


def test_post_init_check_surfaces_as_data_error(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "data:\n  input_size: [64, 64]\n")  # heatmap stays 64x64
    with pytest.raises(DataError) as info:
        load_config(Stage2Config, path)
    assert "c.yaml" in str(info.value) and "heatmap_size" in str(info.value)
    with pytest.raises(DataError, match="sigma must be a finite number > 0"):
        load_config(Stage2Config, overrides=["data.sigma=0"])
    with pytest.raises(DataError, match="crop_size must fit"):
        load_config(Stage2Config, overrides=["data.crop_size=[2000, 1000]"])
    with pytest.raises(DataError, match="pnp_ransac_px must be a positive finite number"):
        load_config(Stage2Config, overrides=["use.pnp_ransac_px=0"])
    with pytest.raises(DataError, match="pnp_ransac_px must be a positive finite number"):
        load_config(Stage2Config, overrides=["use.pnp_ransac_px=.inf"])
    with pytest.raises(DataError, match="use.camera and use.mesh go together"):
        load_config(Stage2Config, overrides=["use.camera=camera.json"])


def test_file_not_found_and_bad_yaml(tmp_path):
    with pytest.raises(DataError, match="missing.yaml.*not found"):
        load_config(Stage2Config, tmp_path / "missing.yaml")
    with pytest.raises(DataError, match="missing.json.*not found"):
        load_config(Stage2Config, tmp_path / "missing.json")
    with pytest.raises(DataError) as info:
        load_config(Stage2Config, write_yaml(tmp_path / "bad.yaml", "data: [1, 2\nb: 3\n"))
    # One line, with PyYAML's problem and where it is.
    assert str(info.value) == (f"{tmp_path / 'bad.yaml'}: not valid YAML (line 2, column 2: expected ',' or ']', "
                               "but got ':' (while parsing a flow sequence))")
    (tmp_path / "binary.yaml").write_bytes(b"data: \xff\n")
    with pytest.raises(DataError, match=r"binary\.yaml: not a text file \(not UTF-8\)"):
        load_config(Stage2Config, tmp_path / "binary.yaml")
    with pytest.raises(DataError, match="list.yaml.*mapping"):
        load_config(Stage2Config, write_yaml(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_save_then_load_round_trip(tmp_path):
    cfg = load_config(Stage2Config, overrides=[
        "data.input_size=[64, 64]", "data.heatmap_size=[32, 32]", "data.sigma=1.25",
        "model.decoder_filters=[16, 8, 8, 4]", "train.epochs=2", "use.pck_thresholds=[3.0]",
        "data.cache_heatmaps=true",
    ])
    save_config(cfg, tmp_path / "config.json")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    again = load_config(Stage2Config, tmp_path / "config.json")
    assert again == cfg
    assert again.data.input_size == (64, 64) and again.use.pck_thresholds == (3.0,)
    assert json.loads((tmp_path / "config.json").read_text())["data"]["input_size"] == [64, 64]


def test_config_hash_ignores_key_order_and_sees_values():
    a = {"sigma": 2.0, "input_size": [128, 128], "nested": {"x": 1, "y": 2}}
    b = {"nested": {"y": 2, "x": 1}, "input_size": [128, 128], "sigma": 2.0}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16
    assert config_hash(a) != config_hash({**a, "sigma": 2.5})
    assert config_hash(a) != config_hash({**a, "input_size": [128, 96]})
    # A dataclass config hashes the same as its resolved dict after a save/load.
    data = DataConfig(input_size=(64, 64), heatmap_size=(32, 32))
    assert config_hash(to_dict(data)) == config_hash(json.loads(json.dumps(to_dict(data))))


def test_a_wrong_type_in_an_override_names_the_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 2\n")
    with pytest.raises(DataError, match=r"--set train.epochs=abc.*'epochs' expects int"):
        load_config(Stage2Config, path, ["train.epochs=abc"])


def test_yaml_booleans_and_shortcut_strings_stay_strings(tmp_path):
    import argparse

    from common.cli import config_from_args

    cfg = load_config(Stage2Config, None, ["train.jit_compile=false"])
    assert cfg.train.jit_compile == "false"
    args = argparse.Namespace(config=None, set=[], cache_dir="runs/exp #2", epochs=3)
    cfg = config_from_args(Stage2Config, args, (("cache_dir", "data.cache_dir"), ("epochs", "train.epochs")))
    assert cfg.data.cache_dir == "runs/exp #2" and cfg.train.epochs == 3


@pytest.mark.parametrize("override, fragment", [
    ("data.sigma=.nan", "sigma must be a finite number > 0"),
    ("data.sigma=.inf", "sigma must be a finite number > 0"),
    ("model.beta=.nan", "beta must be positive"),
    ("train.learning_rate=0", "learning_rate must be a finite number > 0"),
    ("train.focal_alpha=1.5", "focal_alpha must be a finite number >= 0 and <= 1"),
    ("train.coord_weight=-1", "coord_weight must be a finite number >= 0"),
    ("use.visibility_threshold=.nan", "visibility_threshold must be a finite number >= 0 and <= 1"),
    ("use.pck_thresholds=[2, -1]", "pck_thresholds must be positive finite"),
])
def test_nan_and_out_of_range_numbers_are_refused(override, fragment):
    with pytest.raises(DataError, match=re.escape(fragment)):
        load_config(Stage2Config, None, [override])


def test_cli_run_turns_an_os_error_on_a_path_into_one_line(tmp_path, capsys):
    from common.cli import run

    (tmp_path / "file").write_text("")

    def main(argv):
        (tmp_path / "file" / "sub").mkdir()  # a file where a folder is wanted

    assert run(main) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'file' / 'sub'}: Not a directory\n"

    def missing(argv):  # a FileNotFoundError from the code is a bug (paths given are checked first)
        open(tmp_path / "not-there.txt")

    with pytest.raises(FileNotFoundError):
        run(missing)

    def no_path(argv):
        raise PermissionError("no file involved")

    with pytest.raises(PermissionError, match="no file involved"):
        run(no_path)


@pytest.mark.parametrize("override", ["data.sigma=[1", "data.sigma=!!python/object/apply:os.system ['true']",
                                      "data.sigma={a: 1"])
def test_malformed_override_value_is_one_line_naming_it(override):
    # A YAML error in an override was a raw PyYAML traceback; a file already gave one line.
    with pytest.raises(DataError) as info:
        load_config(Stage2Config, overrides=[override])
    message = str(info.value)
    assert message.startswith(f"--set {override}: not a valid YAML value (") and "\n" not in message
