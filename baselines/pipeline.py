"""Baselines library calls behind the scripts: `train_from_cache(cfg)`, `predict`, `evaluate`, `use`.

Frames: `xy_norm` is normalised to the model input; `xy_input` is in input pixels
(128 x 128 by default). Every model trains with the same optimiser (Adam,
`train.learning_rate`, optional `clipnorm`), epochs and batch size; the losses are:

    heatmap     train.loss on "heatmaps" (mse by default: HeatmapPeakLoss with beta 0)
    regression  MaskedL1 on "keypoints" (normalised coordinates)
    integral    train.loss on "heatmaps" + coordinate_weight * MaskedL1 on "keypoints"
    loss=wing   (heatmap kind) Wing on the soft-argmax "keypoints" only, in heatmap pixels

With `data.interchangeable` groups every loss is taken under the best assignment within
each group (`common.losses.InterchangeableLoss`), the argmax decode keeps a group's
keypoints on distinct peaks, and `evaluate` adds the matched figures to the raw ones.
"""

from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from common import distribute
from common.augment import KeypointAffineAugment
from common.config import save_config, to_dict
from common.data_io import image_paths, load_json, save_json, save_npz
from common.errors import DataError
from common.interchangeable import group_names, resolve_groups
from common.losses import (AdaptiveWingLoss, FocalHeatmapLoss, HeatmapPeakLoss, InterchangeableLoss, MaskedL1,
                           WingLoss)
from common.metrics import keypoint_errors, match_groups, mre_sdr, pck_bbox, relabel
from common.run_config import load_model as common_load_model, model_record
from common.training import (ArrayBatches, make_batches, make_optimizer, plan_run, start_run, train,
                             train_val_indices)
from baselines.config import KEYPOINT_NAMES_FILE
from baselines.data import load_cache, read_images
from baselines.landmarks import curriculum_segments
from baselines.models import build_model

PCK_FRACTIONS = (0.05, 0.1, 0.15, 0.2)


def model_kind(cfg):
    """The architecture trained: a heatmap model trained with Wing needs coordinates too."""
    if cfg.model.kind == "heatmap" and cfg.train.loss == "wing":
        return "integral"
    return cfg.model.kind


def decoder_name(cfg):
    """How keypoints are read from the model: argmax+refine, soft-argmax or regression."""
    if cfg.model.kind == "regression":
        return "regression"
    return "soft_argmax" if model_kind(cfg) == "integral" else "argmax_refine"


def heatmap_loss(name, codec, tc):
    """The heatmap loss `name`, building its targets with `codec` (`DataConfig.codec`)."""
    targets = codec.get_config()  # heatmap_size (width, height) and sigma
    if name == "mse":
        return HeatmapPeakLoss(alpha=1.0, beta=0.0, foreground_weight=tc.foreground_weight, **targets)
    if name == "mse_peak":
        return HeatmapPeakLoss(alpha=1.0, beta=1e-3 * tc.coordinate_weight, foreground_weight=tc.foreground_weight,
                               **targets)
    if name == "focal":
        return FocalHeatmapLoss(**targets)
    if name == "adaptive_wing":
        return AdaptiveWingLoss(**targets)
    raise ValueError(f"no heatmap loss {name!r}")


def losses_for(cfg, sigma, groups=()):
    """{output name: loss} and loss weights for `cfg`; with `groups` (keypoint indices,
    `data_groups`) each loss is taken under the best assignment within the groups.

    The integral model's two losses each take their own best assignment: its keypoints
    are the soft-argmax of the same heatmaps, so the two agree once the maps have peaks,
    and a joint minimum would need a hand-written `compute_loss`."""
    tc, hs = cfg.train, cfg.data.heatmap_size
    if cfg.model.kind == "regression":
        losses, weights = {"keypoints": MaskedL1()}, {"keypoints": 1.0}
    elif tc.loss == "wing":
        losses, weights = {"keypoints": WingLoss(scale=float(hs))}, {"keypoints": 1.0}
    else:
        losses = {"heatmaps": heatmap_loss(tc.loss, cfg.data.codec(sigma), tc)}
        weights = {"heatmaps": 1.0}
        if cfg.model.kind == "integral":
            losses["keypoints"], weights["keypoints"] = MaskedL1(), tc.coordinate_weight
    if groups:
        losses = {name: InterchangeableLoss(loss, groups) for name, loss in losses.items()}
    return losses, weights


def data_groups(cfg, keypoint_names, source=None):
    """`data.interchangeable` as tuples of keypoint indices (DataError for a bad name)."""
    return resolve_groups(cfg.data.interchangeable, keypoint_names, source)


