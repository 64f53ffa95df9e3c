"""Each plot writes a valid PNG atomically; overlays put colours where the points are."""

import numpy as np
import pytest
from PIL import Image

from common.metrics import keypoint_error_summary, wrong_keypoint_summary
from common.plots import (
    draw_keypoints,
    plot_error_histogram,
    plot_heatmaps,
    plot_history,
    plot_per_keypoint_error,
    plot_pose_errors,
    plot_wrong_keypoints,
    save_overlay,
)


def _check_png(path, folder, size=None):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    if size is not None:
        with Image.open(path) as img:
            assert img.size == size
    assert sorted(p.name for p in folder.iterdir()) == [path.name], "temp files left behind"


def _is_green(rgb):
    r, g, b = (int(v) for v in rgb)
    return g > 150 and g > r + 80 and g > b + 80


def _is_red(rgb):
    r, g, b = (int(v) for v in rgb)
    return r > 150 and r > g + 80 and r > b + 80


def test_plot_history(tmp_path):
    history = {
        "loss": [10.0, 1.0, 0.1, 0.02],  # spans > 2 decades -> log axis
        "val_loss": [12.0, 2.0, 0.3, 0.5],
        "pck_5": [0.1, 0.4, 0.6, 0.7],
        "val_pck_5": [0.1, 0.5, 0.55, 0.5],
        "learning_rate": [1e-3, 1e-3, 1e-4, 1e-4],
    }
    path = plot_history(history, tmp_path / "history.png", title="stage 2")
    _check_png(path, tmp_path)
    with pytest.raises(ValueError, match="no values"):
        plot_history({}, tmp_path / "empty.png")


def test_draw_keypoints_colours_at_points():
    image = np.full((32, 32, 3), 40, np.uint8)
    xy_true = np.array([[8.5, 8.5], [20.0, 10.0], [5.0, 25.0]])
    xy_pred = np.array([[12.5, 16.5], [20.0, 12.0], [28.0, 28.0]])
    visible = np.array([True, True, False])
    drawn = draw_keypoints(image, xy_pred, xy_true, visible, scale=4)
    assert isinstance(drawn, Image.Image) and drawn.size == (128, 128) and drawn.mode == "RGB"
    pixels = np.asarray(drawn)
    # (x, y) is drawn at (4x, 4y): truth 0 at pixel row 34 col 34, prediction 0 at row 66 col 50.
    assert _is_green(pixels[34, 34])
    assert _is_red(pixels[66, 50])
    # The invisible truth (5, 25) is not drawn; its prediction is.
    assert tuple(pixels[100, 20]) == (40, 40, 40)
    assert _is_red(pixels[112, 112])


def test_draw_keypoints_dims_low_scores_and_checks_shapes():
    image = np.zeros((16, 16, 3), np.uint8)
    xy_pred = np.array([[4.5, 4.5], [12.5, 12.5]])
    drawn = np.asarray(draw_keypoints(image, xy_pred, scores=[0.9, 0.1], score_threshold=0.5, scale=2))
    assert _is_red(drawn[9, 9])
    assert 0 < drawn[25, 25, 0] < drawn[9, 9, 0]  # dimmed, still there
    with pytest.raises(ValueError, match=r"xy_true must have shape \(K, 2\)"):
        draw_keypoints(image, xy_true=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"scores must have shape \(2,\)"):
        draw_keypoints(image, xy_pred, scores=[0.1, 0.2, 0.3])


def test_draw_keypoints_segments_under_the_points():
    image = np.zeros((16, 16, 3), np.uint8)
    segments = np.array([[[2.5, 4.5], [13.5, 4.5]], [[np.nan, 0.0], [5.0, 5.0]]])  # the second is skipped
    drawn = np.asarray(draw_keypoints(image, xy_pred=[[8.5, 12.5]], segments=segments, scale=2))
    # A horizontal line at y = 4.5 -> canvas row 8, from x 5 to 27, in magenta.
    for col in (6, 16, 26):
        assert drawn[8, col, 0] > 200 and drawn[8, col, 1] < 120 and drawn[8, col, 2] > 200
    assert drawn[8, 30].max() == 0 and drawn[2, 16].max() == 0
    with pytest.raises(ValueError, match="segments must have shape"):
        draw_keypoints(image, segments=np.zeros((2, 2)))


def test_plot_pose_errors(tmp_path):
    rotation = np.array([0.5, 1.0, np.nan, 2.0])
    translation = np.array([1e-3, 2e-3, np.nan, 0.0])  # an exact pose still plots on the log axis
    _check_png(plot_pose_errors(rotation, translation, tmp_path / "a" / "pose.png"), tmp_path / "a")
    _check_png(plot_pose_errors([np.nan], [np.nan], tmp_path / "b" / "none.png"), tmp_path / "b")
    with pytest.raises(ValueError, match="one value per image"):
        plot_pose_errors(rotation, translation[:3], tmp_path / "bad.png")


def test_save_overlay(tmp_path):
    image = np.full((24, 20, 3), 40, np.uint8)
    xy = np.array([[3.0, 4.0], [10.0, 12.0]])
    path = save_overlay(tmp_path / "overlay.png", image, xy + 5, xy, keypoint_names=["tip", "base"], scale=3)
    _check_png(path, tmp_path, size=(60, 72))
    # What a reader sees in the file: green truths at (3x, 3y), red predictions 15 px further
    # right and down, the grey image elsewhere.
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    for x, y in xy * 3:
        assert _is_green(pixels[int(y), int(x)]), (x, y)
        assert _is_red(pixels[int(y) + 15, int(x) + 15]), (x, y)
    assert tuple(pixels[70, 2]) == (40, 40, 40)


