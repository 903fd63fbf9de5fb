"""Reconstructor inputs and targets from canonical shards, and the originals' augmentation.

Rows give the crop, its K and the MANO labels; the truth's vertices and joints come from the
hand model, batched on the training device. Augmentation (HandOccNet's and MobRecon's:
scale ``clip(N, -1, 1) * 0.25 + 1``, rotation ``clip(N, -2, 2) * 30°`` with probability 0.6,
colour ``U(0.8, 1.2)`` per channel) is applied to the batch on the device, from the step's
generator. The image turns about the principal point, so turning the 3D labels about the
camera's optical axis by the same angle is exact: the turned joints project onto the turned
2D joints; the zoom scales the focal lengths. The root pose turns with them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.reader import ShardDataset
from pipeline.errors import BadData
from pipeline.hand.rotations import axis_angle_to_matrix

COLUMNS = ["sample_id", "image", "K", "hand_pose", "hand_betas", "hand_trans", "joints_3d", "object_id", "is_grasping",
           "source", "sequence_id", "origin", "sampler"]
LABELS = ("hand_pose", "hand_betas", "hand_trans", "K")


class ReconInputs:
    """DataLoader transform: a decoded row -> the model's image (in [-1, 1], ``size`` px) and labels."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample: dict) -> dict:
        missing = [c for c in ("image", "joints_3d", *LABELS) if sample.get(c) is None]
        if missing:
            raise BadData(f"sample {sample.get('sample_id')!r}: column(s) {', '.join(missing)} are null: a "
                          "reconstructor needs images with MANO labels and K")
        image = sample["image"].float().div(127.5).sub(1.0)
        side = image.shape[-1]
        if side != self.size:
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)[0]
        scale = self.size / side
        K = sample["K"].double().clone()
        K[:2] *= scale  # pixel centres at i: (u + 0.5) * s - 0.5
        K[0, 2] += 0.5 * scale - 0.5
        K[1, 2] += 0.5 * scale - 0.5
        return {"sample_id": sample["sample_id"], "image": image, "K": K.float(),
                "pose": sample["hand_pose"].float(), "betas": sample["hand_betas"].float(),
                "trans": sample["hand_trans"].float(), "joints_3d": sample["joints_3d"].float(),
                "object_id": sample.get("object_id"),
                "is_grasping": sample.get("is_grasping"), "source": sample.get("source"),
                "sequence_id": sample.get("sequence_id"), "origin": sample.get("origin"),
                "sampler": sample.get("sampler")}


def recon_dataset(where, size: int) -> ShardDataset:
    dataset = ShardDataset(where, columns=COLUMNS, transform=ReconInputs(size))
    if not len(dataset):
        raise BadData("has no rows", where)
    if dataset.manifest["kind"] != "sample":
        raise BadData(f"expected a dataset of samples, this one holds {dataset.manifest['kind']} records", where)
    from pipeline.data.manifest import column_nulls

    nulls, rows = column_nulls(where, ["image", "joints_3d", *LABELS])  # from the Parquet footers: no image is read
    for column, count in nulls.items():
        if count:
            raise BadData(f"'{column}' is null in {count} of {rows} rows: a reconstructor needs images with MANO "
                          "labels and K (condition specs get images from 'handbooster synth generate')", where)
    return dataset


def project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """``[B, N, 3]`` camera points through ``K [B, 3, 3]`` -> pixels ``[B, N, 2]``."""
    uvw = torch.einsum("bij,bnj->bni", K, points)
    return uvw[..., :2] / uvw[..., 2:3].clamp(min=1e-6)


def rotation_z(angles: torch.Tensor) -> torch.Tensor:
    """``[B]`` radians -> rotations about the camera's optical axis ``[B, 3, 3]``."""
    c, s = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).reshape(-1, 3, 3)


