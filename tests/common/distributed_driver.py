"""Run by tests/common/test_distribute.py in a subprocess (the device count is fixed before
the backend starts): a tiny conv net trained through the package's driver, once per mode
given, printing each run's per-step losses and final weights as one JSON line.

    python distributed_driver.py OUT_DIR MODE:BATCH_SIZE:LEARNING_RATE ...

multi_process takes its peers from the KERAS_DISTRIBUTION_* variables; DIE_IN_PROCESS and
DIE_AT_EPOCH kill one process as that epoch begins.
"""

import json
import os
import sys

if os.environ.get("KERAS_BACKEND") == "tensorflow":  # two logical CPUs, before TensorFlow starts
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from common import distribute  # noqa: E402
from common.config import TrainingConfig  # noqa: E402
from common.training import make_batches, make_optimizer, plan_run, start_run, train  # noqa: E402

IMAGES = 16


class DieAtEpoch(keras.callbacks.Callback):
    """A process killed as epoch `epoch` begins (the previous one backed up)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            os._exit(3)


class StepLosses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def run(out_dir, mode, batch_size, learning_rate):
    tc = TrainingConfig(output_dir=out_dir, epochs=2, batch_size=batch_size, learning_rate=learning_rate,
                        optimizer="sgd", lr_schedule="constant", validation_split=0.0, precision="float32",
                        distribution=mode, tensorboard_images=0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (IMAGES, 8, 8, 3), dtype=np.uint8)
    targets = {"out": images.reshape(IMAGES, -1, 3).mean(axis=1).astype(np.float32) / 255.0}
    with distribute.scope(tc) as replicas:
        start_run(tc)
        plan = plan_run(tc, IMAGES)
        inputs = keras.Input((8, 8, 3), dtype="uint8")
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        x = keras.layers.Conv2D(4, 3, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, {"out": keras.layers.Dense(3, name="out")(x)})
        model.compile(optimizer=make_optimizer(tc, plan), loss={"out": "mse"})
        data = make_batches(images, targets, np.arange(IMAGES), tc.batch_size, shuffle=False)
        steps = StepLosses()
        die = [DieAtEpoch(int(os.environ["DIE_AT_EPOCH"]))] if replicas.process_index == int(
            os.environ.get("DIE_IN_PROCESS", -1)) else []
        summary = train(model, data, None, tc, out_dir, plan, progress=False, callbacks=[steps] + die,
                        train_count=IMAGES, tensorboard=False)
        return {"mode": mode, "replicas": replicas.replicas, "global_batch": plan.batch_size, "losses": steps.losses,
                "weights": [np.asarray(w).ravel().tolist() for w in model.get_weights()],
                "process": replicas.process_index, "epochs_run": summary["epochs_run"],
                "distribution": summary["distribution"]}


if __name__ == "__main__":
    out = sys.argv[1]
    for i, spec in enumerate(sys.argv[2:]):
        mode, batch, rate = spec.split(":")
        print(json.dumps(run(os.path.join(out, str(i)), mode, int(batch), float(rate))), flush=True)
