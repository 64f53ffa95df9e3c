"""Command-line edge shared by every script: config flags, the flags every script spells
the same way, quiet logs, one-line errors.

Import this module first in a script: it quietens TensorFlow's C++ start-up logs
before Keras imports TensorFlow.
"""

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common.config import add_config_arguments, load_config  # noqa: E402
from common.errors import DataError  # noqa: E402
from common.run_config import apply_cache_settings, load_run_config  # noqa: E402


def config_from_args(cls, args, shortcuts=()):
    """Defaults <- --config <- shortcut flags (e.g. --epochs) <- --set, as one config.

    shortcuts: (argparse dest, "section.key") pairs; a flag left at None is ignored.
    """
    overrides, _ = _overrides(args, shortcuts)
    if getattr(args, "coordinator", None) or getattr(args, "num_processes", None) is not None \
            or getattr(args, "process_id", None) is not None:
        from common.distribute import set_peers

        set_peers(args.coordinator, args.num_processes, args.process_id)
    return load_config(cls, args.config, overrides)


def training_config_from_args(cls, args, shortcuts, layout, split):
    """`config_from_args` for a trainer, with the data settings the `split` cache was
    built with (`common.run_config.apply_cache_settings`): a cache built with
    `--bbox-format xyxy` trains without it repeated; a flag that contradicts it is an error."""
    cfg = config_from_args(cls, args, shortcuts)
    overrides, sources = _overrides(args, shortcuts)
    return apply_cache_settings(cls, cfg, Path(cfg.data.cache_dir) / split, layout, args.config, overrides, sources)


def run_config_from_args(cls, args, shortcuts, trained, layout=None):
    """For a use_* script: the model to run and the config to run it with.

    The model is `--model`, default `{train.output_dir}/best.keras` of the config as
    given (`fine_tune/best.keras` in it with train.fine_tune). What it was trained with
    comes from the run's config.json beside it (`common.run_config.load_run_config`): a
    flag, `--set` or --config value that contradicts a `trained` setting is an error
    naming it.
    With the part's cache `layout`, a run on a cache split (no --images) also takes the
    data settings that split was built with, but those the model fixes (`trained`).
    Returns (cfg, model path, path of the run's config.json or None).
    """
    given = config_from_args(cls, args, shortcuts)
    # Fine-tuning writes its run into fine_tune/ (the first run's model stays as it was).
    run_dir = Path(given.train.output_dir) / ("fine_tune" if getattr(given.train, "fine_tune", False) else "")
    model_path = Path(args.model) if args.model else run_dir / "best.keras"
    overrides, sources = _overrides(args, shortcuts)
    cfg, run_config = load_run_config(cls, model_path, args.config, overrides, trained, override_sources=sources)
    if layout is not None and not getattr(args, "images", None):
        cfg = apply_cache_settings(cls, cfg, Path(cfg.data.cache_dir) / args.split, layout, args.config, overrides,
                                   sources, keep=trained)
    return cfg, model_path, run_config


def _overrides(args, shortcuts):
    """The shortcut flags and --set as `key=value` overrides, and how errors name each."""
    flags = [(dest, key) for dest, key in shortcuts if getattr(args, dest) is not None]
    # JSON is YAML: a path with '#' or a value like 'yes' stays a string.
    overrides = [f"{key}={json.dumps(getattr(args, dest))}" for dest, key in flags] + list(args.set)
    sources = [f"--{dest.replace('_', '-')} {getattr(args, dest)}" for dest, _ in flags]
    return overrides, sources + [f"--set {text}" for text in args.set]


# --- flags every script spells the same way ---

DEFAULT_SEED = 0


def add_output_dir(parser, help, **kwargs):
    """`--output-dir DIR`. The old `--out` still parses: argparse takes it as an abbreviation."""
    parser.add_argument("--output-dir", help=help, **kwargs)


def add_seed(parser, help="random seed"):
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"{help} (%(default)s)")


def add_workers(parser, help="processes working in parallel", default=1):
    parser.add_argument("--workers", type=int, default=default, help=f"{help} (%(default)s)")


def add_allow_outside(parser):
    """`--allow-outside`: every preprocess refuses a labels file's image name that leads
    outside the data folder (`common.data_io.data_file`) unless given this."""
    parser.add_argument("--allow-outside", action="store_true",
                        help="read images that the labels name outside the data folder (an absolute path or '..')")


def add_data_files(parser, labels="label file (default: {data_dir}/{split}.json)",
                   images="image folder (default: {data_dir}/images/{split}/, then images/, then {data_dir})"):
    """`--labels` and `--images` for a preprocess script: a data set laid out otherwise
    than the split-name layout (`train_annotations.json` beside `train/`) is named as it is."""
    parser.add_argument("--labels", metavar="FILE" if "file" in labels else "DIR", help=labels)
    parser.add_argument("--images", metavar="DIR", help=images)


def add_skip_bad(parser):
    """`--skip-bad` on every preprocess script: leave bad items out instead of stopping."""
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out bad records and unreadable images, listed in the cache folder's "
                        "skipped.tsv (path, reason), instead of stopping at the first")


def print_skipped(count, report):
    """The summary line of a `--skip-bad` run that left items out."""
    if count:
        print(f"skipped {count} bad item(s), listed in {report}")


