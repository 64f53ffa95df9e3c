"""Letterbox -> centre crop -> resize: hand-computed transforms, round trips, and that
the image warp moves pixels exactly where the point transform moves points."""

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from common.data_io import read_image_rgb, save_image
from common.errors import DataError
from common.geometry import (box_crop_transform, inside, jitter_box, letterbox_crop_transform, points_box, to_input,
                             to_original, warp_image, warp_image_file)

# The default stage-2 pipeline (stage2_visible_keypoints.config.DataConfig).
CANVAS, CROP, INPUT = (1920, 1080), (1000, 1000), (128, 128)


def test_default_pipeline_transform_by_hand():
    # 1920x1200 -> scale min(1920/1920, 1080/1200) = 0.9 -> 1728x1080, padded by
    # (1920 - 1728) / 2 = 96 in x; the 1000x1000 crop starts at (460, 40) of the
    # canvas; 1000 -> 128 is a factor 0.128.
    transform, plan = letterbox_crop_transform((1920, 1200), CANVAS, CROP, INPUT)
    np.testing.assert_allclose(transform, [0.9 * 0.128, 0.9 * 0.128, (96 - 460) * 0.128, (0 - 40) * 0.128],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(transform, [0.1152, 0.1152, -46.592, -5.12], rtol=0, atol=1e-12)
    assert plan == {"resized": (1728, 1080), "offset": (-364, -40), "crop": (1000, 1000), "input": (128, 128)}
    # The image centre maps to the input centre.
    np.testing.assert_allclose(to_input([[960.0, 600.0]], transform), [[64.0, 64.0]], atol=1e-12)


def test_portrait_image_transform_by_hand():
    # 1000x2000 -> scale min(1920/1000, 1080/2000) = 0.54 -> 540x1080, padded by
    # (1920 - 540) / 2 = 690 in x; crop at (460, 40); offset (230, -40); factor 0.128.
    transform, plan = letterbox_crop_transform((1000, 2000), CANVAS, CROP, INPUT)
    np.testing.assert_allclose(transform, [0.06912, 0.06912, 29.44, -5.12], rtol=0, atol=1e-12)
    assert plan["resized"] == (540, 1080) and plan["offset"] == (230, -40)


def test_small_pipeline_transform_by_hand():
    # The sizes the data tests use: 320x200 -> scale 0.9 -> 288x180 on a 320x180 canvas,
    # pad 16 in x; crop 160x160 at (80, 10); factor 64 / 160 = 0.4.
    transform, _ = letterbox_crop_transform((320, 200), (320, 180), (160, 160), (64, 64))
    np.testing.assert_allclose(transform, [0.36, 0.36, -25.6, -4.0], rtol=0, atol=1e-12)


def test_rounded_resize_gives_slightly_different_sx_sy():
    # 1000x999 on a 500x500 canvas: s = 500/1000 -> 500 x round(499.5) = 500 x 500.
    transform, plan = letterbox_crop_transform((1000, 999), (500, 500), (500, 500), (500, 500))
    assert plan["resized"] == (500, 500)
    np.testing.assert_allclose(transform, [0.5, 500 / 999, 0.0, 0.0], atol=1e-15)


@pytest.mark.parametrize("zero", range(8))
def test_non_positive_size_is_rejected(zero):
    sizes = [100, 80, 120, 120, 100, 100, 64, 64]  # image, canvas, crop, input (w, h)
    sizes[zero] = 0
    with pytest.raises(ValueError, match="positive"):
        letterbox_crop_transform(*zip(sizes[::2], sizes[1::2]))


def test_odd_margins_round_down_on_both_axes():
    # Found by mutation testing (bench/results/mutation/): every earlier case had even
    # margins, so `// 2` -> `/ 2` (a half-pixel shift) survived. Input = 2 x crop.
    # Wide image: 101x50 -> 120x59 on 120x92 (pad_y = 33 // 2 = 16); crop 95x85 at (25 // 2, 7 // 2).
    transform, plan = letterbox_crop_transform((101, 50), (120, 92), (95, 85), (190, 170))
    assert plan["resized"] == (120, 59) and plan["offset"] == (0 - 12, 16 - 3)
    np.testing.assert_allclose(transform, [120 / 101 * 2, 59 / 50 * 2, -24.0, 26.0], atol=1e-12)
    # Tall image: 50x101 -> 59x120 on 94x120 (pad_x = 35 // 2 = 17); crop 85x95 at (9 // 2, 25 // 2).
    transform, plan = letterbox_crop_transform((50, 101), (94, 120), (85, 95), (170, 190))
    assert plan["resized"] == (59, 120) and plan["offset"] == (17 - 4, 0 - 12)
    np.testing.assert_allclose(transform, [59 / 50 * 2, 120 / 101 * 2, 26.0, -24.0], atol=1e-12)


def test_a_one_pixel_line_stays_one_pixel_thick():
    # 1000x1 on 100x100: s = 0.1, the height rounds to 0 and is kept at 1 (sizes of 1 are valid).
    assert letterbox_crop_transform((1000, 1), (100, 100), (100, 100), (100, 100))[1]["resized"] == (100, 1)
    assert letterbox_crop_transform((1, 1000), (100, 100), (100, 100), (100, 100))[1]["resized"] == (1, 100)


@pytest.mark.parametrize("image_size", [(1920, 1200), (1000, 2000), (640, 480), (333, 777)])
def test_round_trip_original_input_original(image_size):
    rng = np.random.default_rng(0)
    transform, _ = letterbox_crop_transform(image_size, CANVAS, CROP, INPUT)
    xy_original = rng.uniform(-50, 1.05 * np.array(image_size), size=(200, 2))
    np.testing.assert_allclose(to_original(to_input(xy_original, transform), transform), xy_original,
                               rtol=0, atol=1e-3)


def test_to_input_broadcasts_one_transform_per_image():
    t1, _ = letterbox_crop_transform((1920, 1200), CANVAS, CROP, INPUT)
    t2, _ = letterbox_crop_transform((1000, 2000), CANVAS, CROP, INPUT)
    xy = np.array([[[0.0, 0.0], [100.0, 200.0], [10.0, 20.0]]] * 2)  # (N=2, K=3, 2)
    out = to_input(xy, np.stack([t1, t2]))
    assert out.shape == (2, 3, 2)
    np.testing.assert_allclose(out[0, 1], [100 * 0.1152 - 46.592, 200 * 0.1152 - 5.12])
    np.testing.assert_allclose(out[1, 1], [100 * 0.06912 + 29.44, 200 * 0.06912 - 5.12])
    np.testing.assert_allclose(to_original(out, np.stack([t1, t2])), xy, atol=1e-9)


def _centroid(image):
    weights = image.astype(np.float64).sum(axis=-1)
    ys, xs = np.indices(weights.shape)
    # Pixel j's centre is at j + 0.5 (the package's convention).
    return np.array([((xs + 0.5) * weights).sum(), ((ys + 0.5) * weights).sum()]) / weights.sum()


@pytest.mark.parametrize("x0, y0", [(960, 600), (700, 400), (1253, 811), (1100, 333)])
def test_warp_image_moves_a_bright_square_where_to_input_moves_its_centre(x0, y0):
    image = np.zeros((1200, 1920, 3), np.uint8)
    image[y0:y0 + 5, x0:x0 + 5] = 255  # a 5x5 square centred at (x0 + 2.5, y0 + 2.5)
    warped, transform = warp_image(image, CANVAS, CROP, INPUT)
    assert warped.shape == (128, 128, 3) and warped.dtype == np.uint8
    expected, _ = letterbox_crop_transform((1920, 1200), CANVAS, CROP, INPUT)
    np.testing.assert_array_equal(transform, expected)
    xy_input = to_input([[x0 + 2.5, y0 + 2.5]], transform)[0]
    np.testing.assert_allclose(_centroid(warped), xy_input, rtol=0, atol=0.05)  # measured < 0.015


def test_warp_image_bright_square_small_pipeline_and_upscaling():
    # 320x200 -> 64x64 input (factor 0.36), and an upscaling crop (factor 2) where the
    # square stays many pixels wide.
    image = np.zeros((200, 320, 3), np.uint8)
    image[120:125, 190:195] = 255
    warped, transform = warp_image(image, (320, 180), (160, 160), (64, 64))
    np.testing.assert_allclose(_centroid(warped), to_input([[192.5, 122.5]], transform)[0], atol=0.05)
    warped, transform = warp_image(image, (320, 180), (160, 160), (320, 320))
    np.testing.assert_allclose(transform, [1.8, 1.8, -128.0, -20.0], atol=1e-12)
    np.testing.assert_allclose(_centroid(warped), to_input([[192.5, 122.5]], transform)[0], atol=0.05)


def test_flat_landscape_image_fills_the_input():
    # 1920x1200 letterboxed to 1728x1080 covers the 1000x1000 crop completely: no padding.
    image = np.full((1200, 1920, 3), 128, np.uint8)
    warped, _ = warp_image(image, CANVAS, CROP, INPUT)
    assert np.all(warped == 128)


def test_flat_portrait_image_has_black_side_bands():
    # The image covers input x in [29.44, 29.44 + 540 * 0.128) = [29.44, 98.56) and all y.
    image = np.full((2000, 1000, 3), 128, np.uint8)
    warped, transform = warp_image(image, CANVAS, CROP, INPUT)
    np.testing.assert_allclose(transform, [0.06912, 0.06912, 29.44, -5.12], atol=1e-12)
    assert np.all(warped[:, :29] == 0)  # left band: pixels 0..28 end at x <= 29
    assert np.all(warped[:, 30:98] == 128)  # inside (pixel 29 and 98 straddle the edges)
    assert np.all(warped[:, 99:] == 0)  # right band
    assert 0 < warped[0, 29, 0] < 128 and 0 < warped[0, 98, 0] < 128  # partial-coverage edge pixels
    # The band edges are where the image's left and right borders map to.
    np.testing.assert_allclose(to_input([[0.0, 0.0], [1000.0, 2000.0]], transform),
                               [[29.44, -5.12], [98.56, 133.12]], atol=1e-9)


def test_warp_image_same_size_is_identity():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    warped, transform = warp_image(image, (96, 64), (96, 64), (96, 64))
    np.testing.assert_array_equal(warped, image)
    np.testing.assert_array_equal(transform, [1.0, 1.0, 0.0, 0.0])


def _gaussian_blob(size, centre, sigma):
    xs, ys = np.meshgrid(np.arange(size[0]) + 0.5, np.arange(size[1]) + 0.5)
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat((blob * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)


@pytest.fixture
def draft_scales(monkeypatch):
    """The JPEG draft scale (1, 2, 4 or 8) libjpeg is asked for at each decode while the test runs."""
    scales = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        scales.append(self.decoderconfig[0])
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return scales


@pytest.mark.parametrize("centre", [(960.3, 600.7), (1201.9, 433.2), (700.5, 1000.1)])
def test_warp_image_file_decodes_a_jpeg_at_quarter_size_and_keeps_the_geometry(tmp_path, draft_scales, centre):
    # The input frame spans 128 / 0.1152 = 1111 original px: 1111 / 4 = 278 >= 2 * 128
    # source px per side but 1111 / 8 = 139 is not, so libjpeg decodes at 1/4 (480x300).
    scales = draft_scales
    image = _gaussian_blob((1920, 1200), centre, sigma=12.0)
    save_image(tmp_path / "blob.jpg", image)
    warped, transform, size = warp_image_file(tmp_path / "blob.jpg", CANVAS, CROP, INPUT)
    assert scales == [4] and size == (1920, 1200) and warped.shape == (128, 128, 3)
    np.testing.assert_array_equal(transform, letterbox_crop_transform((1920, 1200), CANVAS, CROP, INPUT)[0])
    np.testing.assert_allclose(_centroid(warped), to_input([centre], transform)[0], atol=0.05)  # measured < 0.01
    full, _ = warp_image(read_image_rgb(tmp_path / "blob.jpg"), CANVAS, CROP, INPUT)
    assert np.abs(warped.astype(int) - full.astype(int)).max() <= 3


def test_warp_image_file_png_equals_warp_image_and_pads_a_portrait_image(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2000, 1000, 3), dtype=np.uint8)  # portrait: black side bands
    save_image(tmp_path / "noise.png", image)
    warped, transform, size = warp_image_file(tmp_path / "noise.png", CANVAS, CROP, INPUT)
    expected, expected_transform = warp_image(image, CANVAS, CROP, INPUT)
    np.testing.assert_array_equal(warped, expected)
    np.testing.assert_array_equal(transform, expected_transform)
    assert size == (1000, 2000) and np.all(warped[:, :29] == 0) and np.all(warped[:, 99:] == 0)


def test_warp_image_file_grayscale_jpeg_becomes_rgb(tmp_path):
    Image.fromarray(np.full((1200, 1920), 77, np.uint8)).save(tmp_path / "grey.jpg", quality=95)
    warped, _, _ = warp_image_file(tmp_path / "grey.jpg", CANVAS, CROP, INPUT)
    assert warped.shape == (128, 128, 3) and np.all(np.abs(warped.astype(int) - 77) <= 1)


def test_warp_image_file_grayscale_png_equals_its_rgb_copy(tmp_path):
    """A grayscale frame is resampled in one channel and then made RGB: the same pixels
    as the frame stored as RGB, with the portrait's black bands too."""
    grey = np.random.default_rng(1).integers(0, 256, (2000, 1000), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.repeat(grey[..., None], 3, axis=-1)).save(tmp_path / "rgb.png")
    got, transform, _ = warp_image_file(tmp_path / "grey.png", CANVAS, CROP, INPUT)
    expected, expected_transform, _ = warp_image_file(tmp_path / "rgb.png", CANVAS, CROP, INPUT)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(transform, expected_transform)
    assert got.shape == (128, 128, 3) and np.all(got[:, :29] == 0) and np.ptp(got[:, 40:90]) > 10


def test_warp_image_file_bad_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.jpg.*not found"):
        warp_image_file(tmp_path / "missing.jpg", CANVAS, CROP, INPUT)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match="corrupt.jpg.*cannot read image"):
        warp_image_file(tmp_path / "corrupt.jpg", CANVAS, CROP, INPUT)