def keypoint_targets(y):
    """(N, K, 3) float32 = (x_norm, y_norm, labelled): COCO's labelled-but-hidden (v = 1)
    keypoints are trained too."""
    return np.concatenate([y["xy_norm"], y["labelled"][..., None].astype(np.float32)], axis=-1)


def training_batches(images, keypoints, names, indices, tc, shuffle, augment=None, plan=None):
    """Batches of (uint8 images, {output: (B, K, 3) keypoints}), optionally augmented.

    The augmentation is `KeypointAffineAugment` (keras.ops): in the `tf.data` map under
    TensorFlow (uniforms from `tf.random`), in the batch iterator under JAX (numpy).
    plan: the run's `common.training.Plan` (a repeating stream when its epochs are not passes).
    """
    stream = {"repeat": plan.repeat, "steps": plan.steps_per_epoch} if plan is not None else {}
    if keras.backend.backend() == "tensorflow":
        ds = make_batches(images, {"kp": keypoints}, indices, tc.batch_size, shuffle, tc.seed, **stream)
        if augment is None:
            return ds.map(lambda x, t: (x, {n: t["kp"] for n in names}))
        import tensorflow as tf

        def apply(x, t):
            u = tf.random.uniform((tf.shape(x)[0], 4), seed=tc.seed)
            x, xy, vis = augment(x, t["kp"][..., :2], t["kp"][..., 2], u)
            kp = tf.concat([xy, vis[..., None]], axis=-1)
            return x, {n: kp for n in names}

        return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return _AugmentedBatches(images, {"kp": keypoints}, indices, tc.batch_size, shuffle, tc.seed, names, augment,
                             **stream)


class _AugmentedBatches(ArrayBatches):
    def __init__(self, images, targets, indices, batch_size, shuffle, seed, names, augment, repeat=False, steps=None):
        super().__init__(images, targets, indices, batch_size, shuffle, seed, repeat=repeat, steps=steps)
        self.names, self.augment = names, augment

    def __getitem__(self, index):
        x, t = super().__getitem__(index)
        kp = t["kp"]
        if self.augment is not None:
            # Drawn for the whole global batch, this process's rows kept: each image gets the
            # draw it gets in one process (common.training.ArrayBatches.global_rows).
            count, rows = self.global_rows(index)
            u = self.rng.uniform(size=(count, 4)).astype(np.float32)[rows]
            x, xy, vis = self.augment(x, kp[..., :2], kp[..., 2], u)
            x = np.asarray(keras.ops.convert_to_numpy(x))
            kp = np.concatenate([keras.ops.convert_to_numpy(xy), keras.ops.convert_to_numpy(vis)[..., None]], -1)
        return x, {n: kp for n in self.names}


@distribute.distributed  # model, optimizer, metrics and fit on train.distribution's devices
def train_from_cache(cfg, split="train", progress=True, callbacks=(), tensorboard=True):
    """Train on the `split` cache through `common.training.train`; writes best.keras,
    model.keras, history, plots, config into train.output_dir.

    A killed run resumes from its last finished epoch when called again. TensorBoard
    logs (TensorFlow backend) go to `logs/` unless `tensorboard` is False (the study
    trains dozens of arms; their curves are in history.csv). With `train.sigma_curriculum`
    the model is compiled once per sigma and trained for that sigma's epochs
    (`baselines.landmarks.curriculum_segments`), one optimizer throughout.
    """
    tc = cfg.train
    start_run(tc)
    images, y = load_cache(cfg.data.cache_dir, split, cfg.data)
    keypoint_names = [str(n) for n in y["keypoint_names"]]
    groups = data_groups(cfg, keypoint_names, Path(cfg.data.cache_dir) / split)  # before anything is written
    count = len(y["xy_norm"]) if not tc.max_images else min(tc.max_images, len(y["xy_norm"]))
    # train.val_split: validation on another cached split, else a share of this one.
    val_images, val_y = load_cache(cfg.data.cache_dir, tc.val_split, cfg.data) if tc.val_split else (images, y)
    train_idx, val_idx = train_val_indices(count, tc, len(val_images) if tc.val_split else None)
    plan = plan_run(tc, len(train_idx))
    out_dir = Path(tc.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if distribute.current().chief:  # one writer (the others' temporary files would race its clean-up)
        save_config(cfg, out_dir / "config.json")
        save_json(out_dir / KEYPOINT_NAMES_FILE, keypoint_names)

    num_keypoints = y["xy_norm"].shape[1]
    kind = model_kind(cfg)
    model = build_model(num_keypoints, cfg.data, _replace(cfg.model, kind=kind), seed=tc.seed)
    names = list(model.output.keys())
    keypoints = keypoint_targets(y)
    augment = KeypointAffineAugment(tc.rotation, tc.scale_range, tc.translation) if tc.augment else None
    train_ds = training_batches(images, keypoints, names, train_idx, tc, True, augment, plan)
    val_ds = (training_batches(val_images, keypoint_targets(val_y), names, val_idx, tc, False)
              if len(val_idx) else None)

    optimizer = make_optimizer(tc, plan)

    def compile_for(sigma):
        losses, weights = losses_for(cfg, sigma, groups)
        return lambda m: m.compile(optimizer=optimizer, loss=losses, loss_weights=weights)

    segments = curriculum_segments(tc.sigma_curriculum, plan.epochs, cfg.data.sigma)
    summary = train(model, train_ds, val_ds, tc, out_dir, plan, progress=progress, title=f"{kind} net",
                    callbacks=callbacks, train_count=len(train_idx), val_count=len(val_idx),
                    segments=[(first, end, compile_for(sigma)) for sigma, first, end in segments],
                    tensorboard=tensorboard)
    summary.update(kind=kind, sigma_segments=segments, training=training_statement(cfg, groups))
    return summary


def training_statement(cfg, groups=()):
    """What was trained how, for the outputs (the study states it per arm)."""
    losses, weights = losses_for(cfg, cfg.data.sigma, groups)
    optimizer = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}[cfg.train.optimizer]
    return {"optimizer": f"{optimizer}(learning_rate={cfg.train.learning_rate}"
                         f"{f', clipnorm={cfg.train.clipnorm}' if cfg.train.clipnorm else ''})",
            "epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size,
            "losses": {k: {"class": type(v).__name__,
                           **{c: w for c, w in v.get_config().items() if c not in ("name", "reduction")}}
                       for k, v in losses.items()},
            "loss_weights": weights, "lr_schedule": cfg.train.lr_schedule,
            "augment": cfg.train.augment,
            "sigma": cfg.data.sigma, "sigma_curriculum": list(cfg.train.sigma_curriculum),
            "decoder": decoder_name(cfg)}


