import dataclasses

import pytest

from common.config import save_config
from common.errors import DataError
from common.run_config import load_run_config
from detection.centres.centres_config import TRAINED_SETTINGS, CentresConfig


def test_run_trained_with_small_tiles_loads_with_its_own_overlap(tmp_path):
    """A run trained with 128 px tiles (so overlap < 128) is reloaded with its overlap, not
    the default 128, which would make the run's own config.json look invalid."""
    cfg = CentresConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, tile_size=128, tile_overlap=32))
    save_config(cfg, tmp_path / "config.json")
    loaded, path = load_run_config(CentresConfig, tmp_path / "best.keras", trained=TRAINED_SETTINGS)
    assert path == tmp_path / "config.json"
    assert (loaded.data.tile_size, loaded.data.tile_overlap) == (128, 32)
    # Contradicting it is the user's error, named as such.
    with pytest.raises(DataError, match="tile_overlap=64 .*contradicts the run"):
        load_run_config(CentresConfig, tmp_path / "best.keras", overrides=["data.tile_overlap=64"],
                        trained=TRAINED_SETTINGS)
