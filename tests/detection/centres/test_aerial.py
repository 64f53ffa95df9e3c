import numpy as np

from detection.centres.aerial import AerialConfig, render_folder, render_image
from detection.centres.dota import find_dota_pairs, polygon_centroid, read_dota_labels


def test_render_is_deterministic_and_objects_are_valid():
    cfg = AerialConfig(image_size=256, max_objects=10)
    image, polygons, categories = render_image([5, 1], cfg)
    again, polygons2, _ = render_image([5, 1], cfg)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(polygons, polygons2)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert 1 <= len(categories) <= 10
    centres = polygon_centroid(polygons)
    assert ((centres >= 0) & (centres < 256)).all()
    d = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1)) + np.eye(len(centres)) * 1e9
    assert d.min() >= cfg.min_centre_distance


def test_many_images_have_small_clustered_and_border_objects(tmp_path):
    summary = render_folder(tmp_path, 12, seed=3, progress=False)
    pairs = find_dota_pairs(tmp_path)
    assert len(pairs) == 12 and summary["objects"] >= 12
    labels = [read_dota_labels(label) for _, label in pairs]
    sizes = np.concatenate([l.sizes for l in labels])
    centres = [l.centres for l in labels]
    assert (sizes < 30).any() and (sizes >= 30).any()
    near = [np.sort(np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1)), axis=1)[:, 1] for c in centres if len(c) > 1]
    assert (np.concatenate(near) < 40).sum() >= 5  # clustered
    all_xy = np.concatenate(centres)
    assert ((all_xy < 10) | (all_xy > 502)).any()  # on the border
    assert set(np.concatenate([l.categories for l in labels])) == {"small-vehicle", "large-vehicle", "storage-tank"}
