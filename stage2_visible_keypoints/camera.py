"""Pinhole camera, SPEED camera files, and the SPEED pose convention.

Pixel convention (the one used everywhere in this package): continuous pixel
coordinates, (0, 0) is the top-left corner of the image, pixel i covers [i, i + 1)
and its centre is i + 0.5. xy arrays have last dim (x, y); `xy_original` is in
source-image pixels.

Pose convention (SPEED / SPEED+): a quaternion q = [q0 (scalar), q1, q2, q3]
(`q_vbs2tango`) and a translation r (`r_Vo2To_vbs_true`, metres, camera frame).
Body points go to the camera frame as

    p_cam = quat2dcm(q).T @ p_body + r

exactly as SPEED's reference `project()` does. The camera frame has +Z along the
optical axis, +X to the right of the image and +Y down.
"""

import dataclasses
import math

import numpy as np

from common.data_io import is_finite_number, json_numbers, load_json, require, save_json
from common.errors import DataError

# The SPEED camera (Tango's Vignette camera): 17.6 mm lens, 5.86 um pixels.
SPEED_FOCAL_M = 0.0176
SPEED_PIXEL_PITCH_M = 5.86e-6
# Bounds of a camera file's values: beyond them a file is corrupt, not a camera, and
# projecting with it overflows float64 (1e308 passes a finiteness check).
MAX_PIXELS = 1e9  # image size, focal length and principal point, px
MAX_DISTORTION = 1e6  # |k1|, |k2|, |p1|, |p2|, |k3|


@dataclasses.dataclass
class Camera:
    """Intrinsics of a pinhole camera in pixels.

    fx, fy: focal lengths (px). cx, cy: principal point (px, continuous coordinates
    with the pixel-centre convention of this module). width, height: image size (px).
    dist_coeffs: Brown-Conrady (k1, k2, p1, p2, k3), OpenCV order; all zero = none.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    dist_coeffs: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self):
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise ValueError(f"Camera.{name} must be a finite number. Received: {name}={value!r}")
            setattr(self, name, float(value))
        for name in ("fx", "fy"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Camera.{name} must be positive. Received: {name}={getattr(self, name)}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Camera.{name} must be a positive integer. Received: {name}={value!r}")
            setattr(self, name, int(value))
        coeffs = np.asarray(self.dist_coeffs, dtype=np.float64).ravel()
        if coeffs.size > 5 or not np.all(np.isfinite(coeffs)):
            raise ValueError(
                f"Camera.dist_coeffs must be at most 5 finite numbers (k1, k2, p1, p2, k3). "
                f"Received: dist_coeffs={self.dist_coeffs!r}"
            )
        self.dist_coeffs = tuple(float(c) for c in np.pad(coeffs, (0, 5 - coeffs.size)))

    @property
    def matrix(self):
        """The (3, 3) intrinsic matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_array(self):
        """(11,) float64: fx, fy, cx, cy, width, height, k1, k2, p1, p2, k3 (for npz caches)."""
        return np.array([self.fx, self.fy, self.cx, self.cy, self.width, self.height, *self.dist_coeffs])

    @classmethod
    def from_array(cls, values):
        """Inverse of `to_array`."""
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (11,):
            raise ValueError(f"a camera array has 11 values. Received: shape={v.shape}")
        return cls(*v[:4].tolist(), int(v[4]), int(v[5]), tuple(v[6:].tolist()))


def speed_camera():
    """The SPEED camera: 1920x1200, fx = fy = 0.0176 / 5.86e-6 ~ 3003.4 px, centre (960, 600)."""
    focal_px = SPEED_FOCAL_M / SPEED_PIXEL_PITCH_M
    return Camera(fx=focal_px, fy=focal_px, cx=960.0, cy=600.0, width=1920, height=1200)


def _number(record, field, path):
    value = require(record, field, path)
    if not is_finite_number(value):
        raise DataError(f"field '{field}' must be a finite number, got {value!r}", path)
    return float(value)


def _in_pixels(value, field, path, positive=False):
    """A focal length (positive) or principal-point coordinate in px, within MAX_PIXELS."""
    if not (abs(value) <= MAX_PIXELS and (value > 0 or not positive)):  # NaN and inf fail too
        raise DataError(f"field '{field}' gives {value:.6g} px; expected a {'positive ' if positive else ''}"
                        f"value of at most {MAX_PIXELS:.0e} px", path)
    return value


