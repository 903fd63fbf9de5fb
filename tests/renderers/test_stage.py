"""Condition maps, photo-style images, the render commands, platform choice."""

import numpy as np
import pytest
import torch
import trimesh

from flows.cli import main
from pipeline.data import validate_dataset
from pipeline.data.importers import ImportInputs, import_data
from pipeline.data.reader import ShardDataset
from pipeline.errors import InputError
from pipeline.hand import load_hand_model
from pipeline.objects import load_object_library
from pipeline.objects.asset import ObjectAsset
from renderers import platform
from renderers.conditions import ConditionRenderer
from renderers.photo import PhotoRenderer
from renderers.random_scenes import random_scene

import dataset_fixtures as fx
from conftest import make_config

SIZE = 256


def camera(f=300.0, size=SIZE):
    c = (size - 1) / 2
    return np.array([[f, 0, c], [0, f, c], [0, 0, 1.0]])


def painted_box(name, rgb):
    box = trimesh.creation.box(extents=(0.06, 0.06, 0.06))
    visual = box.copy()
    visual.visual.vertex_colors = np.tile([*rgb, 255], (len(box.vertices), 1))
    return ObjectAsset(name=name, category="box", vertices=np.asarray(box.vertices), faces=np.asarray(box.faces),
                       visual=visual, mass=0.1, friction=0.5, source="test")


@pytest.fixture(scope="module")
def scene_parts():
    return load_hand_model("builtin", dtype=torch.float64), load_object_library("builtin")


def test_unit_sphere_normal_mask_and_depth():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.05)
    distance, f = 0.5, 300.0
    maps = ConditionRenderer(SIZE).render(sphere.vertices + [0, 0, distance], sphere.faces, [], camera(f))
    centre = SIZE // 2
    assert np.abs(maps["normal"][centre, centre].astype(int) - [128, 128, 255]).max() <= 2
    analytic = np.pi * (f * np.tan(np.arcsin(0.05 / distance))) ** 2
    assert abs((maps["mask"] == 1).sum() / analytic - 1) < 0.01
    assert set(np.unique(maps["mask"])) == {0, 1}
    assert abs(maps["depth"][centre, centre] - (distance - 0.05)) < 1e-3
    assert maps["depth"][0, 0] == 0 and maps["normal"][0, 0].max() == 0
    ys, xs = np.nonzero(maps["mask"])
    assert abs(xs.mean() - (SIZE - 1) / 2) < 0.1 and abs(ys.mean() - (SIZE - 1) / 2) < 0.1  # OpenCV pixel centres
    # Right of the centre the sphere's normal points right (red up), below it down (green down).
    assert maps["normal"][centre, centre + 20, 0] > 150 and maps["normal"][centre + 20, centre, 1] < 100


def test_visible_hand_vertices_land_on_the_hand(scene_parts):
    hand_model, library = scene_parts
    renderer = ConditionRenderer(SIZE)
    for seed in range(3):
        scene = random_scene(hand_model, library, library.names, SIZE, np.random.default_rng(seed))
        maps = renderer.render(scene["vertices"], hand_model.faces, scene["objects"], scene["K"])
        uvw = scene["vertices"] @ scene["K"].T
        u, v = np.round(uvw[:, :2] / uvw[:, 2:]).astype(int).T
        inside = (u >= 0) & (u < SIZE) & (v >= 0) & (v < SIZE)
        depth = maps["depth"][v[inside], u[inside]]
        visible = np.abs(depth - scene["vertices"][inside, 2]) < 0.002
        assert visible.sum() > 100
        assert (maps["mask"][v[inside], u[inside]][visible] == 1).mean() > 0.97
        assert (maps["mask"] == 2).sum() > 100