def test_inside_boundaries():
    size = (64, 32)
    xy = np.array([
        [0.0, 0.0],  # top-left corner: inside
        [63.999, 31.999],  # inside
        [64.0, 10.0],  # x == width: outside
        [10.0, 32.0],  # y == height: outside
        [-1e-9, 10.0],  # just left: outside
        [10.0, -0.5],  # above: outside
        [np.nan, 10.0],  # NaN: outside
    ])
    np.testing.assert_array_equal(inside(xy, size), [True, True, False, False, False, False, False])
    assert inside(np.zeros((3, 5, 2)), size).shape == (3, 5)


# --- square crops around an object's box (stage 2 behind stage 1) ---


def test_box_crop_transform_by_hand():
    # Box 100x50 centred at (650, 425): side 1.25 * 100 = 125, crop from (587.5, 362.5);
    # 128 / 125 = 1.024 input px per original px.
    transform = box_crop_transform([600, 400, 700, 450], (128, 128), margin=1.25)
    np.testing.assert_allclose(transform, [1.024, 1.024, -587.5 * 1.024, -362.5 * 1.024], atol=1e-12)
    np.testing.assert_allclose(to_input([[650.0, 425.0]], transform), [[64.0, 64.0]], atol=1e-12)
    # A box of a pixel gets the minimum side, not an infinite scale.
    np.testing.assert_allclose(box_crop_transform([10, 10, 10.5, 11], (128, 128), min_side=8.0)[:2], [16.0, 16.0])


@pytest.mark.parametrize("box", [[600, 400, 700, 450], [-50, 1100, 30, 1210], [1900, 3, 1919, 9], [0, 0, 1920, 1200]])
def test_box_crop_round_trip_original_input_original(box):
    # Boxes inside, sticking out of, at the edge of and filling the image; vectorised too.
    rng = np.random.default_rng(1)
    xy_original = rng.uniform([-100, -100], [2000, 1300], (9, 2))
    transform = box_crop_transform(box, (128, 96))
    np.testing.assert_allclose(to_original(to_input(xy_original, transform), transform), xy_original, atol=1e-9)
    many = box_crop_transform(np.array([box, [1, 2, 3, 4]], dtype=float), (128, 96))
    np.testing.assert_array_equal(many[0], transform)


@pytest.mark.parametrize("box", [[700, 400, 760, 430], [1880, 1150, 1960, 1230]])
def test_box_crop_warp_moves_a_bright_square_where_to_input_moves_it(box, tmp_path):
    # The crop warps pixels where the point transform moves points, also past the image
    # edge (black there), from an array and from a file.
    image = np.zeros((1200, 1920, 3), np.uint8)
    x0, y0 = int(box[0]) + 20, min(int(box[1]) + 10, 1190)
    image[y0:y0 + 5, x0:x0 + 5] = 255
    transform = box_crop_transform(box, INPUT)
    warped, used = warp_image(image, None, None, INPUT, transform)
    np.testing.assert_array_equal(used, transform)
    expected = to_input([[x0 + 2.5, y0 + 2.5]], transform)[0]
    np.testing.assert_allclose(_centroid(warped), expected, rtol=0, atol=0.05)
    save_image(tmp_path / "frame.png", image)
    from_file, used, size = warp_image_file(tmp_path / "frame.png", None, None, INPUT, transform)
    assert size == (1920, 1200)
    np.testing.assert_allclose(_centroid(from_file), expected, rtol=0, atol=0.05)


