"""Camera model, SPEED pose convention, OBJ I/O and exact vertex visibility."""

import json
import math

import numpy as np
import pytest

from common.errors import DataError
from stage2_visible_keypoints.camera import (
    Camera,
    body_to_camera,
    dcm2quat,
    load_camera_json,
    project_points,
    quat2dcm,
    random_quaternion,
    save_camera_json,
    speed_camera,
)
from stage2_visible_keypoints.mesh import (Mesh, default_keypoint_names, load_obj, mesh_parts, save_obj, symmetry_gap,
                                           symmetry_warnings, visible_vertices)

CAMERA = Camera(fx=500.0, fy=500.0, cx=320.0, cy=240.0, width=640, height=480)


def test_quat2dcm_identity_and_normalisation():
    np.testing.assert_allclose(quat2dcm([1, 0, 0, 0]), np.eye(3), atol=1e-15)
    np.testing.assert_allclose(quat2dcm([2, 0, 0, 0]), np.eye(3), atol=1e-15)


def test_quat2dcm_90_degrees_about_z_by_hand():
    h = math.sqrt(0.5)
    q = [h, 0, 0, h]
    # dcm[0,1] = 2 q0 q3 = 1, dcm[1,0] = -2 q0 q3 = -1, dcm[2,2] = 2 q0^2 - 1 + 2 q3^2 = 1.
    np.testing.assert_allclose(quat2dcm(q), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-15)
    # p_cam = dcm.T @ p + r: body x-axis goes to camera +y, then shifted by r.
    points_cam = body_to_camera([[1.0, 0, 0], [0, 1.0, 0]], q, [0, 0, 10.0])
    np.testing.assert_allclose(points_cam, [[0, 1, 10], [-1, 0, 10]], atol=1e-15)


def test_dcm2quat_round_trip():
    rng = np.random.default_rng(0)
    quats = [random_quaternion(rng) for _ in range(50)]
    quats += [np.array([0.0, 1, 0, 0]), np.array([0.0, 0, 0, 1]), np.array([0.0, 0.6, 0.8, 0])]  # 180 deg turns
    for q in quats:
        assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        dcm = quat2dcm(q)
        np.testing.assert_allclose(dcm @ dcm.T, np.eye(3), atol=1e-12)
        back = dcm2quat(dcm)
        assert back[0] >= 0
        # q and -q are the same rotation; at q0 == 0 either sign is allowed.
        assert min(np.abs(back - q).max(), np.abs(back + q).max()) < 1e-12


def test_project_hand_picked_point():
    camera = Camera(fx=1000.0, fy=800.0, cx=320.0, cy=240.0, width=640, height=480)
    # u = 1000 * 1 / 10 + 320 = 420, v = 800 * -0.5 / 10 + 240 = 200.
    np.testing.assert_allclose(project_points([[1.0, -0.5, 10.0]], camera), [[420.0, 200.0]])
    distorted = Camera(1000.0, 800.0, 320.0, 240.0, 640, 480, dist_coeffs=(0.1, 0, 0, 0, 0))
    # x = 0.1, r^2 = 0.01, radial = 1 + 0.1 * 0.01 = 1.001 -> u = 1000 * 0.1001 + 320.
    np.testing.assert_allclose(project_points([[1.0, 0.0, 10.0]], distorted), [[420.1, 240.0]])


def test_camera_checks_echo_bad_value():
    with pytest.raises(ValueError, match="fx=-1"):
        Camera(fx=-1.0, fy=1.0, cx=0, cy=0, width=10, height=10)
    with pytest.raises(ValueError, match="width=0"):
        Camera(fx=1.0, fy=1.0, cx=0, cy=0, width=0, height=10)


def test_speed_camera_and_speed_format(tmp_path):
    camera = speed_camera()
    assert (camera.width, camera.height, camera.cx, camera.cy) == (1920, 1200, 960.0, 600.0)
    assert abs(camera.fx - 3003.4129) < 1e-3
    # SPEED's own file has no cameraMatrix here: fx px = 0.0176 / 5.86e-6.
    path = tmp_path / "camera.json"
    path.write_text(json.dumps({"Nu": 1920, "Nv": 1200, "ppx": 5.86e-6, "ppy": 5.86e-6, "fx": 0.0176,
                                "fy": 0.0176, "ccx": 960, "ccy": 600}))
    loaded = load_camera_json(path)
    assert abs(loaded.fx - 0.0176 / 5.86e-6) < 1e-9 and loaded.dist_coeffs == (0.0,) * 5
    # cameraMatrix wins over fx/ppx and ccx/ccy.
    record = json.loads(path.read_text())
    record["cameraMatrix"] = [[2000, 0, 950], [0, 2100, 610], [0, 0, 1]]
    path.write_text(json.dumps(record))
    loaded = load_camera_json(path)
    assert (loaded.fx, loaded.fy, loaded.cx, loaded.cy) == (2000, 2100, 950, 610)


