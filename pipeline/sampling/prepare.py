"""Pose preparation: novel views of real grasps and novel grasps placed like real ones.

Both produce condition specs: canonical sample rows with every label and no images yet
(``source = synthetic``), for the renderers to fill with condition maps and the DDPM with
images. A spec keeps the camera of the real sample it was made from: its crop is a new
square around the re-posed hand in that sample's crop pixels, and K is re-derived for it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from pipeline.camera import MIN_DEPTH_M, crop_intrinsics, outer_crop_box, project, square_box
from pipeline.hand.rotations import axis_angle_to_matrix, axis_angle_to_quaternion, canonicalize_quaternion, \
    matrix_to_axis_angle



def random_rotations(n: int, max_degrees: float, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3, 3]`` rotations with x, y, z Euler angles uniform in ``[-max_degrees, max_degrees]``."""
    angles = rng.uniform(-max_degrees, max_degrees, (n, 3))
    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def rotate_about_wrist(pose, wrist, object_rotation, object_translation, delta):
    """Turn the hand and the object it holds by ``delta [N, 3, 3]`` about the wrist ``[N, 3]``.

    The hand model rotates about its root joint and ``trans`` moves that joint, so only the
    global rotation changes; the object moves rigidly with the hand.
    """
    pose = np.array(pose, dtype=np.float64)
    global_rotation = delta @ axis_angle_to_matrix(torch.as_tensor(pose[:, :3])).numpy()
    pose[:, :3] = matrix_to_axis_angle(torch.as_tensor(global_rotation)).numpy()
    new_rotation = delta @ object_rotation
    new_translation = np.einsum("nij,nj->ni", delta, object_translation - wrist) + wrist
    return pose, new_rotation, new_translation


def place_grasps(grasp_pose, grasp_wrist, target_pose, target_wrist):
    """Rigid transforms (R, t) taking each grasp (hand and object, object frame) to where the
    target hand is: the hand gets the target's global rotation, its wrist the target's wrist.
    Returns the new hand pose and the object's rotation and translation (= the transform)."""
    grasp_rotation = axis_angle_to_matrix(torch.as_tensor(np.asarray(grasp_pose[:, :3], np.float64))).numpy()
    target_rotation = axis_angle_to_matrix(torch.as_tensor(np.asarray(target_pose[:, :3], np.float64))).numpy()
    rotation = target_rotation @ grasp_rotation.transpose(0, 2, 1)
    translation = target_wrist - np.einsum("nij,nj->ni", rotation, grasp_wrist)
    pose = np.array(grasp_pose, dtype=np.float64)
    pose[:, :3] = np.asarray(target_pose, np.float64)[:, :3]
    return pose, rotation, translation


def finish_specs(hand_model, specs: dict, size: int, crop_scale: float) -> tuple[list[dict], int]:
    """Joints, crops and K for posed hands (arrays in ``specs``); drops hands behind the camera."""
    with torch.no_grad():
        vertices, joints = (t.numpy() for t in hand_model(*(torch.as_tensor(specs[k], dtype=hand_model.dtype)
                                                            for k in ("hand_pose", "hand_betas", "hand_trans"))))
    quats = canonicalize_quaternion(axis_angle_to_quaternion(torch.as_tensor(specs["hand_pose"][:, :3]))).numpy()
    rows, dropped = [], 0
    for i in range(len(vertices)):
        if (vertices[i][:, 2] < MIN_DEPTH_M).any():
            dropped += 1
            continue
        K_source = specs["K"][i].reshape(3, 3)
        box = square_box(project(vertices[i], K_source), crop_scale)
        K = crop_intrinsics(K_source, box, size, mirrored=False)
        object_pose = np.concatenate([specs["object_rotation"][i].reshape(-1), specs["object_translation"][i]])
        rows.append({
            "sample_id": specs["sample_id"][i], "source": "synthetic", "dataset": specs["dataset"][i],
            "split": "train", "sequence_id": specs["sequence_id"][i], "frame": 0,
            "crop_box": outer_crop_box(specs["crop_box"][i], box, size, bool(specs["mirrored"][i])).astype(np.float32),
            "K": K.astype(np.float32).ravel(), "hand_pose": specs["hand_pose"][i].astype(np.float32),
            "hand_betas": specs["hand_betas"][i].astype(np.float32),
            "hand_trans": specs["hand_trans"][i].astype(np.float32), "hand_quat": quats[i].astype(np.float32),
            "joints_3d": joints[i].astype(np.float32).ravel(),
            "joints_2d": project(joints[i], K).astype(np.float32).ravel(), "object_id": specs["object_id"][i],
            "object_pose": object_pose.astype(np.float32), "is_grasping": True, "origin": specs["origin"][i],
            "sampler": specs["sampler"][i], "mirrored": bool(specs["mirrored"][i]),
        })
    return rows, dropped
