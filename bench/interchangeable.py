"""Interchangeable keypoints: stick figures whose hand labels are swapped at random.

    nice -n 10 python bench/interchangeable.py       # 6 arms x 6,000 images seen, CPU (bench/README.md)
    python bench/interchangeable.py --train-images 300 --budget-images 600 --test-images 50   # a smoke run
    python bench/interchangeable.py --models heatmap --budget-images 24000   # HeatmapNet, 4x the budget

The stick figures (`baselines/stickfigure.py`) name their hands by image side; here each
figure's `hand_left` and `hand_right` labels are swapped with probability 1/2, in the
training and the held-out figures alike, as in a data set whose annotators had no
left/right convention. HeatmapNet, IntegralNet and RegressionNet (`baselines/`) are
each trained twice through the package's driver (`baselines.pipeline.train_from_cache`,
so `common.training.train`) on the same images and budget: without a group, and with
`data.interchangeable: [[hand_left, hand_right]]`. Each is evaluated on held-out figures
(with their own random swaps) by hand PCK@0.05 (a hand within 0.05 of the diagonal of
its figure's keypoint box), two ways:

    matched  each figure's two hand predictions assigned to its two hand labels the
             way that fits best (`common.metrics.match_groups`): is each drawn hand found?
    raw      against the labels as given: about 1/2 at best, since the labels are a coin toss

Without the group the labels contradict each other from image to image, so a heatmap
model learns two maps that both peak on whichever hand, and regression the average of
the two; matched PCK shows it. With the group the loss takes the better assignment
(a min over the group's permutations) and the argmax decode keeps the two on distinct
peaks. The models decode as in `use_base.py` (argmax + refine for HeatmapNet,
soft-argmax for IntegralNet, the regressed coordinates for RegressionNet).

Prints a table and writes `--output-dir/interchangeable.json` (`results_io.write_result`).
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from results_io import write_result  # bench/ is on the path when run as a script

MODELS = ("heatmap", "integral", "regression")
HANDS = ("hand_left", "hand_right")
FRACTION = 0.05


def swap_hands(labels_path, seed, count):
    """Swap the two hands' labels of a random half of the figures in a COCO file (and record
    `count`, so that a rerun knows the file); returns the mask."""
    from baselines.stickfigure import KEYPOINT_NAMES
    from common.data_io import load_json, save_json

    coco = load_json(labels_path)
    left, right = (KEYPOINT_NAMES.index(name) for name in HANDS)
    swapped = np.random.default_rng(seed).uniform(size=len(coco["annotations"])) < 0.5
    for annotation, swap in zip(coco["annotations"], swapped):
        if swap:
            kp = np.asarray(annotation["keypoints"]).reshape(-1, 3)
            kp[[left, right]] = kp[[right, left]]
            annotation["keypoints"] = kp.ravel().tolist()
    coco["info"].update(hands_swapped=int(swapped.sum()), count=count)
    save_json(labels_path, coco)
    return swapped


def prepare(out, args, cfg):
    """Render, swap and cache the train and test figures under `out` (reused when present)."""
    from common.data_io import load_json
    from baselines.data import preprocess
    from baselines.stickfigure import StickFigureConfig, render_dataset

    data_dir = out / "data"
    figure = StickFigureConfig(image_size=args.input_size)
    for split, count, seed in (("train", args.train_images, args.data_seed),
                               ("test", args.test_images, args.data_seed + 1)):
        labels = data_dir / f"{split}.json"
        info = load_json(labels).get("info", {}) if labels.is_file() else {}
        if (info.get("seed"), info.get("count"), info.get("config", {}).get("image_size")) != (seed, count,
                                                                                               figure.image_size):
            render_dataset(data_dir, count, seed, split, figure)
            swap_hands(labels, seed + 100, count)
        preprocess(data_dir, split, out / "cache", cfg.data, progress=False)


def hand_pck(xy_pred, y, hands, groups):
    """Hand PCK@FRACTION, matched and raw, with each figure's whole keypoint box as the reference."""
    from common.metrics import bbox_diagonals, match_groups, relabel

    truth, visible = y["xy_norm"], y["visible"]
    diagonal = bbox_diagonals(truth, visible)[:, None]

    def pck(pred):
        errors = np.hypot(*np.moveaxis(pred - truth, -1, 0))[:, hands]
        return float(np.mean(errors <= FRACTION * diagonal))

    return {"matched": pck(relabel(xy_pred, match_groups(xy_pred, truth, visible, groups))), "raw": pck(xy_pred)}


