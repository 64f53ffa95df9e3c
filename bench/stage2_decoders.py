"""How a trained stage-2 model's heatmaps decode: the model's own keypoints against each decoder.

    python bench/stage2_decoders.py --model runs/demo/model/best.keras --cache-dir runs/demo/cache --split test

Runs --model on a cache split and decodes the sigmoid of its heatmap logits four ways:
the model's `keypoints` output (its SoftArgMax layer, plain or debiased as it was
built), plain soft-argmax at beta 15, the debiased soft-argmax (Gu et al. 2021) at beta
15, and argmax + log-parabola refinement. For each: the Euclidean error of the visible
keypoints in px of the 128x128 input frame (mean, median, P90, PCK@2). Also the peak
height of the visible keypoints' maps and the median background value, which decide
the soft-argmax's pull toward the map centre (`bench/softargmax_bias.py`). On a model
trained through the plain soft-argmax, argmax errors far above the soft-argmax ones say
the heatmap peaks are not at the keypoints: the coordinate loss has shifted them to
make up for that pull. Prints a table; writes --output-dir/stage2_decoders.json.
"""

import argparse
from pathlib import Path

import keras
import numpy as np

from common.codecs import GaussianHeatmapCodec
from stage2_visible_keypoints.data import load_cache
from stage2_visible_keypoints.pipeline import load_stage2_model
from results_io import write_result  # bench/ is on the path when run as a script


def error_row(xy_norm, truth, visible, input_size):
    errors = np.linalg.norm(np.asarray(xy_norm, np.float64) * input_size - truth, axis=-1)[visible]
    return {"mean_px": float(errors.mean()), "median_px": float(np.median(errors)),
            "p90_px": float(np.percentile(errors, 90)), "pck@2": float((errors < 2).mean())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a stage-2 .keras model")
    parser.add_argument("--cache-dir", required=True, help="folder of the preprocess_vis.py caches")
    parser.add_argument("--split", default="test", help="(%(default)s)")
    parser.add_argument("--beta", type=float, default=15.0, help="soft-argmax inverse temperature (%(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="(%(default)s)")
    parser.add_argument("--output-dir", default="results", help="folder for stage2_decoders.json (%(default)s)")
    args = parser.parse_args(argv)

    model = load_stage2_model(args.model)
    cache = load_cache(args.cache_dir, args.split)
    input_size = cache.y["input_size"].astype(np.float64)
    truth, visible = cache.y["xy_norm"] * input_size, cache.y["visible"].astype(bool)
    out = model.predict(np.asarray(cache.images), batch_size=args.batch_size, verbose=0)
    probs = 1.0 / (1.0 + np.exp(-np.asarray(out["heatmap_logits"], np.float32)))
    codec = GaussianHeatmapCodec(probs.shape[1:3], float(cache.y["sigma"]))
    argmax_xy, _ = codec.decode(probs)
    decoded = {
        "model keypoints output": out["keypoints"],
        f"soft-argmax, beta {args.beta:g}": codec.decode_soft(probs, args.beta),
        f"soft-argmax debiased, beta {args.beta:g}": codec.decode_soft(probs, args.beta, debias=True),
        "argmax + refine": argmax_xy,
    }
    rows = {name: error_row(keras.ops.convert_to_numpy(xy), truth, visible, input_size)
            for name, xy in decoded.items()}
    peak = probs.max(axis=(1, 2))[visible]
    stats = {"peak_median": float(np.median(peak)), "peak_p10": float(np.percentile(peak, 10)),
             "background_median": float(np.median(np.median(probs, axis=(1, 2))[visible]))}

    print(f"{args.model} on {args.split} ({len(truth)} images, {int(visible.sum())} visible keypoints); "
          f"px in the {int(input_size[0])}x{int(input_size[1])} input frame")
    print(f"{'decoder':36s} {'mean':>8} {'median':>8} {'p90':>8} {'pck@2':>8}")
    for name, row in rows.items():
        print(f"{name:36s} {row['mean_px']:>8.3f} {row['median_px']:>8.3f} {row['p90_px']:>8.3f} "
              f"{row['pck@2']:>8.3f}")
    print(f"peak height of the visible keypoints' maps: median {stats['peak_median']:.3f}, "
          f"10th percentile {stats['peak_p10']:.3f}; median background {stats['background_median']:.4f}")
    path = write_result(Path(args.output_dir) / "stage2_decoders.json",
                        {"images": len(truth), "visible_keypoints": int(visible.sum()),
                         "units": "Euclidean error, px in the input frame", "decoders": rows, "heatmaps": stats},
                        args=args, argv=argv)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