def test_jitter_box_moves_and_resizes_within_its_bounds():
    rng = np.random.default_rng(0)
    box = np.array([100.0, 200.0, 300.0, 300.0])  # 200 x 100, centre (200, 250)
    jittered = np.array([jitter_box(box, rng, scale=0.2, shift=0.1) for _ in range(500)])
    centre, size = (jittered[:, :2] + jittered[:, 2:]) / 2, jittered[:, 2:] - jittered[:, :2]
    assert np.all(np.abs(centre - [200, 250]) <= [20, 10]) and np.all(np.abs(size / [200, 100] - 1) <= 0.2)
    assert centre[:, 0].std() > 5 and (size[:, 0] / 200).std() > 0.05  # it does move them
    np.testing.assert_array_equal(jitter_box(box, rng, 0.0, 0.0), box)


def test_points_box_clips_to_the_image():
    assert points_box([[-10, 5], [50, 30], [20, 250]], (100, 200)) == [0.0, 5.0, 50.0, 200.0]
    assert points_box([[-10, 5], [-5, 30]], (100, 200)) is None  # all left of the image
    assert points_box([[np.nan, 1.0]], (100, 200)) is None


# --- Which JPEG draft scale: the largest of 1/8, 1/4, 1/2 that leaves >= 2 source px per input px ---


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    paths = {}
    for width, height in [(1920, 1200), (1200, 1920), (1024, 1024)]:
        paths[width, height] = folder / f"{width}x{height}.jpg"
        save_image(paths[width, height], _gaussian_blob((width, height), (width / 2, height / 2), sigma=40.0))
    return paths