def test_texture_map_shows_each_objects_colour_and_mirroring_flips_the_image(scene_parts):
    hand_model, _ = scene_parts
    red, blue = painted_box("red", (220, 30, 30)), painted_box("blue", (30, 30, 220))
    pose = np.eye(4)
    poses = []
    for x in (-0.06, 0.06):
        p = pose.copy()
        p[:3, :3] = trimesh.transformations.rotation_matrix(0.6, [1, 1, 0])[:3, :3]
        p[:3, 3] = [x, 0.02, 0.5]
        poses.append(p)
    with torch.no_grad():
        hand, _ = hand_model(hand_model.pose_from_name("relaxed"), trans=torch.tensor([[0.0, -0.05, 0.45]],
                                                                                       dtype=torch.float64))
    hand = hand[0].numpy()
    renderer = ConditionRenderer(SIZE)
    maps = renderer.render(hand, hand_model.faces, [(red, poses[0]), (blue, poses[1])], camera())
    objects = maps["mask"] == 2
    left, right = objects.copy(), objects.copy()
    left[:, SIZE // 2:], right[:, :SIZE // 2] = False, False
    red_pixels, blue_pixels = maps["texture"][left].astype(int), maps["texture"][right].astype(int)
    assert (red_pixels[:, 0] > red_pixels[:, 2] + 60).mean() > 0.95
    assert (blue_pixels[:, 2] > blue_pixels[:, 0] + 60).mean() > 0.95
    hand_pixels = maps["texture"][maps["mask"] == 1].astype(int)
    assert np.median(hand_pixels[:, 0]) > 150 and abs(np.median(hand_pixels[:, 0] - hand_pixels[:, 1])) < 12

    mirror = np.diag([-1.0, 1.0, 1.0])
    flipped_K = camera()
    flipped_K[0, 2] = SIZE - 1 - flipped_K[0, 2]
    mirrored_poses = []
    for p in poses:
        q = np.eye(4)
        q[:3, :3], q[:3, 3] = mirror @ p[:3, :3] @ mirror, mirror @ p[:3, 3]
        mirrored_poses.append(q)
    mirrored = renderer.render(hand @ mirror, hand_model.faces[:, [0, 2, 1]],
                               [(red, mirrored_poses[0], True), (blue, mirrored_poses[1], True)], flipped_K)
    assert (mirrored["mask"] == maps["mask"][:, ::-1]).mean() > 0.995
    assert np.abs(mirrored["texture"].astype(int) - maps["texture"][:, ::-1]).mean() < 3


def test_one_context_per_size_is_reused(scene_parts):
    hand_model, library = scene_parts
    scene = random_scene(hand_model, library, ["banana"], 64, np.random.default_rng(0))
    renderer = ConditionRenderer(64)
    before = platform.contexts_created()
    for _ in range(3):
        renderer.render(scene["vertices"], hand_model.faces, scene["objects"], scene["K"])
    PhotoRenderer(64).render(scene["vertices"], hand_model.faces, scene["objects"], scene["K"], seed=0)
    ConditionRenderer(64).render(scene["vertices"], hand_model.faces, scene["objects"], scene["K"])
    assert platform.contexts_created() - before <= 1  # 64 px opened at most once, here or earlier


def test_previews_and_the_platform_check_leave_other_contexts_working(scene_parts):
    """pyrender's EGL delete() terminates the display every context shares: previews and the
    platform check must not close theirs, or the next condition render in the process fails."""
    from renderers.preview import hand_picture

    hand_model, library = scene_parts
    scene = random_scene(hand_model, library, ["banana"], 64, np.random.default_rng(1))
    renderer = ConditionRenderer(64)
    first = renderer.render(scene["vertices"], hand_model.faces, scene["objects"], scene["K"])
    picture = hand_picture(scene["vertices"], hand_model.faces, size=48)
    assert picture.shape == (48, 144, 3) and platform.platform_status()["ok"]
    again = renderer.render(scene["vertices"], hand_model.faces, scene["objects"], scene["K"])
    np.testing.assert_array_equal(first["normal"], again["normal"])


def test_photo_renderer_is_deterministic_per_seed(scene_parts):
    hand_model, library = scene_parts
    scene = random_scene(hand_model, library, library.names, 96, np.random.default_rng(5))
    photos = PhotoRenderer(96)
    args = (scene["vertices"], hand_model.faces, scene["objects"], scene["K"])
    first, again, other = photos.render(*args, seed=3), photos.render(*args, seed=3), photos.render(*args, seed=4)
    assert first.shape == (96, 96, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again) and np.abs(first.astype(int) - other).mean() > 5


def test_a_studio_camera_shows_one_backdrop_behind_every_sequence(scene_parts):
    """Like a real rig: the same studio camera behind the same crop gives the same background
    in another sequence (another seed: other noise, blur, skin); another camera or room does not."""
    from renderers.photo import backdrop_crop

    hand_model, library = scene_parts
    scene = random_scene(hand_model, library, ["banana"], 64, np.random.default_rng(2))
    args = (scene["vertices"], hand_model.faces, scene["objects"], scene["K"])
    box = (200.0, 120.0, 360.0, 280.0)
    photos = PhotoRenderer(64)
    renders = {key: photos.render(*args, seed=seed, studio=studio, crop_box=box).astype(int)
               for key, (seed, studio) in {"a": (1, (0, 2)), "b": (2, (0, 2)), "camera": (1, (0, 3)),
                                           "room": (1, (1, 2))}.items()}
    corner = (slice(0, 8), slice(0, 8))  # behind the hand: the scene sits in the crop's middle
    assert np.abs(renders["a"][corner] - renders["b"][corner]).mean() < 8  # sensor noise and blur only
    for other in ("camera", "room"):
        assert np.abs(renders["a"][corner] - renders[other][corner]).mean() > 8
    assert np.array_equal(backdrop_crop(0, 2, box, 64), backdrop_crop(0, 2, box, 64))
    past_the_edge = backdrop_crop(1, 0, (-100.0, -100.0, 60.0, 60.0), 32)
    assert past_the_edge.shape == (32, 32, 3) and past_the_edge.std() > 1
    far_out = backdrop_crop(1, 0, (-900.0, -700.0, 1500.0, 1700.0), 32)  # past the margin: the edge continues
    assert far_out.shape == (32, 32, 3) and far_out.std() > 1



def test_lights_are_summed_in_the_order_they_were_added():
    """pyrender iterates a set of light nodes; ordinary nodes make that order (and the last bit
    of every lit pixel) follow memory addresses, so that re-runs differed by one level."""
    from renderers.scene import add_lights

    pr = platform.import_pyrender()
    for _attempt in range(20):
        scene = pr.Scene()
        add_lights(pr, scene, [(pr.DirectionalLight(intensity=float(i)), (0.1 * i, 0.2, -1.0)) for i in range(5)])
        assert [node.light.intensity for node in scene.light_nodes] == [0.0, 1.0, 2.0, 3.0, 4.0]

def test_bad_meshes_and_cameras_are_refused():
    renderer = ConditionRenderer(32)
    sphere = trimesh.creation.icosphere(radius=0.05)
    with pytest.raises(InputError, match="hand: expected vertices"):
        renderer.render(np.zeros((0, 3)), sphere.faces, [], camera(size=32))
    with pytest.raises(InputError, match="K: expected a camera matrix"):
        renderer.render(sphere.vertices + [0, 0, 0.5], sphere.faces, [], np.zeros((3, 3)))
    with pytest.raises(InputError, match="face indices"):
        renderer.render(sphere.vertices, sphere.faces + 1000, [], camera(size=32))


def test_platform_choice(monkeypatch):
    monkeypatch.setenv("PYOPENGL_PLATFORM", "osmesa")
    assert platform.choose_platform() == "osmesa"
    monkeypatch.delenv("PYOPENGL_PLATFORM")
    monkeypatch.setattr(platform.ctypes.util, "find_library", lambda name: "libEGL.so" if name == "EGL" else None)
    assert platform.choose_platform() == "egl"
    monkeypatch.setattr(platform.ctypes.util, "find_library", lambda name: "x" if name == "OSMesa" else None)
    assert platform.choose_platform() == "osmesa"
    monkeypatch.setattr(platform.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(platform.RenderPlatformError, match="libEGL.*libOSMesa"):
        platform.choose_platform()


def test_render_commands_fill_an_imported_dataset(tmp_path, capsys):
    (tmp_path / "ho3d").mkdir()
    info = fx.make_ho3d(tmp_path / "ho3d")
    import_data(make_config({"data.image_size": 64}), ImportInputs(format="ho3d", root=str(tmp_path / "ho3d"),
                                                                   split=info["split"]), tmp_path / "real")
    assert main(["render", "conditions", "--dataset", str(tmp_path / "real"), "--out", str(tmp_path / "maps"),
                 "--library", "builtin", "--workers", "0"]) == 0
    assert validate_dataset(tmp_path / "maps")["ok"]
    real, maps = ShardDataset(tmp_path / "real"), ShardDataset(tmp_path / "maps")
    assert len(maps) == len(real) == 5
    assert main(["render", "conditions", "--dataset", str(tmp_path / "real"), "--out", str(tmp_path / "parallel"),
                 "--library", "builtin", "--workers", "2"]) == 0
    assert (tmp_path / "parallel" / "part-00000.parquet").read_bytes() == (tmp_path / "maps" / "part-00000.parquet").read_bytes()
    for before, after in zip(real, maps):
        assert torch.equal(before["image"], after["image"]) and before["sample_id"] == after["sample_id"]
        mask = after["mask"].numpy()
        assert (mask == 1).sum() > 50 and (mask == 2).sum() > 20  # the hand and the mustard bottle
        u, v = np.round(after["joints_2d"][0].numpy()).astype(int)  # the wrist lies on the hand or near it
        assert mask[max(v - 2, 0):v + 3, max(u - 2, 0):u + 3].max() >= 1
    assert main(["render", "preview", "--out", str(tmp_path / "preview"), "--scenes", "2", "--size", "64"]) == 0
    from PIL import Image
    assert Image.open(tmp_path / "preview" / "preview.png").size == (4 * 64, 16 + 2 * (64 + 16))
