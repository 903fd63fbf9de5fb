"""Resting poses: how an object lies on a table, found by dropping it in pybullet.

Each object is dropped ``resting_drops`` times from a random orientation and a random height
onto the plane z = 0 and simulated until it is at rest. Two rests are the same resting pose
when the world's up direction, seen in the object's frame, differs by less than
``resting_angle_deg`` (a turn about the vertical or a slide leaves it unchanged). Each pose
is returned with the fraction of drops that ended in it, most frequent first; results are
cached per mesh and parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.data.schema import pose12_matrix
from pipeline.paths import atomic_write_bytes, cache_dir

CACHE_VERSION = 1
DROP_HEIGHTS_M = (0.05, 0.3)  # above the object's bounding sphere


@dataclass(frozen=True)
class RestingPose:
    pose: list[float]  # 12 values: row-major rotation then translation, object -> world, plane z = 0
    frequency: float  # fraction of drops that ended here
    settled: float  # fraction of those drops that came fully to rest

    @property
    def matrix(self) -> np.ndarray:
        return pose12_matrix(self.pose)

    @property
    def up(self) -> np.ndarray:
        """World up in the object's frame."""
        return self.matrix[2, :3]


def _cache_path(asset, drops: int, angle_deg: float, seed: int, vhacd: dict | None) -> Path:
    key = json.dumps({"v": CACHE_VERSION, "drops": drops, "angle": angle_deg, "seed": seed,
                      "vhacd": vhacd or {}, "mass": asset.mass, "friction": asset.friction}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir("grasp_sim", "resting") / f"{asset.mesh_hash}_{digest}.json"


def _cluster(poses: list[np.ndarray], settled: list[bool], angle_deg: float) -> list[RestingPose]:
    ups = np.stack([pose[2, :3] for pose in poses])
    limit = np.cos(np.deg2rad(angle_deg))
    members: list[list[int]] = []
    for i, up in enumerate(ups):
        for group in members:
            if ups[group[0]] @ up > limit:
                group.append(i)
                break
        else:
            members.append([i])
    members.sort(key=lambda group: (-len(group), group[0]))
    result = []
    for group in members:
        mean_up = ups[group].sum(axis=0)
        representative = group[int(np.argmax(ups[group] @ mean_up))]
        pose = poses[representative].copy()
        yaw = Rotation.from_matrix(pose[:3, :3]).as_euler("ZYX")[0]  # turn about the vertical: irrelevant
        pose[:3, :3] = Rotation.from_euler("Z", -yaw).as_matrix() @ pose[:3, :3]
        pose[:2, 3] = 0.0
        result.append(RestingPose(pose=np.concatenate([pose[:3, :3].ravel(), pose[:3, 3]]).tolist(),
                                  frequency=len(group) / len(poses),
                                  settled=float(np.mean([settled[i] for i in group]))))
    return result


def find_resting_poses(asset, drops: int = 32, angle_deg: float = 10.0, seed: int = 0,
                       vhacd: dict | None = None, world=None) -> list[RestingPose]:
    """Distinct resting poses of ``asset`` on a plane, most frequent first (cached)."""
    path = _cache_path(asset, drops, angle_deg, seed, vhacd)
    if path.is_file():
        return [RestingPose(**entry) for entry in json.loads(path.read_text())["poses"]]
    from grasp_sim.physics import PhysicsWorld

    own_world = world is None
    world = world or PhysicsWorld()
    try:
        plane = world.add_plane()
        body = world.add_object(asset, asset.mass, asset.friction, vhacd)
        rng = np.random.default_rng(seed)
        radius = float(np.linalg.norm(asset.vertices, axis=1).max())
        poses, settled = [], []
        for _ in range(drops):
            start = np.eye(4)
            start[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
            start[2, 3] = radius + rng.uniform(*DROP_HEIGHTS_M)
            pose, at_rest = world.drop(body, start)
            poses.append(pose)
            settled.append(at_rest)
        world.remove(body)
        world.remove(plane)
    finally:
        if own_world:
            world.close()
    result = _cluster(poses, settled, angle_deg)
    atomic_write_bytes(path, json.dumps({"object": asset.name, "poses": [asdict(p) for p in result]},
                                        indent=1).encode())
    return result
