"""Conversions into the canonical hand convention (flat-hand axis-angle, OpenCV, right hand).

Datasets are converted on import and nowhere else: DexYCB stores PCA coefficients relative to
MANO's mean hand, HO3D stores OpenGL camera coordinates, left hands are mirrored to right.
"""

from __future__ import annotations

import numpy as np
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


def move_hand(pose, trans, rest_wrist, rotation, translation):
    """Hand parameters after the rigid motion ``x -> rotation x + translation`` of the whole hand.

    The model turns the hand about its rest wrist ``w`` and then translates it:
    ``v = R_g (v0 - w) + w + t``. Moved, ``R' = R R_g`` and ``t' = R (w + t) + translation - w``;
    the finger joints do not change. Batched over leading dimensions (``pose [..., 48]``,
    ``trans``/``rest_wrist``/``translation [..., 3]``, ``rotation [..., 3, 3]``); numpy in,
    numpy out; torch in, torch out.
    """
    as_numpy = isinstance(pose, np.ndarray)
    pose, trans, rest_wrist, rotation, translation = (
        torch.as_tensor(np.asarray(v, dtype=np.float64)) if as_numpy else v
        for v in (pose, trans, rest_wrist, rotation, translation))
    rotation = rotation.to(pose.dtype)
    global_rotation = rotation @ axis_angle_to_matrix(pose[..., :3])
    moved_pose = torch.cat([matrix_to_axis_angle(global_rotation), pose[..., 3:]], dim=-1)
    moved_trans = (rotation @ (rest_wrist + trans)[..., None])[..., 0] + translation - rest_wrist
    return (moved_pose.numpy(), moved_trans.numpy()) if as_numpy else (moved_pose, moved_trans)


def opengl_to_opencv(pose: torch.Tensor, betas: torch.Tensor, trans: torch.Tensor, hand_model):
    """Re-express hand parameters given in an OpenGL camera frame (HO3D) in OpenCV: the flip
    ``F = diag(1, -1, -1)`` as a rigid motion of the hand (:func:`move_hand`)."""
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=pose.dtype, device=pose.device))
    wrist = hand_model.rest_wrist(betas).to(pose.dtype)
    return move_hand(pose, trans, wrist, flip, torch.zeros_like(trans))