def test_camera_json_round_trip(tmp_path):
    camera = Camera(fx=500.5, fy=501.0, cx=160.25, cy=99.5, width=320, height=200,
                    dist_coeffs=(-0.2, 0.1, 0.001, -0.002, 0.0))
    path = tmp_path / "cam.json"
    save_camera_json(path, camera)
    record = json.loads(path.read_text())
    assert abs(record["fx"] - 500.5 * record["ppx"]) < 1e-15
    assert load_camera_json(path) == camera
    assert [p.name for p in tmp_path.iterdir()] == ["cam.json"]  # no temp file left behind


def test_camera_json_missing_field_names_file_and_field(tmp_path):
    path = tmp_path / "broken_camera.json"
    path.write_text(json.dumps({"Nu": 1920, "Nv": 1200, "ppx": 5.86e-6, "ppy": 5.86e-6, "fx": 0.0176, "fy": 0.0176,
                                "ccy": 600}))
    with pytest.raises(DataError, match=r"broken_camera\.json.*'ccx'"):
        load_camera_json(path)
    path.write_text(json.dumps({"Nu": "wide", "Nv": 1200}))
    with pytest.raises(DataError, match=r"broken_camera\.json.*'Nu'"):
        load_camera_json(path)


def test_obj_round_trip_and_polygons(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text(
        "# name 2 corner_b\n"
        "o thing\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\n"
        "g part\nf 1/1/1 2/2/2 3/3/3 4/4/4\n"  # quad -> fan (0,1,2), (0,2,3)
        "f -1 -4 -5\n"  # negative = relative to the end: 5, 2, 1
    )
    mesh = load_obj(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [4, 1, 0]])
    assert mesh.vertex_names == ("kp00", "corner_b", "kp02", "kp03", "kp04")
    save_obj(tmp_path / "out.obj", mesh)
    again = load_obj(tmp_path / "out.obj")
    np.testing.assert_array_equal(again.vertices, mesh.vertices)
    np.testing.assert_array_equal(again.faces, mesh.faces)
    assert again.vertex_names == mesh.vertex_names


def test_obj_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad_mesh.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 x\nf 1 2 3\n")
    with pytest.raises(DataError, match=r"bad_mesh\.obj.*line 3"):
        load_obj(path)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 7\n")
    with pytest.raises(DataError, match=r"bad_mesh\.obj.*line 5.*7"):
        load_obj(path)
    path.write_bytes(b"v 0 0 0\n\xff\xfe binary\n")
    with pytest.raises(DataError, match=r"bad_mesh\.obj: not a text OBJ file \(byte 8 is not UTF-8\)"):
        load_obj(path)


def test_mesh_checks():
    with pytest.raises(ValueError, match="out of range"):
        Mesh(np.zeros((3, 3)), [[0, 1, 3]], ("a", "b", "c"))
    with pytest.raises(ValueError, match="finite"):
        Mesh([[0, 0, np.nan]], np.zeros((0, 3)), ("a",))


def _cube(centre, half=0.5):
    corners = np.array([[x, y, z] for z in (-1, 1) for y in (-1, 1) for x in (-1, 1)], dtype=float)
    quads = [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [1, 3, 7, 5], [3, 2, 6, 7], [2, 0, 4, 6]]
    faces = [[a, b, c] for a, b, c, d in quads] + [[a, c, d] for a, b, c, d in quads]
    return Mesh(centre + half * corners, faces, tuple(f"c{i}" for i in range(8)))


def test_cube_face_on_near_corners_visible_far_hidden():
    mesh = _cube(np.array([0.0, 0.0, 5.0]))
    visible = visible_vertices(mesh, mesh.vertices, CAMERA)
    # Corners 0-3 are at z = 4.5 (near), 4-7 at z = 5.5 behind the near face.
    np.testing.assert_array_equal(visible, [True] * 4 + [False] * 4)


def test_behind_camera_and_outside_image():
    vertices = np.array([[0.0, 0, 5], [0.1, 0, 5], [0, 0.1, -1], [10.0, 0, 5]])  # (10, 0, 5) -> u = 1320
    mesh = Mesh(vertices, [[0, 1, 2]], ("a", "b", "behind", "outside"))
    np.testing.assert_array_equal(visible_vertices(mesh, vertices, CAMERA), [True, True, False, False])
    # The right/bottom image border is excluded: u = 640 exactly is outside.
    border = np.array([[320 / 500 * 5, 0, 5], [319.99 / 500 * 5, 0, 5]])
    mesh = Mesh(border, np.zeros((0, 3)), ("edge", "inside"))
    np.testing.assert_array_equal(visible_vertices(mesh, border, CAMERA), [False, True])


