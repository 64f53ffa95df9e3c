"""What a model was trained with: the run's `config.json`, read back by every `use_*`
script and predictor.

Training writes its resolved config beside the model (`best.keras`, `config.json`; a
fine-tuned run has both in `fine_tune/`). Inference takes from it what the model
depends on (sizes, decoder, loss, backbone, categories) instead of asking again, so
`use_*.py --model RUN/best.keras` needs no flag repeated. A setting that the user gives
(config file, flag or `--set`) otherwise than the run is an error naming it, never a
silent change. A model without a `config.json` beside it runs with the config as
given, as before.

    cfg, path = load_run_config(Stage2Config, "runs/demo/model/best.keras", "my.yaml",
                                ["use.batch_size=8"], trained=("data.input_size", "model"))
"""

import json
from pathlib import Path

from common.config import from_dict, load_config, parse_override, read_config_file, to_dict
from common.data_io import file_hash, load_json
from common.errors import DataError

RUN_CONFIG = "config.json"


def run_config_path(model_path):
    """Where training saved the config of the model file `model_path`."""
    return Path(model_path).parent / RUN_CONFIG


def model_record(model_path):
    """How summaries name the model: its path, a hash of the file, and the run config read."""
    config = run_config_path(model_path)
    # A SavedModel is a folder: its graph file stands for it.
    hashed = Path(model_path) / "saved_model.pb" if Path(model_path).is_dir() else model_path
    return {"path": str(model_path), "sha256_16": file_hash(hashed),
            "run_config": str(config) if config.is_file() else None}


def load_run_config(cls, model_path, config=None, overrides=(), trained=(), recorded=("train",),
                    override_sources=None):
    """The config to run `model_path` with, and the run's config.json (None without one).

    Defaults <- `config` file <- `overrides`, as `common.config.load_config`; then every
    setting in `trained` and `recorded` (dotted keys, or whole sections) is the run's.
    trained: settings the model depends on; one given otherwise by the file or an
        override raises `DataError` naming the setting and where it was given.
    recorded: settings inference does not depend on (epochs, batch size), taken from
        the run whatever the file says, so that summaries report what was trained.
    override_sources: how errors name each override (e.g. the flag it came from);
        default `--set KEY=VALUE`.
    """
    user = load_config(cls, config, overrides)
    path = run_config_path(model_path)
    if not path.is_file():
        return user, None
    saved = load_json(path)
    # A run written by an older version may hold recorded settings since renamed or
    # dropped: what inference does not depend on must not make its model unusable.
    known = to_dict(cls())
    for key in recorded:
        section = _get(saved, key) if _has(saved, key) else None
        if isinstance(section, dict):
            _set(saved, key, {k: v for k, v in section.items() if k in _get(known, key)})
    run = to_dict(from_dict(cls, saved, str(path)))
    values = to_dict(user)
    given = _given(config, overrides, override_sources)
    for key in trained:
        for name, source in given.items():
            if (name == key or name.startswith(key + ".")) and _get(values, name) != _get(run, name):
                raise DataError(f"{name}={_show(_get(values, name))} ({source}) contradicts the run, trained with "
                                f"{name}={_show(_get(run, name))}; leave it out: it is read from the run", path)
    for key in (*trained, *recorded):
        _set(values, key, _get(run, key))
    return from_dict(cls, values, str(path)), path


def _given(config, overrides, sources):
    """{dotted setting: where it was given} for the settings the file and overrides set."""
    given = {}
    if config is not None:
        given.update({name: str(config) for name in _leaves(read_config_file(config))})
    for index, text in enumerate(overrides):
        keys, value = parse_override(text)
        source = sources[index] if sources is not None else f"--set {text}"
        given.update({name: source for name in _leaves(value, ".".join(keys))})
    return given


def _leaves(value, prefix=""):
    if not isinstance(value, dict):
        return [prefix]
    return [name for key, item in value.items() for name in _leaves(item, f"{prefix}.{key}" if prefix else key)]


def _get(values, dotted):
    for key in dotted.split("."):
        values = values[key]
    return values


def _has(values, dotted):
    for key in dotted.split("."):
        if not isinstance(values, dict) or key not in values:
            return False
        values = values[key]
    return True


def _set(values, dotted, value):
    *parents, last = dotted.split(".")
    for key in parents:
        values = values[key]
    values[last] = value


def _show(value):
    return json.dumps(value)
