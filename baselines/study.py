"""The comparison, ablation and loss study on stick figures: tables (JSON) and plots.

    comparison   HeatmapNet vs RegressionNet vs IntegralNet, one budget each
                 -> comparison.json, pck_curve.png, failure_gallery.png, heatmaps_epochs.png
    ablation     heatmap resolution (input / 4, / 2, / 1), sigma, skips on/off, seeds
                 -> ablation.json, ablation.png
    loss         heatmap losses, augmentation and gradient clipping, seeds
                 -> loss_study.json, loss_study.png

Every run is cached by a hash of its config under `output_dir/runs/`, so a killed
study resumes (finished runs are not trained again, an unfinished one resumes from its
last epoch) and identical arms of two parts are trained once.
"""

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np

from common.config import config_hash, save_config, to_dict
from common.data_io import load_json, save_json
from baselines import pipeline
from baselines.data import load_cache, preprocess
from baselines.stickfigure import render_dataset

BASE_STRIDE = 2


def _replace(cfg, **sections):
    """A copy of `cfg` with `section={key: value}` changes."""
    changes = {name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
    return dataclasses.replace(cfg, **changes)


def prepare_data(cfg, progress=True):
    """Render (if needed) and cache the train and test splits under `study.output_dir/data`."""
    sc = cfg.study
    out = Path(sc.output_dir)
    data_dir, cache_dir = out / "data", out / "cache"
    for split, count, seed in (("train", sc.train_images, sc.data_seed), ("test", sc.test_images, sc.data_seed + 1)):
        labels = data_dir / f"{split}.json"
        info = load_json(labels).get("info", {}) if labels.is_file() else {}
        if info.get("seed") != seed or info.get("count") != count:
            render_dataset(data_dir, count, seed, split)
            meta = load_json(labels)
            meta["info"]["count"] = count
            save_json(labels, meta)
    cfg = _replace(cfg, data={"data_dir": str(data_dir), "cache_dir": str(cache_dir)})
    for split in ("train", "test"):
        preprocess(data_dir, split, cache_dir, cfg.data, progress=progress)
    return cfg


def run_arm(cfg, name, progress=False, callbacks=()):
    """Train (or reuse) one arm and evaluate it on the test split; returns its record."""
    key = config_hash({k: to_dict(cfg)[k] for k in ("data", "model", "train")})
    run_dir = Path(cfg.study.output_dir) / "runs" / key[:12]  # identical arms of two parts share a run
    record_path = run_dir / "evaluation.json"
    if record_path.is_file():
        record = load_json(record_path)
        if record.get("config_hash") == key:
            return record
    cfg = _replace(cfg, train={"output_dir": str(run_dir)})
    keras.backend.clear_session()
    start = time.perf_counter()
    summary = pipeline.train_from_cache(cfg, progress=progress, callbacks=callbacks, tensorboard=False)
    model = pipeline.load_model(run_dir / "best.keras")
    images, y = load_cache(cfg.data.cache_dir, "test", cfg.data)
    outputs = pipeline.predict(model, images, cfg.use.batch_size)
    decoder = pipeline.decoder_name(cfg)
    codec = cfg.data.codec()
    xy_norm = pipeline.decode(outputs, decoder, codec, logits=cfg.train.loss == "focal")
    record = {"name": name, "config_hash": key, "training": summary["training"],
              "train_seconds": summary["seconds"], "seconds": round(time.perf_counter() - start, 1),
              "images_per_second": summary["images_per_second"], "seed": cfg.train.seed,
              "test": pipeline.evaluate(xy_norm, y, cfg.data.input_size, cfg.study.spacing_mm)}
    if decoder == "soft_argmax" and "heatmaps" in outputs:
        argmax = pipeline.decode(outputs, "argmax_refine", codec, logits=cfg.train.loss == "focal")
        record["test_argmax_refine"] = pipeline.evaluate(argmax, y, cfg.data.input_size, cfg.study.spacing_mm)
    np.save(run_dir / "test_xy_norm.npy", xy_norm.astype(np.float32))
    save_json(record_path, record)
    return record


class HeatmapSnapshots(keras.callbacks.Callback):
    """Predicted heatmaps of a few fixed images after every epoch (for the across-epochs figure)."""

    def __init__(self, images):
        super().__init__()
        self.images, self.maps = np.asarray(images), []

    def on_epoch_end(self, epoch, logs=None):
        out = self.model.predict_on_batch(self.images)
        self.maps.append(np.asarray(keras.ops.convert_to_numpy(out["heatmaps"]), np.float32))


def comparison(cfg, progress=True):
    """The three models with one budget; writes comparison.json and three figures."""
    from baselines import study_plots

    out = Path(cfg.study.output_dir)
    images, y = load_cache(cfg.data.cache_dir, "test", cfg.data)
    records, predictions = {}, {}
    snapshots = None
    for kind in ("heatmap", "regression", "integral"):
        arm = _replace(cfg, model={"kind": kind}, train={"epochs": cfg.study.comparison_epochs})
        callbacks = []
        if kind == "heatmap":
            snapshots = HeatmapSnapshots(images[:3])
            callbacks = [snapshots]
        _log(progress, f"comparison: {kind}")
        records[kind] = run_arm(arm, f"comparison-{kind}", callbacks=callbacks)
        predictions[kind] = np.load(_run_dir(out, records[kind]) / "test_xy_norm.npy", allow_pickle=False)
    size = cfg.data.input_size
    truth = y["xy_norm"] * size
    result = {"setting": {"train_images": cfg.study.train_images, "test_images": int(len(images)),
                          "epochs": cfg.study.comparison_epochs, "input_size": size,
                          "heatmap_size": cfg.data.heatmap_size, "sigma": cfg.data.sigma,
                          "pck": "fraction of keypoints within f * the diagonal of the true keypoints' box",
                          "mean_error": f"px in the {size}x{size} input"},
              "models": records}
    save_json(out / "comparison.json", result)
    curve = np.linspace(0.0, 0.3, 61)
    study_plots.pck_curves({k: p * size for k, p in predictions.items()}, truth, y["labelled"], curve,
                           out / "pck_curve.png")
    study_plots.failure_gallery(images, {k: p * size for k, p in predictions.items()}, truth, y["labelled"],
                                out / "failure_gallery.png")
    if snapshots is not None and snapshots.maps:
        study_plots.heatmaps_across_epochs(images[:3], snapshots.maps, out / "heatmaps_epochs.png")
    return result


def _run_dir(out, record):
    return out / "runs" / record["config_hash"][:12]


def ablation_cells(cfg):
    """(part, label, cfg) for every ablation cell; the base cell is shared by all parts."""
    sc, base_sigma = cfg.study, cfg.data.sigma
    cells = []
    for stride in sc.heatmap_strides:
        size = cfg.data.input_size // stride
        sigma = base_sigma * BASE_STRIDE / stride  # the same Gaussian width in input pixels
        cells.append(("resolution", f"{size}x{size} (sigma {sigma:g})",
                      _replace(cfg, data={"heatmap_size": size, "sigma": sigma})))
    for sigma in sc.sigmas:
        cells.append(("sigma", f"sigma {sigma:g}", _replace(cfg, data={"sigma": float(sigma)})))
    for skips in sc.skips:
        cells.append(("skips", "skips on" if skips else "skips off", _replace(cfg, model={"skips": bool(skips)})))
    return cells


def ablation(cfg, progress=True):
    """Heatmap resolution, sigma and skip connections; mean and std over seeds."""
    from baselines import study_plots

    base = _replace(cfg, model={"kind": "heatmap"},
                    train={"epochs": cfg.study.ablation_epochs, "max_images": _part_images(cfg)})
    tables = {}
    for part, label, cell in ablation_cells(base):
        runs = []
        for seed in cfg.study.ablation_seeds:
            _log(progress, f"ablation: {part} {label} seed {seed}")
            runs.append(run_arm(_replace(cell, train={"seed": seed}), f"ablation-{part}", progress=False))
        tables.setdefault(part, []).append(_cell_summary(label, runs))
    result = {"setting": {"epochs": cfg.study.ablation_epochs, "seeds": list(cfg.study.ablation_seeds),
                          "train_images": min(cfg.study.part_train_images, cfg.study.train_images),
                          "model": "heatmap", "loss": cfg.train.loss,
                          "resolution": "sigma scaled with the heatmap so the Gaussian is as wide in input pixels"},
              "tables": tables}
    save_json(Path(cfg.study.output_dir) / "ablation.json", result)
    study_plots.cell_bars(tables, Path(cfg.study.output_dir) / "ablation.png", "Ablations (HeatmapNet)")
    return result


LOSS_ARMS = {  # name -> train overrides; every arm has the same epochs, optimiser and data
    "mse": {"loss": "mse"},
    "focal": {"loss": "focal"},
    "mse_peak": {"loss": "mse_peak"},
    "wing": {"loss": "wing"},
    "adaptive_wing": {"loss": "adaptive_wing"},
    "mse+augment": {"loss": "mse", "augment": True},
    "mse+clipnorm": {"loss": "mse", "clipnorm": 1.0},
    "mse+augment+clipnorm": {"loss": "mse", "augment": True, "clipnorm": 1.0},
}


def loss_study(cfg, progress=True):
    """Loss arms (with and without augmentation and clipping), seeds; MRE/SDR and PCK."""
    from baselines import study_plots

    base = _replace(cfg, model={"kind": "heatmap"},
                    train={"epochs": cfg.study.loss_epochs, "max_images": _part_images(cfg)})
    rows = []
    for arm in cfg.study.loss_arms:
        if arm not in LOSS_ARMS:
            raise ValueError(f"study.loss_arms: unknown arm {arm!r}; known: {sorted(LOSS_ARMS)}")
        runs = []
        for seed in cfg.study.loss_seeds:
            _log(progress, f"loss study: {arm} seed {seed}")
            runs.append(run_arm(_replace(base, train={**LOSS_ARMS[arm], "seed": seed}), f"loss-{arm}"))
        rows.append(_cell_summary(arm, runs))
    result = {"setting": {"epochs": cfg.study.loss_epochs, "seeds": list(cfg.study.loss_seeds), "model": "heatmap",
                          "train_images": min(cfg.study.part_train_images, cfg.study.train_images),
                          "spacing_mm": cfg.study.spacing_mm,
                          "spacing_note": "nominal: stick figures have no physical size; "
                                          f"{cfg.study.spacing_mm} mm per input pixel is assumed for MRE/SDR"},
              "arms": rows}
    save_json(Path(cfg.study.output_dir) / "loss_study.json", result)
    study_plots.cell_bars({"loss study": rows}, Path(cfg.study.output_dir) / "loss_study.png",
                          "Loss study (HeatmapNet)")
    return result


def _part_images(cfg):
    """train.max_images of the ablation and loss arms (0 = all, so such an arm can share
    its run with the comparison's HeatmapNet when the epochs agree too)."""
    sc = cfg.study
    return 0 if sc.part_train_images >= sc.train_images else sc.part_train_images


def _cell_summary(label, runs):
    pck05 = [r["test"]["pck"]["0.05"] for r in runs]
    errors = [r["test"]["mean_error_px"] for r in runs]
    mre = [r["test"]["mre_sdr"]["mre_mm"] for r in runs]
    return {"label": label, "seeds": [r["seed"] for r in runs],
            "pck@0.05": _stats(pck05), "mean_error_px": _stats(errors), "mre_mm": _stats(mre),
            "per_seed": [{"seed": r["seed"], "pck": r["test"]["pck"], "mean_error_px": r["test"]["mean_error_px"],
                          "mre_sdr": r["test"]["mre_sdr"], "seconds": r["seconds"]} for r in runs],
            "training": runs[0]["training"]}


def _stats(values):
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "min": float(values.min()), "max": float(values.max())}


def _log(progress, text):
    if progress:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_study(cfg, progress=True):
    """Data, then the parts in `study.parts`; writes study.json (timings) beside the tables."""
    start = time.perf_counter()
    out = Path(cfg.study.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = prepare_data(cfg, progress)
    save_config(cfg, out / "config.json")
    timings, results = {}, {}
    for part, fn in (("comparison", comparison), ("ablation", ablation), ("loss", loss_study)):
        if part in cfg.study.parts:
            t = time.perf_counter()
            results[part] = fn(cfg, progress)
            timings[part] = round(time.perf_counter() - t, 1)
    summary = {"seconds": round(time.perf_counter() - start, 1), "part_seconds": timings,
               "backend": keras.backend.backend(), "output_dir": str(out)}
    save_json(out / "study.json", summary)
    return summary, results