def load_camera_json(path):
    """Read a SPEED / SPEED+ camera file into a `Camera`.

    Keys: `Nu`, `Nv` (width, height, px), `ppx`, `ppy` (pixel pitch, m), `fx`, `fy`
    (focal length in metres; pixel focal = fx / ppx), `ccx`, `ccy` (principal point,
    px). An optional `cameraMatrix` (3x3) takes precedence for fx, fy, cx, cy; optional
    `distCoeffs` (up to 5 numbers). Missing or invalid fields raise `DataError` naming
    the file and the field.
    """
    record = load_json(path)
    if not isinstance(record, dict):
        raise DataError("camera file must hold a JSON object", path)
    size = {}
    for field in ("Nu", "Nv"):
        value = _number(record, field, path)
        if not 0 < value <= MAX_PIXELS or value != int(value):
            raise DataError(f"field '{field}' must be a positive integer of at most {MAX_PIXELS:.0e}, "
                            f"got {value!r}", path)
        size[field] = int(value)
    if "cameraMatrix" in record:
        k = json_numbers(record["cameraMatrix"])  # JSON numbers only: "1" or true is a corrupt file
        if k is None or k.shape != (3, 3) or not np.all(np.isfinite(k)):
            raise DataError("field 'cameraMatrix' must be a 3x3 array of finite numbers", path)
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        names = ("cameraMatrix[0][0] (fx)", "cameraMatrix[1][1] (fy)", "cameraMatrix[0][2] (cx)",
                 "cameraMatrix[1][2] (cy)")
    else:
        pitch = {field: _number(record, field, path) for field in ("ppx", "ppy")}
        for field, value in pitch.items():
            if value <= 0:
                raise DataError(f"field '{field}' must be positive, got {value!r}", path)
        with np.errstate(over="ignore"):  # a tiny pitch overflows to inf: refused below
            fx = np.float64(_number(record, "fx", path)) / pitch["ppx"]
            fy = np.float64(_number(record, "fy", path)) / pitch["ppy"]
        cx, cy = _number(record, "ccx", path), _number(record, "ccy", path)
        names = ("fx / ppx", "fy / ppy", "ccx", "ccy")
    fx, fy, cx, cy = (_in_pixels(float(v), name, path, positive=i < 2)
                      for i, (v, name) in enumerate(zip((fx, fy, cx, cy), names)))
    dist = json_numbers(record.get("distCoeffs", [0.0] * 5))
    if dist is None or not np.all(np.isfinite(dist)):
        raise DataError("field 'distCoeffs' must be a list of finite numbers", path)
    dist = dist.ravel()
    if dist.size > 5:
        # OpenCV's longer models (k4..k6, thin prism) are not supported.
        raise DataError(f"field 'distCoeffs' has {dist.size} entries; at most 5 (k1, k2, p1, p2, k3)", path)
    if np.abs(dist).max(initial=0.0) > MAX_DISTORTION:
        raise DataError(f"field 'distCoeffs' holds {dist[np.argmax(np.abs(dist))]:.6g}; a distortion coefficient "
                        f"beyond {MAX_DISTORTION:.0e} is a corrupt file", path)
    try:
        return Camera(fx, fy, cx, cy, size["Nu"], size["Nv"], tuple(dist))
    except ValueError as err:
        raise DataError(str(err), path) from None


def save_camera_json(path, camera):
    """Write `camera` as a SPEED camera file, atomically (includes `cameraMatrix`).

    The pixel pitch is written as ppx = ppy = 5.86e-6 m so that the metric focal
    lengths read fx = fx_px * ppx, as in SPEED's own file.
    """
    record = {
        "Nu": camera.width,
        "Nv": camera.height,
        "ppx": SPEED_PIXEL_PITCH_M,
        "ppy": SPEED_PIXEL_PITCH_M,
        "fx": camera.fx * SPEED_PIXEL_PITCH_M,
        "fy": camera.fy * SPEED_PIXEL_PITCH_M,
        "ccx": camera.cx,
        "ccy": camera.cy,
        "cameraMatrix": camera.matrix.tolist(),
        "distCoeffs": list(camera.dist_coeffs),
    }
    save_json(path, record)