def test_plot_heatmaps(tmp_path):
    from common.plots import _heatmap_layout, _viridis_lut

    h, w, k = 16, 16, 3
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    centres = [(4.5, 4.5), (10.5, 6.5), (12.5, 12.5)]
    heatmaps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.0) * (k_ + 1) / k for k_, (cx, cy) in enumerate(centres)], -1)
    decoded = np.array(centres) + [0.0, 4.0]  # 4 px below each peak, so both markers show
    image = np.zeros((64, 64, 3), np.uint8)
    path = plot_heatmaps(image, heatmaps, tmp_path / "heatmaps.png", keypoint_names=["a", "b", "c"],
                         xy_pred_heatmap=decoded, max_cols=2)
    _check_png(path, tmp_path)
    layout = _heatmap_layout(h, w, k + 1, max_cols=2)
    with Image.open(path) as img:
        assert img.size == layout["size"]
        pixels = np.asarray(img.convert("RGB")).astype(int)
    scale, lut = layout["scale"], _viridis_lut().astype(int)

    def at(panel, x, y):  # the screen pixel of continuous (x, y) in a panel's heatmap frame
        x0, y0 = layout["origin"](panel)
        return pixels[int(y0 + y * scale), int(x0 + x * scale)]

    assert (at(0, 8, 8) == 0).all()  # the black input
    for j, (cx, cy) in enumerate(centres):
        assert (at(j + 1, cx, cy) == 255).all(), j  # white + on the argmax pixel
        assert _is_red(at(j + 1, *decoded[j])), j  # red X on the decoded keypoint
        # Elsewhere the map in viridis on one scale for all maps, 0 .. the largest peak (1).
        for x, y in ((cx + 1, cy), (cx, cy - 2), (1.5, 15.5)):
            value = heatmaps[int(y), int(x), j] / heatmaps.max()
            np.testing.assert_array_equal(at(j + 1, x, y), lut[round(value * 255)], err_msg=f"map {j} at {(x, y)}")
    # A map with no finite value is drawn (white), not an error.
    heatmaps[..., 1] = np.nan
    plot_heatmaps(image[..., 0], heatmaps, tmp_path / "nan.png")
    with pytest.raises(ValueError, match=r"heatmaps must have shape \(h, w, K\)"):
        plot_heatmaps(image, heatmaps[..., 0], tmp_path / "bad.png")


def _keep_figures(monkeypatch):
    """The figures the plot functions save, kept for the test to read (list, in order)."""
    import common.plots

    figures, save = [], common.plots._save_figure

    def keep(fig, path):
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(common.plots, "_save_figure", keep)
    return figures


def test_plot_error_histogram(tmp_path, monkeypatch):
    figures = _keep_figures(monkeypatch)
    errors = np.abs(np.random.default_rng(1).normal(0, 3, 500))
    errors[:3] = 400.0  # wild outliers beyond the axis
    path = plot_error_histogram(errors, tmp_path / "errors.png", unit="px in the 128x128 input frame")
    _check_png(path, tmp_path)
    # What a reader sees: each bar's height is the number of errors in its span, the 3
    # outliers are off the axis and named in the legend, with the fraction within 2, 5, 10 px.
    ax = figures[0].axes[0]
    bars = ax.patches
    assert len(bars) >= 10
    for bar in bars:
        left, right = bar.get_x(), bar.get_x() + bar.get_width()
        inside = (errors >= left) & ((errors < right) | ((errors == right) & (bar is bars[-1])))
        assert bar.get_height() == inside.sum(), (left, right)
    assert sum(bar.get_height() for bar in bars) == 497
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[0].startswith("500 keypoints (3 beyond")
    for threshold, label in zip((2, 5, 10), legend[1:]):
        assert label == f"≤ {threshold}: {100 * np.mean(errors <= threshold):.1f}%"
    empty = plot_error_histogram(np.zeros(0), tmp_path / "sub" / "empty.png")
    _check_png(empty, tmp_path / "sub")


def test_plot_per_keypoint_error(tmp_path):
    xy_true = np.zeros((2, 3, 2))
    xy_pred = xy_true + np.array([3.0, 4.0])
    visible = np.array([[True, True, False], [True, False, False]])
    summary = keypoint_error_summary(xy_pred, xy_true, visible, keypoint_names=["a", "b", "never"])
    path = plot_per_keypoint_error(summary, tmp_path / "per_keypoint.png")
    _check_png(path, tmp_path)


def test_plot_wrong_keypoints(tmp_path):
    truth = np.tile(np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]]), (4, 1, 1))
    pred = truth.copy()
    pred[:2, 0], pred[:2, 1] = truth[:2, 1], truth[:2, 0]  # a <-> b swapped in two images
    summary = wrong_keypoint_summary(pred, truth, np.ones((4, 3), bool), keypoint_names=["a", "b", "c"])
    path = plot_wrong_keypoints(summary, tmp_path / "wrong.png")
    _check_png(path, tmp_path)
    nothing = wrong_keypoint_summary(truth, truth, np.zeros((4, 3), bool))
    _check_png(plot_wrong_keypoints(nothing, tmp_path / "sub" / "none.png"), tmp_path / "sub")
