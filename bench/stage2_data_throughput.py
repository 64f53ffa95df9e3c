"""Stage-2 data throughput: renders/s and preprocessed images/s, by number of worker processes.

    python bench/stage2_data_throughput.py --images 200 --workers 1,2 --output-dir bench/results

Renders --images synthetic 1920x1200 SPEED-like JPEGs with `render_split`, then builds
the 128x128 cache from them with `preprocess` (a fresh cache each time), once per
worker count. A third row type times the two ways of cutting one JPEG down to the
input frame, in one process: a full decode + `warp_image` (the array path), and
`warp_image_file`, which lets libjpeg decode at 1/4 size first (the path
`preprocess_vis.py` takes). Wall-clock seconds include process start-up, as a user sees
them. Prints a table, writes --output-dir/stage2_data_throughput.json (`results_io.write_result`).
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common.data_io import read_image_rgb
from common.geometry import warp_image, warp_image_file
from common.parallel import default_workers
from stage2_visible_keypoints.config import DataConfig
from stage2_visible_keypoints.data import preprocess
from stage2_visible_keypoints.render import RenderConfig, render_split
from results_io import write_result  # bench/ is on the path when run as a script


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="renders per setting")
    parser.add_argument("--workers", default=f"1,{default_workers()}", help="comma-separated worker counts")
    parser.add_argument("--work-dir", help="scratch folder (default: a temporary one, removed at the end)")
    parser.add_argument("--output-dir", default="results", help="folder for stage2_data_throughput.json (%(default)s)")
    args = parser.parse_args(argv)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="stage2_data_"))
    rows = []

    def add(step, workers, count, seconds):
        rows.append({"step": step, "workers": workers, "images": count, "seconds": round(seconds, 3),
                     "images_per_second": round(count / seconds, 2)})
        print(f"| {step:42s} | {workers:7d} | {count:6d} | {seconds:8.2f} | {count / seconds:9.1f} |", flush=True)

    print("| step | workers | images | seconds | images/s |")
    print("|---|---|---|---|---|")
    try:
        for workers in sorted({int(w) for w in args.workers.split(",")}):
            renders, cache = work / f"renders_{workers}", work / f"cache_{workers}"
            start = time.perf_counter()
            render_split(renders, RenderConfig(num_images=args.images, seed=0), "train", workers, progress=False)
            add("render 1920x1200 JPEG", workers, args.images, time.perf_counter() - start)
            start = time.perf_counter()
            preprocess(DataConfig(data_dir=str(renders), cache_dir=str(cache)), "train", progress=False,
                       workers=workers)
            add("preprocess to the 128x128 cache", workers, args.images, time.perf_counter() - start)
        paths = sorted((renders / "images" / "train").glob("*.jpg"))
        cfg = DataConfig()
        sizes = (cfg.canvas_size, cfg.crop_size, cfg.input_size)
        for step, fn in (("full decode + warp_image", lambda p: warp_image(read_image_rgb(p), *sizes)),
                         ("warp_image_file (JPEG decoded at 1/4)", lambda p: warp_image_file(p, *sizes))):
            start = time.perf_counter()
            for path in paths:
                fn(path)
            add(step, 1, len(paths), time.perf_counter() - start)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    path = write_result(Path(args.output_dir) / "stage2_data_throughput.json", {"images": args.images, "rows": rows},
                        args=args, argv=argv)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
