"""Stage-2 accuracy benchmark: a learning curve of the ResNet-50 U-Net trained from scratch.

    KERAS_BACKEND=jax python bench/stage2_accuracy.py --budget-images 600000
    python bench/stage2_accuracy.py --train-images 16 --test-images 8 --eval-every 16 \\
        --budget-images 32 --batch-size 8 --output-dir /tmp/s2      # a smoke test

Renders --train-images and --test-images synthetic SPEED-like images into
--work-dir/renders (skipped when a split with the same count and seed is there),
preprocesses them with the stage-2 pipeline (caches are reused), then trains the
full-size model from random init (weights none) through the package's own trainer,
`stage2_visible_keypoints.pipeline.train_from_cache`: `train_vis.py` with the same
settings (`configs/stage2_gpu.yaml`) trains the same model. An epoch is --eval-every
images (rounded to whole batches, `train.epoch_images`); the run is --budget-images
(`train.budget_images`), or stops after the epoch that passes --budget-minutes. The
learning rate follows --lr-schedule over the images seen (cosine: to 1 % at the budget).
With --part-images the training renders come in parts: training starts on the first while
a child process renders and preprocesses the others on the CPU, and each joins the
training set at the next epoch once it is ready (column renders).

After each epoch the held-out test split is evaluated in the 128x128 input frame
(`train.eval_split`) and one row is printed: images seen, wall seconds, training images/s
of the chunk, learning rate, train loss, soft-argmax Euclidean mean / median px,
PCK@2/5/10, the argmax+refine mean px, the fraction of visible keypoints predicted on
another keypoint with those keypoints' share of the summed error (identity errors), and
the pose solved by PnP from the predicted-visible keypoints (as `use_vis.py` does): median
rotation error in degrees, mean SPEED score and the fraction found, over the first
--pose-images held-out images (after the last epoch, over all of them: `pose` in the
JSON). Rows, settings, backend, precision, device and commit go to
--output-dir/stage2_accuracy.json (rewritten atomically after every row, so a killed run
keeps its rows); figures of the last held-out evaluation to stage2_accuracy_figures/
beside it; the model and its history to --work-dir/model. Runs under KERAS_BACKEND=jax
without TensorFlow.
"""

import argparse
import atexit
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import cli
from common.config import to_dict
from common.data_io import load_json
from common.errors import DataError
from common.parallel import default_workers
from stage2_visible_keypoints.config import FOCAL_REDUCTIONS, ModelConfig, Stage2Config, TrainConfig
from results_io import device_name, write_result  # bench/ is on the path as a script
from stage2_parts import READY_FILE, data_config, prepare, train_parts

def stage2_config(args):
    """The stage-2 config the benchmark trains: `train_vis.py --config` with the same file
    (see `configs/stage2_gpu.yaml`) trains the same model on the same schedule."""
    cfg = Stage2Config()
    cfg.data = data_config(args.work_dir)
    cfg.model = ModelConfig(weights="none", backbone=args.backbone, debias=args.debias)
    cfg.train = TrainConfig(output_dir=str(Path(args.work_dir) / "model"), batch_size=args.batch_size,
                            learning_rate=args.learning_rate, lr_schedule=args.lr_schedule, precision=args.precision,
                            seed=args.seed, coord_weight=args.coord_weight,
                            focal_keypoint_reduction=args.focal_reduction,
                            validation_split=0.0, epoch_images=args.eval_every, budget_images=args.budget_images,
                            budget_minutes=args.budget_minutes or 0.0, eval_split="test", tensorboard_images=0)
    return cfg