def run_arm(out, cfg, kind, grouped, args):
    import keras

    from baselines import pipeline
    from baselines.data import load_cache

    name = f"{kind}_{'group' if grouped else 'none'}"
    run_dir = out / "runs" / name
    data = dataclasses.replace(cfg.data, interchangeable=((HANDS,) if grouped else ()))
    train = dataclasses.replace(cfg.train, output_dir=str(run_dir))
    cfg = dataclasses.replace(cfg, data=data, model=dataclasses.replace(cfg.model, kind=kind), train=train)
    keras.backend.clear_session()
    start = time.perf_counter()
    summary = pipeline.train_from_cache(cfg, progress=not args.quiet, tensorboard=False)
    seconds = time.perf_counter() - start
    images, y = load_cache(cfg.data.cache_dir, "test", cfg.data)
    names = [str(n) for n in y["keypoint_names"]]
    hand_groups = pipeline.data_groups(dataclasses.replace(cfg, data=dataclasses.replace(data, interchangeable=(HANDS,))),
                                       names)
    model = pipeline.load_model(run_dir / "best.keras")
    outputs = pipeline.predict(model, images, cfg.use.batch_size)
    decoder = pipeline.decoder_name(cfg)
    # The declared groups decode on distinct peaks; the arm without them decodes as trained.
    xy_norm = pipeline.decode(outputs, decoder, cfg.data.codec(), groups=hand_groups if grouped else ())
    size = cfg.data.input_size
    hands = [names.index(h) for h in HANDS]
    # The matched figures are computed for both arms: the arm without a group is judged
    # by whether it finds the drawn hands at all, whatever it calls them.
    test = pipeline.evaluate(xy_norm, y, size, groups=hand_groups)
    return {"name": name, "model": kind, "group": grouped, "decoder": decoder,
            "hand_pck": hand_pck(xy_norm * size, {"xy_norm": y["xy_norm"] * size, "visible": y["visible"]}, hands,
                                 hand_groups),
            "all_pck": {"matched": test["matched"]["pck"][f"{FRACTION:g}"], "raw": test["pck"][f"{FRACTION:g}"]},
            "mean_error_px": {"matched": test["matched"]["mean_error_px"], "raw": test["mean_error_px"]},
            "images_seen": summary.get("images_seen"), "train_seconds": round(seconds, 1),
            "training": summary["training"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=2000, help="training figures (10 %% held for validation)")
    parser.add_argument("--test-images", type=int, default=300, help="held-out figures")
    parser.add_argument("--budget-images", type=int, default=6000, help="images seen in training, per model")
    parser.add_argument("--input-size", type=int, default=64, help="figure and model input side, pixels")
    parser.add_argument("--heatmap-size", type=int, default=0, help="heatmap side (default: input / 2)")
    parser.add_argument("--sigma", type=float, default=1.5, help="Gaussian sigma, heatmap pixels")
    parser.add_argument("--loss", default="mse_peak", help="train.loss of the heatmap and integral models")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--groups", nargs="+", default=["group", "none"], choices=["none", "group"],
                        help="arms: without and with the hand group declared")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--data-seed", type=int, default=1, help="seed of the figures and the swaps (the benched: 1)")
    parser.add_argument("--output-dir", default="bench/results/interchangeable", help="where the JSON goes")
    parser.add_argument("--work-dir", default="", help="data, caches and runs (default: /tmp/interchangeable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from baselines.config import BaselinesConfig, DataConfig, TrainConfig

    out = Path(args.work_dir or "/tmp/interchangeable")
    # A 64 x 64 input (the figures drawn at that size) keeps the run short on CPU; 32 x 32 maps
    # and MSE + peak distance learned fastest in the baselines' 2-epoch ablations.
    cfg = BaselinesConfig(
        data=DataConfig(data_dir=str(out / "data"), cache_dir=str(out / "cache"), input_size=args.input_size,
                        heatmap_size=args.heatmap_size or args.input_size // 2, sigma=args.sigma),
        train=TrainConfig(loss=args.loss, batch_size=args.batch_size, budget_images=args.budget_images, epoch_images=0,
                          lr_schedule="constant", precision="float32"))
    prepare(out, args, cfg)
    rows, path = [], Path(args.output_dir) / "interchangeable.json"
    for kind in args.models:
        for grouped in [arm == "group" for arm in args.groups]:
            rows.append(run_arm(out, cfg, kind, grouped, args))
            row = rows[-1]
            print(f"{row['name']:<18} hand PCK@{FRACTION:g} matched {row['hand_pck']['matched']:.3f}  "
                  f"raw {row['hand_pck']['raw']:.3f}  ({row['train_seconds']:.0f} s)", flush=True)
            # After every arm: a run stopped part-way still leaves the rows it finished.
            write_result(path, {"rows": rows, "finished": len(rows) == len(args.models) * len(args.groups)},
                         args=args, argv=argv)

    print(f"\nHand PCK@{FRACTION:g} on {args.test_images} held-out figures (hand labels swapped at random), "
          f"{args.budget_images} training images seen per model:")
    print(f"| model | group declared | hand PCK matched | hand PCK raw | all-keypoint PCK matched | train s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {'yes' if row['group'] else 'no'} | {row['hand_pck']['matched']:.3f} | "
              f"{row['hand_pck']['raw']:.3f} | {row['all_pck']['matched']:.3f} | {row['train_seconds']:.0f} |")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
