"""Import a real dataset into canonical shards: index, check every hand, crop, write.

The format modules only read their official layout into :class:`SourceFrame` records. This
module does the rest the same way for all of them: it runs the hand model on every frame to
check that the annotated MANO parameters reproduce the annotated joints (a wrong ``--mano``
file or a wrong conversion shows up here, before anything is written), skips invalid frames
with a counted reason, labels the grasping split, mirrors left hands, crops a square around
the projected hand and writes the rows through :class:`~pipeline.data.shards.ShardWriter`.
"""

from __future__ import annotations

import functools
import importlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import DataConfig, SamplingConfig
from pipeline.camera import MIN_DEPTH_M, crop_intrinsics, crop_points, project, square_box
from pipeline.data.importers.frames import MIRROR, HandModels, SourceFrame, crop_image_png
from pipeline.data.shards import ShardWriter
from pipeline.errors import InputError
from pipeline.hand.conversions import mirror_pose, mirror_translation
from pipeline.hand.rotations import axis_angle_to_quaternion, canonicalize_quaternion
from pipeline.sampling.grasp_split import grasping_frames

FORMATS = {
    "dexycb": "pipeline.data.importers.dexycb",
    "ho3d": "pipeline.data.importers.ho3d",
    "handoccnet-json": "pipeline.data.importers.handoccnet",
}
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
    frame.extra["box"] = square_box(project(verts, frame.K), scale)


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


def frame_to_row(frame: SourceFrame, dataset: str, split: str, size: int) -> dict:
    """The canonical row of a checked frame: mirrored if left, cropped, labels in crop space."""
    box, mirrored = frame.extra["box"], frame.side == "left"
    pose, trans, joints = frame.pose, frame.trans, frame.joints_3d
    rotation, translation = frame.object_rotation, frame.object_translation
    if mirrored:
        pose = mirror_pose(torch.as_tensor(pose)).numpy()
        trans = mirror_translation(torch.as_tensor(trans)).numpy()
        joints = joints @ MIRROR
        if rotation is not None:
            rotation, translation = MIRROR @ rotation @ MIRROR, MIRROR @ translation
    K = crop_intrinsics(frame.K, box, size, mirrored)
    joints_2d = project(joints, K) if frame.joints_2d is None else crop_points(frame.joints_2d, box, size, mirrored)
    quat = canonicalize_quaternion(axis_angle_to_quaternion(torch.as_tensor(pose[:3]))).numpy()
    object_pose = None if rotation is None else np.concatenate([rotation.reshape(-1), translation])
    return {
        "sample_id": frame.sample_id, "source": "real", "dataset": dataset, "split": split,
        "sequence_id": frame.sequence_id, "frame": int(frame.frame),
        "image": crop_image_png(frame.image_path, box, size, mirrored),
        "crop_box": np.asarray(box, dtype=np.float32), "K": K.astype(np.float32).ravel(),
        "hand_pose": pose.astype(np.float32), "hand_betas": frame.betas.astype(np.float32),
        "hand_trans": trans.astype(np.float32), "hand_quat": quat.astype(np.float32),
        "joints_3d": joints.astype(np.float32).ravel(), "joints_2d": joints_2d.astype(np.float32).ravel(),
        "object_id": frame.object_id,
        "object_pose": None if object_pose is None else object_pose.astype(np.float32),
        "is_grasping": frame.extra.get("is_grasping"), "origin": "real", "sampler": "none", "mirrored": mirrored,
    }


def import_dataset(fmt: str, root, split: str, out, *, mano: str = "builtin", data: DataConfig | None = None,
                   sampling: SamplingConfig | None = None, overwrite: bool = False, limit: int | None = None,
                   workers: int = 0, progress: bool = True, **options) -> dict:
    """Import ``split`` of the dataset at ``root`` (format ``fmt``) into shards at ``out``."""
    data = data or DataConfig()
    sampling = sampling or SamplingConfig()
    if fmt not in FORMATS:
        raise InputError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root not found: expected the {fmt} folder", root)
    reader = importlib.import_module(FORMATS[fmt])
    models = HandModels(mano)
    frames, dataset = reader.index_frames(root, split, models, **options)
    if limit is not None:
        frames = frames[:limit]
    checks = check_hands(frames, models, data.crop_scale, data.joint_tolerance_mm)
    mismatched = sum(f.skip == "mano_mismatch" for f in frames)
    if mismatched and mismatched >= 0.5 * checks["mano_error_mm"]["count"]:
        raise InputError(
            f"for {mismatched} of {checks['mano_error_mm']['count']} frames the annotated MANO parameters do not "
            f"reproduce the annotated joints (median {checks['mano_error_mm']['median']:.1f} mm): is --mano "
            f"({mano}) the MANO model this dataset was annotated with?", root)
    label_grasping(frames, sampling)
    kept = [f for f in frames if f.skip is None]
    skipped = dict(sorted(Counter(f.skip for f in frames if f.skip is not None).items()))
    report = {"format": fmt, "dataset": dataset, "split": split, "frames": len(frames), "imported": len(kept),
              "skipped": skipped, "mirrored_left_hands": sum(f.side == "left" for f in kept),
              "grasping": sum(bool(f.extra.get("is_grasping")) for f in kept), **checks}
    conventions = Counter(f.extra["pose_convention"] for f in kept if "pose_convention" in f.extra)
    if conventions:
        report["pose_convention"] = dict(conventions)
    config = {"format": fmt, "root": str(root.resolve()), "split": split, "mano": models("right").name,
              "image_size": data.image_size, "crop_scale": data.crop_scale,
              "joint_tolerance_mm": data.joint_tolerance_mm, "grasp_rre_deg": sampling.grasp_rre_deg,
              "grasp_rte_mm": sampling.grasp_rte_mm, "limit": limit, **options}
    with ShardWriter(out, name=f"{dataset}_{split}", rows_per_shard=data.rows_per_shard,
                     image_size=data.image_size, config=config, overwrite=overwrite,
                     info={"hand_model": models("right").name, "import": report}) as writer:
        todo = kept[writer.resume_rows:]
        convert = functools.partial(frame_to_row, dataset=dataset, split=split, size=data.image_size)
        bar = tqdm(total=len(todo), desc=f"import {dataset} {split}", unit="img", disable=not progress)
        if workers > 0 and len(todo) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for row in pool.map(convert, todo, chunksize=16):
                    writer.write(row)
                    bar.update()
        else:
            for frame in todo:
                writer.write(convert(frame))
                bar.update()
        bar.close()
    return {**report, "out": str(out), "rows": writer.manifest["rows"], "shards": len(writer.manifest["shards"]),
            "resumed_rows": len(kept) - len(todo)}
