"""Preprocess a DOTA-format folder into tiled train / val / test caches.

    python detection/centres/preprocess_centres.py --config configs/centres_aerial.yaml --workers 2
    python detection/centres/preprocess_centres.py --data-dir /data/DOTA/train --cache-dir runs/dota/cache \
        --set data.categories=[dota-v1.0] --set data.tile_size=1024

The folder holds images/NAME.png and labelTxt/NAME.txt (DOTA v1.0 / v1.5 lines), or
--labels and --images name the two folders. Its
images are split train / val / test (data.split, 70/15/15), cut into overlapping tiles
(data.tile_size, data.tile_overlap) resized to data.input_size. An unchanged config and
unchanged inputs reuse the caches.
"""

import argparse

from common import cli
from detection.centres.centres_config import CentresConfig

SHORTCUTS = (("data_dir", "data.data_dir"), ("cache_dir", "data.cache_dir"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--data-dir", help="DOTA folder with images/ and labelTxt/ (data.data_dir)")
    parser.add_argument("--cache-dir", help="where caches go: {cache_dir}/{train,val,test}/ (data.cache_dir)")
    cli.add_data_files(parser, labels="folder of DOTA label files NAME.txt (default: {data_dir}/labelTxt)",
                       images="folder of the images NAME.png (default: {data_dir}/images)")
    cli.add_workers(parser, "processes reading and tiling images")
    cli.add_skip_bad(parser)
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    from detection.centres.centres_data import SPLITS, preprocess  # after parsing: --help starts at once
    cfg = cli.config_from_args(CentresConfig, args, SHORTCUTS)
    summary = preprocess(cfg.data, progress=not args.quiet, workers=args.workers, labels=args.labels,
                         images=args.images, skip_bad=args.skip_bad)
    for split in SPLITS:
        s = summary[split]
        if s.get("rebuilt"):
            print(f"rebuilding the {split} cache: {s['rebuilt']}")
        state = "reused" if s["reused"] else ("written" if s["cache"] else
                                              "empty, old cache removed" if s.get("removed") else "empty, skipped")
        print(f"{split}: {s['images']} images, {s['tiles']} tiles, {s['objects']} objects; cache {state}"
              + (f": {s['cache']}" if s["cache"] else ""))
        cli.print_skipped(s.get("skipped"), s.get("report"))
    print(f"seconds: {summary['seconds']}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
