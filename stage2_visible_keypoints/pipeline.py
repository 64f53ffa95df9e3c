"""Stage-2 library calls behind the scripts: `train_from_cache(cfg)` and `use(cfg, ...)`.

Frames: `xy_norm` is normalised to the model input, `xy_input` is in input pixels
(128 x 128 by default), `xy_original` in source-image pixels; `common.geometry`
maps between them with each image's stored transform.
"""

import threading
import time
from pathlib import Path

import functools

import numpy as np

from common.config import save_config, to_dict
from common.data_io import image_paths, save_json
from common.errors import DataError
from common.geometry import to_input, to_original
from common.interchangeable import group_names, resolve_groups
from common.metrics import (keypoint_error_summary, keypoint_errors, match_groups, relabel,
                            visibility_precision_recall, wrong_keypoint_summary)
from common.parallel import default_workers, parallel_map
from common.plots import plot_error_histogram, plot_per_keypoint_error, plot_pose_errors, plot_wrong_keypoints
from common.run_config import model_record
from stage2_visible_keypoints.camera import body_to_camera, project_points
from stage2_visible_keypoints.data import KEYPOINT_NAMES_FILE, FolderStream, load_cache, preprocess_boxes
from stage2_visible_keypoints.figures import draw_figures
from stage2_visible_keypoints.pose import pose_error_summary, pose_errors
# The inference path lives in predictor.py; scripts and bench/ import these from here too.
from stage2_visible_keypoints.predictor import (KeypointPredictor, estimate_poses, load_object_model,
                                                load_stage2_model, num_keypoints, predict_arrays,
                                                run_keypoint_names)


def keypoint_targets(y):
    """(N, K, 3) float32 = (x_norm, y_norm, visible): the target of both losses."""
    return np.concatenate([y["xy_norm"], y["visible"][..., None].astype(np.float32)], axis=-1)


def training_targets(y):
    """One target per model output, as `fit` wants them. The heatmap loss takes the cached
    heatmaps when the cache has them, else builds them from the keypoints on the device;
    "confidence" has no loss (its target, the visibility, only keeps Keras' bookkeeping whole)."""
    keypoints = keypoint_targets(y)
    return {"heatmap_logits": y["heatmaps"] if "heatmaps" in y else keypoints, "keypoints": keypoints,
            "confidence": y["visible"].astype(np.float32)}


def train_from_cache(cfg, split="train", progress=True, callbacks=(), cache=None, batches=None, on_evaluation=None):
    """Train on the `split` cache through `common.training.train`; writes best.keras,
    model.keras, config.json, keypoint_names.json, history, plots, logs into
    train.output_dir (train.output_dir/fine_tune with train.fine_tune).

    callbacks: extra Keras callbacks. A run that stops early (killed, interrupted, an
    exception) resumes from its last finished epoch when called again with the same config.
    cache: a loaded `Cache` instead of `cfg.data.cache_dir/split`; batches: a function
    (images, targets, indices, plan) -> training batches instead of `make_batches` (the
    benchmark's training set that grows while it trains). on_evaluation: called after
    each `train.eval_split` evaluation (`HeldOutEvaluation.on_result`).
    """
    # Keras (and TensorFlow under it) is imported here, not by the module: `use` on an
    # exported .onnx or .tflite file runs without either.
    from common import distribute

    # model, optimizer, metrics and fit on train.distribution's devices
    return distribute.distributed(_train_from_cache)(cfg, split, progress, callbacks, cache, batches, on_evaluation)