def quat2dcm(q):
    """SPEED's direction cosine matrix of a quaternion [q0 (scalar), q1, q2, q3].

    q: (4,), normalised here. Returns (3, 3); body points map to the camera frame as
    `quat2dcm(q).T @ p_body + r`.
    """
    q = np.asarray(q, dtype=np.float64)
    norm = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(norm) or norm == 0:
        raise ValueError(f"q must be a finite nonzero 4-vector. Received: q={q!r}")
    q0, q1, q2, q3 = q / norm
    return np.array(
        [
            [2 * q0**2 - 1 + 2 * q1**2, 2 * q1 * q2 + 2 * q0 * q3, 2 * q1 * q3 - 2 * q0 * q2],
            [2 * q1 * q2 - 2 * q0 * q3, 2 * q0**2 - 1 + 2 * q2**2, 2 * q2 * q3 + 2 * q0 * q1],
            [2 * q1 * q3 + 2 * q0 * q2, 2 * q2 * q3 - 2 * q0 * q1, 2 * q0**2 - 1 + 2 * q3**2],
        ]
    )


def dcm2quat(dcm):
    """Inverse of `quat2dcm`: (3, 3) rotation matrix -> (4,) quaternion with q0 >= 0.

    Shepperd's method: start from the largest of q0^2..q3^2 so no division is by a
    small number.
    """
    d = np.asarray(dcm, dtype=np.float64)
    if d.shape != (3, 3):
        raise ValueError(f"dcm must be (3, 3). Received: shape={d.shape}")
    squares = 0.25 * np.array(
        [
            1 + d[0, 0] + d[1, 1] + d[2, 2],
            1 + d[0, 0] - d[1, 1] - d[2, 2],
            1 - d[0, 0] + d[1, 1] - d[2, 2],
            1 - d[0, 0] - d[1, 1] + d[2, 2],
        ]
    )
    # Off-diagonal sums/differences of quat2dcm give 4 * q_i * q_j.
    products = {
        (0, 1): d[1, 2] - d[2, 1],
        (0, 2): d[2, 0] - d[0, 2],
        (0, 3): d[0, 1] - d[1, 0],
        (1, 2): d[0, 1] + d[1, 0],
        (1, 3): d[0, 2] + d[2, 0],
        (2, 3): d[1, 2] + d[2, 1],
    }
    i = int(np.argmax(squares))
    q = np.empty(4)
    q[i] = math.sqrt(max(squares[i], 0.0))
    for j in range(4):
        if j != i:
            q[j] = products[(min(i, j), max(i, j))] / (4 * q[i])
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def random_quaternion(rng):
    """A rotation drawn uniformly on SO(3), as a (4,) unit quaternion with q0 >= 0.

    A normalised 4-D standard normal vector is uniform on the 3-sphere, which is the
    uniform (Haar) distribution of rotations.
    """
    while True:
        q = rng.standard_normal(4)
        norm = np.linalg.norm(q)
        if norm > 1e-8:
            q /= norm
            return -q if q[0] < 0 else q


def body_to_camera(points_body, q, r):
    """Body-frame points (K, 3) -> camera-frame points (K, 3): `quat2dcm(q).T @ p + r`."""
    points_body = np.asarray(points_body, dtype=np.float64)
    return points_body @ quat2dcm(q) + np.asarray(r, dtype=np.float64)


def project_points(points_cam, camera):
    """Camera-frame points (K, 3) -> `xy_original` (K, 2) pixels.

    Pinhole: u = fx * X / Z + cx, v = fy * Y / Z + cy in the pixel convention of this
    module. If `camera.dist_coeffs` is nonzero, the normalised coordinates are first
    distorted with the Brown-Conrady model (k1, k2, p1, p2, k3; OpenCV's). Points with
    Z <= 0 give inf/nan or meaningless values: check Z before trusting them.
    """
    points_cam = np.asarray(points_cam, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = points_cam[..., 0] / points_cam[..., 2]
        y = points_cam[..., 1] / points_cam[..., 2]
    k1, k2, p1, p2, k3 = camera.dist_coeffs
    if any(camera.dist_coeffs):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        x, y = (
            x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
        )
    return np.stack([camera.fx * x + camera.cx, camera.fy * y + camera.cy], axis=-1)
