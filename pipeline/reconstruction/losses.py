"""Training losses with the originals' terms and weights (``reconstruction`` config section).

3D terms compare root-relative vertices and joints; with ``loss_norm: l1`` (MobRecon) in
decimetres, with ``l2`` (HandOccNet's MSE) in metres, which is what its weights (1e4) are for.
2D joints are in [0, 1] of the input image. MobRecon adds a normal-consistency term (the
prediction's edges against the truth's face normals) and an edge-length term; models with
MANO parameters add rotation-matrix and betas terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

UNIT_L1_M = 0.1


def _distance(pred: torch.Tensor, target: torch.Tensor, norm: str, unit: float = 1.0) -> torch.Tensor:
    """Mean absolute difference in ``unit`` (l1), or mean squared difference (l2)."""
    if norm == "l1":
        return (pred - target).abs().mean() / unit
    return ((pred - target) ** 2).mean()


def _edges(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    corners = vertices[:, faces]  # [B, F, 3, 3]
    return torch.stack([corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0],
                        corners[:, :, 2] - corners[:, :, 1]], dim=2)  # [B, F, 3 edges, 3]


def normal_loss(pred: torch.Tensor, target: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean |cos| between the prediction's edges and the truth's face normals (0 when parallel)."""
    target_edges = _edges(target, faces)
    normals = F.normalize(torch.cross(target_edges[:, :, 0], target_edges[:, :, 1], dim=-1), dim=-1)
    return (F.normalize(_edges(pred, faces), dim=-1) * normals[:, :, None]).sum(-1).abs().mean()


def edge_loss(pred: torch.Tensor, target: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean |edge length difference| (decimetres)."""
    return (_edges(pred, faces).norm(dim=-1) - _edges(target, faces).norm(dim=-1)).abs().mean() / UNIT_L1_M


def reconstruction_losses(outputs: dict, targets: dict, config, faces: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every weighted term (those with weight 0 left out) and their sum, ``total``."""
    norm = config.loss_norm
    terms = {
        "vertices": (config.loss_vertices, lambda: _distance(outputs["vertices"], targets["vertices"], norm, UNIT_L1_M)),
        "joints": (config.loss_joints, lambda: _distance(outputs["joints"], targets["joints"], norm, UNIT_L1_M)),
        "joints_2d": (config.loss_joints_2d, lambda: _distance(outputs["joints_2d"], targets["joints_2d"], norm)),
        "normal": (config.loss_normal, lambda: normal_loss(outputs["vertices"], targets["vertices"], faces)),
        "edge": (config.loss_edge, lambda: edge_loss(outputs["vertices"], targets["vertices"], faces)),
    }
    if "rotations" in outputs:
        terms["pose"] = (config.loss_pose, lambda: ((outputs["rotations"] - targets["rotations"]) ** 2).mean())
        terms["shape"] = (config.loss_shape, lambda: ((outputs["betas"] - targets["betas"]) ** 2).mean())
    losses = {name: weight * compute() for name, (weight, compute) in terms.items() if weight > 0}
    losses["total"] = sum(losses.values())
    return losses
