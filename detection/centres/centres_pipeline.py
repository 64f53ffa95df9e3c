"""Centre-detector library calls behind the scripts: `train_from_cache(cfg)` and `use(cfg, ...)`.

Frames: a tile's `xy_norm` is normalised to the model input, `xy_input` is in input
pixels (256 x 256 by default), `xy_original` in source-image pixels; each tile's
stored transform maps between them (`common.geometry.to_original`). Detections from
overlapping tiles are mapped to original pixels and merged (`detection.centres.tiling`);
evaluation is in original pixels, per image.
"""

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import common.augment  # noqa: F401  (registers the layers for loading)
from common import distribute
from common.backbones import has_pretrained_weights
from common.config import save_config, to_dict
from common.data_io import image_paths, read_image_rgb, save_json
from common.errors import DataError
from common.geometry import to_original
from common.metrics import centre_detection_summary
from common.plots import plot_heatmaps, save_overlay
from common.run_config import load_model, model_record
from common.training import make_batches, make_optimizer, plan_run, resolve_jit, split_indices, start_run, train
from detection.centres.centres import build_model, compile_model
from detection.centres.centres_data import load_cache
from detection.centres.tiling import cut_tiles, merge_detections, tile_grid, tile_transform


@distribute.distributed  # model, optimizer, metrics and fit on train.distribution's devices
def train_from_cache(cfg, progress=True, callbacks=()):
    """Train on the train cache through `common.training.train` (validation on the val
    cache when it exists, else on train.validation_split of the tiles).

    Writes best.keras, model.keras, config.json, history.csv, plots/, logs/ into
    train.output_dir. A run that stops early resumes from its last finished epoch
    when called again with the same config.
    """
    tc = cfg.train
    start_run(tc)
    cache = load_cache(cfg.data.cache_dir, "train", cfg.data)
    # train.val_split names the validation split; by default "val" where it was cached.
    val_name = tc.val_split or "val"
    val = (load_cache(cfg.data.cache_dir, val_name, cfg.data)
           if tc.val_split or (Path(cfg.data.cache_dir) / "val" / "Y_data.npz").is_file() else None)
    out_dir = Path(tc.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if distribute.current().chief:  # one writer (the others' temporary files would race its clean-up)
        save_config(cfg, out_dir / "config.json")

    count = len(cache.y["objects"])
    if val is None:
        train_idx, val_idx = split_indices(count, tc.validation_split, tc.seed)
    else:
        train_idx, val_idx = np.arange(count), np.arange(len(val.y["objects"]))
    plan = plan_run(tc, len(train_idx), max_steps=tc.max_steps)
    model = build_model(len(cache.class_names), cfg.data, cfg.model, seed=tc.seed)
    if has_pretrained_weights(cfg.model.weights):
        model.get_layer("backbone").trainable = False  # a frozen random backbone learns nothing
    compile_model(model, cfg.data, tc, make_optimizer(tc, plan), resolve_jit(tc.jit_compile))

    train_ds = make_batches(cache.images, {"heatmaps": cache.y["objects"]}, train_idx, tc.batch_size,
                            shuffle=True, seed=tc.seed, repeat=plan.repeat, steps=plan.steps_per_epoch)
    held_out = val or cache
    val_ds = (make_batches(held_out.images, {"heatmaps": held_out.y["objects"]}, val_idx, tc.batch_size,
                           shuffle=False) if len(val_idx) else None)
    sample = np.asarray(held_out.images[np.sort(val_idx if len(val_idx) else train_idx)[:tc.tensorboard_images]])
    return train(model, train_ds, val_ds, tc, out_dir, plan, progress=progress, title="Centre detector training",
                 callbacks=callbacks, tensorboard_images=(sample, "heatmaps", False),
                 train_count=len(train_idx), val_count=len(val_idx))


def load_centres_model(path):
    """Load a saved model with Keras safe mode (no arbitrary code)."""
    return load_model(path, "train_centres.py", outputs=("heatmaps",))


def load_any_centres_model(path):
    """A `.keras` model or a file `export_centres.py` wrote (SavedModel folder, `.onnx`,
    `.tflite`), as a `common.export` runner: `predict_on_batch`, `input_shape`, `output_shapes`."""
    from common.export import load_inference_model

    return load_inference_model(path, load_centres_model)


def predict_and_detect(model, tiles, tile_image, tile_transforms, use_cfg, codec, keep_heatmaps=(), progress=True):
    """Run the model on tiles batch by batch and decode every batch at once with `codec`
    (the data config's), so memory holds the detections, not the heatmaps of a whole split.

    Returns (detections, heatmaps): detections as `detect` returns them; heatmaps
    {tile index: (h, w, C) float32} for the tiles listed in `keep_heatmaps` (overlays).
    """
    input_size = (tiles.shape[2], tiles.shape[1])  # (width, height) of (T, H, W, 3): what the model takes
    parts, kept = [], {}
    keep_heatmaps = set(int(t) for t in keep_heatmaps)
    batch = use_cfg.batch_size
    for start in tqdm(range(0, len(tiles), batch), desc="predict", unit="batch", disable=not progress):
        heat = np.asarray(model.predict_on_batch(np.asarray(tiles[start:start + batch]))["heatmaps"], np.float32)
        parts.append(tile_peaks(heat, np.arange(start, start + len(heat)), tile_transforms, input_size, use_cfg, codec))
        kept.update({t: heat[t - start] for t in keep_heatmaps if start <= t < start + len(heat)})
    peaks = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else None
    # Original px per heatmap px: the tile (1 / its scale to the input) over the heatmap.
    stride = input_size[0] / codec.heatmap_size[0] / float(tile_transforms[0][0]) if len(tile_transforms) else 1.0
    return merge_per_image(peaks, tile_image, merge_distance(use_cfg, stride)), kept


# Two peaks of one object from two tiles differ by both tiles' decoding errors, up to about
# a heatmap pixel each (the tiles' heatmap grids need not line up: the overlap is in original
# pixels); one tile cannot tell apart objects much closer than that anyway.
MERGE_HEATMAP_PX = 2.0


def merge_distance(use_cfg, px_per_heatmap_px):
    """The tile-merge distance in original px: `use.merge_distance`, or when that is 0 (the
    default) MERGE_HEATMAP_PX heatmap pixels (16 px at 8 original px per heatmap px, 32 at
    tile_size=1024 with a 256 px input), so that it follows the heatmap's stride."""
    return float(use_cfg.merge_distance or MERGE_HEATMAP_PX * px_per_heatmap_px)


def tile_peaks(heatmaps, tile_index, tile_transforms, input_size, use_cfg, codec):
    """Peaks of a batch of tiles' `(B, H, W, C)` heatmaps (`codec.decode`: 3x3 NMS, score
    threshold, sub-pixel refinement) in original pixels. tile_index (B,): the tiles' rows in
    `tile_transforms` (T, 4); input_size: (width, height) of the tiles the model took;
    codec: a `CentreHeatmapCodec` (`DataConfig.codec`).
    Returns flat arrays {tile (P,), class (P,), xy (P, 2) original px, score (P,)}."""
    peaks = codec.decode(heatmaps, threshold=use_cfg.score_threshold, max_peaks=use_cfg.max_peaks)
    tile = np.asarray(tile_index)[peaks["image"]]
    xy_input = peaks["xy_norm"].astype(np.float64) * np.asarray(input_size, np.float64)
    xy = to_original(xy_input[:, None, :], tile_transforms[tile])[:, 0, :]
    return {"tile": tile, "class": peaks["class"], "xy": xy, "score": peaks["score"]}


def merge_per_image(peaks, tile_image, merge_distance):
    """Tile peaks -> detections per image {image (P,), class (P,), xy (P, 2), score (P,)}:
    duplicates from overlapping tiles (same class, other tiles, within `merge_distance`
    original px: `merge_distance(use_cfg, ...)`) merged."""
    if peaks is None:
        return {"image": np.zeros(0, np.int64), "class": np.zeros(0, np.int64), "xy": np.zeros((0, 2)),
                "score": np.zeros(0, np.float32)}
    image = np.asarray(tile_image)[peaks["tile"]]
    keep = []
    for index in np.unique(image):  # merging needs only the peaks of one image at a time
        rows = np.flatnonzero(image == index)
        keep.append(rows[merge_detections(peaks["xy"][rows], peaks["class"][rows], peaks["score"][rows],
                                          merge_distance, groups=peaks["tile"][rows])])
    keep = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    return {"image": image[keep], "class": peaks["class"][keep], "xy": peaks["xy"][keep],
            "score": peaks["score"][keep]}


def use(cfg, model_path, split="test", images_dir=None, progress=True):
    """Detect centres on a cache split (and evaluate) or on `images_dir`, a folder of
    images or one image file.

    Writes under use.output_dir: detections/NAME.json (centres in original pixels,
    class, score), overlays/ (the original image: truth green rings, predictions red
    crosses), heatmaps/ (the first tile's per-class maps) and, on a labelled split,
    evaluation.json. model_path: a `.keras` file, or a SavedModel folder, `.onnx` or
    `.tflite` from export_centres.py.
    """
    uc = cfg.use
    out_dir = Path(uc.output_dir)
    model = load_any_centres_model(model_path)
    size = int(model.input_shape[0])
    if (size, size) != tuple(cfg.data.input_size):
        raise DataError(f"model takes {size}x{size} tiles but data.input_size is {cfg.data.input_size[0]}x"
                        f"{cfg.data.input_size[1]}; use the config it was trained with (config.json beside it)",
                        model_path)
    channels = int(model.output_shapes["heatmaps"][-1])
    if images_dir is not None:
        paths = image_paths(images_dir)
        tiles, tile_image, transforms = _tile_folder(paths, cfg.data)
        names, y = [p.name for p in paths], None
        class_names = cfg.data.class_names if len(cfg.data.class_names) == channels else tuple(
            f"class{c}" for c in range(channels))
    else:
        cache = load_cache(cfg.data.cache_dir, split, cfg.data)
        tiles, y = cache.images, cache.y
        tile_image, transforms = y["tile_image"], y["tile_transforms"]
        names, paths, class_names = [str(n) for n in y["filenames"]], [Path(str(p)) for p in y["image_paths"]], \
            cache.class_names
        if len(class_names) != channels:
            raise DataError(f"model predicts {channels} classes but the cache has {len(class_names)}", model_path)

    shown = min(uc.max_overlays, len(names))
    first_tiles = [int(np.flatnonzero(tile_image == i)[0]) for i in range(shown)]
    start = time.perf_counter()
    found, heatmaps = predict_and_detect(model, tiles, tile_image, transforms, uc, cfg.data.codec(channels),
                                         keep_heatmaps=first_tiles, progress=progress)
    seconds = time.perf_counter() - start

    for i, name in enumerate(names):
        rows = found["image"] == i
        save_json(out_dir / "detections" / f"{name}.json", {
            "filename": name, "frame": "original image pixels (pixel i covers [i, i + 1))",
            "centres": found["xy"][rows].round(2), "classes": [class_names[c] for c in found["class"][rows]],
            "scores": found["score"][rows].round(4)})
    for i, first in zip(range(shown), first_tiles):
        rows = found["image"] == i
        truth = None if y is None else y["gt_xy_original"][y["gt_image"] == i]
        if Path(paths[i]).is_file():  # caches can outlive their images
            _overlay(out_dir / "overlays" / f"{names[i]}.png", read_image_rgb(paths[i]), found["xy"][rows], truth)
        plot_heatmaps(np.asarray(tiles[first]), heatmaps[first], out_dir / "heatmaps" / f"{names[i]}.png",
                      keypoint_names=class_names)

    result = {"images": len(names), "tiles": int(len(tile_image)), "detections": int(len(found["image"])),
              "seconds": round(seconds, 2), "output_dir": str(out_dir)}
    if y is not None:
        summary = evaluate(found, y, cfg)
        summary["model"] = model_record(model_path)
        summary["data"] = {"cache": str(Path(cfg.data.cache_dir) / split), "config_hash": str(y["config_hash"]),
                           "source_hash": str(y["source_hash"]) if "source_hash" in y else ""}
        summary["config"] = to_dict(cfg)
        save_json(out_dir / "evaluation.json", summary)
        result["summary"] = summary
    return result


def _overlay(path, image, xy_pred, xy_true):
    """Original image with true centres (green rings) and detections (red crosses), no labels."""
    from common.plots import draw_keypoints

    drawn_true = draw_keypoints(image, xy_true=xy_true, keypoint_names=[""] * len(xy_true)) \
        if xy_true is not None and len(xy_true) else None
    base = np.asarray(drawn_true) if drawn_true is not None else image
    return save_overlay(path, base, xy_pred=xy_pred, keypoint_names=[""] * len(xy_pred))


def evaluate(found, y, cfg):
    """evaluation.json: P/R/F1 at use.match_distance, PCK, MAE/MSE, count error,
    per class, and by group (small, clustered, on the border, difficult) in original pixels."""
    uc = cfg.use
    truth = {"image": y["gt_image"], "class": y["gt_class"], "xy": y["gt_xy_original"],
             "images": len(y["filenames"])}
    groups = {"small": y["gt_small"], "not_small": ~y["gt_small"], "clustered": y["gt_clustered"],
              "isolated": ~y["gt_clustered"], "border": y["gt_border"], "difficult": y["gt_difficult"]}
    summary = centre_detection_summary({"image": found["image"], "class": found["class"], "xy": found["xy"]},
                                       truth, [str(c) for c in y["class_names"]], uc.match_distance,
                                       uc.pck_thresholds, groups, unit="px in the original image")
    summary["score_threshold"] = uc.score_threshold
    stride = float(y["tile_size"]) / float(y["heatmap_size"][0])
    summary["merge_distance"] = merge_distance(uc, stride)
    summary["frames"] = {"input_size": [int(v) for v in y["input_size"]], "tile_size": int(y["tile_size"]),
                         "heatmap_size": [int(v) for v in y["heatmap_size"]], "original_px_per_heatmap_px": stride}
    return summary


def _tile_folder(paths, data_cfg):
    """Unlabelled images -> (tiles (T, S, S, 3) uint8, tile_image (T,), transforms (T, 4))."""
    tiles, tile_image, transforms = [], [], []
    size, tile = data_cfg.input_size[0], data_cfg.tile_size
    for index, path in enumerate(paths):
        image = read_image_rgb(path)
        grid = tile_grid(image.shape[1], image.shape[0], tile, data_cfg.tile_overlap)
        tiles.append(cut_tiles(image, grid, tile, size))
        tile_image += [index] * len(grid)
        transforms += [tile_transform(origin, tile, size) for origin in grid]
    return np.concatenate(tiles), np.array(tile_image, np.int64), np.array(transforms)

