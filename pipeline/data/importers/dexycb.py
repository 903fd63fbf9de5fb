"""DexYCB (official layout, dex-ycb-toolkit conventions).

``ROOT/<subject>/<sequence>/meta.yml`` (serials, num_frames, ycb_ids, ycb_grasp_ind,
mano_sides, mano_calib) and ``<serial>/color_%06d.jpg`` + ``labels_%06d.npz`` (pose_m
[1, 51] = global rotation + 45 PCA coefficients relative to MANO's mean hand, then the
translation; joint_3d [1, 21, 3] m; joint_2d [1, 21, 2]; pose_y [n, 3, 4] object poses);
``ROOT/calibration/intrinsics/<serial>_640x480.yml`` and
``ROOT/calibration/mano_<calib>/mano.yml`` (betas). Splits are the toolkit's setups
``s0``-``s3`` x ``train``/``val``/``test``, e.g. ``s0_train``; subjects and sequences are
indexed in sorted order, as the toolkit does. Frames whose pose is all zero or whose joints
are all -1 carry no hand label and are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data.importers.frames import HandModels, SourceFrame
from pipeline.data.importers.layout import array_field, camera_matrix, read_yaml, require_file
from pipeline.errors import InputError
from pipeline.hand.conversions import pca_to_flat

YCB_CLASSES = {
    1: "002_master_chef_can", 2: "003_cracker_box", 3: "004_sugar_box", 4: "005_tomato_soup_can",
    5: "006_mustard_bottle", 6: "007_tuna_fish_can", 7: "008_pudding_box", 8: "009_gelatin_box",
    9: "010_potted_meat_can", 10: "011_banana", 11: "019_pitcher_base", 12: "021_bleach_cleanser",
    13: "024_bowl", 14: "025_mug", 15: "035_power_drill", 16: "036_wood_block", 17: "037_scissors",
    18: "040_large_marker", 19: "051_large_clamp", 20: "052_extra_large_clamp", 21: "061_foam_brick",
}
IMAGE_WH = (640, 480)
_ALL10 = list(range(10))
_ALL8 = list(range(8))
_EVERY = list(range(100))
# setup -> split -> (subject indices, serial indices, sequence indices), as in dex-ycb-toolkit.
SETUPS = {
    "s0": {"train": (_ALL10, _ALL8, [i for i in _EVERY if i % 5 != 4]),
           "val": ([0, 1], _ALL8, [i for i in _EVERY if i % 5 == 4]),
           "test": (list(range(2, 10)), _ALL8, [i for i in _EVERY if i % 5 == 4])},
    "s1": {"train": ([0, 1, 2, 3, 4, 5, 9], _ALL8, _EVERY), "val": ([6], _ALL8, _EVERY),
           "test": ([7, 8], _ALL8, _EVERY)},
    "s2": {"train": (_ALL10, list(range(6)), _EVERY), "val": (_ALL10, [6], _EVERY), "test": (_ALL10, [7], _EVERY)},
    "s3": {"train": (_ALL10, _ALL8, [i for i in _EVERY if i // 5 not in (3, 7, 11, 15, 19)]),
           "val": (_ALL10, _ALL8, [i for i in _EVERY if i // 5 in (3, 19)]),
           "test": (_ALL10, _ALL8, [i for i in _EVERY if i // 5 in (7, 11, 15)])},
}


def parse_split(split: str, root: Path) -> tuple[list[int], list[int], list[int]]:
    setup, _, part = split.partition("_")
    if setup not in SETUPS or part not in SETUPS[setup]:
        names = [f"{s}_{p}" for s in SETUPS for p in SETUPS[s]]
        raise InputError(f"unknown DexYCB split {split!r}; expected one of {', '.join(names)}", root)
    return SETUPS[setup][part]


def _intrinsics(root: Path, serial: str, cache: dict) -> np.ndarray:
    if serial not in cache:
        path = root / "calibration" / "intrinsics" / f"{serial}_{IMAGE_WH[0]}x{IMAGE_WH[1]}.yml"
        color = read_yaml(path, "camera intrinsics").get("color")
        if not isinstance(color, dict):
            raise InputError("missing key 'color'", path)
        fx, fy, cx, cy = (float(array_field(color, k, path, ())) for k in ("fx", "fy", "ppx", "ppy"))
        cache[serial] = camera_matrix([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]], path, "color")
    return cache[serial]


def _betas(root: Path, calib: str, cache: dict) -> np.ndarray:
    if calib not in cache:
        path = root / "calibration" / f"mano_{calib}" / "mano.yml"
        cache[calib] = array_field(read_yaml(path, "MANO calibration"), "betas", path, (10,))
    return cache[calib]


def _sequence_frames(root: Path, sequence: Path, serials: list[int], models: HandModels, caches) -> list[SourceFrame]:
    meta_path = sequence / "meta.yml"
    meta = read_yaml(meta_path, "sequence meta.yml")
    for key in ("serials", "num_frames", "ycb_ids", "ycb_grasp_ind", "mano_sides", "mano_calib"):
        if key not in meta:
            raise InputError(f"missing key '{key}'", meta_path)
    side = str(meta["mano_sides"][0])
    if side not in ("right", "left"):
        raise InputError(f"'mano_sides': expected right or left, got {side!r}", meta_path)
    betas = _betas(root, str(meta["mano_calib"][0]), caches["betas"])
    grasp_index = int(meta["ycb_grasp_ind"])
    object_id = YCB_CLASSES.get(int(meta["ycb_ids"][grasp_index]))
    model = models(side)
    all_serials = sorted(str(s) for s in meta["serials"])
    frames = []
    for serial in [all_serials[i] for i in serials if i < len(all_serials)]:
        K = _intrinsics(root, serial, caches["K"])
        for index in range(int(meta["num_frames"])):
            frames.append(_frame(root, sequence, serial, index, side, K, betas, grasp_index, object_id, model))
    return frames


def _frame(root, sequence, serial, index, side, K, betas, grasp_index, object_id, model) -> SourceFrame:
    folder = sequence / serial
    label_path = require_file(folder / f"labels_{index:06d}.npz", "label file")
    image_path = require_file(folder / f"color_{index:06d}.jpg", "colour image")
    try:
        with np.load(label_path) as labels:
            pose_m = array_field(labels, "pose_m", label_path, (1, 51))[0]
            joint_3d = array_field(labels, "joint_3d", label_path, (1, 21, 3))[0]
            joint_2d = array_field(labels, "joint_2d", label_path, (1, 21, 2))[0]
            pose_y = array_field(labels, "pose_y", label_path, (None, 3, 4))
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable label file ({exc})", label_path) from None
    subject_seq = f"{sequence.parent.name}/{sequence.name}"
    frame = SourceFrame(
        sample_id=f"dexycb/{subject_seq}/{serial}/{index:06d}", image_path=image_path,
        sequence_id=f"{subject_seq}/{serial}", frame=index, side=side, K=K, betas=betas,
        joints_3d=joint_3d, joints_2d=joint_2d, object_id=object_id, extra={"image_wh": IMAGE_WH})
    if grasp_index < len(pose_y) and np.abs(pose_y[grasp_index]).sum() > 0:
        frame.object_rotation, frame.object_translation = pose_y[grasp_index, :, :3], pose_y[grasp_index, :, 3]
    if not np.abs(pose_m).sum() or (joint_3d == -1).all():
        frame.skip = "no_hand_label"
        return frame
    pca = torch.as_tensor(pose_m[:48])
    frame.pose = pca_to_flat(pca, model.hands_components, model.hands_mean).numpy()
    frame.trans = pose_m[48:51]
    return frame


def index_frames(root: Path, split: str, models: HandModels) -> tuple[list[SourceFrame], str]:
    """Every frame of ``split`` in toolkit order (subject, sequence, serial, frame)."""
    subject_ids, serial_ids, sequence_ids = parse_split(split, root)
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and "subject" in p.name)
    if not subjects:
        raise InputError("no subject folders (<date>-subject-NN): expected the DexYCB root", root)
    caches = {"K": {}, "betas": {}}
    frames: list[SourceFrame] = []
    for subject in [subjects[i] for i in subject_ids if i < len(subjects)]:
        sequences = sorted(p for p in subject.iterdir() if p.is_dir())
        for sequence in [sequences[i] for i in sequence_ids if i < len(sequences)]:
            frames.extend(_sequence_frames(root, sequence, serial_ids, models, caches))
    return frames, "dexycb"
