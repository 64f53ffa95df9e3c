"""A small KerasHub-style test harness: one call checks everything a layer or loss owes.

`run_layer_test` checks the config round trip, eager and symbolic calls against
`compute_output_shape`, a `.keras` save/load round trip (safe_mode=True), one `fit`
step, and the output dtype under mixed_float16 / mixed_bfloat16. `run_loss_test`
checks a loss's config and serialisation round trips and that it returns a finite
scalar. Keep the inputs tiny: the whole suite must run in seconds on two CPU cores.
"""

import os
import tempfile

import keras
import numpy as np
from keras import ops


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    run_training_check=True,
    run_mixed_precision_check=True,
    mixed_precision_output_dtype=None,
):
    """Check a layer class end to end on `input_data` (a numpy batch).

    Under mixed_float16 / mixed_bfloat16 the output dtype must be
    `mixed_precision_output_dtype` (pass "float32" for layers whose outputs are
    declared float32) or, when None, the policy's compute dtype.
    Returns the eager output (default policy) for further assertions.
    """
    input_data = np.asarray(input_data)
    expected_output_shape = tuple(expected_output_shape)

    # Config round trip.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    revived = layer_cls.from_config(config)
    assert revived.get_config() == config, (revived.get_config(), config)

    # Eager call, compute_output_shape and compute_output_spec.
    eager_output = output = layer(input_data)
    assert tuple(output.shape) == expected_output_shape, (output.shape, expected_output_shape)
    assert tuple(layer.compute_output_shape(input_data.shape)) == expected_output_shape

    # Symbolic call with an unknown batch size.
    inputs = keras.Input(shape=input_data.shape[1:], dtype=str(input_data.dtype))
    symbolic = layer_cls(**init_kwargs)(inputs)
    assert tuple(symbolic.shape) == (None,) + expected_output_shape[1:], symbolic.shape

    # .keras save/load round trip with identical outputs.
    model = keras.Model(inputs, symbolic)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(input_data)),
        ops.convert_to_numpy(model(input_data)),
        rtol=1e-6,
        atol=1e-6,
    )

    if run_training_check:
        # A Dense on the last axis keeps the input shape and gives the model weights.
        inputs = keras.Input(shape=input_data.shape[1:])
        features = keras.layers.Dense(input_data.shape[-1])(inputs)
        outputs = layer_cls(**init_kwargs)(features)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss="mse")
        target = np.zeros(expected_output_shape, np.float32)
        history = model.fit(input_data.astype(np.float32), target, epochs=1, batch_size=len(input_data), verbose=0)
        assert np.isfinite(history.history["loss"][0]), history.history

    if run_mixed_precision_check:
        previous = keras.config.dtype_policy()
        try:
            for policy in ("mixed_float16", "mixed_bfloat16"):
                keras.config.set_dtype_policy(policy)
                layer = layer_cls(**init_kwargs)
                output = layer(input_data)
                expected_dtype = mixed_precision_output_dtype or keras.config.dtype_policy().compute_dtype
                assert keras.backend.standardize_dtype(output.dtype) == expected_dtype, (
                    policy,
                    output.dtype,
                    expected_dtype,
                )
                assert tuple(output.shape) == expected_output_shape
        finally:
            keras.config.set_dtype_policy(previous)
    return ops.convert_to_numpy(eager_output)


def run_loss_test(loss_obj, y_true, y_pred):
    """Check a loss's config and serialisation round trips; return its finite scalar value."""
    config = loss_obj.get_config()
    revived = loss_obj.__class__.from_config(config)
    assert revived.get_config() == config, (revived.get_config(), config)

    value = float(ops.convert_to_numpy(loss_obj(y_true, y_pred)))
    assert np.isfinite(value), value
    assert np.ndim(ops.convert_to_numpy(loss_obj(y_true, y_pred))) == 0

    serialized = keras.saving.serialize_keras_object(loss_obj)
    deserialized = keras.saving.deserialize_keras_object(serialized)
    assert type(deserialized) is type(loss_obj)
    assert deserialized.get_config() == config
    np.testing.assert_allclose(float(ops.convert_to_numpy(deserialized(y_true, y_pred))), value, rtol=1e-6)
    return value


class StopAtEpoch(keras.callbacks.Callback):
    """Simulates a kill: raises KeyboardInterrupt as epoch `epoch` begins (the previous
    one has been checkpointed and backed up)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt
