import numpy as np
import pytest
from keras import ops

from common.backbones import RESNET18_TAPS, resnet18_pyramid
from common.errors import DataError


@pytest.fixture(scope="module")
def backbone():
    return resnet18_pyramid((32, 32, 3))


def test_resnet18_taps_strides_channels_and_parameter_count(backbone):
    assert backbone.output_names == list(RESNET18_TAPS)
    shapes = [tuple(o.shape) for o in backbone.outputs]
    assert shapes == [(None, 16, 16, 64), (None, 8, 8, 64), (None, 4, 4, 128), (None, 2, 2, 256), (None, 1, 1, 512)]
    # torchvision's resnet18 has 11,689,512 parameters, of which the 1000-way fc layer
    # holds 512 * 1000 + 1000; BatchNorm moving statistics are not parameters there.
    trainable = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    assert trainable == 11_689_512 - 513_000


def test_resnet18_weights_file_round_trip_and_clear_errors(backbone, tmp_path):
    path = tmp_path / "r18.weights.h5"
    backbone.save_weights(path)
    loaded = resnet18_pyramid((32, 32, 3), weights=str(path))
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)[-1]), ops.convert_to_numpy(backbone(x)[-1]), atol=1e-5)
    with pytest.raises(DataError, match="weights file not found"):
        resnet18_pyramid((64, 64, 3), weights=str(tmp_path / "missing.h5"))
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="cannot load ResNet-18 weights"):
        resnet18_pyramid((64, 64, 3), weights=str(bad))


def test_resnet18_imagenet_offline_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match="nothing is downloaded") as info:
        resnet18_pyramid((64, 64, 3), weights="imagenet")
    assert "\n" not in str(info.value) and "resnet18_imagenet_notop.weights.h5" in str(info.value)
