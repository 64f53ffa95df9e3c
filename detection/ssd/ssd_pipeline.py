"""Library calls behind the detector's scripts: `train_from_cache(cfg)` and `use(cfg, ...)`.

Frames: boxes in caches and predictions are xyxy in model-input pixels
(`data.input_size`); `boxes_original = boxes_input / (sx, sy, sx, sy)` with each
image's stored scale.
"""

from pathlib import Path

import keras
import numpy as np
from keras import ops
from tqdm import tqdm

from common import distribute
from common.config import save_config, to_dict
from common.data_io import image_paths, load_json, read_image_rgb, save_json
from common.errors import DataError
from common.run_config import load_model, model_record
from common.training import (ArrayBatches, make_batches, make_optimizer, plan_run, resolve_jit, start_run, train,
                             train_val_indices)
from detection.ssd.anchors import generate_anchors
from detection.ssd.box_cache import load_cache, resize_image
from detection.ssd.evaluation import band_edges_from_anchors, box_iou_summary, evaluate_detections, scale_statistics
from detection.ssd.ssd import DetectionDecoder, SSDLoss, anchor_args, build_detector, split_detections


# --- augmentation: one affine map per image moves the pixels and the boxes ---


def augment_batch(images, targets, flip_u, zoom_u, shift_u, scale_range, min_visible=0.5):
    """Random horizontal flip and zoom (scale jitter), in `keras.ops`.

    images (B, H, W, 3) uint8; targets (B, M, 5) = (x1, y1, x2, y2, class), class -1 =
    padding; flip_u (B,), zoom_u (B,), shift_u (B, 2) uniform in [0, 1). Each image
    is mapped by u_out = a * u_in + b per axis (continuous pixel coordinates, pixel
    centres at i + 0.5): a = +-s (flipped when flip_u < 0.5), s from scale_range; the
    offset keeps the image covering the frame when zooming in and inside it when
    zooming out (the rest is filled black). Boxes move with the same map, are clipped
    to the frame, and become padding when less than `min_visible` of their area stays inside.
    """
    images = ops.cast(images, "float32")
    targets = ops.cast(targets, "float32")
    height, width = images.shape[1], images.shape[2]
    s = scale_range[0] + (scale_range[1] - scale_range[0]) * zoom_u
    sign = ops.where(flip_u < 0.5, -1.0, 1.0)
    # Offsets: zoom-in (s > 1) b in [W(1 - s), 0]; zoom-out b in [0, W(1 - s)]; a flip adds s * W.
    bx = width * (1 - s) * shift_u[:, 0] + ops.where(sign < 0, s * width, 0.0)
    by = height * (1 - s) * shift_u[:, 1]
    ax, ay = sign * s, s
    # affine_transform maps output pixel indices to input ones: i_in = (i_out + 0.5 - b) / a - 0.5.
    zeros = ops.zeros_like(s)
    transform = ops.stack([1 / ax, zeros, (0.5 - bx) / ax - 0.5, zeros, 1 / ay, (0.5 - by) / ay - 0.5,
                           zeros, zeros], axis=1)
    warped = ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="constant")
    warped = ops.cast(ops.clip(ops.round(warped), 0, 255), "uint8")

    x1 = ax[:, None] * targets[..., 0] + bx[:, None]
    x2 = ax[:, None] * targets[..., 2] + bx[:, None]
    y1 = ay[:, None] * targets[..., 1] + by[:, None]
    y2 = ay[:, None] * targets[..., 3] + by[:, None]
    moved = ops.stack([ops.minimum(x1, x2), y1, ops.maximum(x1, x2), y2], axis=-1)
    clipped = ops.clip(moved, 0.0, ops.convert_to_tensor([width, height, width, height], "float32"))
    area = (moved[..., 2] - moved[..., 0]) * (moved[..., 3] - moved[..., 1])
    kept_area = (clipped[..., 2] - clipped[..., 0]) * (clipped[..., 3] - clipped[..., 1])
    valid = (targets[..., 4] >= 0) & (kept_area >= min_visible * area) & (kept_area > 0)
    boxes = ops.where(valid[..., None], clipped, 0.0)
    classes = ops.where(valid, targets[..., 4], -1.0)
    return warped, ops.concatenate([boxes, classes[..., None]], axis=-1)