def _replace(dc, **changes):
    import dataclasses

    return dataclasses.replace(dc, **changes)


def load_model(path):
    """Load a saved model with Keras safe mode (no arbitrary code)."""
    model = common_load_model(path, "train_base.py")
    names = sorted(model.output) if isinstance(model.output, dict) else []
    if not {"heatmaps", "keypoints"} & set(names):  # HeatmapNet, IntegralNet: heatmaps; RegressionNet: keypoints
        raise DataError(f"not a model made by train_base.py: it outputs {names or 'unnamed tensors'}; "
                        "heatmaps or keypoints expected", path)
    return model


def load_any_model(path):
    """A `.keras` model or a file `export_base.py` wrote (SavedModel folder, `.onnx`,
    `.tflite`), as a `common.export` runner: `predict_on_batch`, `input_shape`, `output_shapes`."""
    from common.export import load_inference_model

    return load_inference_model(path, load_model)


def predict(model, images, batch_size=64, progress=False):
    """{output: (N, ...) float32} for all images (batch by batch; images may be a memory map)."""
    outputs = {}
    for start in tqdm(range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress):
        out = model.predict_on_batch(np.asarray(images[start:start + batch_size]))
        for key, value in out.items():
            outputs.setdefault(key, []).append(np.asarray(keras.ops.convert_to_numpy(value), np.float32))
    return {key: np.concatenate(value) for key, value in outputs.items()}


def decode(outputs, decoder, codec, logits=False, groups=()):
    """Keypoints `(N, K, 2)` normalised from the model outputs with `decoder`; argmax+refine
    decodes with `codec` (`DataConfig.codec`, which also checks the maps' size), keeping
    the keypoints of each of `groups` on distinct peaks."""
    if decoder in ("regression", "soft_argmax"):
        return outputs["keypoints"]
    maps = outputs["heatmaps"]
    if logits:
        maps = 1.0 / (1.0 + np.exp(-maps))
    return codec.decode(maps, groups=groups)[0]


def evaluate(xy_norm, y, input_size, spacing_mm=1.0, groups=()):
    """PCK of the bbox diagonal, mean error (input px), MRE/SDR at `spacing_mm` mm/px.

    With `groups` (interchangeable keypoints) these are the raw figures, against the
    labels as given, and `matched` holds the same figures after each image's predictions
    are relabelled within the groups to fit best (`common.metrics.match_groups`), with
    the groups by name and the share of images whose best assignment is not the identity."""
    truth = y["xy_norm"] * input_size
    pred = xy_norm * input_size
    # COCO's labelled-but-hidden (v = 1) keypoints count as labelled: their positions are known.
    summary = {"images": int(len(truth)), **_figures(pred, truth, y["labelled"], spacing_mm)}
    if groups:
        order = match_groups(pred, truth, y["labelled"], groups)
        summary["matched"] = {"groups": group_names(groups, y["keypoint_names"]),
                              "relabelled_images": float(np.mean(np.any(order != np.arange(order.shape[1]), axis=1))),
                              **_figures(relabel(pred, order), truth, y["labelled"], spacing_mm)}
    return summary


