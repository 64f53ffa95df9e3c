"""Triangle meshes whose vertices are the keypoints: OBJ I/O and exact visibility.

Every vertex of the mesh is a keypoint; `vertex_names` names them in order, so the
number of keypoints K is `len(mesh.vertices)` and is never written down elsewhere.
Camera-frame and pixel conventions are those of `stage2_visible_keypoints.camera`.
"""

import dataclasses
import itertools
from pathlib import Path

import numpy as np

from common.data_io import atomic_path
from common.errors import DataError
from stage2_visible_keypoints.camera import project_points

# |coordinate| beyond this (the mesh's unit) is a corrupt file, not a shape: 1e308 is finite
# but overflows every cross product and distance computed from it.
MAX_COORDINATE = 1e9


@dataclasses.dataclass
class Mesh:
    """vertices: (V, 3) float metres, body frame. faces: (F, 3) int, 0-based vertex
    indices. vertex_names: V names (the keypoint names)."""

    vertices: np.ndarray
    faces: np.ndarray
    vertex_names: tuple

    def __post_init__(self):
        self.vertices = np.asarray(self.vertices, dtype=np.float64)
        self.faces = np.asarray(self.faces, dtype=np.int64)
        if self.faces.size == 0:
            self.faces = self.faces.reshape(0, 3)
        self.vertex_names = tuple(str(name) for name in self.vertex_names)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3 or len(self.vertices) == 0:
            raise ValueError(f"Mesh.vertices must be (V, 3) with V > 0. Received: shape={self.vertices.shape}")
        if not np.all(np.isfinite(self.vertices)):
            bad = int(np.flatnonzero(~np.all(np.isfinite(self.vertices), axis=1))[0])
            raise ValueError(f"Mesh.vertices must be finite. Received: vertices[{bad}]={self.vertices[bad]}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"Mesh.faces must be (F, 3). Received: shape={self.faces.shape}")
        out = (self.faces < 0) | (self.faces >= len(self.vertices))
        if np.any(out):
            bad = int(np.flatnonzero(np.any(out, axis=1))[0])
            raise ValueError(
                f"Mesh.faces index out of range [0, {len(self.vertices)}). Received: faces[{bad}]={self.faces[bad]}"
            )
        if len(self.vertex_names) != len(self.vertices):
            raise ValueError(
                f"Mesh.vertex_names must have one name per vertex ({len(self.vertices)}). "
                f"Received: {len(self.vertex_names)} names"
            )


def default_keypoint_names(count):
    """`kp00`, `kp01`, ... (three digits from 101 names on): the names of unnamed keypoints."""
    width = max(2, len(str(count - 1)))
    return tuple(f"kp{i:0{width}d}" for i in range(count))


def load_obj(path):
    """Read a Wavefront OBJ subset into a `Mesh`.

    Supported: `v x y z`, `f a b c [d ...]` (1-based; negative = relative to the end;
    `a/b/c` forms keep the vertex index; polygons are fan-triangulated), `o`, `g`, `s`,
    `vt`, `vn`, `usemtl`, `mtllib` and comments are ignored. Keypoint names come from
    comment lines `# name <index> <name>` (index 1-based, like OBJ vertex numbers);
    unnamed vertices get `kp00`, `kp01`, ... A malformed line, a coordinate beyond
    `MAX_COORDINATE`, or two or more vertices that all coincide (no shape, no pose) raise
    `DataError` naming the file (and line number).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("mesh file not found", path)
    vertices, faces, names = [], [], {}
    ignored = {"o", "g", "s", "vt", "vn", "vp", "usemtl", "mtllib", "l"}
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is skipped
    except UnicodeDecodeError as err:
        raise DataError(f"not a text OBJ file (byte {err.start} is not UTF-8)", path) from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"line {line_no}: "
        if tokens[0].startswith("#"):
            if len(tokens) >= 2 and tokens[0] == "#" and tokens[1] == "name":
                # isascii: str.isdigit() accepts superscripts ("²") that int() refuses.
                if len(tokens) != 4 or not (tokens[2].isascii() and tokens[2].isdigit()) or int(tokens[2]) < 1:
                    raise DataError(f"{where}expected '# name <index 1..V> <name>', got {line.strip()!r}", path)
                names[int(tokens[2]) - 1] = tokens[3]
            continue
        if tokens[0] == "v":
            try:
                xyz = [float(t) for t in tokens[1:4]]
            except ValueError:
                xyz = []
            # A 4th value (w) or vertex colours may follow; only x y z are read.
            if len(xyz) != 3 or not np.all(np.isfinite(xyz)):
                raise DataError(f"{where}expected 'v x y z' with finite numbers, got {line.strip()!r}", path)
            if np.abs(xyz).max() > MAX_COORDINATE:
                raise DataError(f"{where}a coordinate beyond {MAX_COORDINATE:.0e} is a corrupt file, got "
                                f"{line.strip()[:80]!r}", path)
            vertices.append(xyz)
        elif tokens[0] == "f":
            if len(tokens) < 4:
                raise DataError(f"{where}a face needs at least 3 vertices, got {line.strip()!r}", path)
            polygon = []
            for token in tokens[1:]:
                try:
                    index = int(token.split("/")[0])
                except ValueError:
                    raise DataError(f"{where}bad vertex reference {token!r}", path) from None
                resolved = index - 1 if index > 0 else len(vertices) + index
                if index == 0 or not 0 <= resolved < len(vertices):
                    raise DataError(
                        f"{where}vertex reference {index} out of range (1..{len(vertices)} defined so far)", path
                    )
                polygon.append(resolved)
            faces.extend([polygon[0], polygon[i], polygon[i + 1]] for i in range(1, len(polygon) - 1))
        elif tokens[0] not in ignored:
            raise DataError(f"{where}unsupported statement {tokens[0]!r}", path)
    if not vertices:
        raise DataError("no vertices ('v' lines)", path)
    if len(vertices) > 1 and np.ptp(np.array(vertices), axis=0).max() == 0:
        raise DataError(f"all {len(vertices)} vertices lie at the same point {tuple(vertices[0])}: "
                        "keypoints there cannot be told apart nor give a pose", path)
    extra = sorted(i + 1 for i in names if i >= len(vertices))
    if extra:
        raise DataError(f"'# name' index {extra[0]} is beyond the {len(vertices)} vertices", path)
    defaults = default_keypoint_names(len(vertices))
    vertex_names = tuple(names.get(i, defaults[i]) for i in range(len(vertices)))
    return Mesh(np.array(vertices), np.array(faces, dtype=np.int64).reshape(-1, 3), vertex_names)


def save_obj(path, mesh):
    """Write `mesh` as OBJ (names as `# name <index> <name>` comments), atomically."""
    lines = ["# keypoint mesh: every vertex is a keypoint", *(f"# name {i + 1} {n}" for i, n in enumerate(mesh.vertex_names))]
    lines += [f"v {x!r} {y!r} {z!r}" for x, y, z in mesh.vertices.tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces.tolist()]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def visible_vertices(mesh, points_cam, camera, eps=1e-6):
    """Exact visibility of each vertex: (V,) bool.

    mesh: the `Mesh` (for its faces). points_cam: (V, 3) vertices in the camera frame
    (camera centre at the origin, +Z forward). A vertex is visible iff Z > 0, its
    projection lies in the image, [0, width) x [0, height), and no face that does not
    contain it crosses the open segment from the camera centre to it. The crossing test
    is Moller-Trumbore for all V x F pairs at once. The segment parameter t (0 at the
    camera, 1 at the vertex) must lie in (eps, 1 - eps): a vertex lying on a face's
    plane (a quad's other triangle, a face it touches) does not hide itself. Hits on a
    face's edge count as hits (barycentric tolerance eps), so a ray through the shared
    diagonal of a quad cannot slip between its two triangles.
    """
    points_cam = np.asarray(points_cam, dtype=np.float64)
    if points_cam.shape != mesh.vertices.shape:
        raise ValueError(f"points_cam must be {mesh.vertices.shape}. Received: shape={points_cam.shape}")
    xy_original = project_points(points_cam, camera)
    with np.errstate(invalid="ignore"):
        visible = (
            (points_cam[:, 2] > 0)
            & (xy_original[:, 0] >= 0)
            & (xy_original[:, 0] < camera.width)
            & (xy_original[:, 1] >= 0)
            & (xy_original[:, 1] < camera.height)
        )
    if len(mesh.faces) == 0:
        return visible
    v0, v1, v2 = (points_cam[mesh.faces[:, i]][None] for i in range(3))  # (1, F, 3)
    e1, e2 = v1 - v0, v2 - v0
    direction = points_cam[:, None, :]  # (V, 1, 3): segment origin -> vertex
    h = np.cross(direction, e2)  # (V, F, 3)
    det = np.sum(e1 * h, axis=-1)  # (V, F)
    # Relative parallel test: det is a triple product of the three vectors' lengths.
    scale = np.linalg.norm(direction, axis=-1) * np.linalg.norm(e1, axis=-1) * np.linalg.norm(e2, axis=-1)
    usable = np.abs(det) > eps * scale
    inv_det = np.where(usable, 1.0 / np.where(usable, det, 1.0), 0.0)
    s = -v0  # origin (camera centre) minus v0
    u = np.sum(s * h, axis=-1) * inv_det
    qvec = np.cross(s, e1)  # (1, F, 3)
    v = np.sum(direction * qvec, axis=-1) * inv_det
    t = np.sum(e2 * qvec, axis=-1) * inv_det
    hit = usable & (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (t > eps) & (t < 1 - eps)
    # Faces that contain the vertex never occlude it.
    own = np.any(mesh.faces[None, :, :] == np.arange(len(points_cam))[:, None, None], axis=-1)
    return visible & ~np.any(hit & ~own, axis=1)


def symmetry_gap(vertices):
    """How close a set of keypoints comes to mapping onto itself under a rotation.

    vertices: (V, 3). Returns (gap, rotation): over candidate rotations R other than the
    identity, about the vertices' centroid, the smallest "worst vertex" distance
    max_i min_j |R v_i - v_j| (the vertices' unit), and the (3, 3) R that attains it. A gap
    near 0 means the keypoints look the same after R, so images cannot tell their
    identities apart. Candidates: the 23 rotations that permute the principal axes of the
    vertex scatter (with signs), and turns of 2 pi k / n (n = 2..12) about each principal
    axis. When the principal moments differ every symmetry is among them; when two are
    equal (a square cross-section), the n-fold turns about the third axis are.
    """
    points = np.asarray(vertices, dtype=np.float64)
    points = points - points.mean(axis=0)
    _, axes = np.linalg.eigh(points.T @ points)  # columns: principal axes
    candidates = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            flip = np.eye(3)[list(perm)] * np.array(signs)[:, None]
            if np.linalg.det(flip) > 0:
                candidates.append(axes @ flip @ axes.T)
    for axis in axes.T:
        cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        for n in range(2, 13):
            for k in range(1, n):
                angle = 2 * np.pi * k / n  # Rodrigues' formula
                candidates.append(np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross)
    from scipy.spatial import cKDTree  # here: scipy.spatial costs 0.3 s at start-up, for every script

    tree = cKDTree(points)  # nearest-vertex queries: fine for meshes of many vertices too
    best_gap, best_rotation = np.inf, None
    for rotation in candidates:
        if np.allclose(rotation, np.eye(3), atol=1e-9):
            continue
        gap = tree.query(points @ rotation.T)[0].max()
        if gap < best_gap:
            best_gap, best_rotation = float(gap), rotation
    return best_gap, best_rotation


def symmetry_warnings(mesh, tolerance=0.05):
    """Messages (at most one, of one line) for a mesh whose keypoint identities images
    cannot fix: the whole vertex set, or failing that the set without one small part,
    has a `symmetry_gap` below `tolerance` x the vertices' largest distance from their
    centroid (the mesh radius). A small part (an antenna) is often hidden or a pixel
    wide, so it must not be all that breaks a symmetry. [] when there is nothing to warn
    about. The message ends with the keypoint groups the rotation swaps, to declare as
    `data.interchangeable` if the symmetry is real (`symmetry_groups`).

    Parts (`mesh_parts`) come from the geometry, so that an unnamed mesh is checked as a
    named one: the vertices joined by faces, and the vertices in no face that lie close
    together; the vertices sharing a name prefix before "_" (panel_left_0 -> panel) are
    a part too. A part is small when the diagonal of its bounding box is under a third
    of the mesh's.
    """
    size = np.linalg.norm(mesh.vertices - mesh.vertices.mean(axis=0), axis=1).max()
    limit = tolerance * size

    def describe(gap, rotation):
        angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
        fit = "exactly" if gap <= 1e-9 * max(size, 1e-300) else f"every vertex within {gap:.2g} m of one"
        return (f"maps onto itself under a {angle:.0f}-degree rotation ({fit}; tolerance {limit:.2g} m = "
                f"{tolerance:.0%} of its radius)")

    def declare(groups):  # the groups to name in the config (`symmetry_groups`), if the symmetry is real
        return f"; if so, declare data.interchangeable: {groups}" if groups else ""

    names = np.asarray(mesh.vertex_names)
    gap, rotation = symmetry_gap(mesh.vertices)
    if gap < limit:
        return [f"keypoint identities are ambiguous: the mesh {describe(gap, rotation)}"
                f"{declare(symmetry_groups(mesh.vertices, rotation, names))}"]
    small = _diagonal(mesh.vertices) / 3
    found = []
    for part in mesh_parts(mesh):
        keep = np.ones(len(mesh.vertices), bool)
        keep[part] = False
        if keep.sum() < 3 or _diagonal(mesh.vertices[part]) >= small:
            continue
        gap, rotation = symmetry_gap(mesh.vertices[keep])
        if gap < limit:
            found.append((gap, _part_label([mesh.vertex_names[i] for i in part]), rotation,
                          symmetry_groups(mesh.vertices[keep], rotation, names[keep])))
    if not found:
        return []
    gap, label, rotation, groups = min(found, key=lambda item: item[0])
    others = [item[1] for item in found if item[1] != label]
    others = f" (so does the mesh without its {', '.join(others[:2])}{', ...' if len(others) > 2 else ''})" \
        if others else ""
    return [f"keypoint identities are ambiguous where its small {label} is hidden: without it the mesh "
            f"{describe(gap, rotation)}{others}{declare(groups)}"]


def mesh_parts(mesh):
    """The parts of a mesh, as lists of vertex indices, distinct, each smaller than the mesh:
    the connected components of its faces (vertices in no face are joined when closer than
    a tenth of the mesh's bounding-box diagonal) and the groups of names that share a prefix
    before "_"."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    count = len(mesh.vertices)
    edges = [mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]]]
    loose = np.setdiff1d(np.arange(count), mesh.faces.ravel())
    if len(loose) > 1:
        pairs = cKDTree(mesh.vertices[loose]).query_pairs(_diagonal(mesh.vertices) / 10, output_type="ndarray")
        edges.append(loose[pairs])
    edges = np.concatenate(edges).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    groups = [np.flatnonzero(labels == label).tolist() for label in np.unique(labels)]
    prefixes = [name.split("_")[0] if "_" in name else None for name in mesh.vertex_names]
    groups += [[i for i, p in enumerate(prefixes) if p == prefix] for prefix in dict.fromkeys(prefixes) if prefix]
    return [list(group) for group in dict.fromkeys(tuple(g) for g in groups) if len(group) < count]


def _part_label(names):
    """How a message names a part: by its names' common prefix ("'antenna' part (3
    vertices)" for antenna_base_0, antenna_base_1, antenna_tip), else by its names."""
    tokens = [name.split("_") for name in names]
    common = [parts[0] for parts in itertools.takewhile(lambda parts: len(set(parts)) == 1, zip(*tokens))]
    if len(names) == 1:
        return f"vertex {names[0]}"
    if common and all(len(t) > len(common) for t in tokens):
        return f"'{'_'.join(common)}' part ({len(names)} vertices)"
    shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} ... {names[-1]}"
    return f"part {shown} ({len(names)} vertices)"


def symmetry_groups(vertices, rotation, names):
    """The vertex groups that `rotation` (about the centroid, `symmetry_gap`'s) maps onto
    each other: the cycles of longer than one of the vertex permutation it induces, as
    lists of `names`, for `data.interchangeable`. [] when the rotation does not map the
    vertices one to one (each onto a different nearest vertex)."""
    points = np.asarray(vertices, dtype=np.float64)
    points = points - points.mean(axis=0)
    from scipy.spatial import cKDTree

    target = cKDTree(points).query(points @ np.asarray(rotation).T)[1]
    if len(set(target.tolist())) != len(points):
        return []
    groups, seen = [], set()
    for start in range(len(points)):
        cycle, k = [], start
        while k not in seen:
            seen.add(k)
            cycle.append(k)
            k = int(target[k])
        if len(cycle) > 1:
            groups.append([str(names[i]) for i in cycle])
    return groups


def _diagonal(points):
    """The diagonal of the bounding box of `points` (N, 3)."""
    return np.linalg.norm(points.max(axis=0) - points.min(axis=0))


def feature_edges(vertices, faces, tolerance=1e-6):
    """The edges worth drawing: (E, 2) int vertex pairs, sorted, without the diagonals
    that triangulating a flat polygon adds (an edge between two coplanar triangles).

    vertices: (V, 3); faces: (F, 3) int. An edge of one face only (a border) is kept; so
    is an edge of three or more. (An edge where a face folds fully back onto its
    neighbour, 180 degrees, looks coplanar and is dropped too.)
    """
    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    normals = np.cross(b - a, c - a)
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    by_edge = {}
    for f, face in enumerate(faces.tolist()):
        for i in range(3):
            edge = tuple(sorted((face[i], face[(i + 1) % 3])))
            by_edge.setdefault(edge, []).append(f)
    kept = [edge for edge, owners in by_edge.items()
            if len(owners) != 2 or abs(abs(normals[owners[0]] @ normals[owners[1]]) - 1) > tolerance]
    return np.array(sorted(kept), dtype=np.int64).reshape(-1, 2)