class AugmentedBatches(keras.utils.PyDataset):
    """ArrayBatches + `augment_batch` (the JAX-backend pipeline; numpy random draws)."""

    def __init__(self, batches, flip, scale_range, seed=0):
        super().__init__()
        self.batches, self.flip = batches, flip
        self.rng = np.random.default_rng(seed + 1)
        import jax  # this pipeline serves the JAX backend: one compiled function, not op-by-op dispatch

        self.augment = jax.jit(lambda images, y, f, z, s: augment_batch(images, y, f, z, s, scale_range))

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        images, targets = self.batches[index]
        # Drawn for the whole global batch, this process's rows kept: each image gets the draw
        # it gets in one process (common.training.ArrayBatches.global_rows).
        n, rows = self.batches.global_rows(index)
        flip_u = self.rng.random(n, np.float32) if self.flip else np.ones(n, np.float32)
        images, y = self.augment(images, targets["predictions"], flip_u[rows], self.rng.random(n, np.float32)[rows],
                                 self.rng.random((n, 2), np.float32)[rows])
        return ops.convert_to_numpy(images), {"predictions": ops.convert_to_numpy(y)}

    def on_epoch_end(self):
        self.batches.on_epoch_end()


def augmented(batches, tc):
    """Add flips / scale jitter to a training pipeline from `make_batches`."""
    scale_range = tuple(tc.scale_jitter)
    if not tc.flip and scale_range == (1.0, 1.0):
        return batches
    if isinstance(batches, ArrayBatches):
        return AugmentedBatches(batches, tc.flip, scale_range, tc.seed)
    import tensorflow as tf

    def apply(images, targets):
        n = tf.shape(images)[0]
        flip_u = tf.random.uniform((n,)) if tc.flip else tf.ones((n,))
        images, y = augment_batch(images, targets["predictions"], flip_u, tf.random.uniform((n,)),
                                  tf.random.uniform((n, 2)), scale_range)
        return images, {"predictions": y}

    return batches.map(apply, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# --- training ---


def make_loss(num_classes, cfg):
    tc = cfg.train
    return SSDLoss(num_classes, **anchor_args(cfg.data, cfg.model), positive_iou=tc.positive_iou,
                   negative_iou=tc.negative_iou, objectness_loss=tc.objectness_loss, neg_pos_ratio=tc.neg_pos_ratio,
                   focal_alpha=tc.focal_alpha, focal_gamma=tc.focal_gamma, box_weight=tc.box_weight,
                   class_weight=tc.class_weight)


@distribute.distributed  # model, optimizer, metrics and fit on train.distribution's devices
def train_from_cache(cfg, split="train", progress=True, callbacks=()):
    """Train on the `split` cache through `common.training.train`; writes best.keras,
    model.keras, config.json, categories.json, history.csv, training_log.json, plots/,
    logs/ into train.output_dir.

    A run that stops early resumes from its last finished epoch when called again
    with the same config.
    """
    tc = cfg.train
    start_run(tc)
    cache = load_cache(cfg.data.cache_dir, split, cfg.data)
    total = len(cache.y["counts"])
    count = min(tc.max_images, total) if tc.max_images else total
    # train.val_split: validation on another cached split, else a share of this one.
    val_cache = load_cache(cfg.data.cache_dir, tc.val_split, cfg.data) if tc.val_split else cache
    train_idx, val_idx = train_val_indices(count, tc, len(val_cache.images) if tc.val_split else None)
    plan = plan_run(tc, len(train_idx))
    out_dir = Path(tc.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = cache.category_names
    if distribute.current().chief:  # one writer (the others' temporary files would race its clean-up)
        save_config(cfg, out_dir / "config.json")
        save_json(out_dir / "categories.json", {"names": list(names), "ids": [str(c) for c in cache.y["category_ids"]]})

    model = build_detector(len(names), cfg.data, cfg.model, seed=tc.seed)
    model.compile(optimizer=make_optimizer(tc, plan), loss={"predictions": make_loss(len(names), cfg)},
                  jit_compile=resolve_jit(tc.jit_compile))
    targets = {"predictions": cache.targets()}
    train_ds = augmented(make_batches(cache.images, targets, train_idx, tc.batch_size, shuffle=True, seed=tc.seed,
                                      repeat=plan.repeat, steps=plan.steps_per_epoch), tc)
    if tc.val_split and list(val_cache.category_names) != list(names):
        raise DataError(f"categories {list(val_cache.category_names)} differ from the training split's {list(names)}",
                        Path(cfg.data.cache_dir) / tc.val_split / "Y_data.npz")
    val_targets = {"predictions": val_cache.targets()}
    val_ds = (make_batches(val_cache.images, val_targets, val_idx, tc.batch_size, shuffle=False)
              if len(val_idx) else None)
    summary = train(model, train_ds, val_ds, tc, out_dir, plan, progress=progress, title="Detector training",
                    callbacks=callbacks, train_count=len(train_idx), val_count=len(val_idx))
    summary["classes"] = list(names)
    if distribute.current().chief:
        save_json(out_dir / "training_log.json", summary)
    return summary


# --- inference ---


def load_detector(path):
    """Load a saved detector with Keras safe mode."""
    return load_model(path, "train_det.py", outputs=("predictions",))


def load_any_detector(path):
    """A `.keras` detector (Keras model), or a file `export_det.py` wrote (SavedModel folder,
    `.onnx`, `.tflite`) as a `common.export` runner; both have `predict_on_batch`."""
    from common.export import load_inference_model, model_format

    return load_detector(path) if model_format(path) == "keras" else load_inference_model(path)


def _predictions_shape(model):
    """(anchors, 5 + classes) of a Keras detector or of an exported one's runner."""
    from common.export import is_runner

    return tuple(model.output_shapes["predictions"]) if is_runner(model) else tuple(model.output["predictions"].shape[1:])


class _DecodedRunner:
    """An exported detector's raw predictions decoded by `decoder` (a Keras model around
    the same `DetectionDecoder` the `.keras` path appends), so both give the same boxes."""

    def __init__(self, runner, decoder):
        self.runner, self.decoder = runner, decoder

    def predict_on_batch(self, images):
        return self.decoder.predict_on_batch(self.runner.predict_on_batch(images)["predictions"])


def inference_model(model, num_classes, cfg, score_threshold):
    """The trained model + `DetectionDecoder`: uint8 images -> (batch, D, 7) detections.
    model: a Keras detector or an exported one's `common.export` runner."""
    from common.export import is_runner

    uc = cfg.use
    num_anchors = len(generate_anchors(cfg.data.input_size, cfg.model.strides, cfg.model.anchor_sizes,
                                       cfg.model.aspect_ratios)[0])
    shape = _predictions_shape(model)
    if shape != (num_anchors, 5 + num_classes):
        raise DataError(f"model predicts {shape} per image but the config's anchors and {num_classes} classes give "
                        f"({num_anchors}, {5 + num_classes}); use the config it was trained with (config.json "
                        "beside it)")
    decoder = DetectionDecoder(num_classes, **anchor_args(cfg.data, cfg.model), score_threshold=score_threshold,
                               nms_iou=uc.nms_iou, pre_nms_top_k=uc.pre_nms_top_k, max_detections=uc.max_detections,
                               name="detections")
    if is_runner(model):
        if tuple(model.input_shape[1::-1]) != tuple(cfg.data.input_size):  # (H, W, C) -> (W, H)
            raise DataError(f"model takes {model.input_shape[1]}x{model.input_shape[0]} images but data.input_size "
                            f"is {cfg.data.input_size[0]}x{cfg.data.input_size[1]}; use the config it was trained "
                            "with (config.json beside it)")
        raw = keras.Input(shape, name="predictions")
        return _DecodedRunner(model, keras.Model(raw, decoder(raw), name="ssd_decoder"))
    return keras.Model(model.input, decoder(model.output["predictions"]), name="ssd_inference")


def predict(detector, images, batch_size, progress=True):
    """Detections (N, D, 7) for images (N, H, W, 3) uint8 (may be a memory map)."""
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="detect", unit="batch", disable=not progress):
        out.append(np.asarray(detector.predict_on_batch(np.asarray(images[start:start + batch_size]))))
    return np.concatenate(out)


def _class_names(model_path, cache):
    """The cache's categories, which must be those of the run (categories.json beside the
    model) where it saved them; without a cache, the run's; None without either."""
    path = Path(model_path).parent / "categories.json"
    run = tuple(load_json(path).get("names", [])) if path.is_file() else None
    if cache is None:
        return run
    if run is not None and tuple(cache.category_names) != run:
        raise DataError(f"the detector was trained on categories {list(run)} but the cache has "
                        f"{list(cache.category_names)}", path)
    return cache.category_names


def use(cfg, model_path, split="test", images_dir=None, progress=True):
    """Detect on a cache split (and evaluate) or on `images_dir`, a folder of images
    or one image file.

    Writes under use.output_dir: detections.json (boxes in original pixels), overlays/
    (prediction red, ground truth green), and on a labelled cache evaluation.json and
    the analysis figures in plots/ (no feature maps from an exported file).
    model_path: a `.keras` file, or a SavedModel folder, `.onnx` or `.tflite` from export_det.py.
    """
    from detection.ssd import analysis  # matplotlib only when needed

    uc = cfg.use
    out_dir = Path(uc.output_dir)
    model = load_any_detector(model_path)
    cache = None
    if images_dir is not None:
        paths = image_paths(images_dir)
        resized = [resize_image(read_image_rgb(p), cfg.data.input_size) for p in paths]
        images = np.stack([r[0] for r in resized])
        scales = np.array([r[1] for r in resized])
        names = [p.name for p in paths]
    else:
        cache = load_cache(cfg.data.cache_dir, split, cfg.data)
        images, scales, names = cache.images, cache.y["scales"], [str(n) for n in cache.y["filenames"]]
    class_names = _class_names(model_path, cache)
    num_classes = _predictions_shape(model)[-1] - 5
    if class_names is None or len(class_names) != num_classes:
        found = "none" if class_names is None else len(class_names)
        raise DataError(f"model predicts {num_classes} classes but the class names ({found}) do not match "
                        "(categories.json beside the model, or the cache's categories)", model_path)
    threshold = uc.eval_score_threshold if cache is not None else uc.score_threshold
    detector = inference_model(model, num_classes, cfg, threshold)
    raw = predict(detector, images, uc.batch_size, progress)
    detections = split_detections(raw)

    records = []
    for name, dets, scale in zip(names, detections, scales):
        keep = dets["scores"] >= uc.score_threshold
        records.append({"file_name": name, "boxes_xyxy_original": (dets["boxes"][keep] / np.tile(scale, 2)).round(2),
                        "boxes_xyxy_input": dets["boxes"][keep].round(2), "scores": dets["scores"][keep].round(4),
                        "classes": [class_names[c] for c in dets["classes"][keep]]})
    save_json(out_dir / "detections.json", {"classes": list(class_names), "images": records})
    for i in range(min(uc.max_overlays, len(names))):
        truth = cache.ground_truth(i) if cache is not None else None
        analysis.save_detection_overlay(out_dir / "overlays" / f"{names[i]}.png", np.asarray(images[i]),
                                        detections[i], truth, class_names, uc.overlay_threshold)
    result = {"images": len(names), "output_dir": str(out_dir)}
    if cache is None:
        return result

    truth = [cache.ground_truth(i) for i in range(len(names))]
    anchors, anchor_scale = generate_anchors(cfg.data.input_size, cfg.model.strides, cfg.model.anchor_sizes,
                                             cfg.model.aspect_ratios)
    edges = band_edges_from_anchors(cfg.model.anchor_sizes)
    summary = evaluate_detections(detections, truth, class_names, max_dets=uc.max_detections)
    summary["box_iou"] = box_iou_summary(detections, truth, uc.overlay_threshold)
    summary["scale_statistics"] = scale_statistics(detections, truth, class_names, anchor_scale, edges,
                                                   uc.overlay_threshold)
    summary["counts"] = {"images": len(names), "ground_truth": int(sum(len(b) for b, _ in truth)),
                         "detections_at_operating_point": int(sum((d["scores"] >= uc.overlay_threshold).sum()
                                                                  for d in detections))}
    summary["model"] = model_record(model_path)
    summary["data"] = {"cache": str(Path(cfg.data.cache_dir) / split), "config_hash": str(cache.y["config_hash"]),
                       "source_hash": str(cache.y.get("source_hash", ""))}
    summary["config"] = to_dict(cfg)
    plots = out_dir / "plots"
    analysis.plot_anchor_coverage(truth, anchors, anchor_scale, cfg, plots / "anchor_coverage.png")
    analysis.plot_scale_specialisation(summary["scale_statistics"], plots / "scale_specialisation.png")
    analysis.plot_size_distribution(truth, class_names, edges, plots / "object_sizes.png")
    if isinstance(model, keras.Model):  # an exported file keeps no feature maps to show
        analysis.plot_feature_maps(model, np.asarray(images[:uc.feature_map_images]), cfg, plots / "feature_maps.png")
    analysis.plot_precision_recall(detections, truth, class_names, plots / "precision_recall.png")
    save_json(out_dir / "evaluation.json", summary)
    result["summary"] = summary
    return result
