"""Labels (COCO keypoints or the list format) + images -> the training cache.

    python baselines/preprocess_base.py --config configs/baselines.yaml --split train

Reads `{data.data_dir}/{split}.json` and the images (`images/{split}/` or `images/`),
writes `{data.cache_dir}/{split}/X_data.npy, Y_data.npz`. An up-to-date cache is reused.
"""

import argparse

from common import cli
from baselines.config import BaselinesConfig

SHORTCUTS = (("data_dir", "data.data_dir"), ("cache_dir", "data.cache_dir"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--split", default="train", help="split to preprocess (%(default)s)")
    parser.add_argument("--data-dir", help="data.data_dir")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    cli.add_allow_outside(parser)
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    from baselines.data import preprocess  # after parsing: --help starts at once
    cfg = cli.config_from_args(BaselinesConfig, args, SHORTCUTS)
    out = preprocess(cfg.data.data_dir, args.split, cfg.data.cache_dir, cfg.data, progress=not args.quiet,
                     allow_outside=args.allow_outside)
    print(f"cache in {out}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