def add_quiet(parser):
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


# The shared `train` settings (common.config.TrainingConfig) as flags: (argparse dest, key).
TRAINING_SHORTCUTS = (("cache_dir", "data.cache_dir"), ("output_dir", "train.output_dir"),
                      ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("learning_rate", "train.learning_rate"), ("precision", "train.precision"),
                      ("seed", "train.seed"), ("val_split", "train.val_split"),
                      ("distribution", "train.distribution"))


def add_training_arguments(parser, split=True):
    """The flags every train_*.py takes, spelled alike: --config/--set, --split (when the
    part trains on a named cache split), the shared `train` settings, --quiet. Returns
    their shortcuts for `config_from_args`; a part adds its own flags and shortcuts."""
    add_config_arguments(parser)
    if split:
        parser.add_argument("--split", default="train", help="cache split to train on (%(default)s)")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    add_output_dir(parser, "train.output_dir")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--batch-size", type=int, help="train.batch_size")
    parser.add_argument("--learning-rate", type=float, help="train.learning_rate")
    parser.add_argument("--precision", help="train.precision: auto|float32|mixed_float16|mixed_bfloat16")
    parser.add_argument("--seed", type=int, help="train.seed (default 0)")
    parser.add_argument("--val-split", metavar="NAME", help="train.val_split: validate on this cached split "
                        "instead of holding out train.validation_split")
    add_distribution_arguments(parser)
    add_quiet(parser)
    return TRAINING_SHORTCUTS


def add_distribution_arguments(parser):
    """--distribution (train.distribution) and where a multi_process run finds its peers;
    `config_from_args` hands the latter to `keras.distribution.initialize` (common.distribute)."""
    group = parser.add_argument_group("scaling out (common.distribute)")
    group.add_argument("--distribution", help="train.distribution: none|data_parallel (every local device)|"
                       "multi_process (JAX, several machines)")
    group.add_argument("--coordinator", help="multi_process: HOST:PORT of process 0 "
                       "(else KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    group.add_argument("--num-processes", type=int, help="multi_process: processes in all "
                       "(else KERAS_DISTRIBUTION_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, help="multi_process: this process, 0 to N-1 "
                       "(else KERAS_DISTRIBUTION_PROCESS_ID)")


USE_SHORTCUTS = (("cache_dir", "data.cache_dir"), ("output_dir", "use.output_dir"))


def add_use_arguments(parser, model_default="{train.output_dir}/best.keras"):
    """The flags every use_*.py takes, spelled alike: --config/--set, --model, --split (a
    labelled cache split, test by default) or --images, --cache-dir, --output-dir, --quiet.
    Returns their shortcuts for `run_config_from_args`; a part adds its own."""
    add_config_arguments(parser)
    add_model(parser, model_default)
    parser.add_argument("--split", default="test", help="labelled cache split to run on (%(default)s)")
    add_images(parser)
    parser.add_argument("--cache-dir", help="data.cache_dir")
    add_output_dir(parser, "use.output_dir")
    add_quiet(parser)
    return USE_SHORTCUTS


def print_training(summary, unit="images"):
    """What every trainer prints after `common.training.train`: epochs, data, speed, last losses."""
    # The run's epochs, not this process's: a resumed run trained what its first part did too.
    resumed = summary["epochs_done"] - summary["epochs_run"]
    resume_note = f", {summary['epochs_run']} of them after resuming from epoch {resumed}" if resumed else ""
    print(f"trained {summary['epochs_done']} of {summary['epochs_planned']} epoch(s){resume_note} "
          f"on {summary['train_images']} {unit} ({summary['val_images']} validation), {summary['backend']} "
          f"backend, {summary['policy']}, {summary['seconds']} s ({summary['images_per_second']} {unit}/s)")
    print("last epoch:", json.dumps({k: round(v, 5) for k, v in summary["last"].items()}))
    print(f"models, history, plots and logs in {summary['output_dir']}")


def add_images(parser):
    """`--images`: what every use_* script runs on instead of a labelled cache."""
    parser.add_argument("--images", help="run on a folder of images (or one image) instead of a cache "
                        "(no evaluation)")


def add_model(parser, default="{train.output_dir}/best.keras"):
    """`--model`: a trained model; the config.json beside it says what it was trained with."""
    parser.add_argument("--model", help=f"trained model (default: {default}); the run's config.json beside it "
                        "gives the settings it was trained with")


@contextlib.contextmanager
def one_line_warnings():
    """Within the block, a warning prints as one line, `warning: MESSAGE`, like the errors
    (not Python's two lines with the source line that raised it)."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
        yield


def run(main, argv=None):
    """Call `main(argv)`; a `DataError` (bad input), or an error on a named path that a user
    gave wrongly (a file where a folder is wanted, no permission), becomes one line on
    stderr and exit 2. Other errors keep their traceback: they are bugs to report."""
    try:
        return main(argv) or 0
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as err:
        if err.filename is None:  # a path given wrongly: a file where a folder is wanted, no permission
            raise
        where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        print(f"error: {where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (training resumes from the last epoch when run again)", file=sys.stderr)
        return 130


__all__ = ["add_config_arguments", "config_from_args", "run", "run_config_from_args"]
