"""Reader for the ISBI 2015 cephalometric landmark challenge format.

The challenge (Wang et al., "A benchmark for comparison of dental radiography analysis
algorithms", Medical Image Analysis 2016) ships 1935 x 2400 lateral cephalograms
(`.bmp`) at 0.1 mm per pixel, and for each image one text file per annotating doctor
(`AnnotationsByMD/400_senior/001.txt`, `400_junior/...`) whose first 19 lines are the
landmarks as `x,y` in image pixels; lines after them (classification labels in some
releases) are ignored. Coordinates are returned as written (the files hold integer
pixel positions; the package reads pixel i as [i, i + 1), so add 0.5 to put them on
pixel centres if that matters to you).
"""

from pathlib import Path

import numpy as np

from common.data_io import IMAGE_SUFFIXES
from common.errors import DataError

NUM_LANDMARKS = 19
MAX_PIXEL = 1e9  # a coordinate beyond this is a corrupt file (float32 ends at 3.4e38)
PIXEL_SPACING_MM = 0.1
# The data set's own .bmp first: a .jpg copy beside it (made for viewing) is lossy.
_SUFFIXES = (".bmp",) + tuple(s for s in IMAGE_SUFFIXES if s != ".bmp")
LANDMARK_NAMES = (
    "sella", "nasion", "orbitale", "porion", "subspinale", "supramentale", "pogonion", "menton",
    "gnathion", "gonion", "lower_incisal_incision", "upper_incisal_incision", "upper_lip", "lower_lip",
    "subnasale", "soft_tissue_pogonion", "posterior_nasal_spine", "anterior_nasal_spine", "articulare",
)


def read_landmark_file(path, num_landmarks=NUM_LANDMARKS):
    """One annotation file -> `(num_landmarks, 2)` float32 `(x, y)` pixels.

    Raises `DataError` naming the file and line for a missing line, a line that is not
    two numbers separated by a comma, or a NaN / negative value.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("landmark file not found", path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is skipped
    except UnicodeDecodeError as err:
        raise DataError(f"not a text file ({err})", path) from None
    lines = [line.strip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) < num_landmarks:
        raise DataError(f"has {len(lines)} lines, expected at least {num_landmarks} 'x,y' landmark lines", path)
    xy = np.empty((num_landmarks, 2), np.float32)
    for i, line in enumerate(lines[:num_landmarks]):
        parts = line.replace(" ", "").split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            parsed = [float(parts[0]), float(parts[1])]
        except ValueError:
            raise DataError(f"line {i + 1}: expected 'x,y', got {line!r}", path) from None
        # Checked before the float32 array takes it: 1e308 would become inf with a RuntimeWarning.
        if not np.isfinite(parsed).all() or min(parsed) < 0 or max(parsed) > MAX_PIXEL:
            raise DataError(f"line {i + 1}: landmark {LANDMARK_NAMES[i] if num_landmarks == NUM_LANDMARKS else i} "
                            f"must be finite, >= 0 and <= {MAX_PIXEL:.0e}, got {line!r}", path)
        xy[i] = parsed
    return xy


def read_isbi2015(annotation_dir, image_dir=None, num_landmarks=NUM_LANDMARKS):
    """Every `*.txt` in `annotation_dir` (sorted) -> arrays, matched to images by stem.

    Args:
        annotation_dir: folder of landmark files (e.g. `AnnotationsByMD/400_senior`).
        image_dir: folder of the images (`001.bmp`, ...), or None to skip matching.

    Returns:
        dict with `ids` (N,) file stems, `xy` (N, 19, 2) float32 pixels, `image_paths`
        (N,) (None entries without `image_dir`), `keypoint_names`, `spacing_mm` 0.1.
    """
    annotation_dir = Path(annotation_dir)
    if not annotation_dir.is_dir():
        raise DataError("annotation folder not found", annotation_dir)
    files = sorted(annotation_dir.glob("*.txt"))
    if not files:
        raise DataError("no landmark files (*.txt)", annotation_dir)
    image_paths = []
    for file in files:
        if image_dir is None:
            image_paths.append(None)
            continue
        match = next((Path(image_dir) / f"{file.stem}{s}" for s in _SUFFIXES
                      if (Path(image_dir) / f"{file.stem}{s}").is_file()), None)
        if match is None:
            raise DataError(f"no image named {file.stem}.bmp (or .png, .jpg, .tif) for {file.name}", image_dir)
        image_paths.append(str(match))
    names = LANDMARK_NAMES if num_landmarks == NUM_LANDMARKS else tuple(f"landmark{i}" for i in range(num_landmarks))
    return {"ids": [f.stem for f in files], "xy": np.stack([read_landmark_file(f, num_landmarks) for f in files]),
            "image_paths": image_paths, "keypoint_names": list(names), "spacing_mm": PIXEL_SPACING_MM}