@pytest.mark.parametrize("image_size, canvas, crop, input_size, expected", [
    # The default letterbox: the input frame spans 1111 x 1111 source px (1000 * 1920 / 1728).
    ((1920, 1200), CANVAS, CROP, (64, 64), 8),  # 1111 / 8 = 139 >= 2 * 64
    ((1920, 1200), CANVAS, CROP, (256, 256), 2),  # 1111 / 4 = 278 < 512, 1111 / 2 = 555 >= 512
    ((1920, 1200), CANVAS, CROP, (512, 512), 1),  # 1111 / 2 = 555 < 1024: the full decode
    # A non-square input: each axis must pass on its own (1/4 would do for one axis only).
    ((1920, 1200), CANVAS, CROP, (128, 256), 2),
    ((1920, 1200), CANVAS, CROP, (256, 128), 2),
    # Portrait: 1000 * 1920 / 1080 = 1778 source px per side, 1778 / 4 = 444 >= 256.
    ((1200, 1920), CANVAS, CROP, (128, 128), 4),
    # Exactly two source px per input px at 1/4 (1024 / 4 = 256 = 2 * 128): 1/4 is taken.
    ((1024, 1024), (1024, 1024), (1024, 1024), (128, 128), 4),
])
def test_jpeg_draft_scale_is_the_largest_keeping_two_source_pixels_per_input_pixel(
        jpegs, draft_scales, image_size, canvas, crop, input_size, expected):
    scales = draft_scales
    warped, transform, size = warp_image_file(jpegs[image_size], canvas, crop, input_size)
    assert scales in ([], [1]) if expected == 1 else scales == [expected]  # a draft at 1 changes nothing
    assert size == image_size and warped.shape == (input_size[1], input_size[0], 3)
    # The blob at the image centre lands where the transform puts the centre, whatever the scale.
    centre = to_input([[image_size[0] / 2, image_size[1] / 2]], transform)[0]
    np.testing.assert_allclose(_centroid(warped), centre, atol=0.05 * max(1, input_size[0] / 128))


