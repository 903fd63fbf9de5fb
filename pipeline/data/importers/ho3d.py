"""HO3D (v2/v3 official layout).

``ROOT/{train,evaluation}/<SEQ>/rgb/<id>.{jpg,png}`` and ``meta/<id>.pkl``; the frame list of
a split is ``ROOT/<split>.txt`` (lines ``SEQ/id``) or, without it, every meta file of
``ROOT/<split>/``. Meta files are pickles of numpy arrays, read through the allow-listed
unpickler: handPose (48, flat-hand axis-angle), handTrans, handBeta, handJoints3D (21 joints
in MANO order), objRot (axis-angle), objTrans, objName, camMat, all in an OpenGL camera frame
(y up, z backward) that the import turns into OpenCV. The evaluation split has no hand pose:
its frames are skipped as ``no_hand_label``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from pipeline.data.importers.frames import HandModels, SourceFrame
from pipeline.data.importers.layout import array_field, camera_matrix, require_file
from pipeline.errors import InputError
from pipeline.hand.conversions import opengl_to_opencv
from pipeline.hand.joints import reorder_joints
from pipeline.safe_pickle import safe_loads

IMAGE_WH = (640, 480)
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def read_meta(path: Path) -> dict:
    try:
        meta = safe_loads(require_file(path, "meta file").read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise InputError(f"not a readable HO3D meta pickle ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(meta, dict):
        raise InputError(f"expected a dict in the meta file, got {type(meta).__name__}", path)
    return meta


def frame_names(root: Path, split: str) -> list[tuple[str, str]]:
    listing = root / f"{split}.txt"
    if listing.is_file():
        names = [line.strip().split("/") for line in listing.read_text().splitlines() if line.strip()]
        bad = [n for n in names if len(n) != 2]
        if bad:
            raise InputError(f"expected lines 'SEQ/id', got {'/'.join(bad[0])!r}", listing)
        return [(seq, frame) for seq, frame in names]
    folder = root / split
    if not folder.is_dir():
        raise InputError(f"no {split}.txt and no {split}/ folder: expected the HO3D root", root)
    return sorted((p.parent.parent.name, p.stem) for p in folder.glob("*/meta/*.pkl"))


def _image_path(folder: Path) -> Path:
    for suffix in (".jpg", ".png"):
        if folder.with_suffix(suffix).is_file():
            return folder.with_suffix(suffix)
    raise InputError("missing colour image (.jpg or .png)", folder.with_suffix(".jpg"))


def index_frames(root: Path, split: str, models: HandModels) -> tuple[list[SourceFrame], str]:
    names = frame_names(root, split)
    if not names:
        raise InputError(f"split {split!r} lists no frames", root)
    model = models("right")
    frames, pending = [], []
    for seq, name in names:
        meta_path = root / split / seq / "meta" / f"{name}.pkl"
        meta = read_meta(meta_path)
        image_path = _image_path(root / split / seq / "rgb" / name)
        K = camera_matrix(array_field(meta, "camMat", meta_path, (3, 3)), meta_path, "camMat")
        frame = SourceFrame(sample_id=f"ho3d/{split}/{seq}/{name}", image_path=image_path, sequence_id=seq,
                            frame=int(name) if name.isdigit() else len(frames), side="right", K=K,
                            extra={"image_wh": IMAGE_WH})
        rotation = array_field(meta, "objRot", meta_path, (3,), optional=True)
        translation = array_field(meta, "objTrans", meta_path, (3,), optional=True)
        if rotation is not None and translation is not None:
            frame.object_id = str(meta.get("objName")) if meta.get("objName") is not None else None
            frame.object_rotation = OPENGL_TO_OPENCV @ Rotation.from_rotvec(rotation).as_matrix()
            frame.object_translation = OPENGL_TO_OPENCV @ translation
        pose = array_field(meta, "handPose", meta_path, (48,), optional=True)
        if pose is None:  # evaluation frames: only the root joint and a box
            frame.skip = "no_hand_label"
        else:
            joints = array_field(meta, "handJoints3D", meta_path, (21, 3))
            frame.betas = array_field(meta, "handBeta", meta_path, (10,))
            frame.joints_3d = reorder_joints(joints, "mano21", "canonical21") @ OPENGL_TO_OPENCV
            frame.pose, frame.trans = pose, array_field(meta, "handTrans", meta_path, (3,))
            pending.append(frame)
        frames.append(frame)
    _to_opencv(pending, model)
    return frames, "ho3d"


def _to_opencv(frames: list[SourceFrame], model) -> None:
    """Hand parameters from HO3D's OpenGL camera frame to OpenCV, batched."""
    if not frames:
        return
    pose, betas, trans = (torch.as_tensor(np.stack([getattr(f, k) for f in frames])) for k in ("pose", "betas", "trans"))
    pose, trans = opengl_to_opencv(pose, betas, trans, model)
    for frame, p, t in zip(frames, pose.numpy(), trans.numpy()):
        frame.pose, frame.trans = p, t
