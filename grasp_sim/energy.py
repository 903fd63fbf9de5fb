"""The grasp energy: a batched, differentiable score of B hands around one object.

Everything is in the object's frame and in metres. The terms follow DexGraspNet's MANO
branch (shared/REFERENCE.md), with the object's SDF standing in for its mesh queries:

- force closure: the contact normals' net force and torque, ``‖nᵀ G‖`` with
  ``G = [I | [x]×]`` over the contact points ``x`` (relative to the object's centre);
- contact distance: ``Σ |sdf|`` at the contact points, pulling them onto the surface;
- penetration: ``Σ relu(-sdf)`` over hand vertices spread over the surface, plus, for object surface samples,
  the depth behind the nearest hand vertex along its normal (DexGraspNet's own term: thin
  parts, edges and handles can pass between hand vertices unseen by the SDF);
- self-penetration: overlap of finger capsules on different fingers (:mod:`hand_geometry`);
- joint limits: radians beyond the anatomical limits;
- plane: ``Σ relu(-height)`` of hand vertices below the plane the object rests on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.config import GraspEnergyWeights

TERMS = ("force_closure", "contact_distance", "penetration", "self_penetration", "joint_limits", "plane")
NUM_PARAMS = 3 + 3 + 45  # wrist translation, global axis-angle, anatomical angles (15 x 3)


def split_params(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, 51]`` -> translation ``[B, 3]``, global rotation ``[B, 3]``, angles ``[B, 15, 3]``."""
    return params[:, :3], params[:, 3:6], params[:, 6:].reshape(-1, 15, 3)


def hand_pose(params: torch.Tensor, anatomy) -> torch.Tensor:
    """MANO pose ``[B, 48]`` (global axis-angle + 45 flat-hand values) of optimiser parameters."""
    _, rotation, angles = split_params(params)
    return torch.cat([rotation, anatomy.to_axis_angle(angles)], dim=1)


def surface_normals(sdf, points: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Unit SDF gradients at ``points`` by central differences, differentiable with respect to
    the points (a grid SDF has no second derivative to backpropagate through its gradient), so
    the force-closure term can also turn contacts around edges, not only slide them."""
    offsets = eps * torch.eye(3, dtype=points.dtype, device=points.device)
    gradient = (sdf(points[..., None, :] + offsets) - sdf(points[..., None, :] - offsets)) / (2 * eps)
    return gradient / gradient.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def force_closure(points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """``‖nᵀ G‖`` per hand for contact points/normals ``[B, n, 3]`` (points about the centre)."""
    x, y, z = points.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(points.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=points.dtype, device=points.device).expand_as(cross)
    grasp_matrix = torch.cat([eye, cross], dim=-1)  # [B, n, 3, 6]
    wrench = torch.einsum("bni,bnij->bj", normals, grasp_matrix)
    return wrench.norm(dim=-1)


def plane_heights(vertices: torch.Tensor, resting_poses: torch.Tensor) -> torch.Tensor:
    """Height above the supporting plane ``[B, V]`` of object-frame points, for resting poses
    ``[B, 4, 4]`` (object -> world, plane z = 0)."""
    up = resting_poses[:, 2, :3]
    return torch.einsum("bvi,bi->bv", vertices, up) + resting_poses[:, 2, 3:4]


def object_in_hand_depth(points: torch.Tensor, vertices: torch.Tensor, geometry) -> torch.Tensor:
    """Depth ``[B, S]`` of object points ``[S, 3]`` behind their nearest hand vertex along its
    normal (0 in front). Vertex normals are taken from the mesh and held constant."""
    sparse = vertices[:, geometry.penetration_vertex_ids]
    with torch.no_grad():
        normals = mesh_vertex_normals(vertices, geometry.faces)[:, geometry.penetration_vertex_ids]
        nearest = torch.cdist(points.expand(len(sparse), -1, -1), sparse).argmin(dim=-1)  # [B, S]
    index = nearest[..., None].expand(-1, -1, 3)
    offset = points[None] - torch.gather(sparse, 1, index)
    return torch.relu(-(offset * torch.gather(normals, 1, index)).sum(-1))


def mesh_vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals ``[B, V, 3]`` of a batch of meshes."""
    corners = vertices[:, faces]  # [B, F, 3, 3]
    face_normals = torch.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0], dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals.index_add_(1, faces[:, corner], face_normals)
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def joint_limit_excess(angles: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    return (torch.relu(lower - angles) + torch.relu(angles - upper)).sum(dim=(-1, -2))


@dataclass
class GraspEnergy:
    """Callable energy of one object for a fixed set of hand shapes and resting poses."""

    hand_model: object
    geometry: object  # HandGeometry on the hand model's device
    sdf: object  # callable [..., 3] -> [...]
    centre: torch.Tensor  # [3] object centre for the torque
    betas: torch.Tensor  # [B, num_betas]
    resting_poses: torch.Tensor  # [B, 4, 4]
    weights: GraspEnergyWeights
    object_points: torch.Tensor | None = None  # [S, 3] surface samples for the object-in-hand depth

    def __post_init__(self):
        anatomy = self.hand_model.anatomy
        like = self.betas
        self.lower = torch.as_tensor(anatomy.lower, dtype=like.dtype, device=like.device)
        self.upper = torch.as_tensor(anatomy.upper, dtype=like.dtype, device=like.device)

    def hand(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        translation, _, _ = split_params(params)
        return self.hand_model(hand_pose(params, self.hand_model.anatomy), self.betas, translation)

    def terms(self, params: torch.Tensor, contacts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each unweighted term ``[B]`` for ``params [B, 51]`` and contact slots ``[B, n]``."""
        vertices, joints = self.hand(params)
        vertex_ids = self.geometry.candidate_ids[contacts]
        points = torch.gather(vertices, 1, vertex_ids[..., None].expand(-1, -1, 3))
        point_distance = self.sdf(points)
        normals = surface_normals(self.sdf, points)
        vertex_distance = self.sdf(vertices[:, self.geometry.penetration_vertex_ids])
        penetration = torch.relu(-vertex_distance).sum(-1)
        if self.object_points is not None:
            penetration = penetration + object_in_hand_depth(self.object_points, vertices, self.geometry).sum(-1)
        _, _, angles = split_params(params)
        return {
            "force_closure": force_closure(points - self.centre, normals),
            "contact_distance": point_distance.abs().sum(-1),
            "penetration": penetration,
            "self_penetration": self.geometry.segment_overlap(joints).sum(-1),
            "joint_limits": joint_limit_excess(angles, self.lower, self.upper),
            "plane": torch.relu(-plane_heights(vertices[:, self.geometry.penetration_vertex_ids],
                                               self.resting_poses)).sum(-1),
        }

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(getattr(self.weights, name) * terms[name] for name in TERMS)

    def __call__(self, params: torch.Tensor, contacts: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self.terms(params, contacts)
        return self.total(terms), terms
