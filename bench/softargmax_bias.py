"""Decoding error of argmax+refine, soft-argmax and debiased soft-argmax on synthetic heatmaps.

    python bench/softargmax_bias.py
    python bench/softargmax_bias.py --sizes 64 128 --peaks 1.0 0.6 0.3 --noise 0 0.02 --samples 2000

Each cell (heatmap size, peak height, background noise) draws `--samples` keypoints
uniformly over the whole map (sub-pixel positions, borders included), encodes them
with `GaussianHeatmapCodec` (sigma in heatmap pixels), scales the maps to the peak
height, adds uniform noise U(0, noise) to every pixel and decodes them three ways:
`codec.decode` (argmax + log-parabola refinement), `codec.decode_soft(beta)` and
`codec.decode_soft(beta, debias=True)`. Errors are Euclidean, in heatmap pixels.
A softmax over the whole map gives every background pixel weight, so plain
soft-argmax is pulled toward the map centre; the pull grows as the peak weakens and
as the map grows, which is what the table shows.

Prints one row per cell and method (mean / median / P95 / max error) and writes them
with the settings to --output-dir/softargmax_bias.json (`results_io.write_result`).
"""

import argparse
import time
from pathlib import Path

import keras
import numpy as np

from common.codecs import GaussianHeatmapCodec
from results_io import write_result  # bench/ is on the path when run as a script

METHODS = ("argmax_refine", "soft_argmax", "soft_argmax_debiased")


def decode_errors(size, peak, noise, samples, sigma, beta, rng, chunk=250):
    """{method: (samples,) Euclidean errors in heatmap pixels} for one cell."""
    codec = GaussianHeatmapCodec((size, size), sigma)
    errors = {method: [] for method in METHODS}
    for start in range(0, samples, chunk):
        n = min(chunk, samples - start)
        xy_norm = rng.uniform(0.0, 1.0, size=(n, 1, 2)).astype(np.float32)
        heatmaps, _ = codec.encode(xy_norm)
        heatmaps = peak * keras.ops.convert_to_numpy(heatmaps)
        if noise > 0:
            heatmaps = heatmaps + rng.uniform(0.0, noise, size=heatmaps.shape).astype(np.float32)
        decoded = {
            "argmax_refine": codec.decode(heatmaps)[0],
            "soft_argmax": codec.decode_soft(heatmaps, beta=beta),
            "soft_argmax_debiased": codec.decode_soft(heatmaps, beta=beta, debias=True),
        }
        for method, xy in decoded.items():
            delta = (keras.ops.convert_to_numpy(xy) - xy_norm)[:, 0] * size  # square maps: one scale
            errors[method].append(np.hypot(delta[:, 0], delta[:, 1]))
    return {method: np.concatenate(parts) for method, parts in errors.items()}


def run(sizes, peaks, noises, samples, sigma, beta, seed):
    """One row per (size, peak, noise, method) with mean / median / p95 / max error."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        for noise in noises:
            for peak in peaks:
                errors = decode_errors(size, peak, noise, samples, sigma, beta, rng)
                for method in METHODS:
                    e = errors[method]
                    rows.append({"heatmap_size": size, "peak": peak, "noise": noise, "method": method,
                                 "mean": float(e.mean()), "median": float(np.median(e)),
                                 "p95": float(np.percentile(e, 95)), "max": float(e.max())})
    return rows


def format_table(rows):
    lines = [f"{'size':>5} {'noise':>6} {'peak':>5}  " + "  ".join(f"{m + ' mean/P95':>32}" for m in METHODS)]
    cells = {}
    for row in rows:
        cells.setdefault((row["heatmap_size"], row["noise"], row["peak"]), {})[row["method"]] = row
    for (size, noise, peak), by_method in cells.items():
        values = "  ".join(f"{by_method[m]['mean']:>22.3f} / {by_method[m]['p95']:>7.3f}" for m in METHODS)
        lines.append(f"{size:>5} {noise:>6g} {peak:>5g}  {values}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square heatmap sizes (%(default)s)")
    parser.add_argument("--peaks", type=float, nargs="+", default=[1.0, 0.6, 0.3], help="peak heights (%(default)s)")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.02],
                        help="background noise levels, uniform U(0, level) per pixel (%(default)s)")
    parser.add_argument("--samples", type=int, default=2000, help="keypoints per cell (%(default)s)")
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian sigma, heatmap pixels (%(default)s)")
    parser.add_argument("--beta", type=float, default=15.0, help="soft-argmax inverse temperature (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (%(default)s)")
    parser.add_argument("--output-dir", default="results", help="folder for the JSON (%(default)s)")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f"--samples must be >= 1. Received: {args.samples}")

    start = time.perf_counter()
    rows = run(args.sizes, args.peaks, args.noise, args.samples, args.sigma, args.beta, args.seed)
    seconds = time.perf_counter() - start
    print(f"decoding error in heatmap pixels (sigma {args.sigma:g}, beta {args.beta:g}, "
          f"{args.samples} keypoints per cell, {keras.backend.backend()} backend, {seconds:.1f} s)")
    print(format_table(rows))
    path = write_result(Path(args.output_dir) / "softargmax_bias.json",
                        {"seconds": round(seconds, 2), "unit": "heatmap px (Euclidean)", "rows": rows},
                        args=args, argv=argv)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
