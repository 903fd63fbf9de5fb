"""Canonical rows for writer/reader tests, and tiny datasets in the official DexYCB, HO3D
and HandOccNet-JSON layouts made with the builtin hand.

Every dataset image shows the hand drawn flat-shaded over a grey background, with a red disc
on the projected wrist and a blue disc on the middle fingertip, so a test can check that the
crop, its flip and the 2D labels agree.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image, ImageDraw
from scipy.spatial.transform import Rotation

from pipeline.hand import load_hand_model
from pipeline.hand.conversions import opengl_to_opencv
from pipeline.hand.joints import reorder_joints
from pipeline.imaging import png_bytes

SIZE = 16  # side of the images in make_row


def png(array: np.ndarray) -> bytes:
    return png_bytes(array)


def make_row(i: int) -> dict:
    rng = np.random.default_rng(i)
    quat = rng.normal(size=4)
    mask = rng.integers(0, 3, (SIZE, SIZE), dtype=np.uint8)
    return {
        "sample_id": f"demo/{i:04d}", "source": "real" if i % 3 else "synthetic", "dataset": "demo",
        "split": "train" if i < 7 else "test", "sequence_id": f"seq{i // 4}", "frame": i,
        "image": png(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)), "mask": png(mask),
        "crop_box": [0.0, 0.0, 64.0, 64.0], "K": np.eye(3, dtype=np.float32).ravel(),
        "hand_pose": rng.normal(size=48).astype(np.float32), "hand_betas": np.zeros(10, np.float32),
        "hand_trans": rng.normal(size=3).astype(np.float32), "hand_quat": (quat / np.linalg.norm(quat)).astype(np.float32),
        "joints_3d": rng.normal(size=63).astype(np.float32), "joints_2d": rng.uniform(0, SIZE, 42).astype(np.float32),
        "object_id": "mug", "object_pose": np.concatenate([np.eye(3).ravel(), [0.0, 0.0, 0.5]]).astype(np.float32),
        "is_grasping": bool(i % 2), "origin": "real", "sampler": "none",
    }


K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
WRIST_RGB, TIP_RGB = (230, 20, 20), (20, 20, 230)
MIDDLE_TIP = 12  # canonical index of the middle fingertip


def random_hand(side: str, seed: int, betas: np.ndarray | None = None):
    """Flat-hand pose [48], betas, trans (OpenCV) and the model's joints [21, 3] of one hand."""
    model = load_hand_model("builtin", side=side, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    articulation = model.anatomy.sample(1, seed)[0].double()
    rotation = Rotation.from_euler("xyz", rng.uniform(-0.6, 0.6, 3)) * Rotation.from_euler("x", -np.pi / 2)
    pose = torch.cat([torch.as_tensor(rotation.as_rotvec()), articulation])[None]
    betas = torch.as_tensor(rng.normal(0, 0.5, 10) if betas is None else betas)[None]
    target = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06), rng.uniform(0.45, 0.6)])
    trans = torch.as_tensor(target)[None] - model.rest_wrist(betas)
    with torch.no_grad():
        vertices, joints = model(pose, betas, trans)
    HANDS[seed] = (vertices[0].numpy(), model.faces)
    return pose[0].numpy(), betas[0].numpy(), trans[0].numpy(), joints[0].numpy(), model


HANDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # seed -> (vertices, faces) for write_image


