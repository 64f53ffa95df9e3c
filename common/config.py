"""Typed configs: dataclasses with defaults in code, a JSON/YAML file, `--set` overrides.

    cfg = load_config(Stage2Config, "configs/stage2_demo.yaml", ["train.epochs=3"])
    save_config(cfg, out_dir / "config.json")     # the resolved config, beside the outputs

Unknown keys are errors (a typo in a config file must not be silently ignored), and
values are converted to the type of the field's default (YAML lists become tuples).
"""

import dataclasses
import hashlib
import json
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
    except (TypeError, ValueError) as err:
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
    except (TypeError, ValueError):
        raise DataError(f"key '{name}' expects {type(default).__name__}, got {value!r}", source) from None
    return value


def parse_override(text):
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise DataError(f"override must look like section.key=value, got {text!r}", "--set")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def read_config_file(path):
    """A JSON or YAML config file as a dict."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return load_json(path)
    if not path.is_file():
        raise DataError("config file not found", path)
    try:
        values = yaml.safe_load(path.read_text())
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
