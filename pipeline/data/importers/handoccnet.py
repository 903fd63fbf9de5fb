"""HandOccNet's COCO-style JSON annotations (its DexYCB and HO3D preprocessing).

``{"images": [{id, file_name, width, height}], "annotations": [{id, image_id,
joints_coord_cam (21 x 3, m, MANO joint order, OpenCV), joints_img (21 x 2), cam_param
{focal, principal point}, mano_param {pose (48), shape (10), optional trans}, hand_type}]}``.
``file_name`` is relative to ROOT; the annotation file is ``--annotations FILE`` or the one
``ROOT/annotations/*_<split>_data.json``. HandOccNet's MANO layer uses the mean hand
(``flat_hand_mean=False``); some derived files store flat-hand poses instead, so both readings
are tried on the first annotated frames and the one that reproduces the joints is used (the
report says which). Without ``trans`` the translation puts the model's wrist on the annotated one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data.importers.frames import HandModels, SourceFrame
from pipeline.data.importers.layout import array_field, camera_matrix, read_json
from pipeline.errors import InputError
from pipeline.hand.joints import reorder_joints

PROBE = 64


def annotation_file(root: Path, split: str, annotations: str | None) -> Path:
    if annotations:
        return Path(annotations)
    found = sorted((root / "annotations").glob(f"*_{split}_data.json"))
    if len(found) != 1:
        what = "none" if not found else ", ".join(p.name for p in found)
        raise InputError(f"expected one annotations/*_{split}_data.json (found {what}); "
                         "pass --annotations FILE", root)
    return found[0]


def index_frames(root: Path, split: str, models: HandModels, annotations: str | None = None
                 ) -> tuple[list[SourceFrame], str]:
    path = annotation_file(root, split, annotations)
    data = read_json(path, "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise InputError("expected a COCO-style object with 'images' and 'annotations' lists", path)
    images = {image.get("id"): image for image in data["images"] if isinstance(image, dict)}
    frames = [_frame(root, path, ann, images) for ann in data["annotations"]]
    _resolve_poses([f for f in frames if f.skip is None], models)
    stem = path.stem.removesuffix(f"_{split}_data").lower() or "handoccnet"
    return frames, stem


def _frame(root: Path, path: Path, ann: dict, images: dict) -> SourceFrame:
    image = images.get(ann.get("image_id"))
    if image is None:
        raise InputError(f"annotation {ann.get('id')!r}: 'image_id' {ann.get('image_id')!r} is not in 'images'", path)
    image_path = root / str(image.get("file_name"))
    if not image_path.is_file():
        raise InputError(f"missing image of annotation {ann.get('id')!r}", image_path)
    where = f"{path} (annotation {ann.get('id')!r})"
    cam = array_field(ann, "cam_param", where)
    focal, princpt = array_field(cam, "focal", where, (2,)), array_field(cam, "princpt", where, (2,))
    side = ann.get("hand_type", "right")
    if side not in ("right", "left"):
        raise InputError(f"'hand_type': expected right or left, got {side!r}", where)
    relative = Path(str(image.get("file_name")))
    frame = SourceFrame(
        sample_id=f"{path.stem}/{ann.get('id')}", image_path=image_path, sequence_id=str(relative.parent),
        frame=int(ann.get("id")) if str(ann.get("id")).isdigit() else 0, side=side,
        K=camera_matrix([[focal[0], 0, princpt[0]], [0, focal[1], princpt[1]], [0, 0, 1.0]], where, "cam_param"),
        extra={"image_wh": (int(image.get("width", 0)), int(image.get("height", 0)))})
    joints = array_field(ann, "joints_coord_cam", where, (21, 3))
    mano = ann.get("mano_param")
    if mano is None or (joints == -1).all():
        frame.skip = "no_hand_label"
        return frame
    frame.joints_3d = reorder_joints(joints, "mano21", "canonical21")
    frame.joints_2d = reorder_joints(array_field(ann, "joints_img", where, (21, None))[:, :2], "mano21", "canonical21")
    frame.pose = array_field(mano, "pose", where, (48,))
    frame.betas = array_field(mano, "shape", where, (10,))
    frame.trans = array_field(mano, "trans", where, (3,), optional=True)
    return frame


def _resolve_poses(frames: list[SourceFrame], models: HandModels) -> None:
    """Mean-relative or flat poses? Try both on a few frames; then fill in translations."""
    for side in ("right", "left"):
        todo = [f for f in frames if f.side == side]
        if not todo:
            continue
        model = models(side)
        mean = torch.as_tensor(model.hands_mean, dtype=torch.float64)
        pose = torch.as_tensor(np.stack([f.pose for f in todo]))
        betas = torch.as_tensor(np.stack([f.betas for f in todo]))
        wrist = model.rest_wrist(betas)
        given = [f.trans is not None for f in todo]
        candidates = {"mean": torch.cat([pose[:, :3], pose[:, 3:] + mean], dim=1), "flat": pose}
        errors = {}
        for name, full in candidates.items():
            trans = _translations(todo, given, wrist)
            probe = slice(0, PROBE)
            with torch.no_grad():
                _, joints = model(full[probe], betas[probe], trans[probe])
            target = torch.as_tensor(np.stack([f.joints_3d for f in todo[probe]]))
            errors[name] = float((joints - target).norm(dim=-1).mean())
        best = min(errors, key=errors.get)
        trans = _translations(todo, given, wrist)
        for frame, p, t in zip(todo, candidates[best].numpy(), trans.numpy()):
            frame.pose, frame.trans = p, t
            frame.extra["pose_convention"] = best


def _translations(frames, given, wrist: torch.Tensor) -> torch.Tensor:
    """The annotated translation, or the one that puts the model's wrist on the annotated wrist."""
    rows = [torch.as_tensor(f.trans) if g else torch.as_tensor(f.joints_3d[0]) - w
            for f, g, w in zip(frames, given, wrist)]
    return torch.stack(rows)