def project(points):
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def write_image(path: Path, joints: np.ndarray, seed: int) -> None:
    """The hand of ``random_hand(..., seed)``: triangles far to near, shaded by their normal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    vertices, faces = HANDS[seed]
    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    shade = np.abs(normals[:, 2]) * 0.7 + 0.3
    for f in np.argsort(-triangles[:, :, 2].mean(axis=1)):
        colour = tuple(int(c * shade[f]) for c in (235, 185, 150))
        draw.polygon([tuple(p) for p in project(triangles[f])], fill=colour)
    uv = project(joints)
    for index, colour in ((0, WRIST_RGB), (MIDDLE_TIP, TIP_RGB)):
        u, v = uv[index]
        draw.ellipse([u - 6, v - 6, u + 6, v + 6], fill=colour)
    image.save(path, quality=95)


def object_pose(frame: int):
    """Object at rest for frame 0, then lifted by 3 cm and turned by 15 degrees."""
    rotation = Rotation.from_euler("y", 15 * min(frame, 1), degrees=True).as_matrix()
    return rotation, np.array([0.05, 0.0, 0.55 - 0.03 * min(frame, 1)])


def make_dexycb(root: Path, frames: int = 3) -> dict:
    """One subject, 5 sequences (s0_train takes 4), 2 cameras; sequence 1 is a left hand; one frame unlabelled."""
    serials = ["836212060125", "839512060362"]
    for serial in serials:
        path = root / "calibration" / "intrinsics" / f"{serial}_640x480.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"color": {"fx": 600.0, "fy": 600.0, "ppx": 320.0, "ppy": 240.0}}))
    betas = np.random.default_rng(7).normal(0, 0.5, 10)
    calib = root / "calibration" / "mano_20200709_140042_subject-01_right" / "mano.yml"
    calib.parent.mkdir(parents=True)
    calib.write_text(yaml.safe_dump({"betas": betas.tolist()}))
    subject = root / "20200709-subject-01"
    for s in range(5):
        side = "left" if s == 1 else "right"
        sequence = subject / f"20200709_1400{s:02d}"
        sequence.mkdir(parents=True)
        sequence.joinpath("meta.yml").write_text(yaml.safe_dump({
            "serials": serials, "num_frames": frames, "ycb_ids": [2, 14], "ycb_grasp_ind": 1,
            "mano_sides": [side], "mano_calib": ["20200709_140042_subject-01_right"]}))
        for c, serial in enumerate(serials):
            for f in range(frames):
                seed = 100 * s + 10 * c + f
                pose, _, trans, joints, model = random_hand(side, seed, betas)
                coefficients = (pose[3:] - model.hands_mean) @ model.hands_components.T
                pose_m = np.concatenate([pose[:3], coefficients, trans])[None]
                joint_3d = joints[None]
                if s == 2 and c == 0 and f == 1:  # unlabelled frame
                    pose_m, joint_3d = np.zeros((1, 51)), -np.ones((1, 21, 3))
                rotation, translation = object_pose(f)
                pose_y = np.stack([np.zeros((3, 4)), np.concatenate([rotation, translation[:, None]], 1)])
                (sequence / serial).mkdir(exist_ok=True)
                np.savez(sequence / serial / f"labels_{f:06d}.npz", pose_m=pose_m, joint_3d=joint_3d,
                         joint_2d=project(joints)[None], pose_y=pose_y, seg=np.zeros((480, 640), np.uint8))
                write_image(sequence / serial / f"color_{f:06d}.jpg", joints, seed)
    return {"split": "s0_train", "frames": 4 * 2 * frames, "unlabelled": 1, "left": 2 * frames}


def make_ho3d(root: Path) -> dict:
    """Two train sequences of 3 frames (OpenGL meta pickles) plus one frame without a hand pose."""
    model = load_hand_model("builtin", dtype=torch.float64)
    flip = np.diag([1.0, -1.0, -1.0])
    lines = []
    for s, seq in enumerate(("ABF10", "MC1")):
        for f in range(3):
            seed = 1000 + 10 * s + f
            pose, betas, trans, joints, _ = random_hand("right", seed)
            gl_pose, gl_trans = opengl_to_opencv(torch.as_tensor(pose)[None], torch.as_tensor(betas)[None],
                                                 torch.as_tensor(trans)[None], model)
            rotation, translation = object_pose(f)
            meta = {"handPose": gl_pose[0].numpy(), "handTrans": gl_trans[0].numpy(), "handBeta": betas,
                    "handJoints3D": reorder_joints(joints, "canonical21", "mano21") @ flip,
                    "objRot": Rotation.from_matrix(flip @ rotation).as_rotvec()[:, None],
                    "objTrans": flip @ translation, "objName": "mustard_bottle", "camMat": K}
            if s == 1 and f == 2:
                meta.update(handPose=None, handJoints3D=(joints[0] @ flip))
            folder = root / "train" / seq
            (folder / "meta").mkdir(parents=True, exist_ok=True)
            (folder / "meta" / f"{f:04d}.pkl").write_bytes(pickle.dumps(meta, protocol=2))
            write_image(folder / "rgb" / f"{f:04d}.jpg", joints, seed)
            lines.append(f"{seq}/{f:04d}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return {"split": "train", "frames": 6, "unlabelled": 1}


def make_handoccnet(root: Path) -> dict:
    """Four annotations (one left hand) in HandOccNet's COCO-style JSON, mean-relative poses, no trans."""
    images, annotations = [], []
    for i in range(4):
        side = "left" if i == 3 else "right"
        pose, betas, trans, joints, model = random_hand(side, 2000 + i)
        name = f"20200709-subject-01/20200709_140000/836212060125/color_{i:06d}.jpg"
        write_image(root / name, joints, 2000 + i)
        images.append({"id": i, "file_name": name, "width": 640, "height": 480})
        relative = np.concatenate([pose[:3], pose[3:] - model.hands_mean])
        annotations.append({
            "id": i, "image_id": i, "hand_type": side,
            "joints_coord_cam": reorder_joints(joints, "canonical21", "mano21").tolist(),
            "joints_img": reorder_joints(project(joints), "canonical21", "mano21").tolist(),
            "cam_param": {"focal": [600.0, 600.0], "princpt": [320.0, 240.0]},
            "mano_param": {"pose": relative.tolist(), "shape": betas.tolist()}})
    path = root / "annotations" / "DEX_YCB_s0_train_data.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return {"split": "s0_train", "frames": 4, "unlabelled": 0, "left": 1}


