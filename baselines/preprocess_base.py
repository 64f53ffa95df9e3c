"""Labels (COCO keypoints or the list format) + images -> the training cache.

    python baselines/preprocess_base.py --config configs/baselines.yaml --split train

Reads `{data.data_dir}/{split}.json` and the images (`images/{split}/`, `images/` or the
data folder), or the file `--labels` and the folder `--images` name; writes
`{data.cache_dir}/{split}/X_data.npy, Y_data.npz`. A COCO file gives one sample per
person (instance), cropped by its box. An up-to-date cache is reused.
"""

import argparse

import numpy as np

from common import cli
from baselines.config import BaselinesConfig

SHORTCUTS = (("data_dir", "data.data_dir"), ("cache_dir", "data.cache_dir"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--split", default="train", help="split to preprocess (%(default)s)")
    parser.add_argument("--data-dir", help="data.data_dir")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    cli.add_data_files(parser)
    cli.add_skip_bad(parser)
    cli.add_allow_outside(parser)
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    from baselines.data import load_cache, preprocess  # after parsing: --help starts at once
    from common.cache import REPORT_FILE, skipped_items
    cfg = cli.config_from_args(BaselinesConfig, args, SHORTCUTS)
    out = preprocess(cfg.data.data_dir, args.split, cfg.data.cache_dir, cfg.data, progress=not args.quiet,
                     labels=args.labels, images=args.images, skip_bad=args.skip_bad, allow_outside=args.allow_outside)
    _, y = load_cache(cfg.data.cache_dir, args.split, cfg.data)
    print(f"cache in {out}: {len(y['xy_norm'])} samples from {len(np.unique(y['filenames']))} images, "
          f"{len(y['keypoint_names'])} keypoints, {int(y['labelled'].sum())} labelled "
          f"({int(y['visible'].sum())} visible)")
    if "skipped_iscrowd" in y:
        print(f"instances skipped: {int(y['skipped_iscrowd'])} iscrowd, {int(y['skipped_unlabelled'])} with no "
              "labelled keypoint")
    cli.print_skipped(skipped_items(out), out / REPORT_FILE)


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