def _train_from_cache(cfg, split, progress, callbacks, cache, batches, on_evaluation):
    from common import distribute
    from common.backbones import has_pretrained_weights
    from common.training import make_batches, make_optimizer, plan_run, resolve_jit, start_run, train, \
        train_val_indices
    from stage2_visible_keypoints.model import build_model, compile_model

    tc = cfg.train
    start_run(tc)
    cache = cache if cache is not None else load_cache(cfg.data.cache_dir, split, cfg.data)
    groups = resolve_groups(cfg.data.interchangeable, cache.keypoint_names, Path(cfg.data.cache_dir) / split)
    total = len(cache.y["xy_norm"])
    count = min(tc.max_images, total) if tc.max_images else total
    # train.val_split: validation on another cached split, else a share of this one.
    val_cache = load_cache(cfg.data.cache_dir, tc.val_split, cfg.data) if tc.val_split else cache
    train_idx, val_idx = train_val_indices(count, tc, len(val_cache.images) if tc.val_split else None)
    plan = plan_run(tc, len(train_idx))
    # Fine-tuning starts from the first run's best model and writes into fine_tune/,
    # so the starting point is never overwritten and a re-run starts from it again.
    out_dir = Path(tc.output_dir) / "fine_tune" if tc.fine_tune else Path(tc.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if distribute.current().chief:  # one writer (the others' temporary files would race its clean-up)
        save_config(cfg, out_dir / "config.json")
        save_json(out_dir / KEYPOINT_NAMES_FILE, list(cache.keypoint_names))  # for use on images without labels

    if tc.fine_tune:
        first = Path(tc.output_dir) / "best.keras"
        if not first.is_file():
            raise DataError("fine-tuning starts from the best model of a first run, which is missing", first)
        model = load_stage2_model(first, cfg.data.input_size)
        model.get_layer("backbone").trainable = True
        learning_rate = tc.fine_tune_learning_rate
    else:
        model = build_model(len(cache.keypoint_names), cfg.data, cfg.model, seed=tc.seed)
        # A frozen random backbone learns nothing: freeze only pretrained weights.
        model.get_layer("backbone").trainable = not has_pretrained_weights(cfg.model.weights)
        learning_rate = tc.learning_rate
    compile_model(model, cfg.data, tc, make_optimizer(tc, plan, learning_rate), resolve_jit(tc.jit_compile),
                  groups=groups)

    data = training_targets(cache.y)
    if batches is None:
        train_ds = make_batches(cache.images, data, train_idx, tc.batch_size, shuffle=True, seed=tc.seed,
                                repeat=plan.repeat, steps=plan.steps_per_epoch)
    else:
        train_ds = batches(cache.images, data, train_idx, plan)
    val_data = training_targets(val_cache.y) if tc.val_split else data
    val_ds = make_batches(val_cache.images, val_data, val_idx, tc.batch_size, shuffle=False) if len(val_idx) else None
    if tc.eval_split:
        held_out = load_cache(cfg.data.cache_dir, tc.eval_split, cfg.data)
        callbacks = [_held_out_evaluation()(held_out, cfg, on_evaluation)] + list(callbacks)
    shown = val_cache if len(val_idx) else cache
    sample = np.asarray(shown.images[np.sort(val_idx if len(val_idx) else train_idx)[:tc.tensorboard_images]])
    return train(model, train_ds, val_ds, tc, out_dir, plan, progress=progress, title="Stage 2 training",
                 callbacks=callbacks, tensorboard_images=(sample, "heatmap_logits", True),
                 train_count=len(train_idx), val_count=len(val_idx))


def __getattr__(name):
    # `pipeline.HeldOutEvaluation`, built on first use: a Keras callback class needs Keras.
    if name == "HeldOutEvaluation":
        return _held_out_evaluation()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _held_out_evaluation():
    import keras

    class HeldOutEvaluation(keras.callbacks.Callback):
        """After every epoch, `evaluate` on a cached split (`train.eval_split`): its soft-argmax
        errors in input-frame pixels go into the logs as eval_mean_px, eval_median_px and
        eval_pck@T (so into history.csv); `self.last` keeps (xy_norm, confidence, logits,
        summary) of the latest evaluation; `on_result(epoch, logs, *self.last)` may add more."""

        def __init__(self, cache, cfg, on_result=None):
            super().__init__()
            self.cache, self.cfg, self.on_result, self.last = cache, cfg, on_result, None

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            xy_norm, confidence, logits = predict_arrays(self.model, self.cache.images, self.cfg.train.batch_size,
                                                         progress=False)
            summary = evaluate(xy_norm, confidence, logits, self.cache.y, self.cfg, self.cache.keypoint_names)
            euclidean = summary["input_frame"]["euclidean"]
            logs["eval_mean_px"], logs["eval_median_px"] = euclidean["mean"], euclidean["median"]
            for threshold, value in summary["input_frame"]["pck"].items():
                logs[f"eval_pck@{threshold}"] = value
            self.last = (xy_norm, confidence, logits, summary)
            if self.on_result is not None:
                self.on_result(epoch, logs, *self.last)

    return HeldOutEvaluation


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))


