"""Conversions into the canonical hand convention (flat-hand axis-angle, OpenCV, right hand).

Datasets are converted on import and nowhere else: DexYCB stores PCA coefficients relative to
MANO's mean hand, HO3D stores OpenGL camera coordinates, left hands are mirrored to right.
"""

from __future__ import annotations

import torch

from pipeline.hand.rotations import axis_angle_to_matrix, matrix_to_axis_angle

_MIRROR_AXIS_ANGLE = (1.0, -1.0, -1.0)  # a rotation mirrored in x keeps x and negates y, z


def pca_to_flat(pose_pca: torch.Tensor, hands_components, hands_mean) -> torch.Tensor:
    """``[..., 3 + k]`` (global + k PCA coefficients, flat_hand_mean=False) to ``[..., 48]``."""
    components = torch.as_tensor(hands_components, dtype=pose_pca.dtype, device=pose_pca.device)
    mean = torch.as_tensor(hands_mean, dtype=pose_pca.dtype, device=pose_pca.device)
    k = pose_pca.shape[-1] - 3
    if not 1 <= k <= components.shape[0]:
        raise ValueError(f"expected 3 + 1..{components.shape[0]} PCA values, got {pose_pca.shape[-1]}")
    hand = pose_pca[..., 3:] @ components[:k] + mean
    return torch.cat([pose_pca[..., :3], hand], dim=-1)


def mirror_pose(pose: torch.Tensor) -> torch.Tensor:
    """Mirror axis-angle poses ``[..., 3k]`` through the x = 0 plane (left <-> right)."""
    sign = torch.tensor(_MIRROR_AXIS_ANGLE, dtype=pose.dtype, device=pose.device)
    return (pose.reshape(pose.shape[:-1] + (-1, 3)) * sign).reshape(pose.shape)


def mirror_translation(trans: torch.Tensor) -> torch.Tensor:
    return trans * torch.tensor([-1.0, 1.0, 1.0], dtype=trans.dtype, device=trans.device)


def opengl_to_opencv(pose: torch.Tensor, betas: torch.Tensor, trans: torch.Tensor, hand_model):
    """Re-express hand parameters given in an OpenGL camera frame (HO3D) in OpenCV.

    The flip F = diag(1, -1, -1) turns the mesh ``R (v - J0) + J0 + t`` into
    ``F R (v - J0) + F (J0 + t)``: the global rotation becomes ``F R`` and the translation
    ``F (J0 + t) - J0``, with ``J0`` the rest wrist of these betas.
    """
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=pose.dtype, device=pose.device))
    global_rot = flip @ axis_angle_to_matrix(pose[..., :3])
    wrist = hand_model.rest_wrist(betas).to(pose.dtype)
    new_trans = (wrist + trans) @ flip.T - wrist
    return torch.cat([matrix_to_axis_angle(global_rot), pose[..., 3:]], dim=-1), new_trans