# --- Black outside the image, whatever edge the input frame crosses ---


@pytest.mark.parametrize("frame", [
    (3.5, -109.5, 120.5, 78.5),  # far above the top, a hair past the right, just short of the bottom
    (-62.5, 64.5, 119.5, 77.5),  # far past the left, just short of the right and the bottom
    (-0.5, -3.5, 148.5, 39.5),  # a hair past the left, a little past the top, far past the right
])
def test_warp_equals_a_resample_of_the_image_on_an_endless_black_surround(frame):
    # The warp pads only as much black as the filter can reach; the reference pads 400 px on
    # every side. A flat grey 120x80 image and a non-square 8x32 input: the frame shrinks by
    # different factors along x and y, so a padding computed from the wrong axis, side or
    # factor shows at the image's edges (measured: 2 to 255 levels off for such mistakes).
    image = np.full((80, 120, 3), 200, np.uint8)
    x0, y0, x1, y1 = frame
    sx, sy = 8 / (x1 - x0), 32 / (y1 - y0)
    transform = np.array([sx, sy, -x0 * sx, -y0 * sy])
    warped, _ = warp_image(image, None, None, (8, 32), transform)
    margin = 400
    surround = Image.new("RGB", (120 + 2 * margin, 80 + 2 * margin))
    surround.paste(Image.fromarray(image), (margin, margin))
    expected = surround.resize((8, 32), Image.BILINEAR, box=(x0 + margin, y0 + margin, x1 + margin, y1 + margin))
    np.testing.assert_allclose(warped, np.asarray(expected), atol=1)  # 1: float rounding of the shifted box
    assert warped.max() == 200 and warped.min() == 0  # both the image and the black show


def test_box_crop_and_jitter_defaults_and_a_box_that_is_not_square():
    box = [600, 400, 700, 450]
    # The defaults: margin 1.25 (side 125 for a 100 px wide box) and an 8 px minimum side.
    np.testing.assert_array_equal(box_crop_transform(box, (128, 128)),
                                  box_crop_transform(box, (128, 128), margin=1.25, min_side=8.0))
    np.testing.assert_allclose(box_crop_transform([10, 10, 10.5, 11], (128, 128))[:2], [16.0, 16.0])
    # Jitter with nothing to jitter returns the box itself: the centre and size of x and y apart.
    np.testing.assert_array_equal(jitter_box(box, np.random.default_rng(0), 0.0, 0.0), box)
    rng = np.random.default_rng(1)
    jittered = np.array([jitter_box(box, rng) for _ in range(200)])  # defaults: shift 0.1, scale 0.15
    centre, size = (jittered[:, :2] + jittered[:, 2:]) / 2, jittered[:, 2:] - jittered[:, :2]
    shift, scale = (centre - [650, 425]) / [100, 50], size / [100, 50]
    assert np.abs(shift).max() <= 0.1 and np.abs(scale - 1).max() <= 0.15
    assert np.abs(shift).max() > 0.09 and np.abs(scale - 1).max() > 0.14  # the full range is used
    # x and y are drawn apart: the box moves off the diagonal and changes its aspect.
    assert np.abs(shift[:, 0] - shift[:, 1]).max() > 0.05 and np.abs(scale[:, 0] - scale[:, 1]).max() > 0.05


def test_points_on_one_line_give_no_box():
    # A box of no width or height is no box (a label's bbox needs x2 > x1 and y2 > y1).
    assert points_box([[5.0, 5.0], [5.0, 30.0]], (100, 200)) is None
    assert points_box([[-10.0, 5.0], [0.0, 30.0]], (100, 200)) is None  # touches only the left edge
