"""Stage-2 inference paths side by side, in one run on the same images.

    python bench/inference.py
    python bench/inference.py --backbones resnet18 --batch-sizes 1,8 --repeats 3 --frames 8

For each backbone (ResNet-18, ResNet-50; random weights unless --model gives a trained
.keras, whose error figures are then meaningful: the images are then its run's cache
images, `test` split, and INT8 is calibrated on its `train` split) and batch size: images/s and p50 / p95
ms per batch for a per-image `model.predict` loop, the batched compiled path
(`predict_on_batch`) in float32 and bfloat16, ONNX Runtime float32 and INT8, LiteRT
float32 and INT8 (`common.export`); the mean keypoint error of each against float32 Keras
in input-frame pixels; the peak resident memory after each path; the machine's float32
matrix-product GFLOP/s (numpy, 1024^3) measured in the same run. Then end to end, with
--e2e-path, on --frames synthetic full-size 1920x1200 JPEG frames, colour and grayscale
(SPEED's frames are grayscale): decoding and cutting alone (`common.geometry.warp_image_file`,
threads), the model alone on the cut images, and both streamed (decoding the next batch
in threads while the model runs: `use_vis.py`'s `FolderStream`; and the same with the
threads at the model's priority), side by side --e2e-repeats times, medians reported. Prints a table; writes
--output-dir/inference.json (`results_io.write_result`).
"""

import argparse
import concurrent.futures
import dataclasses
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from results_io import write_result  # bench/ is on the path when run as a script


PATHS = ("keras per-image predict loop", "keras batched fp32", "keras batched bf16", "onnxruntime", "onnxruntime int8",
         "litert fp32", "litert int8")


def matmul_gflops(n=1024, repeats=5):
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(call, batches, warmup=1):
    for batch in batches[:warmup]:
        call(batch)
    seconds, outputs = [], []
    for batch in batches:
        start = time.perf_counter()
        outputs.append(call(batch))
        seconds.append(time.perf_counter() - start)
    return np.array(seconds), outputs


