"""Command-line edge shared by every script: config flags, quiet logs, one-line errors.

Import this module first in a script: it quietens TensorFlow's C++ start-up logs
before Keras imports TensorFlow.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common.config import add_config_arguments, load_config  # noqa: E402
from common.errors import DataError  # noqa: E402


def config_from_args(cls, args, shortcuts=()):
    """Defaults <- --config <- shortcut flags (e.g. --epochs) <- --set, as one config.

    shortcuts: (argparse dest, "section.key") pairs; a flag left at None is ignored.
    """
    # JSON is YAML: a path with '#' or a value like 'yes' stays a string.
    overrides = [f"{key}={json.dumps(getattr(args, dest))}" for dest, key in shortcuts
                 if getattr(args, dest) is not None]
    return load_config(cls, args.config, overrides + list(args.set))


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


__all__ = ["add_config_arguments", "config_from_args", "run"]