def draw_augmentation(batch_size: int, config, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The originals' random scale, rotation and colour for a batch, from the step's generator."""
    normal = torch.randn(batch_size, 2, generator=generator)
    turn = torch.rand(batch_size, generator=generator) < config.aug_rotation_prob
    return {"scale": normal[:, 0].clamp(-1, 1) * config.aug_scale + 1,
            "angle": torch.where(turn, normal[:, 1].clamp(-2, 2) * np.deg2rad(config.aug_rotation_deg), 0.0),
            "colour": 1 + (torch.rand(batch_size, 3, generator=generator) * 2 - 1) * config.aug_colour}


def warp_images(images: torch.Tensor, K: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Each image turned by ``angle`` and zoomed by ``scale`` about its principal point: the output
    pixel p shows the input at ``c + R(-angle) (p - c) / scale`` (black outside)."""
    batch, _, height, width = images.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=images.device, dtype=images.dtype),
                            torch.arange(width, device=images.device, dtype=images.dtype), indexing="ij")
    cx, cy = K[:, 0, 2, None, None].to(images.dtype), K[:, 1, 2, None, None].to(images.dtype)
    c, s = torch.cos(angle)[:, None, None].to(images.dtype), torch.sin(angle)[:, None, None].to(images.dtype)
    dx, dy = xs - cx, ys - cy
    k = scale[:, None, None].to(images.dtype)
    u = cx + (c * dx + s * dy) / k
    v = cy + (-s * dx + c * dy) / k
    grid = torch.stack([(2 * u + 1) / width - 1, (2 * v + 1) / height - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def make_targets(batch: dict, hand_model, device, augmentation: dict | None = None) -> dict:
    """Model inputs and root-relative targets of a collated batch, augmented if asked."""
    pose, betas, trans = (batch[k].to(device) for k in ("pose", "betas", "trans"))
    images, K = batch["image"].to(device), batch["K"].to(device)
    with torch.no_grad():
        vertices, joints = hand_model(pose.to(hand_model.dtype), betas.to(hand_model.dtype), trans.to(hand_model.dtype))
    vertices, joints = vertices.float(), joints.float()
    rotations = axis_angle_to_matrix(pose.reshape(-1, 16, 3))
    if augmentation is not None:
        angle, scale = augmentation["angle"].to(device), augmentation["scale"].to(device)
        turn = rotation_z(angle)
        images = warp_images(images, K, angle, scale) * augmentation["colour"].to(device)[:, :, None, None]
        images = images.clamp(-1, 1)
        vertices = torch.einsum("bij,bnj->bni", turn, vertices)
        joints = torch.einsum("bij,bnj->bni", turn, joints)
        rotations = torch.cat([(turn @ rotations[:, 0])[:, None], rotations[:, 1:]], dim=1)
        K = K.clone()
        K[:, 0, 0] *= scale
        K[:, 1, 1] *= scale
    size = images.shape[-1]
    root = joints[:, :1]
    return {"images": images, "K": K, "vertices_abs": vertices, "joints_abs": joints,
            "vertices": vertices - root, "joints": joints - root, "joints_2d": project(joints, K) / size,
            "rotations": rotations, "betas": betas}


def register_root(joints: torch.Tensor, joints_2d_px: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The translation ``[B, 3]`` that puts root-relative joints where their 2D joints say, by
    linear least squares on the projection equations (MobRecon's registration)."""
    joints, uv, K = joints.double(), joints_2d_px.double(), K.double()
    fx, fy, cx, cy = K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 2, None], K[:, 1, 2, None]
    du, dv = uv[..., 0] - cx, uv[..., 1] - cy
    zero = torch.zeros_like(du)
    rows_u = torch.stack([fx.expand_as(du), zero, -du], dim=-1)
    rows_v = torch.stack([zero, fy.expand_as(dv), -dv], dim=-1)
    A = torch.cat([rows_u, rows_v], dim=1)
    b = torch.cat([du * joints[..., 2] - fx * joints[..., 0], dv * joints[..., 2] - fy * joints[..., 1]], dim=1)
    normal = A.transpose(1, 2) @ A
    return torch.linalg.solve(normal, (A.transpose(1, 2) @ b[..., None]))[..., 0]
