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

from pipeline.camera import MIN_DEPTH_M, outer_crop_box
from pipeline.data.labels import hand_box, labelled_crop
from pipeline.hand.conversions import move_hand
from pipeline.hand.rotations import axis_angle_to_matrix


def random_rotations(n: int, max_degrees: float, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3, 3]`` rotations with x, y, z Euler angles uniform in ``[-max_degrees, max_degrees]``."""
    angles = rng.uniform(-max_degrees, max_degrees, (n, 3))
    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def rotate_about_wrist(pose, trans, wrist, object_rotation, object_translation, delta):
    """Turn the hand and the object it holds by ``delta [N, 3, 3]`` about the wrist ``[N, 3]``
    (the posed root joint): a rigid motion of both, so the translation stays where it is."""
    translation = wrist - np.einsum("nij,nj->ni", delta, wrist)
    pose, trans = move_hand(pose, trans, wrist - trans, delta, translation)
    return pose, trans, delta @ object_rotation, np.einsum("nij,nj->ni", delta, object_translation) + translation


def place_grasps(grasp_pose, grasp_trans, grasp_rest_wrist, target_pose, target_wrist):
    """Move each grasp (hand and object, in the object's frame) rigidly to where the target hand
    is: the hand gets the target's global rotation, its wrist the target's wrist. Returns the
    new hand pose and translation and the object's rotation and translation (= the motion)."""
    grasp_rotation = axis_angle_to_matrix(torch.as_tensor(np.asarray(grasp_pose[:, :3], np.float64))).numpy()
    target_rotation = axis_angle_to_matrix(torch.as_tensor(np.asarray(target_pose[:, :3], np.float64))).numpy()
    rotation = target_rotation @ grasp_rotation.transpose(0, 2, 1)
    translation = target_wrist - np.einsum("nij,nj->ni", rotation, grasp_rest_wrist + grasp_trans)
    pose, trans = move_hand(grasp_pose, grasp_trans, grasp_rest_wrist, rotation, translation)
    return pose, trans, rotation, translation


def finish_specs(hand_model, specs: dict, size: int, crop_scale: float) -> tuple[list[dict], int]:
    """Joints, crops and K for posed hands (arrays in ``specs``); drops hands behind the camera."""
    with torch.no_grad():
        vertices, joints = (t.numpy() for t in hand_model(*(torch.as_tensor(specs[k], dtype=hand_model.dtype)
                                                            for k in ("hand_pose", "hand_betas", "hand_trans"))))
    rows, dropped = [], 0
    for i in range(len(vertices)):
        if (vertices[i][:, 2] < MIN_DEPTH_M).any():
            dropped += 1
            continue
        K_source, mirrored = specs["K"][i].reshape(3, 3), bool(specs["mirrored"][i])
        box = hand_box(vertices[i], K_source, crop_scale)
        object_pose = np.concatenate([specs["object_rotation"][i].reshape(-1), specs["object_translation"][i]])
        rows.append({
            "sample_id": specs["sample_id"][i], "source": "synthetic", "dataset": specs["dataset"][i],
            "split": "train", "sequence_id": specs["sequence_id"][i], "frame": 0,
            **labelled_crop(specs["hand_pose"][i], specs["hand_betas"][i], specs["hand_trans"][i], joints[i],
                            K_source, box, size, crop_box=outer_crop_box(specs["crop_box"][i], box, size, mirrored)),
            "object_id": specs["object_id"][i], "object_pose": object_pose.astype(np.float32), "is_grasping": True,
            "origin": specs["origin"][i], "sampler": specs["sampler"][i], "mirrored": mirrored,
        })
    return rows, dropped
