"""Grasp validation: four checks, each storing its measured value, then a verdict.

Definitions (object frame, metres internally, the units below in the records):

- contact: a finger touches when one of its vertices is inside the object or within
  ``contact_mm`` of its surface (the literature's contact test, per finger); a grasp needs
  the thumb and at least one other finger. Stored: ``contact_fingers``, ``thumb_contact``.
- penetration and intersection: ``penetration_depth_mm`` is the deepest hand vertex inside
  the object (SDF); ``intersection_volume_cm3`` is the object's solid inside the closed hand
  mesh, counted on a ``voxel_mm`` grid of voxel centres (solid voxels, as OakInk; ObMan and
  GraspTTA count only surface voxels, which gives smaller numbers). Rejected above
  ``max_intersection_cm3``.
- self-penetration: the largest overlap, beyond the flat hand's, between capsules fitted to
  finger segments on different fingers (``hand_geometry``). Rejected above
  ``max_self_penetration_mm``.
- stability: the object (convex pieces, ``stability_mass_kg``, friction
  ``stability_friction``) starts at rest in the static hand mesh and falls for
  ``stability_steps`` steps of 1/240 s, with gravity straight down (world, for the resting
  pose the grasp was made in) and tilted ``stability_tilt_deg`` towards ±x and ±y; the
  stored displacement is the largest of the five. Rejected above ``max_displacement_mm``.
  The test stops once the object is past that limit (``stability_early_stop``): a rejected
  grasp then stores the displacement at which it was lost, over the limit but not the full
  fall; an accepted grasp ran every direction and step, and stores the same value as before.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.config import GraspConfig
from pipeline.geometry import vertex_normals

CHECKS = ("contact", "intersection", "self_penetration", "stability")


def gravity_directions(resting_pose: np.ndarray, tilt_deg: float) -> np.ndarray:
    """Unit gravity directions ``[5, 3]`` in the object's frame for a resting pose (object -> world)."""
    tilt = np.deg2rad(tilt_deg)
    world = [np.array([0.0, 0.0, -1.0])]
    for axis in (np.array([1.0, 0, 0]), np.array([-1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, -1.0, 0])):
        world.append(np.cos(tilt) * world[0] + np.sin(tilt) * axis)
    return np.stack(world) @ resting_pose[:3, :3]  # R^T g for each row g


def intersection_volume(object_sdf, object_bounds: np.ndarray, hand_vertices: np.ndarray, hand_faces: np.ndarray,
                        voxel_m: float) -> float:
    """Object volume (m³) inside the closed hand mesh, counted on a grid of ``voxel_m`` over the
    overlap of the two bounding boxes (``object_bounds [2, 3]``)."""
    import gpytoolbox

    lo = np.maximum(hand_vertices.min(axis=0), object_bounds[0])
    hi = np.minimum(hand_vertices.max(axis=0), object_bounds[1])
    axes = [np.arange(lo[k] + voxel_m / 2, hi[k], voxel_m) for k in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    if not len(grid):
        return 0.0
    with torch.no_grad():
        inside_object = object_sdf(torch.as_tensor(grid, dtype=torch.float64)).numpy() < 0
    candidates = grid[inside_object]
    if not len(candidates):
        return 0.0
    winding = gpytoolbox.winding_number(candidates, hand_vertices.astype(np.float64), hand_faces.astype(np.int32))
    return float((winding > 0.5).sum()) * voxel_m**3


def gripping_surface(vertices: np.ndarray, faces: np.ndarray, grip_m: float) -> np.ndarray:
    """The hand surface moved ``grip_m`` out along its normals: the soft pads' squeeze."""
    return vertices + grip_m * vertex_normals(vertices, faces)


class GraspValidator:
    """Checks grasps on one object; holds the physics world and the object's body."""

    def __init__(self, asset, hand_model, geometry, config: GraspConfig, world, vhacd: dict | None = None):
        self.asset, self.hand_model, self.geometry, self.config = asset, hand_model, geometry, config
        self.world, self.vhacd = world, vhacd
        parts = np.asarray(hand_model.vertex_parts)
        self.finger_vertices = [torch.as_tensor(parts == part) for part in range(1, 6)]  # thumb .. little
        self.faces = hand_model.closed_faces
        self.bounds = np.stack([asset.vertices.min(axis=0), asset.vertices.max(axis=0)])

    def __call__(self, pose: torch.Tensor, betas: torch.Tensor, trans: torch.Tensor,
                 resting_poses: np.ndarray) -> list[dict]:
        """Values and verdict of each grasp (``pose [B, 48]``, ``betas``, ``trans``, resting ``[B, 4, 4]``)."""
        config = self.config
        with torch.no_grad():
            vertices, joints = self.hand_model(pose, betas, trans)
            distance = self.asset.sdf(vertices.double()).cpu()
            overlap = self.geometry.segment_overlap(joints).amax(dim=-1).cpu().double()
        vertices = vertices.double().cpu().numpy()
        self.world.reset()  # drops the previous batch's hand shapes
        contact_limit = config.contact_mm / 1000
        results = []
        for b in range(len(vertices)):
            touching = [bool((distance[b][on_finger] <= contact_limit).any()) for on_finger in self.finger_vertices]
            volume = intersection_volume(self.asset.sdf, self.bounds, vertices[b], self.faces, config.voxel_mm / 1000)
            # Faces farther from the object than the displacement limit can only be reached by an
            # object that has already failed; leaving them out keeps every verdict and saves time.
            near = (distance[b].numpy() < config.max_displacement_mm / 1000)[self.faces].any(axis=1)
            hand_body = None
            if near.any():
                surface = gripping_surface(vertices[b], self.faces, config.grip_mm / 1000)
                hand_body = self.world.add_static_mesh(surface, self.faces[near])
            moved = self.world.displacement(self.asset, config.stability_mass_kg or self.asset.mass,
                                            config.stability_friction,
                                            gravity_directions(resting_poses[b], config.stability_tilt_deg),
                                            config.stability_steps, self.vhacd,
                                            config.max_displacement_mm / 1000 if config.stability_early_stop else None)
            if hand_body is not None:
                self.world.remove(hand_body)
            values = {
                "contact_fingers": int(sum(touching)),
                "thumb_contact": touching[0],
                "penetration_depth_mm": float(max(0.0, -float(distance[b].min())) * 1000),
                "intersection_volume_cm3": volume * 1e6,
                "self_penetration_mm": float(overlap[b]) * 1000,
                "sim_displacement_mm": float(moved.max()) * 1000,
            }
            failed = {
                "contact": not (values["thumb_contact"] and values["contact_fingers"] >= 2),
                "intersection": values["intersection_volume_cm3"] > config.max_intersection_cm3,
                "self_penetration": values["self_penetration_mm"] > config.max_self_penetration_mm,
                "stability": values["sim_displacement_mm"] > config.max_displacement_mm,
            }
            values["accepted"] = not any(failed.values())
            values["reject_reasons"] = ",".join(check for check in CHECKS if failed[check])
            results.append(values)
        return results
