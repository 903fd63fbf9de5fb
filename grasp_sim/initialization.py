"""Starting hands for the optimiser: open, natural hands facing the object from outside.

As in DexGraspNet, each hand starts off a point of the object's convex hull, palm towards
it: the palm centre sits ``init_distance_m`` out along the hull normal, the palm direction
is that normal jittered by up to ``init_tilt_deg``, the roll about it is uniform. Points
whose normal faces the supporting plane, or that lie too close to it, are not used: a hand
cannot come from under the table. The fingers start half as closed as a natural random pose.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from pipeline.config import GraspConfig
from pipeline.geometry import sample_surface

OPENING = 0.5  # start with each anatomical angle at this fraction of a natural random pose
MIN_HEIGHT_M = 0.01  # hull points this close to the plane are not approached
MAX_DOWNWARD = 0.2  # hull normals pointing further down than this (cos to -up) are not approached


def _rotation_taking(source: np.ndarray, targets: np.ndarray) -> Rotation:
    """Rotations taking unit vector ``source`` onto each of ``targets [n, 3]`` (shortest arc)."""
    axes = np.cross(source, targets)
    sin = np.linalg.norm(axes, axis=1)
    cos = targets @ source
    angles = np.arctan2(sin, cos)
    fallback = np.cross(source, [1.0, 0.0, 0.0] if abs(source[0]) < 0.9 else [0.0, 1.0, 0.0])
    axes = np.where(sin[:, None] > 1e-9, axes / np.maximum(sin[:, None], 1e-12), fallback / np.linalg.norm(fallback))
    return Rotation.from_rotvec(axes * angles[:, None])


def _jitter(directions: np.ndarray, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Each unit direction turned by a uniform angle up to ``max_deg`` about a random perpendicular."""
    random = rng.normal(size=directions.shape)
    perpendicular = np.cross(directions, random)
    perpendicular /= np.linalg.norm(perpendicular, axis=1, keepdims=True)
    angles = np.deg2rad(max_deg) * rng.random(len(directions))
    return Rotation.from_rotvec(perpendicular * angles[:, None]).apply(directions)


def initial_params(asset, geometry, hand_model, betas: torch.Tensor, resting_poses: np.ndarray,
                   config: GraspConfig, rng: np.random.Generator) -> torch.Tensor:
    """Optimiser parameters ``[B, 51]`` (see :mod:`grasp_sim.energy`) for ``B = len(betas)`` hands."""
    batch = len(betas)
    hull = asset.trimesh.convex_hull  # trimesh caches it on the mesh
    points, normals = sample_surface(hull.vertices, hull.faces, hull.vertex_normals, 64 * batch,
                                     int(rng.integers(1 << 31)))
    up = resting_poses[:, 2, :3]
    offset = resting_poses[:, 2, 3]
    chosen = np.empty(batch, dtype=np.int64)
    for b in range(batch):
        heights = points @ up[b] + offset[b]
        usable = np.flatnonzero((heights > MIN_HEIGHT_M) & (normals @ up[b] > -MAX_DOWNWARD))
        pool = usable if len(usable) else np.arange(len(points))
        chosen[b] = pool[rng.integers(len(pool))]
    surface, outward = points[chosen], normals[chosen]
    distance = rng.uniform(*config.init_distance_m, size=batch)
    palm_target = surface + outward * distance[:, None]
    facing = _jitter(-outward, config.init_tilt_deg, rng)
    roll = Rotation.from_rotvec(facing * rng.uniform(0, 2 * np.pi, size=(batch, 1)))
    rotation = roll * _rotation_taking(geometry.palm_normal, facing)

    with torch.no_grad():
        wrist = hand_model.rest_wrist(betas).double().cpu().numpy()
    # MANO turns the hand about its rest wrist, then translates: palm = R (c - w) + w + t.
    translation = palm_target - wrist - rotation.apply(geometry.palm_centre - wrist)
    angles = hand_model.anatomy.sample_angles(batch, int(rng.integers(1 << 31))) * OPENING
    params = np.concatenate([translation, rotation.as_rotvec(), angles.reshape(batch, 45).numpy()], axis=1)
    return torch.as_tensor(params, dtype=betas.dtype, device=betas.device)
