"""Random hand-object scenes and ``render preview``: what the renderers make of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from pipeline.camera import crop_intrinsics, project, square_box
from pipeline.config import PipelineConfig
from pipeline.hand.joints import PALM_JOINTS


def random_scene(hand_model, library, names: list[str], size: int, rng: np.random.Generator) -> dict:
    """A hand with a natural random pose, its palm 2 cm from a random point of a random object."""
    asset = library[names[int(rng.integers(len(names)))]]
    rotation = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    centre = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.45, 0.55)])
    points, normals = (t.double().numpy() for t in asset.sample_surface(64, seed=int(rng.integers(1 << 31))))
    points, normals = points @ rotation.T + centre, normals @ rotation.T
    facing = np.flatnonzero(normals[:, 2] < -0.2)
    pick = int(rng.choice(facing)) if len(facing) else 0
    align = Rotation.align_vectors([-normals[pick]], [hand_model.palm_normal])[0]
    twist = Rotation.from_rotvec(normals[pick] * rng.uniform(0, 2 * np.pi))
    articulation = hand_model.anatomy.sample(1, int(rng.integers(1 << 31)))[0].double()
    pose = torch.cat([torch.as_tensor((twist * align).as_rotvec()), articulation])[None].to(hand_model.dtype)
    with torch.no_grad():
        _, joints = hand_model(pose)
        trans = torch.as_tensor(points[pick] + 0.02 * normals[pick]) - joints[0, list(PALM_JOINTS)].mean(0).double()
        vertices, joints = hand_model(pose, trans=trans[None].to(hand_model.dtype))
    vertices, joints = vertices[0].double().numpy(), joints[0].double().numpy()
    K0 = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    object_points = np.asarray(asset.vertices) @ rotation.T + centre
    box = square_box(project(np.concatenate([vertices, object_points]), K0), 1.15)
    K = crop_intrinsics(K0, box, size, mirrored=False)
    pose4 = np.eye(4)
    pose4[:3, :3], pose4[:3, 3] = rotation, centre
    return {"name": asset.name, "vertices": vertices, "joints": joints, "objects": [(asset, pose4)], "K": K,
            "full_K": K0, "box": box}


def render_preview(config: PipelineConfig, out: Path, scenes: int = 4, size: int = 256) -> dict:
    """A PNG grid: photo | normal | texture | mask for random hand-object scenes, joints drawn."""
    from pipeline.data.overview import sample_grid
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library
    from pipeline.paths import atomic_write_png
    from renderers.sample import SampleRenderer

    library = load_object_library(config.objects.library)
    hand_model = load_hand_model(config.hand.model)
    rng = np.random.default_rng(config.seed)
    renderer, rows = SampleRenderer(size), []
    for index in tqdm(range(scenes), desc="render preview", unit="scene", disable=not config.run.progress):
        scene = random_scene(hand_model, library, library.names, size, rng)
        pictures = renderer.render(scene, hand_model.faces, photo_seed=int(rng.integers(1 << 31)))
        rows.append({"sample_id": f"scene {index}: {scene['name']}", **pictures,
                     "joints_2d": project(scene["joints"], scene["K"])})
    atomic_write_png(out, sample_grid(rows, size, side=size))
    return {"preview": str(out), "scenes": scenes, "objects": [r["sample_id"] for r in rows]}