def use(cfg, model_path, split="test", images_dir=None, progress=True, boxes=None, labels=None):
    """Predict on a cache split (with evaluation) or on a folder of images or one image
    file, `images_dir` (without): the `KeypointPredictor` of the model, then writers and
    evaluation.

    boxes, labels: with `images_dir`, crop every box of a detections file (`boxes`) or
    every labelled instance of a COCO keypoints file (`labels`) instead of the whole image
    (`coco.box_instances`); the predictions are also written as COCO keypoint results
    (`keypoint_results.json`, as on a COCO cache), and `labels` adds their OKS AP.

    cfg: the config to run with; `use_vis.py` takes what the model was trained with
    from the run's config.json beside `model_path` (`common.run_config`).
    Writes under `cfg.use.output_dir`: overlays/ (input frame), original_overlays/,
    heatmaps/, per_image/*.json, and evaluation_summary.json when labels exist.
    The result's `timing` splits the seconds of the call: `model` (its calls), `input`
    (waiting for images: decoding a folder that the model did not hide, reading a cache),
    `decode_threads` (decoding summed over the threads, hidden or not), `load` (the model
    file), `figures`, `total`.
    """
    started = time.perf_counter()
    timing = {"model": 0.0, "input": 0.0}
    uc = cfg.use
    out_dir = Path(uc.output_dir)
    model = load_stage2_model(model_path, cfg.data.input_size)
    timing["load"] = time.perf_counter() - started
    count = num_keypoints(model)
    run_names = run_keypoint_names(model_path, count)
    transforms = None
    instances = None
    rest = None  # a folder's images after the figures' ones
    if images_dir is not None and (boxes is not None or labels is not None):
        from stage2_visible_keypoints.coco import box_instances

        instances = box_instances(images_dir, boxes, labels, cfg.data.category)
        images, transforms, sizes = preprocess_boxes(instances.paths, instances.boxes, cfg.data)
        names, y, keypoint_names, source_paths = instances.names, None, run_names, instances.paths
        where = instances.paths
    elif images_dir is not None:
        paths = image_paths(images_dir)
        # Decoded in threads while the model runs on the previous batch. The figures' images
        # go first, alone: their figures are drawn in a thread while the model runs on the rest.
        shown = min(uc.max_overlays, len(paths))
        split_at = shown if 0 < shown < len(paths) else len(paths)
        images = FolderStream(paths[:split_at], cfg.data, uc.batch_size, keep=shown)
        rest = FolderStream(paths[split_at:], cfg.data, uc.batch_size) if split_at < len(paths) else None
        names, y, keypoint_names, source_paths, where = [p.name for p in paths], None, run_names, paths, paths
        sizes = images.sizes if rest is None else np.concatenate([images.sizes, rest.sizes])
    else:
        cache = load_cache(cfg.data.cache_dir, split, cfg.data)
        images, transforms, y = cache.images, cache.y["transforms"], cache.y
        names, keypoint_names = [str(n) for n in y["filenames"]], cache.keypoint_names
        if "annotation_ids" in y:  # COCO: an image holds several instances, each its own record
            names = [f"{name}.ann{ann}" for name, ann in zip(names, y["annotation_ids"])]
        source_paths, sizes, where = None, y["image_sizes"], [str(p) for p in y["image_paths"]]
        if len(keypoint_names) != count:
            raise DataError(f"model predicts {count} keypoints but the cache has {len(keypoint_names)}", model_path)
        if run_names is not None and tuple(run_names) != tuple(keypoint_names):
            raise DataError(f"the model was trained on keypoints {', '.join(run_names[:3])}, ... but the cache has "
                            f"{', '.join(keypoint_names[:3])}, ...", Path(model_path).parent / KEYPOINT_NAMES_FILE)
    # On a folder the run's keypoint names order the mesh, as a cache's names do.
    object_model = load_object_model(uc, y, count, keypoint_names)  # before predicting: fail fast
    predictor = KeypointPredictor(model, cfg, keypoint_names, object_model, camera_name=uc.camera or "camera.json")
    out = predictor.predict_input(images, transforms, sizes[:len(images)], where[:len(images)], progress=progress,
                                  timing=timing)
    keypoint_names = predictor.names_for(count)
    figures = None
    if isinstance(images, FolderStream):
        transforms, figure_images = images.transforms, images.kept
        timing["decode_threads"] = images.decode_seconds
        if rest is not None:
            jobs = _figure_jobs(len(figure_images), names, out, figure_images, transforms, source_paths, None,
                                keypoint_names, cfg, object_model)
            figures = _FiguresBesideTheModel(jobs)
            try:
                more = predictor.predict_input(rest, None, rest.sizes, where[len(images):], progress=progress,
                                               timing=timing)
            finally:
                waited = figures.join()
            out = {k: _concatenate(out[k], more[k]) for k in out}
            transforms = np.concatenate([transforms, rest.transforms])
            timing["decode_threads"] += rest.decode_seconds
            timing["figures"], timing["figures_beside_model"] = waited, figures.seconds
    else:
        figure_images = images
    xy_norm, xy_input, xy_original = out["xy_norm"], out["xy_input"], out["xy_original"]
    confidence, visible_pred, logits, poses = out["confidence"], out["visible_pred"], out["heatmap_logits"], \
        out["poses"]

    coco_cache = y is not None and "image_ids" in y
    if coco_cache:
        from stage2_visible_keypoints.coco import instance_figures

        instance_error, instance_oks = instance_figures(xy_original, y, cfg.data)[:2]
    for i, name in enumerate(names):
        record = {"filename": name, "keypoint_names": list(keypoint_names),
                  "keypoints_original": xy_original[i].round(3), "keypoints_input": xy_input[i].round(3),
                  "confidence": confidence[i].round(4), "visible_pred": visible_pred[i]}
        if poses is not None:
            record["pose"] = _pose_record(poses, i)
        if coco_cache:
            record.update(image_id=y["image_ids"][i], annotation_id=y["annotation_ids"][i],
                          error_px=_finite(instance_error[i]), oks=_finite(instance_oks[i]))
        if instances is not None:
            record.update(image_id=instances.image_ids[i], box=instances.boxes[i].round(2),
                          box_score=round(float(instances.scores[i]), 5))
        save_json(out_dir / "per_image" / f"{name}.json", record)

    if figures is None:  # not drawn beside the model yet
        figures_start = time.perf_counter()
        _draw_figures(_figure_jobs(min(uc.max_overlays, len(names)), names, out, figure_images, transforms,
                                   source_paths, y, keypoint_names, cfg, object_model), progress)
        timing["figures"] = time.perf_counter() - figures_start

    result = {"images": len(names), "output_dir": str(out_dir)}
    if coco_cache or instances is not None:
        from common.coco_keypoints import keypoint_results
        from stage2_visible_keypoints.coco import RESULTS_FILE, evaluate_results, instance_results

        results = instance_results(instances, xy_original, confidence) if instances is not None else \
            keypoint_results(y["image_ids"], y["category_id"], xy_original, confidence.mean(axis=1), confidence)
        save_json(out_dir / RESULTS_FILE, results)
        result["results"] = str(out_dir / RESULTS_FILE)
        if instances is not None and instances.labels is not None:
            result["coco"] = evaluate_results(instances, results, keypoint_names, cfg.data)
            result["coco"]["instances_predicted"] = len(names)
            save_json(out_dir / "evaluation_summary.json",
                      {"coco": result["coco"], "model": model_record(model_path), "config": to_dict(cfg)})
    if poses is not None:
        found = np.flatnonzero(poses["found"])
        # All poses in one file, in the SPEED label layout, so the package's readers take it back.
        save_json(out_dir / "poses.json", [{"filename": names[i], "q_vbs2tango": poses["q"][i].round(8),
                                            "r_Vo2To_vbs_true": poses["r"][i].round(6)} for i in found])
        result["poses_found"] = len(found)
    if y is not None:
        summary = evaluate(xy_norm, confidence, logits, y, cfg, keypoint_names)
        # What the model used, not the config; an exported file keeps no layers: its run's config.
        decoder = model.get_layer("keypoints").get_config() if hasattr(model, "get_layer") else \
            {"beta": cfg.model.beta, "debias": cfg.model.debias}
        summary["decoder"] = {"soft_argmax_beta": decoder["beta"], "debias": decoder["debias"]}
        summary["model"] = model_record(model_path)
        summary["model"]["format"] = getattr(model, "format", "keras")
        summary["data"] = {"cache": str(Path(cfg.data.cache_dir) / split),
                           "config_hash": str(y["config_hash"]), "source_hash": str(y.get("source_hash", ""))}
        if poses is not None and "pose_q" in y:
            summary["pose"] = pose_summary(poses, y, uc.pnp_ransac_px)
            truth = estimate_poses(y["xy_original"], y["visible_original"].astype(bool), transforms, object_model,
                                   uc.pnp_ransac_px, predictor.interchangeable(count))
            summary["pose_from_true_keypoints"] = pose_summary(truth, y, uc.pnp_ransac_px)
        summary["config"] = to_dict(cfg)
        save_json(out_dir / "evaluation_summary.json", summary)
        plot_evaluation(summary, xy_norm, y, cfg, out_dir / "plots", poses)
        result["summary"] = summary
    timing["total"] = time.perf_counter() - started
    result["timing"] = {k: round(v, 3) for k, v in timing.items()}
    return result


