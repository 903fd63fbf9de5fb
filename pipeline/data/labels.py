"""Hand parameters + camera -> the labelled crop row: one implementation for every producer.

Importers (real images), the demo (rendered sequences) and pose sampling (condition specs)
all end a sample the same way: a square box around the projected hand, the crop's
intrinsics, joints projected into it and the canonical label columns as float32.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.camera import crop_intrinsics, crop_points, project, square_box
from pipeline.hand.rotations import axis_angle_to_quaternion, canonicalize_quaternion


def hand_box(vertices: np.ndarray, K: np.ndarray, crop_scale: float) -> tuple[int, int, int, int]:
    """The square crop box around the hand's vertices seen through ``K``."""
    return square_box(project(vertices, K), crop_scale)


def hand_quaternion(pose: np.ndarray) -> np.ndarray:
    """The global orientation ``[..., 48] -> [..., 4]`` as a unit quaternion (w, x, y, z), w >= 0."""
    return canonicalize_quaternion(axis_angle_to_quaternion(torch.as_tensor(np.asarray(pose)[..., :3]))).numpy()


def labelled_crop(pose, betas, trans, joints_3d, K_source, box, size: int, *, mirrored: bool = False,
                  joints_2d_source=None, crop_box=None) -> dict:
    """The label columns of a crop: ``box`` (in the pixels ``K_source`` projects to) resized to
    ``size`` and flipped if ``mirrored``; 2D joints projected from the 3D ones, or moved from
    annotated ``joints_2d_source`` pixels; ``crop_box`` recorded if given, else ``box``.
    Hand parameters and joints are already in the row's (mirrored) camera frame."""
    K = crop_intrinsics(K_source, box, size, mirrored)
    joints_3d = np.asarray(joints_3d, dtype=np.float64).reshape(21, 3)
    joints_2d = project(joints_3d, K) if joints_2d_source is None else crop_points(joints_2d_source, box, size,
                                                                                 mirrored)
    return {
        "crop_box": np.asarray(box if crop_box is None else crop_box, dtype=np.float32),
        "K": K.astype(np.float32).ravel(),
        "hand_pose": np.asarray(pose).astype(np.float32),
        "hand_betas": np.asarray(betas).astype(np.float32),
        "hand_trans": np.asarray(trans).astype(np.float32),
        "hand_quat": hand_quaternion(pose).astype(np.float32),
        "joints_3d": joints_3d.astype(np.float32).ravel(),
        "joints_2d": joints_2d.astype(np.float32).ravel(),
    }