def _figures(pred, truth, labelled, spacing_mm):
    errors = keypoint_errors(pred, truth, labelled)
    return {"pck": pck_bbox(pred, truth, labelled, PCK_FRACTIONS),
            "mean_error_px": float(errors.mean()), "median_error_px": float(np.median(errors)),
            "p95_error_px": float(np.percentile(errors, 95)),
            "mre_sdr": mre_sdr(pred, truth, labelled, spacing_mm)}


def use(cfg, model_path, split="test", images_dir=None, progress=True):
    """Predict and evaluate on a cache split, or predict on `images_dir` (a folder of
    images or one image file; no evaluation); writes predictions.npz, overlays, and
    evaluation.json on a cache split. model_path: a `.keras` file, or a SavedModel
    folder, `.onnx` or `.tflite` from export_base.py.

    cfg: the config to run with; `use_base.py` takes what the model was trained with
    (sizes, model, train.loss) from the run's config.json beside `model_path`.
    """
    from common.plots import plot_heatmaps, save_overlay

    out_dir = Path(cfg.use.output_dir)
    model = load_any_model(model_path)
    if images_dir is not None:
        paths = image_paths(images_dir)
        images, sizes = read_images(paths, cfg.data)
        y, filenames = None, np.array([p.name for p in paths])
        crops = np.concatenate([np.zeros_like(sizes), sizes], 1)
    else:
        images, y = load_cache(cfg.data.cache_dir, split, cfg.data)
        crops, filenames = y["crop_boxes"], y["filenames"]
    if tuple(model.input_shape) != images.shape[1:]:
        raise DataError(f"model takes {tuple(model.input_shape)} images, the data has {images.shape[1:]}",
                        model_path)
    # Unlabelled images: the run's keypoint names (named groups need them), else numbered.
    names_file = Path(model_path).parent / KEYPOINT_NAMES_FILE
    shapes = model.output_shapes
    num_keypoints = shapes["keypoints"][0] if "keypoints" in shapes else shapes["heatmaps"][-1]
    names = ([str(n) for n in y["keypoint_names"]] if y is not None
             else [str(n) for n in load_json(names_file)] if names_file.is_file()
             else [f"kp{k:02d}" for k in range(num_keypoints)])
    groups = data_groups(cfg, names, names_file if y is None else Path(cfg.data.cache_dir) / split)
    outputs = predict(model, images, cfg.use.batch_size, progress)
    decoder = "regression" if "heatmaps" not in outputs else (
        "soft_argmax" if "keypoints" in outputs else "argmax_refine")
    xy_norm = decode(outputs, decoder, cfg.data.codec(), logits=cfg.train.loss == "focal", groups=groups)
    size = cfg.data.input_size
    # xy_norm is normalised to the sample's crop (x0, y0, w, h) of its file (the whole file
    # for unlabelled images and the list format).
    crops = np.asarray(crops, np.float32)
    xy_original = crops[:, None, :2] + xy_norm * crops[:, None, 2:]
    save_npz(out_dir / "predictions.npz", xy_norm=xy_norm.astype(np.float32),
             xy_original=xy_original.astype(np.float32), filenames=filenames)
    for i in range(min(cfg.use.max_overlays, len(images))):
        rgb = np.repeat(np.asarray(images[i]), 3, axis=-1)
        # A COCO image gives a sample per person: their overlays are numbered.
        name = str(filenames[i]) if len(set(filenames.tolist())) == len(filenames) else f"{filenames[i]}_{i}"
        save_overlay(out_dir / "overlays" / f"{name}.png", rgb, xy_pred=xy_norm[i] * size,
                     xy_true=y["xy_norm"][i] * size if y is not None else None,
                     visible_true=y["labelled"][i] if y is not None else None, scale=4)
        if "heatmaps" in outputs:
            plot_heatmaps(rgb, outputs["heatmaps"][i], out_dir / "heatmaps" / f"{name}.png", keypoint_names=names,
                          xy_pred_heatmap=xy_norm[i] * outputs["heatmaps"].shape[2])
    result = {"output_dir": str(out_dir), "images": len(images), "decoder": decoder}
    if y is None:
        return result
    summary = evaluate(xy_norm, y, size, cfg.study.spacing_mm, groups)
    summary.update({"decoder": decoder, "model": model_record(model_path), "split": split,
                    "config": to_dict(cfg)})
    save_json(out_dir / "evaluation.json", summary)
    result["summary"] = summary
    return result
