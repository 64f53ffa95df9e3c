"""The Keras side of the stage-2 accuracy benchmark (`bench/stage2_accuracy.py` imports it
after parsing its arguments, so its --help needs no Keras): the growing training stream,
the per-evaluation rows, the pose of a split and the figures of the last evaluation."""

import importlib.util
import time
from pathlib import Path

import keras
import numpy as np

from common.geometry import to_original
from common.plots import save_overlay
from common.training import ArrayBatches
from stage2_visible_keypoints.data import Cache, load_cache
from stage2_visible_keypoints.pipeline import (estimate_poses, load_object_model, plot_evaluation, pose_summary,
                                               pose_wireframe)
from results_io import write_result  # bench/ is on the path as a script

COLUMNS = ("images", "renders", "wall_s", "img/s", "lr", "loss", "mean_px", "median_px", "pck@2", "pck@5", "pck@10",
           "argmax_px", "wrong_kp", "wrong_err", "rot_deg", "speed", "found")


def format_row(row):
    if row is None:
        return " ".join(f"{c:>9}" for c in COLUMNS)
    values = [row["images_seen"], row.get("train_images"), row["wall_seconds"], row["images_per_second"],
              row["learning_rate"], row["train_loss"],
              row["euclidean_mean_px"], row["euclidean_median_px"], row["pck"]["2"], row["pck"]["5"],
              row["pck"]["10"], row["argmax_refine_mean_px"], row["wrong_keypoint"]["fraction"],
              row["wrong_keypoint"]["error_share"], *_pose_values(row["pose"])]
    return " ".join(f"{'-':>9}" if v is None else f"{v:>9}" if isinstance(v, int) else f"{v:>9.4g}"
                    for v in values)  # None: no visible keypoint in the test split


def _pose_values(pose):
    if pose is None:
        return None, None, None
    return pose["rotation_deg"]["median"], pose["speed_score"]["mean"], pose["solved_fraction"]


class GrowingBatches(ArrayBatches):
    """The training stream over the parts rendered so far: at each epoch end, parts that the
    background process finished join it (a new permutation over all images from then on)."""

    def __init__(self, cache, targets_of, indices, plan, seed, background, loaded, cache_dir, data_cfg, result):
        super().__init__(cache.images, targets_of(cache.y), indices, plan.batch_size, shuffle=True, seed=seed,
                         repeat=True, steps=plan.steps_per_epoch)
        self.cache, self.targets_of, self.background, self.loaded = cache, targets_of, background, loaded
        self.cache_dir, self.data_cfg, self.result = cache_dir, data_cfg, result

    def on_epoch_end(self):
        new = [split for split in self.background.ready() if split not in self.loaded]
        if new:
            self.loaded += new
            self.cache = Cache.concatenate([self.cache] + [load_cache(self.cache_dir, split, self.data_cfg)
                                                           for split in new])
            self.images, self.targets = self.cache.images, self.targets_of(self.cache.y)
            self.indices, self._pending = np.arange(len(self.cache.images)), np.empty(0, dtype=np.int64)
            self.result["train_images"], self.result["parts"] = len(self.cache.images), {"loaded": list(self.loaded)}
        if message := self.background.failure():
            print(message, flush=True)
        super().on_epoch_end()


class Rows(keras.callbacks.Callback):
    """One row per evaluation (`HeldOutEvaluation.on_result`): printed, and the JSON rewritten."""

    def __init__(self, args, test, cfg, result, per_epoch):
        super().__init__()
        self.args, self.test, self.cfg, self.result, self.per_epoch = args, test, cfg, result, per_epoch
        self.start, self.epoch_start, self.fit_seconds = time.perf_counter(), None, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.fit_seconds = time.perf_counter() - self.epoch_start  # the chunk's training, without evaluation

    def record(self, epoch, logs, xy_norm, confidence, logits, summary):
        pose = split_pose(xy_norm, confidence, self.test, self.cfg, self.args.pose_images)[0]
        soft, hard = summary["input_frame"], summary["input_frame_argmax_refine"]
        rate = self.model.optimizer.learning_rate
        row = {"images_seen": (epoch + 1) * self.per_epoch, "train_images": self.result["train_images"],
               "wall_seconds": round(time.perf_counter() - self.start, 1),
               "images_per_second": round(self.per_epoch / max(self.fit_seconds, 1e-9), 1),
               "learning_rate": float(keras.ops.convert_to_numpy(rate)), "train_loss": float(logs["loss"]),
               "euclidean_mean_px": soft["euclidean"]["mean"], "euclidean_median_px": soft["euclidean"]["median"],
               "pck": soft["pck"], "argmax_refine_mean_px": hard["euclidean"]["mean"],
               "argmax_refine_pck": hard["pck"], "visibility": summary["visibility"],
               "wrong_keypoint": summary["input_frame_wrong_keypoint"], "pose": pose}
        self.result["rows"].append(row)
        write_result(self.args.output_file, self.result, args=self.args)
        print(format_row(row), flush=True)


def split_pose(xy_norm, confidence, split, cfg, count=None):
    """PnP from the predicted-visible keypoints against the true poses (`use_vis.py`'s
    `pose` summary): rotation error in degrees, SPEED score; and the poses. (None, None)
    without labelled poses."""
    object_model = load_object_model(cfg.use, split.y, len(split.keypoint_names))
    if object_model is None or "pose_q" not in split.y or importlib.util.find_spec("cv2") is None:
        return None, None  # no poses, or no OpenCV: the keypoint columns still count
    if count is not None:
        split, xy_norm, confidence = split.first(count), xy_norm[:count], confidence[:count]
    xy_original = to_original(xy_norm * np.array(cfg.data.input_size, dtype=np.float64), split.y["transforms"])
    poses = estimate_poses(xy_original, confidence >= cfg.use.visibility_threshold, split.y["transforms"],
                           object_model, cfg.use.pnp_ransac_px)
    return pose_summary(poses, split.y, cfg.use.pnp_ransac_px), poses


def save_figures(out_dir, test, xy_norm, summary, cfg, poses, gallery=8):
    """The last held-out evaluation as pictures: error histogram, error per keypoint, which
    keypoint is taken for which, pose errors, and the `gallery` images with the largest mean
    error (prediction red, truth green, the model in the pose found magenta, 3x the 128x128
    input)."""
    plot_evaluation(summary, xy_norm, test.y, cfg, out_dir, poses)
    input_size = np.array(cfg.data.input_size, dtype=np.float64)
    truth, visible = test.y["xy_norm"] * input_size, test.y["visible"].astype(bool)
    xy_input = xy_norm * input_size
    per_keypoint = np.where(visible, np.linalg.norm(xy_input - truth, axis=-1), 0.0)
    per_image = per_keypoint.sum(axis=1) / np.maximum(visible.sum(axis=1), 1)
    object_model = load_object_model(cfg.use, test.y, len(test.keypoint_names))
    for rank, i in enumerate(np.argsort(-per_image)[:gallery]):
        name = Path(str(test.y["filenames"][i])).stem
        save_overlay(out_dir / f"worst_{rank + 1}_{name}.png", test.images[i], xy_pred=xy_input[i],
                     xy_true=truth[i], visible_true=visible[i], scale=3,
                     segments=pose_wireframe(object_model, poses, i, test.y["transforms"][i]))


