"""What scaling out costs and gives: steps/s and images/s of the shared training driver
(`common.training.train`) on one replica, two replicas (`--distribution data_parallel`) and,
under JAX, two processes (`multi_process` on 127.0.0.1), on this machine's devices.

    python bench/scaling.py --output-dir bench/results/scaling
    python bench/scaling.py --backends jax --images 512 --batch-size 32

Each setting runs in its own process (the device count is fixed before a backend starts):
on a machine without two GPUs, two replicas are two host devices (XLA's
--xla_force_host_platform_device_count under JAX, two logical CPUs under TensorFlow) sharing
the same cores, so the table shows the overhead of splitting batches and reducing
gradients, not a speed-up. The model is a small conv net on 64x64 uint8 images, the batch
per replica is fixed (the global batch grows with the replicas, as train.batch_size does).
Timing: the mean of the epochs after the first (which compiles). Prints a table, writes
--output-dir/scaling.json (`results_io.write_result`).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER_FLAG = "--worker"


def worker(spec, out_dir, images, batch_size, epochs):
    """One setting in this process: train, print {"seconds_per_epoch", "steps_per_epoch", ...}."""
    if os.environ.get("KERAS_BACKEND") == "tensorflow" and spec["replicas"] > 1:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        if not tf.config.list_physical_devices("GPU"):
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np

    from common import distribute
    from common.config import TrainingConfig
    from common.training import make_batches, make_optimizer, plan_run, start_run, train

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    tc = TrainingConfig(output_dir=str(out_dir), epochs=epochs, batch_size=batch_size, lr_schedule="constant",
                        validation_split=0.0, distribution=spec["mode"], tensorboard_images=0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (images, 64, 64, 3), dtype=np.uint8)
    y = {"out": rng.normal(size=(images, 8)).astype(np.float32)}
    with distribute.scope(tc) as replicas:
        start_run(tc)
        plan = plan_run(tc, images)
        inputs = keras.Input((64, 64, 3), dtype="uint8")
        h = keras.layers.Rescaling(1 / 255.0)(inputs)
        for filters in (32, 64, 128):
            h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(h)
            h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        model = keras.Model(inputs, {"out": keras.layers.Dense(8, name="out")(h)})
        model.compile(optimizer=make_optimizer(tc, plan), loss={"out": "mse"})
        data = make_batches(x, y, np.arange(images), tc.batch_size, shuffle=True, seed=0)
        times = EpochTimes()
        train(model, data, None, tc, out_dir, plan, progress=False, callbacks=[times], train_count=images,
              tensorboard=False)
    seconds = float(np.mean(times.times[1:])) if len(times.times) > 1 else times.times[0]
    return {"process": replicas.process_index, "replicas": replicas.replicas, "processes": replicas.processes,
            "global_batch": plan.batch_size, "steps_per_epoch": plan.steps_per_epoch, "seconds_per_epoch": seconds,
            "steps_per_second": plan.steps_per_epoch / seconds,
            "images_per_second": plan.steps_per_epoch * plan.batch_size / seconds,
            "device": keras.distribution.list_devices()[0]}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_setting(backend, name, mode, replicas, processes, args, work):
    """Start the setting's process(es); the result of process 0."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KERAS_DISTRIBUTION_")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(HERE.parent))
    if backend == "jax" and replicas > processes:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={replicas // processes}"
    spec = json.dumps({"mode": mode, "replicas": replicas})
    address = f"127.0.0.1:{_free_port()}"
    launched = []
    for index in range(processes):
        if processes > 1:
            env = dict(env, KERAS_DISTRIBUTION_JOB_ADDRESSES=address, KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes),
                       KERAS_DISTRIBUTION_PROCESS_ID=str(index))
        command = [sys.executable, __file__, WORKER_FLAG, spec, str(work / f"{backend}_{name}"), str(args.images),
                   str(args.batch_size), str(args.epochs)]
        launched.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate() for process in launched]
    for process, (_, stderr) in zip(launched, outputs):
        if process.returncode:
            raise SystemExit(f"{backend} {name} failed:\n{stderr[-3000:]}")
    result = json.loads(outputs[0][0].strip().splitlines()[-1])
    return {"backend": backend, "setting": name, "mode": mode, **result}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER_FLAG]:
        sys.path.insert(0, str(HERE.parent))
        spec, out_dir, images, batch, epochs = argv[1:]
        print(json.dumps(worker(json.loads(spec), out_dir, int(images), int(batch), int(epochs))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="jax,tensorflow", help="comma-separated (%(default)s)")
    parser.add_argument("--images", type=int, default=256, help="training images, 64x64 (%(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch per replica (%(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="the first compiles and is not timed (%(default)s)")
    parser.add_argument("--work-dir", default="runs/bench_scaling", help="the runs' outputs (%(default)s)")
    parser.add_argument("--output-dir", default="bench/results/scaling", help="folder for scaling.json (%(default)s)")
    args = parser.parse_args(argv)
    from results_io import write_result  # bench/ is on the path when run as a script

    rows = []
    for backend in args.backends.split(","):
        settings = [("1 replica", "none", 1, 1), ("2 replicas", "data_parallel", 2, 1)]
        if backend == "jax":
            settings.append(("2 processes", "multi_process", 2, 2))
        for name, mode, replicas, processes in settings:
            rows.append(run_setting(backend, name, mode, replicas, processes, args, Path(args.work_dir)))
            row = rows[-1]
            print(f"{backend:<10} {name:<12} global batch {row['global_batch']:>3}  "
                  f"{row['steps_per_second']:7.2f} steps/s  {row['images_per_second']:8.1f} images/s", flush=True)
    path = write_result(Path(args.output_dir) / "scaling.json", {"rows": rows}, args=args, argv=argv)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