class BackgroundParts:
    """The training parts after the first, rendered and preprocessed by a child process
    (`bench/stage2_parts.py`, on the CPU, two cores fewer) while the model trains;
    `ready()` names the parts finished so far."""

    def __init__(self, args):
        work_dir = Path(args.work_dir)
        self.ready_file, self.log = work_dir / READY_FILE, work_dir / "parts.log"
        self.ready_file.unlink(missing_ok=True)
        command = [sys.executable, str(Path(__file__).with_name("stage2_parts.py")), "--from-part", "1",
                   "--work-dir", str(work_dir), "--train-images", str(args.train_images),
                   "--part-images", str(args.part_images), "--seed", str(args.seed),
                   "--workers", str(max(1, args.workers - 2))]
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}  # leave the GPU to training
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.reported = False
        # The child has its own process group: end it however this process ends (a
        # `timeout` sends SIGTERM, which then exits through the atexit handlers).
        atexit.register(self.stop)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    def ready(self):
        return load_json(self.ready_file) if self.ready_file.is_file() else []

    def failure(self):
        """A one-time message when the child has failed (training goes on with the parts it has)."""
        code = self.process.poll()
        if code in (None, 0) or self.reported:
            return None
        self.reported = True
        tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
        return f"warning: the background renders stopped with exit code {code}: " + " | ".join(tail)

    def stop(self):
        """End the child and its worker processes if it is still running; its return code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def run(args):
    import keras

    from stage2_training import GrowingBatches, Rows, format_row, save_figures, split_pose
    from stage2_visible_keypoints.data import Cache, load_cache
    from stage2_visible_keypoints.pipeline import (evaluate, load_stage2_model, predict_arrays, train_from_cache,
                                                   training_targets)

    cfg = stage2_config(args)
    parts = train_parts(args.train_images, args.part_images)
    streamed = parts[1:] if args.part_images else []
    first = [(split, count, args.seed) for split, count in parts[:len(parts) - len(streamed)]]
    prepare(cfg.data, [("test", args.test_images, args.seed + 1)] + first, args.workers, progress=not args.quiet)
    if args.prepare_only:
        return None

    test = load_cache(cfg.data.cache_dir, "test", cfg.data)
    loaded = [split for split, _, _ in first]
    train = Cache.concatenate([load_cache(cfg.data.cache_dir, split, cfg.data) for split in loaded])
    per_epoch = -(-args.eval_every // args.batch_size) * args.batch_size  # whole batches: one compiled step shape
    result = {"config": {"args": vars(args), "stage2": to_dict(cfg)}, "images_per_chunk": per_epoch,
              "train_images": len(train.images), "test_images": len(test.images), "rows": []}
    background = BackgroundParts(args) if streamed else None

    def growing(images, targets, indices, plan):
        return GrowingBatches(train, training_targets, indices, plan, args.seed, background, loaded,
                              cfg.data.cache_dir, cfg.data, result)

    if background is not None:
        print(f"training starts on {len(train.images)} renders; {len(streamed)} more parts of "
              f"{args.part_images} are being prepared (log: {background.log})")
    print(f"{keras.backend.backend()} backend, {device_name()}; {per_epoch} images per chunk")
    print(format_row(None))
    rows = Rows(args, test, cfg, result, per_epoch)
    # The same driver as train_vis.py: `configs/stage2_gpu.yaml` there trains this model.
    trained = train_from_cache(cfg, cache=train, batches=growing if background else None, callbacks=[rows],
                               on_evaluation=rows.record,
                               progress=False)
    result["precision"], result["training"] = trained["policy"], {k: v for k, v in trained.items() if k != "history"}
    if background is not None:
        code = background.stop()  # negative: stopped by a signal (still rendering), else its exit code
        result["parts"] = {"loaded": loaded, "of": len(parts), "background_exit_code": code}
        print(f"trained on {len(loaded)} of {len(parts)} parts")
    model = load_stage2_model(Path(cfg.train.output_dir) / "model.keras")
    if args.save_model:
        model.save(args.save_model)
    xy_norm, confidence, logits = predict_arrays(model, test.images, args.batch_size, progress=False)
    summary = evaluate(xy_norm, confidence, logits, test.y, cfg, test.keypoint_names)
    result["pose"], poses = split_pose(xy_norm, confidence, test, cfg)  # the whole held-out split, once
    figures = Path(args.output_dir) / "stage2_accuracy_figures"
    save_figures(figures, test, xy_norm, summary, cfg, poses)
    # The same metrics on (up to) as many training images, spread over all parts: the generalisation gap.
    train = Cache.concatenate([load_cache(cfg.data.cache_dir, split, cfg.data) for split in loaded])
    subset = train.take(np.linspace(0, len(train.images) - 1, min(len(test.images), len(train.images))).astype(int))
    xy_norm, confidence, logits = predict_arrays(model, subset.images, args.batch_size, progress=False)
    seen_summary = evaluate(xy_norm, confidence, logits, subset.y, cfg, subset.keypoint_names)
    result["train_subset"] = {"images": len(subset.images),
                              "euclidean_mean_px": seen_summary["input_frame"]["euclidean"]["mean"],
                              "euclidean_median_px": seen_summary["input_frame"]["euclidean"]["median"],
                              "pck": seen_summary["input_frame"]["pck"],
                              "wrong_keypoint": seen_summary["input_frame_wrong_keypoint"],
                              "pose": split_pose(xy_norm, confidence, subset, cfg)[0]}
    write_result(args.output_file, result, args=args)
    train_row = result["train_subset"]
    print(f"on {len(subset.images)} training images: mean {train_row['euclidean_mean_px']:.3f} px, "
          f"PCK@2 {train_row['pck']['2']}, on another keypoint {train_row['wrong_keypoint']['fraction']}")
    if result["pose"] is not None and result["pose"]["solved"]:
        pose = result["pose"]
        print(f"pose on all {pose['images']} held-out images ({pose['solved']} found): rotation median "
              f"{pose['rotation_deg']['median']:.3f} deg, SPEED score mean {pose['speed_score']['mean']:.4f}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="runs/bench", help="renders and caches go here (%(default)s)")
    parser.add_argument("--train-images", type=int, default=5000, help="training renders (%(default)s)")
    parser.add_argument("--part-images", type=int, default=0,
                        help="render the training images in parts of this many: training starts on the first "
                             "while a child process prepares the others, which join as they are ready "
                             "(0: all before training, %(default)s)")
    parser.add_argument("--test-images", type=int, default=1000, help="held-out renders (%(default)s)")
    parser.add_argument("--pose-images", type=int, default=250,
                        help="held-out images whose pose each row reports; the last evaluation takes all (%(default)s)")
    parser.add_argument("--eval-every", type=int, default=2000, help="images seen between evaluations (%(default)s)")
    parser.add_argument("--budget-images", type=int, default=600_000, help="stop after this many (%(default)s)")
    parser.add_argument("--budget-minutes", type=float, default=None, help="stop after this wall time (none)")
    parser.add_argument("--batch-size", type=int, default=128, help="(%(default)s)")
    parser.add_argument("--backbone", default="resnet50", choices=("resnet50", "resnet18"),
                        help="the encoder (%(default)s; resnet18 for quick checks on a CPU)")
    parser.add_argument("--learning-rate", type=float, default=5e-4, help="Adam learning rate (%(default)s)")
    parser.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"),
                        help="constant, or cosine to 1 %% over --budget-images (%(default)s)")
    parser.add_argument("--precision", default="auto",
                        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
                        help="auto = mixed on GPU, float32 on CPU (%(default)s)")
    cli.add_seed(parser, "renders and training; test renders: seed + 1")
    cli.add_output_dir(parser, "stage2_accuracy.json and stage2_accuracy_figures/ go here (%(default)s)",
                       default="results")
    cli.add_workers(parser, "processes rendering and preprocessing (default: all cores)", default=default_workers())
    parser.add_argument("--debias", action="store_true",
                        help="the SoftArgMax layer's closed-form background correction (model.debias)")
    parser.add_argument("--coord-weight", type=float, default=TrainConfig.coord_weight,
                        help="lambda in focal(heatmaps) + lambda * L1(coordinates) (train.coord_weight, %(default)s)")
    parser.add_argument("--focal-reduction", default=TrainConfig.focal_keypoint_reduction, choices=FOCAL_REDUCTIONS,
                        help="focal loss over the K heatmaps (train.focal_keypoint_reduction, %(default)s)")
    parser.add_argument("--save-model", help="write the trained model here (.keras; default: not saved)")
    cli.add_quiet(parser)
    parser.add_argument("--prepare-only", action="store_true",
                        help="render and preprocess what training starts with (all of it without --part-images), "
                             "then stop")
    args = parser.parse_args(argv)
    args.output_file = str(Path(args.output_dir) / "stage2_accuracy.json")
    for name in ("train_images", "test_images", "eval_every", "budget_images", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1. Received: {getattr(args, name)}")
    if args.part_images < 0:
        parser.error(f"--part-images must be >= 0. Received: {args.part_images}")
    try:
        result = run(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result is not None:
        print(f"{len(result['rows'])} rows in {args.output_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
