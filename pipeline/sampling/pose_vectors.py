"""Pose vectors (HandBooster eq. 4) and the cosine distance between them (eq. 5).

``v = concat(h_s, o_q, o_t)``: the 15 finger-joint rotations as quaternions (the global
orientation removed, so poses compare in the hand's canonical frame), then the object's
rotation quaternion and translation expressed in that frame (relative to the wrist). Every
quaternion is sign-canonicalised (w >= 0) first, so q and -q give the same vector.
``D = 15 * 4 + 4 + 3 = 67``. Translations stay in metres, as in the paper: they weigh little
next to the unit quaternions, so the distance is dominated by hand articulation and the
object's orientation relative to the hand.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.hand.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    canonicalize_quaternion,
    matrix_to_quaternion,
)

POSE_VECTOR_SIZE = 15 * 4 + 4 + 3


def pose_vectors(hand_pose, wrist, object_rotation, object_translation) -> np.ndarray:
    """``[N, 67]`` float64 from flat-hand poses ``[N, 48]``, wrist positions ``[N, 3]`` and
    object rotations ``[N, 3, 3]`` / translations ``[N, 3]``, all in one frame (camera or object)."""
    pose = torch.as_tensor(np.array(hand_pose, dtype=np.float64))
    wrist = torch.as_tensor(np.array(wrist, dtype=np.float64))
    rotation = torch.as_tensor(np.array(object_rotation, dtype=np.float64))
    translation = torch.as_tensor(np.array(object_translation, dtype=np.float64))
    joints = canonicalize_quaternion(axis_angle_to_quaternion(pose[:, 3:].reshape(-1, 15, 3))).reshape(-1, 60)
    hand_rotation = axis_angle_to_matrix(pose[:, :3])
    object_in_hand = hand_rotation.transpose(1, 2) @ rotation
    object_quat = canonicalize_quaternion(matrix_to_quaternion(object_in_hand))
    object_offset = torch.einsum("nji,nj->ni", hand_rotation, translation - wrist)
    return torch.cat([joints, object_quat, object_offset], dim=1).numpy()


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so that cosine similarity is a dot product."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"pose vector {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros: "
                         "cosine distance is undefined")
    return vectors / norms


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - cos`` between every row of ``a [N, D]`` and of ``b [M, D]``: ``[N, M]``."""
    return 1.0 - unit_rows(a) @ unit_rows(b).T
