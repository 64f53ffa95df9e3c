"""Inference throughput of the centre detector: images/s at batch 1, 8, 32 and peak memory,
against plain `model.predict` image by image, in the same run.

    python bench/centres_throughput.py --images 64 --output-dir bench/results

Synthetic 512x512 aerial images (one tile each) go through the full path: the
compiled predict step on a batch (`predict_on_batch`) + peak decoding (3x3 NMS,
threshold, sub-pixel refinement, mapping to original pixels). The baseline calls
`model.predict` on one image at a time (what a first script would do) with the same
decoding. A random-init model unless --model is given (speed does not depend on the
weights). Peak memory is the process's peak resident set size after each setting
(it only grows, so each row is "peak so far"). Prints a table, writes
--output-dir/centres_throughput.json (`results_io.write_result`).
"""

import argparse
import resource
import time
from pathlib import Path

from common import cli  # quiet TensorFlow logs first (before keras)
import numpy as np

from detection.centres.aerial import AerialConfig, render_image
from detection.centres.centres_config import CentresConfig
from detection.centres.tiling import cut_tiles, tile_transform
from results_io import write_result  # bench/ is on the path when run as a script


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="synthetic 512 px images per setting")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--baseline-images", type=int, default=16, help="images for the model.predict loop")
    parser.add_argument("--model", help="a trained .keras model (default: random init, default config)")
    parser.add_argument("--output-dir", default="results", help="folder for centres_throughput.json (%(default)s)")
    args = parser.parse_args(argv)
    # The model code after parsing: --help starts at once and prints no TensorFlow start-up lines.
    from detection.centres.centres import build_model
    from detection.centres.centres_pipeline import load_centres_model, merge_distance, merge_per_image, tile_peaks

    cfg = CentresConfig()
    size, tile = cfg.data.input_size[0], cfg.data.tile_size
    model = load_centres_model(args.model) if args.model else build_model(len(cfg.data.class_names), cfg.data,
                                                                           cfg.model, seed=0)
    originals = [render_image([9, i], AerialConfig(image_size=tile))[0] for i in range(args.images)]
    tiles = np.concatenate([cut_tiles(image, [(0, 0)], tile, size) for image in originals])
    transforms = np.repeat(tile_transform((0, 0), tile, size)[None], len(tiles), axis=0)
    tile_image = np.arange(len(tiles))
    codec = cfg.data.codec(int(model.output["heatmaps"].shape[-1]))
    merge = merge_distance(cfg.use, cfg.data.px_per_heatmap_px)
    rows = []

    def run(name, batch, fn, count):
        fn(tiles[:batch])  # warm-up: compile / trace outside the timing
        start = time.perf_counter()
        found = 0
        for s in range(0, count, batch):
            heat = fn(tiles[s:s + batch])
            peaks = tile_peaks(heat, np.arange(len(heat)), transforms[s:s + batch], cfg.data.input_size, cfg.use,
                               codec)
            found += len(merge_per_image(peaks, tile_image[s:s + batch] - s, merge)["image"])
        seconds = time.perf_counter() - start
        rows.append({"method": name, "batch": batch, "images": count, "seconds": round(seconds, 3),
                     "images_per_second": round(count / seconds, 2), "peak_rss_mib": round(peak_rss_mib(), 1),
                     "detections": found})
        print(f"| {name:34s} | {batch:5d} | {count:6d} | {seconds:8.2f} | {count / seconds:9.2f} | "
              f"{rows[-1]['peak_rss_mib']:10.1f} |", flush=True)

    print("| method | batch | images | seconds | images/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    run("model.predict, one image per call", 1,
        lambda x: np.asarray(model.predict(x, verbose=0)["heatmaps"], np.float32), min(args.baseline_images, len(tiles)))
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        run("predict_on_batch + decode", batch,
            lambda x: np.asarray(model.predict_on_batch(x)["heatmaps"], np.float32), len(tiles))
    report = {
        "what": f"centre detector inference, {tile} px image -> {size} px input -> "
                f"{cfg.data.heatmap_size[0]} px heatmaps, {len(cfg.data.class_names)} classes, decode included",
        "model": args.model or "random init", "parameters": int(model.count_params()), "rows": rows,
    }
    path = write_result(Path(args.output_dir) / "centres_throughput.json", report, args=args, argv=argv)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