def test_vertex_occluded_by_separate_quad():
    quad = [[-0.5, -0.5, 2], [0.5, -0.5, 2], [0.5, 0.5, 2], [-0.5, 0.5, 2]]
    # (0, 0, 5) is behind the quad's shared diagonal: the ray must not slip between its triangles.
    points = np.array(quad + [[0.2, 0.1, 5], [0.0, 0.0, 5], [3.0, 0, 5], [0.0, 0, 1.5]])
    mesh = Mesh(points, [[0, 1, 2], [0, 2, 3]], tuple("abcdefgh"))
    np.testing.assert_array_equal(
        visible_vertices(mesh, points, CAMERA), [True] * 4 + [False, False, True, True]
    )


# ---------------------------------------------------------------- symmetry


def _turn_angle(rotation):
    return math.degrees(math.acos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))


def test_symmetry_gap_finds_the_symmetries_of_simple_shapes():
    # A triangular prism, off the origin: 120-degree turns about its axis.
    prism = np.array([[math.cos(a), math.sin(a), z] for a in (0, 2 * math.pi / 3, 4 * math.pi / 3) for z in (0, 2)])
    gap, _ = symmetry_gap(prism + [5.0, -1.0, 2.0])
    assert gap < 1e-9
    # A square pyramid: its apex fixes the axis, the base allows 90-degree turns.
    pyramid = np.array([[1, 1, 0], [1, -1, 0], [-1, -1, 0], [-1, 1, 0], [0, 0, 1.7]], float)
    gap, rotation = symmetry_gap(pyramid)
    assert gap < 1e-9 and round(_turn_angle(rotation)) in (90, 180)
    # Moving one base corner by 0.3 along x: no rotation fits better than that corner's move allows.
    pyramid[0, 0] += 0.3
    gap, _ = symmetry_gap(pyramid)
    assert 0.05 < gap <= 0.3 + 1e-9


def test_symmetry_warnings_name_the_part_whose_loss_makes_a_mesh_symmetric():
    # A box with a fin on one face: asymmetric as a whole, a plain box without the fin.
    box = [[x, y, z] for x in (-0.5, 0.5) for y in (-0.4, 0.4) for z in (-0.3, 0.3)]
    fin = [[0.2, 0.0, 0.3], [0.3, 0.0, 0.3], [0.25, 0.0, 0.7]]  # bounding-box diagonal 0.41 of the mesh's 1.62
    mesh = Mesh(box + fin, [[8, 9, 10]], [f"body_{i}" for i in range(8)] + ["fin_0", "fin_1", "fin_2"])
    messages = symmetry_warnings(mesh)
    assert len(messages) == 1 and "where its small 'fin' part (3 vertices) is hidden: without it the mesh maps " \
        "onto itself under a 180-degree rotation (exactly; tolerance 0.041 m = 5% of its radius)" in messages[0]
    assert symmetry_warnings(Mesh(box[:7] + [[0.5, 0.4, 0.5]] + fin, [[8, 9, 10]], mesh.vertex_names)) == []


def test_an_unnamed_mesh_is_cut_into_parts_by_its_geometry():
    # The same box and fin with no names (kp00 ...): the fin is a part because its vertices
    # share a face, the box corners (in no face) are parts of one vertex each.
    box = [[x, y, z] for x in (-0.5, 0.5) for y in (-0.4, 0.4) for z in (-0.3, 0.3)]
    fin = [[0.2, 0.0, 0.3], [0.3, 0.0, 0.3], [0.25, 0.0, 0.7]]
    mesh = Mesh(box + fin, [[8, 9, 10]], default_keypoint_names(11))
    assert mesh_parts(mesh) == [[i] for i in range(8)] + [[8, 9, 10]]
    (message,) = symmetry_warnings(mesh)
    assert "where its small part kp08, kp09, kp10 (3 vertices) is hidden: without it the mesh maps onto itself" \
        in message
    # Joined by faces, box and fin are one part: only the fin is small.
    faces = [[0, 1, 3], [0, 4, 5], [2, 3, 7], [4, 6, 7], [8, 9, 10]]
    assert [len(part) for part in mesh_parts(Mesh(box + fin, faces, default_keypoint_names(11)))] == [8, 3]


def test_a_symmetric_mesh_gets_one_short_warning_with_its_tolerance_in_metres():
    # A unit cube: symmetric as a whole, and also without any one corner (a 120-degree turn
    # about the diagonal through it). One line says so, not one per corner.
    cube = [[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    (message,) = symmetry_warnings(Mesh(cube, [], default_keypoint_names(8)))
    assert message == ("keypoint identities are ambiguous: the mesh maps onto itself under a 180-degree rotation "
                       "(exactly; tolerance 0.043 m = 5% of its radius); if so, declare data.interchangeable: "
                       "[['kp00', 'kp03'], ['kp01', 'kp02'], ['kp04', 'kp07'], ['kp05', 'kp06']]")
    # One corner 1 cm off: the best turn (about the centroid, which moved too) fits within 7.5 mm.
    (message,) = symmetry_warnings(Mesh(np.array(cube) + ([[0.01, 0, 0]] + [[0, 0, 0]] * 7), [],
                                        default_keypoint_names(8)))
    assert "(every vertex within 0.0075 m of one; tolerance 0.043 m = 5% of its radius)" in message
