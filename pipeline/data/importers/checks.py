"""Checks every importer's frames the same way before anything is written.

The hand model runs on every frame to check that the annotated MANO parameters reproduce the
annotated joints (a wrong MANO file or a wrong conversion shows up here); frames behind the
camera or outside the image are skipped with a counted reason, and the grasping split is
labelled from the object's motion.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.camera import MIN_DEPTH_M, project
from pipeline.config import SamplingConfig
from pipeline.data.grasp_split import grasping_frames
from pipeline.data.importers.frames import HandModels, SourceFrame
from pipeline.data.labels import hand_box

CHUNK = 1024


def check_hands(frames: list[SourceFrame], models: HandModels, scale: float, tolerance_mm: float) -> dict:
    """Run the hand model on every frame still valid; skip what fails, fill crop boxes."""
    errors_mm, residuals_px = [], []
    for side in ("right", "left"):
        todo = [f for f in frames if f.skip is None and f.side == side]
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            tensors = [torch.as_tensor(np.stack([getattr(f, k) for f in chunk]), dtype=torch.float64)
                       for k in ("pose", "betas", "trans")]
            with torch.no_grad():
                vertices, joints = (t.numpy() for t in models(side)(*tensors))
            for frame, verts, model_joints in zip(chunk, vertices, joints):
                _check_frame(frame, verts, model_joints, scale, tolerance_mm, errors_mm, residuals_px)
    return {"mano_error_mm": _summary(errors_mm), "joints_2d_residual_px": _summary(residuals_px)}


def _check_frame(frame, verts, model_joints, scale, tolerance_mm, errors_mm, residuals_px) -> None:
    if frame.joints_3d is None:
        frame.joints_3d = model_joints
    if (verts[:, 2] < MIN_DEPTH_M).any() or (frame.joints_3d[:, 2] < MIN_DEPTH_M).any():
        frame.skip = "hand_behind_camera"
        return
    error = float(np.linalg.norm(model_joints - frame.joints_3d, axis=-1).mean() * 1000)
    errors_mm.append(error)
    if error > tolerance_mm:
        frame.skip = "mano_mismatch"
        return
    uv = project(frame.joints_3d, frame.K)
    width, height = frame.extra["image_wh"]
    inside = (uv[:, 0] >= -0.5) & (uv[:, 0] < width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < height - 0.5)
    if inside.mean() < 0.5:
        frame.skip = "hand_outside_image"
        return
    if frame.joints_2d is not None:
        residuals_px.append(float(np.abs(uv - frame.joints_2d).max()))
    frame.extra["box"] = hand_box(verts, frame.K, scale)


def _summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    array = np.asarray(values)
    return {"count": int(array.size), "median": round(float(np.median(array)), 4), "max": round(float(array.max()), 4)}


def label_grasping(frames: list[SourceFrame], sampling: SamplingConfig) -> None:
    """``extra['is_grasping']`` from the object's motion within each sequence (None without labels)."""
    nan = np.full((3, 3), np.nan)
    rotations = np.stack([nan if f.object_rotation is None else f.object_rotation for f in frames])
    translations = np.stack([nan[0] if f.object_translation is None else f.object_translation for f in frames])
    flags = grasping_frames(rotations, translations, [f.sequence_id for f in frames], [f.frame for f in frames],
                            sampling.grasp_rre_deg, sampling.grasp_rte_mm)
    for frame, flag in zip(frames, flags):
        frame.extra["is_grasping"] = None if frame.object_rotation is None else bool(flag)