def build(backbone, input_size, policy="float32", model_path=None):
    """A random-weight stage-2 model, or with model_path the trained one (float32) or its
    twin under `policy` (built from the run's config.json, the trained weights copied in)."""
    import keras

    from stage2_visible_keypoints.config import Stage2Config
    from stage2_visible_keypoints.model import build_model

    cfg, count = Stage2Config(), 19
    data = dataclasses.replace(cfg.data, input_size=input_size, heatmap_size=(input_size[0] // 2, input_size[1] // 2))
    model_cfg = dataclasses.replace(cfg.model, backbone=backbone, weights="none")
    trained = None
    if model_path:
        from stage2_visible_keypoints.predictor import load_stage2_model, num_keypoints

        cfg = run_config(model_path)
        trained = load_stage2_model(model_path, cfg.data.input_size)
        if policy == "float32":
            return trained
        data, model_cfg, count = cfg.data, dataclasses.replace(cfg.model, weights="none"), num_keypoints(trained)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(count, data, model_cfg, seed=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if trained is not None:
        model.set_weights(trained.get_weights())
    return model


def run_config(model_path):
    from common.errors import DataError
    from common.run_config import load_run_config
    from stage2_visible_keypoints.config import TRAINED_SETTINGS, Stage2Config

    cfg, path = load_run_config(Stage2Config, model_path, trained=TRAINED_SETTINGS)
    if path is None:
        raise DataError("config.json not found beside the model (train_vis.py writes it)", model_path)
    return cfg


def cache_images(model_path, cache_dir, split, count):
    """Up to `count` images of the run's cache split (what the trained model was made for)."""
    from common.data_io import load_json
    from common.export import calibration_sample
    from stage2_visible_keypoints.data import load_cache

    cfg = run_config(model_path)
    # The run's own cache: data.cache_dir as its config.json recorded it (not a trained setting).
    recorded = load_json(Path(model_path).parent / "config.json").get("data", {}).get("cache_dir")
    cache = load_cache(cache_dir or recorded or cfg.data.cache_dir, split, cfg.data)
    return calibration_sample(cache.images, count)


def run_paths(args, backbone, images, out_dir, calibration):
    from common.export import export_model, load_inference_model

    size = np.array(args.input_size, dtype=np.float64)
    model = build(backbone, tuple(args.input_size), model_path=args.model)
    bf16 = build(backbone, tuple(args.input_size), "mixed_bfloat16", model_path=args.model)
    bf16.set_weights(model.get_weights())  # the same weights (the random ones too)
    files = export_model(model, out_dir / backbone, ("onnx", "onnx_int8", "litert", "litert_int8"),
                         representative=calibration)
    paths = {
        "keras per-image predict loop": lambda b: {"keypoints": np.concatenate(
            [model.predict(b[i:i + 1], verbose=0)["keypoints"] for i in range(len(b))])},
        "keras batched fp32": model.predict_on_batch,
        "keras batched bf16": bf16.predict_on_batch,
        "onnxruntime": load_inference_model(files["onnx"]).predict_on_batch,
        "onnxruntime int8": load_inference_model(files["onnx_int8"]).predict_on_batch,
        "litert fp32": load_inference_model(files["litert"]).predict_on_batch,
        "litert int8": load_inference_model(files["litert_int8"]).predict_on_batch,
    }
    assert tuple(paths) == PATHS
    rows = []
    for batch_size in args.batch_sizes:
        batches = [images[(i * batch_size) % len(images):][:batch_size] for i in range(args.repeats)]
        batches = [b if len(b) == batch_size else images[:batch_size] for b in batches]
        _, reference = timed(model.predict_on_batch, batches, warmup=0)
        for name, call in paths.items():
            seconds, outputs = timed(call, batches)
            error = np.mean([np.linalg.norm((np.asarray(o["keypoints"]) - np.asarray(r["keypoints"])) * size,
                                            axis=-1).mean() for o, r in zip(outputs, reference)])
            rows.append({"backbone": backbone, "path": name, "batch": batch_size,
                         "images_per_s": round(batch_size / float(np.median(seconds)), 2),
                         "p50_ms": round(1e3 * float(np.percentile(seconds, 50)), 1),
                         "p95_ms": round(1e3 * float(np.percentile(seconds, 95)), 1),
                         "keypoint_error_px": round(float(error), 4), "peak_rss_mib": round(peak_mib())})
            print(f"{backbone:9s} {name:30s} b{batch_size:<3d} {rows[-1]['images_per_s']:8.2f} img/s  "
                  f"p50 {rows[-1]['p50_ms']:8.1f}  p95 {rows[-1]['p95_ms']:8.1f} ms  err {error:.4f} px  "
                  f"rss {rows[-1]['peak_rss_mib']} MiB", flush=True)
    return rows, paths


def end_to_end(args, call, tmp, mode="RGB"):
    """Decoding alone, the model alone, and both streamed, on full-size JPEG frames (`mode`:
    RGB or L, grayscale)."""
    from PIL import Image

    from common.geometry import warp_image_file
    from stage2_visible_keypoints.config import Stage2Config
    from stage2_visible_keypoints.data import FolderStream

    data = dataclasses.replace(Stage2Config().data, input_size=tuple(args.input_size))
    rng = np.random.default_rng(1)
    paths = []
    for i in range(args.frames):  # smooth content: JPEG decoding of noise is slower than of a real frame
        small = rng.integers(0, 256, (75, 120, 3), dtype=np.uint8)
        path = tmp / f"frame{mode}{i:03d}.jpg"
        Image.fromarray(small).resize((1920, 1200), Image.BILINEAR).convert(mode).save(path, quality=90)
        paths.append(path)
    batch = args.stream_batch
    decode = lambda p: warp_image_file(p, data.canvas_size, data.crop_size, data.input_size)[0]  # noqa: E731
    seconds = {"decode": [], "model": [], "streamed": [], "streamed_same_priority": []}
    for _ in range(args.e2e_repeats):  # the three side by side, each repeat; medians reported
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
            start = time.perf_counter()
            cut = list(pool.map(decode, paths))
            seconds["decode"].append(time.perf_counter() - start)
        stacked = np.stack(cut)
        call(stacked[:batch])
        start = time.perf_counter()
        for i in range(0, len(stacked), batch):
            call(stacked[i:i + batch])
        seconds["model"].append(time.perf_counter() - start)
        # use_vis.py's stream: the next batches decode in threads while the model runs on this one.
        for name, priority in (("streamed", {}), ("streamed_same_priority", {"niceness": 0})):  # FolderStream's, none
            start = time.perf_counter()
            for images in FolderStream(paths, data, batch, **priority):
                call(images)
            seconds[name].append(time.perf_counter() - start)
    n = len(paths)
    result = {"frames": n, "mode": mode, "repeats": args.e2e_repeats}
    result |= {f"{name}_images_per_s": n / float(np.median(s)) for name, s in seconds.items()}
    slower = min(result["decode_images_per_s"], result["model_images_per_s"])
    result["streamed_vs_slower"] = result["streamed_images_per_s"] / slower
    result["same_priority_vs_slower"] = result["streamed_same_priority_images_per_s"] / slower
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="resnet18,resnet50", help="(%(default)s)")
    parser.add_argument("--model", help="a trained stage-2 .keras (with its config.json; name its backbone in "
                        "--backbones): error figures of a trained model on its cache's test images")
    parser.add_argument("--cache-dir", help="with --model: the run's data.cache_dir (default: its config's)")
    parser.add_argument("--input-size", type=int, nargs=2, default=(128, 128),
                        help="width height (%(default)s; with --model, the run's)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="(%(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per path and size (%(default)s)")
    parser.add_argument("--frames", type=int, default=32, help="full-size JPEG frames end to end (%(default)s)")
    parser.add_argument("--e2e-repeats", type=int, default=3,
                        help="end-to-end repeats, medians reported (%(default)s)")
    parser.add_argument("--stream-batch", type=int, default=8, help="batch of the end-to-end run (%(default)s)")
    parser.add_argument("--e2e-path", default="onnxruntime int8", choices=PATHS,
                        help="the path run end to end (%(default)s)")
    parser.add_argument("--output-dir", default="bench/results/inference", help="(%(default)s)")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    gflops = matmul_gflops()
    print(f"matmul float32 (numpy, 1024^3): {gflops:.1f} GFLOP/s", flush=True)
    count = max(32, max(args.batch_sizes))
    if args.model:
        args.input_size = list(run_config(args.model).data.input_size)
        images = cache_images(args.model, args.cache_dir, "test", count)
        calibration = cache_images(args.model, args.cache_dir, "train", 64)
    else:
        images = np.random.default_rng(0).integers(0, 256, (count, args.input_size[1], args.input_size[0], 3),
                                                   dtype=np.uint8)
        calibration = images[:16]
    rows, e2e = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones.split(","):
            found, paths = run_paths(args, backbone, images, Path(tmp), calibration)
            rows += found
            e2e[backbone] = []
            for mode in ("RGB", "L"):
                e2e[backbone].append(end_to_end(args, paths[args.e2e_path], Path(tmp), mode) | {"path": args.e2e_path})
                print(f"{backbone} end to end ({args.e2e_path}): {e2e[backbone][-1]}", flush=True)
    result = {"matmul_gflops": round(gflops, 1), "rows": rows, "end_to_end": e2e,
              "note": "random weights: error figures compare runtimes only" if not args.model else "trained model"}
    path = write_result(Path(args.output_dir) / "inference.json", result, args, argv=argv)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