def _figure_jobs(count, names, out, figure_images, transforms, source_paths, y, keypoint_names, cfg, object_model):
    """`draw_figures`' jobs for the first `count` images of `use`'s predictions `out`."""
    uc = cfg.use
    out_dir = Path(uc.output_dir)
    input_size = np.array(cfg.data.input_size, dtype=np.float64)
    logits, poses = out["heatmap_logits"], out["poses"]
    heat_size = np.array(logits.shape[2:0:-1], dtype=np.float64)  # (w, h)
    scale = max(1, 512 // int(input_size[0]))
    jobs = []
    for i in range(count):
        name = names[i]  # the whole file name: a.jpg and a.png must not overwrite each other
        source = source_paths[i] if source_paths is not None else (
            str(y["image_paths"][i]) if y is not None and "image_paths" in y else None)
        jobs.append({"overlay": out_dir / "overlays" / f"{name}.png", "heatmaps": out_dir / "heatmaps" / f"{name}.png",
                     "original_overlay": out_dir / "original_overlays" / f"{name}.jpg",
                     "image": np.asarray(figure_images[i]),
                     "xy_input": out["xy_input"][i], "truth": y["xy_norm"][i] * input_size if y is not None else None,
                     "visible_true": y["visible"][i] if y is not None else None, "confidence": out["confidence"][i],
                     "threshold": uc.visibility_threshold, "scale": scale, "logits": logits[i],
                     "keypoint_names": keypoint_names, "xy_heatmap": out["xy_norm"][i] * heat_size, "source": source,
                     "xy_original": out["xy_original"][i],
                     "xy_original_true": y["xy_original"][i] if y is not None else None,
                     "segments_input": pose_wireframe(object_model, poses, i, transforms[i]),
                     "segments_original": pose_wireframe(object_model, poses, i)})
    return jobs


def _draw_figures(jobs, progress):
    # One worker process per 32 figures: an image's figures take ~0.1 s (Pillow), starting a
    # worker ~1 s, so 16 figures drew in 2.1-2.5 s in this process and in 4.0-4.5 s in two
    # workers (use_vis.py on 100 frames, 2 busy cores).
    workers = min(default_workers(), max(1, len(jobs) // 32))
    for _ in parallel_map(draw_figures, jobs, workers=workers, desc="figures", progress=progress):
        pass


class _FiguresBesideTheModel:
    """Draws figure jobs in threads (one per core) while the model runs on the next images:
    Pillow and the model's runtime release the GIL, so the cores share the work, and the
    figures end about when the model does instead of after it (an INT8 model's calls are
    as short as the figures' drawing). `join` waits, re-raises what a thread raised, and
    returns the seconds waited; `seconds` is the drawing's time."""

    def __init__(self, jobs, threads=None):
        self.error, self.seconds = None, 0.0
        self._start = time.perf_counter()
        count = max(1, min(threads or default_workers(), len(jobs)))
        self.threads = [threading.Thread(target=self._run, args=(jobs[i::count],), daemon=True)
                        for i in range(count)]
        for thread in self.threads:
            thread.start()

    def _run(self, jobs):
        try:
            for job in jobs:
                if self.error is not None:  # another thread failed: stop
                    return
                draw_figures(job)
        except BaseException as err:  # re-raised in the caller's thread by join()
            self.error = err
        finally:
            self.seconds = max(self.seconds, time.perf_counter() - self._start)

    def join(self):
        start = time.perf_counter()
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error
        return time.perf_counter() - start


def _concatenate(a, b):
    """Two parts of `predict_input`'s output, one after the other (dicts: each key)."""
    if a is None:
        return None
    if isinstance(a, dict):
        return {k: np.concatenate([a[k], b[k]]) for k in a}
    return np.concatenate([a, b])


def _finite(value):
    return round(float(value), 4) if np.isfinite(value) else None


def pose_summary(poses, y, ransac_px):
    """`stage2_visible_keypoints.pose.pose_error_summary` against the cache's poses, with the PnP settings."""
    summary = pose_error_summary(poses["q"], poses["r"], y["pose_q"], y["pose_r"])
    found = poses["found"]
    summary["inliers_mean"] = float(poses["inliers"][found].sum(axis=1).mean()) if found.any() else None
    summary["ransac_px"] = ransac_px
    summary["ransac_unit"] = "px in the input frame"
    return summary


def _pose_record(poses, i):
    if not poses["found"][i]:
        return None
    return {"q_vbs2tango": poses["q"][i].round(6), "r_Vo2To_vbs": poses["r"][i].round(4),
            "inliers": poses["inliers"][i], "reprojection_px": round(float(poses["reprojection_px"][i]), 3)}


def pose_wireframe(object_model, poses, i, transform=None):
    """(E, 2, 2) edges of the model projected with image i's estimated pose, in original
    pixels, or in the input frame given the image's transform; None without a pose."""
    if poses is None or not poses["found"][i]:
        return None
    points = body_to_camera(object_model.keypoints_3d, poses["q"][i], poses["r"][i])
    xy = project_points(points, object_model.camera)
    if transform is not None:
        xy = to_input(xy, transform)
    return xy[object_model.edges]


def plot_evaluation(summary, xy_norm, y, cfg, plots_dir, poses=None):
    """The plots of an `evaluate` summary, in the input frame: error histogram, error per
    keypoint, which keypoint is taken for which; and, given `estimate_poses` output and
    labelled poses, the distributions of the pose errors."""
    input_size = np.array(cfg.data.input_size, dtype=np.float64)
    errors = keypoint_errors(xy_norm * input_size, y["xy_norm"] * input_size, y["visible"])
    plot_error_histogram(errors, plots_dir / "error_histogram.png", thresholds=cfg.use.pck_thresholds,
                         unit=summary["input_frame"]["unit"])
    plot_per_keypoint_error(summary["input_frame"], plots_dir / "per_keypoint_error.png")
    plot_wrong_keypoints(summary["input_frame_wrong_keypoint"], plots_dir / "wrong_keypoints.png")
    if poses is not None and "pose_q" in y:
        errors = pose_errors(poses["q"], poses["r"], y["pose_q"], y["pose_r"])
        plot_pose_errors(errors["rotation_deg"], errors["translation_rel"], plots_dir / "pose_errors.png")


def evaluate(xy_norm, confidence, logits, y, cfg, keypoint_names):
    """The evaluation summary: soft-argmax errors in the input frame and in original
    pixels, argmax+refine errors beside them, the visible keypoints predicted on another
    keypoint (input frame, errors over 2 px), and visibility precision/recall.

    With `data.interchangeable` groups those are the raw figures (labels as given), the
    argmax decode keeps each group on distinct peaks, and `matched` adds the input- and
    original-frame errors after each image's predictions are relabelled within the groups
    to fit best (`common.metrics.match_groups`)."""
    input_size = np.array(cfg.data.input_size, dtype=np.float64)
    thresholds = cfg.use.pck_thresholds
    visible = y["visible"].astype(bool)
    truth_input = y["xy_norm"] * input_size
    xy_input = xy_norm * input_size
    xy_original = to_original(xy_input, y["transforms"])
    groups = resolve_groups(cfg.data.interchangeable, keypoint_names)
    argmax_norm, _ = cfg.data.codec().decode(_sigmoid(logits), groups=groups)
    frame = f"px in the {int(input_size[0])}x{int(input_size[1])} input frame"
    summary = {
        "counts": {"images": int(len(visible)), "keypoints_per_image": int(visible.shape[1]),
                   "visible_keypoints": int(visible.sum())},
        "input_frame": keypoint_error_summary(xy_input, truth_input, visible, thresholds, keypoint_names, frame),
        "original_frame": keypoint_error_summary(xy_original, y["xy_original"], visible, thresholds,
                                                 keypoint_names, "px in the original image"),
        "input_frame_argmax_refine": keypoint_error_summary(argmax_norm * input_size, truth_input, visible,
                                                            thresholds, keypoint_names, frame),
        "input_frame_wrong_keypoint": wrong_keypoint_summary(xy_input, truth_input, visible, min_error=2.0,
                                                             keypoint_names=keypoint_names),
        "visibility": visibility_precision_recall(confidence, visible, cfg.use.visibility_threshold),
    }
    if groups:
        order = match_groups(xy_input, truth_input, visible, groups)
        summary["matched"] = {
            "groups": group_names(groups, keypoint_names),
            "relabelled_images": float(np.mean(np.any(order != np.arange(order.shape[1]), axis=1))),
            "input_frame": keypoint_error_summary(relabel(xy_input, order), truth_input, visible, thresholds,
                                                  keypoint_names, frame),
            "original_frame": keypoint_error_summary(relabel(xy_original, order), y["xy_original"], visible,
                                                     thresholds, keypoint_names, "px in the original image")}
    if "image_ids" in y:  # COCO keypoints: per-instance errors and OKS, and the COCO keypoint AP
        from stage2_visible_keypoints.coco import evaluate_instances

        summary["coco"] = evaluate_instances(xy_original, confidence, y, cfg.data)
    return summary
