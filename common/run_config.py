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


def load_model(path, made_by, outputs=()):
    """Load a `.keras` model in Keras safe mode (nothing in the file is executed) as
    the part whose trainer is `made_by` (e.g. "train_vis.py") expects it.

    outputs: the output names a model of that part has; a model without them (another
    part's, or any other Keras model) is a `DataError`, not a "No such layer" later.
    Any failure to load is a `DataError` with one line naming the file and the problem:
    a `.keras` naming a class or function Keras cannot find raises TypeError with the
    whole config in its text, a damaged archive ValueError, KeyError or OSError.
    """
    import zipfile

    import keras  # here: the config functions of this module serve scripts that need no model

    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file not found (train first: {made_by})", path)
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive
        raise DataError(f"not a Keras model file (.keras, as {made_by} writes)", path)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # noqa: BLE001 - whatever the file holds, it is bad input, said in one line
        raise DataError(f"cannot load the model ({_keras_problem(err)})", path) from None
    names = sorted(model.output) if isinstance(model.output, dict) else []
    if any(name not in names for name in outputs):
        raise DataError(f"not a model made by {made_by} (its outputs are {names or 'unnamed'}; "
                        f"{', '.join(outputs)} expected)", path)
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise DataError(f"not a model made by {made_by} (it takes {[tuple(x.shape) for x in model.inputs]}; one "
                        "batch of images (N, H, W, C) expected)", path)
    return model


def _keras_problem(err):
    """A Keras load error in one line: the innermost cause's first sentence.

    Keras nests the error of a layer in its model's ("... Exception encountered: ...")
    and appends the whole object config; neither helps a user.
    """
    text = str(err).rsplit("Exception encountered:", 1)[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    sentence = first.split(". ", 1)[0].rstrip(".")
    return f"{type(err).__name__}: {sentence[:200]}"


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


def apply_cache_settings(cls, cfg, folder, layout, config=None, overrides=(), override_sources=None, keep=()):
    """`cfg` with the data settings the cache in `folder` was built with, so that training
    and use need none of them repeated (`data.bbox_format`, sizes, categories).

    Each setting the cache stores (`layout.settings`) that is a `data` field is taken from
    the cache, but those in `keep` (dotted keys, or sections: what a trained model fixes)
    and `layout.optional_settings`. One that the `config` file or an override gives
    otherwise raises `DataError` naming the flag to drop. Without a readable cache `cfg`
    is returned as it is (loading the cache then says what is wrong).
    """
    from common.cache import Y_FILE, built_with

    stored = built_with(folder)
    if stored is None:
        return cfg
    values = to_dict(cfg)
    given = _given(config, overrides, override_sources)
    for key, value in stored.items():
        name = f"data.{key}"
        if key not in values["data"] or key in layout.optional_settings \
                or any(name == k or name.startswith(k + ".") for k in keep):
            continue
        value = json.loads(json.dumps(value))
        for setting, source in given.items():
            if (setting == name or setting.startswith(name + ".")) and _get(values, name) != value:
                drop = f"{setting} from {source}" if config is not None and source == str(config) else source
                raise DataError(f"{name}={_show(_get(values, name))} ({source}) contradicts the cache, built with "
                                f"{name}={_show(value)}; drop {drop}: the cache's setting is used (or rebuild the "
                                f"cache with it: {layout.rebuild.format(split=Path(folder).name)})",
                                Path(folder) / Y_FILE)
        _set(values, name, value)
    return from_dict(cls, values, str(Path(folder) / Y_FILE))
