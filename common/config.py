"""Typed configs: dataclasses with defaults in code, a JSON/YAML file, `--set` overrides.

    cfg = load_config(Stage2Config, "configs/stage2_demo.yaml", ["train.epochs=3"])
    save_config(cfg, out_dir / "config.json")     # the resolved config, beside the outputs

Unknown keys are errors (a typo in a config file must not be silently ignored), and
values are converted to the type of the field's default (YAML lists become tuples).
"""

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import yaml

from common.data_io import load_json, save_json
from common.errors import DataError


def size_pair(value, name):
    """A (width, height) of positive ints, for config checks; errors echo the value."""
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"{name} must be (width, height) with positive entries. Received: {name}={value}")
    return value


def check_range(config, name, low, high=math.inf, low_inclusive=False):
    """`config.name` must be a finite number above `low` (or at it) and at most `high`;
    written so that NaN fails too."""
    value = getattr(config, name)
    above = value >= low if low_inclusive else value > low
    if not (math.isfinite(value) and above and value <= high):
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")
        raise ValueError(f"{name} must be a finite number {bound}. Received: {name}={value}")


PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "plateau", "step")
DISTRIBUTIONS = ("none", "data_parallel", "multi_process")  # common.distribute.MODES
LR_SCALINGS = ("linear", "sqrt", "none")