def make_grasp_rows(object_id: str, n: int, seed: int = 0) -> list[dict]:
    """Grasp records (object frame) with anatomical hand poses around the origin; every third rejected."""
    model = load_hand_model("builtin", dtype=torch.float64)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        articulation = model.anatomy.sample(1, seed * 1000 + i)[0].double().numpy()
        rotation = Rotation.random(random_state=rng.integers(1 << 31)).as_rotvec()
        betas = rng.normal(0, 0.5, 10)
        wrist = rng.normal(size=3)
        wrist *= 0.08 / np.linalg.norm(wrist)
        trans = wrist - model.rest_wrist(torch.as_tensor(betas)[None])[0].numpy()
        rows.append({"grasp_id": f"{object_id}/{seed:03d}/{i:05d}", "object_id": object_id, "resting_pose_index": 0,
                     "resting_pose": np.r_[np.eye(3).ravel(), 0, 0, 0.05], "hand_pose": np.r_[rotation, articulation],
                     "hand_betas": betas, "hand_trans": trans, "seed": seed, "accepted": i % 3 != 2,
                     "reject_reasons": "" if i % 3 != 2 else "contact"})
    return rows


def make_map_rows(n: int, size: int = 32, seed: int = 0) -> list[dict]:
    """Canonical rows with every image column filled: a disc (hand) and a square (object) whose
    colours and normals the image repeats, so a model can learn image from maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        r = size * rng.uniform(0.15, 0.3)
        mask[(xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2] = 1
        ox, oy = rng.integers(0, size // 2, 2)
        mask[oy:oy + size // 3, ox:ox + size // 3] = np.where(mask[oy:oy + size // 3, ox:ox + size // 3] == 1, 1, 2)
        skin, paint = rng.uniform(120, 240, 3), rng.uniform(0, 255, 3)
        texture, normal = np.zeros((size, size, 3)), np.zeros((size, size, 3))
        texture[mask == 1], texture[mask == 2], normal[mask > 0] = skin, paint, (128, 128, 255)
        background = rng.uniform(0, 255, 3) * np.ones((size, size, 3))
        image = np.where(mask[..., None] > 0, texture * 0.9, background)
        quat = rng.normal(size=4)
        quat = quat / np.linalg.norm(quat) * np.sign(quat[0] or 1)
        rows.append({"sample_id": f"maps/{i:05d}", "source": "real", "dataset": "maps", "split": "train",
                     "image": png(image.astype(np.uint8)), "normal": png(normal.astype(np.uint8)),
                     "texture": png(texture.astype(np.uint8)), "mask": png(mask), "hand_quat": quat,
                     "origin": "real", "sampler": "none"})
    return rows