@dataclasses.dataclass
class TrainingConfig:
    """The `train` settings every part shares, checked here once; each part's
    `TrainConfig` subclasses it, sets its own defaults and adds its losses' settings.
    `common.training.train` is the driver that reads them.

    output_dir: best.keras, model.keras, config.json, history.csv, plots/, logs/, backup/.
    seed: weights, shuffling and the validation split. precision: auto (mixed on GPU,
    float32 on CPU) | float32 | mixed_float16 | mixed_bfloat16. jit_compile: auto|true|false.
    optimizer: adam | adamw | sgd (momentum); weight_decay (adamw, sgd); clipnorm (0 = off).
    lr_schedule, all by optimizer step (images seen), so a resumed run continues it:
      constant  learning_rate throughout
      cosine    from learning_rate to lr_floor * learning_rate over the whole run
      plateau   learning_rate, halved when the monitored loss stalls for 3 epochs
      step      multiplied by lr_gamma every lr_step_epochs epochs
    warmup_steps: a linear warm-up from 10 % of the rate first (constant and cosine), at
    most a tenth of the run's steps.
    Length: `epochs` passes over the training images, or with budget_images > 0 that many
    images (epochs is then ignored). epoch_images > 0 makes an epoch (validation,
    checkpoint, history row) that many images instead of one pass; the data then repeats.
    budget_minutes > 0 stops after the first epoch that ends past that wall time.
    validation_split: the share of the cache held out for validation.
    val_split: validate on this other cached split instead ("" = hold out validation_split).
    max_images: train on the first N cached images (0 = all).
    tensorboard_images: sample images shown with their heatmaps in TensorBoard (TF only).
    distribution: none | data_parallel (every local device) | multi_process (JAX, several
    machines); batch_size is then per replica and the rate scales by lr_scaling: linear |
    sqrt | none with the replica count (`common.distribute`).
    """

    output_dir: str = "runs/model"
    seed: int = 0
    precision: str = "auto"
    jit_compile: str = "auto"
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    clipnorm: float = 0.0
    lr_schedule: str = "plateau"
    warmup_steps: int = 0
    lr_floor: float = 0.01
    lr_step_epochs: int = 15
    lr_gamma: float = 0.1
    budget_images: int = 0
    epoch_images: int = 0
    budget_minutes: float = 0.0
    validation_split: float = 0.1
    val_split: str = ""
    max_images: int = 0
    tensorboard_images: int = 4
    distribution: str = "none"
    lr_scaling: str = "linear"

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr_step_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        for name in ("warmup_steps", "budget_images", "epoch_images", "max_images", "tensorboard_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0. Received: {name}={getattr(self, name)}")
        check_range(self, "learning_rate", low=0.0)
        for name in ("weight_decay", "clipnorm", "budget_minutes"):
            check_range(self, name, low=0.0, low_inclusive=True)
        check_range(self, "momentum", low=0.0, high=1.0, low_inclusive=True)
        check_range(self, "lr_floor", low=0.0, high=1.0, low_inclusive=True)
        check_range(self, "lr_gamma", low=0.0, high=1.0)
        if not (math.isfinite(self.validation_split) and 0 <= self.validation_split < 1):
            raise ValueError(f"validation_split must be in [0, 1). Received: {self.validation_split}")
        if self.warmup_steps and self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"warmup_steps works with lr_schedule constant|cosine. Received: "
                             f"warmup_steps={self.warmup_steps}, lr_schedule={self.lr_schedule!r}")
        for name, allowed in (("precision", PRECISIONS), ("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES),
                              ("jit_compile", ("auto", "true", "false")), ("distribution", DISTRIBUTIONS),
                              ("lr_scaling", LR_SCALINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be {'|'.join(allowed)}. Received: {name}={getattr(self, name)!r}")


def to_dict(cfg):
    """A nested dataclass as plain dicts, lists and scalars (JSON-ready)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def from_dict(cls, values, source="config"):
    """Build dataclass `cls` from a nested dict; unknown keys raise `DataError`."""
    if not isinstance(values, dict):
        raise DataError(f"expected a mapping for {cls.__name__}, got {type(values).__name__}", source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DataError(f"unknown key(s) {unknown} for {cls.__name__}; known: {sorted(fields)}", source)
    defaults = cls()
    kwargs = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value, source)
        else:
            kwargs[name] = _coerce(value, default, name, source)
    try:
        return dataclasses.replace(defaults, **kwargs)
    except (TypeError, ValueError, OverflowError) as err:  # OverflowError: math.isfinite(10**400)
        raise DataError(str(err), source) from None


def _coerce(value, default, name, source):
    if value is None or default is None:
        return value
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, str) and isinstance(value, bool):
            return "true" if value else "false"  # YAML reads true/false as booleans
        if isinstance(default, tuple):
            return tuple(value) if isinstance(value, (list, tuple)) else (value,)
        if isinstance(default, (int, float, str)):
            if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return type(default)(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float64, int(inf)
        raise DataError(f"key '{name}' expects {type(default).__name__}, got {str(value)[:80]}", source) from None
    return value


def parse_override(text):
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise DataError(f"override must look like section.key=value, got {text!r}", "--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:  # as for a file: one line naming the override (a !!python tag included)
        raise DataError(f"not a valid YAML value ({_yaml_problem(err)})", f"--set {text}") from None
    return key.strip().split("."), value


def read_config_file(path):
    """A JSON or YAML config file as a dict."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return load_json(path)
    if not path.is_file():
        raise DataError("config file not found", path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML skips a byte-order mark itself
    except UnicodeDecodeError:
        raise DataError("not a text file (not UTF-8)", path) from None
    except yaml.YAMLError as err:
        raise DataError(f"not valid YAML ({_yaml_problem(err)})", path) from None
    return values or {}


def _yaml_problem(err):
    """A YAML error in one line: what and where (PyYAML's own text spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(err, "problem", None) or " ".join(str(err).split())
    context = getattr(err, "context", None)
    return where + (f"{problem} ({context})" if context else problem)


def load_config(cls, path=None, overrides=()):
    """Defaults <- config file (JSON/YAML) <- `key=value` overrides, in that order."""
    values = to_dict(cls())
    if path is not None:
        _merge(values, read_config_file(path), str(path))
    for text in overrides:
        keys, value = parse_override(text)
        patch = node = {}
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        _merge(values, patch, f"--set {text}")
    return from_dict(cls, values, str(path) if path else "config")


def _merge(base, patch, source):
    if not isinstance(patch, dict):
        raise DataError(f"expected a mapping, got {type(patch).__name__}", source)
    for key, value in patch.items():
        if key not in base:
            raise DataError(f"unknown key '{key}'; known: {sorted(base)}", source)
        if isinstance(base[key], dict):
            _merge(base[key], value, source)
        else:  # checked here too, so a bad value is blamed on the file or override it came from
            base[key] = _coerce(value, base[key], key, source)


def save_config(cfg, path):
    """Write the resolved config as JSON (atomically)."""
    save_json(path, to_dict(cfg))


def config_hash(values):
    """Short stable hash of a JSON-ready value (dict key order does not matter)."""
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def add_config_arguments(parser):
    """Add the `--config FILE` and repeatable `--set section.key=value` options."""
    parser.add_argument("--config", help="JSON or YAML config file (defaults are in code)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.epochs=3 (repeatable)")
