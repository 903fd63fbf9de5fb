"""Rotation conversions in torch, batched over any leading dimensions.

Quaternions are (w, x, y, z) everywhere in this project; scipy uses (x, y, z, w), so
:func:`to_scipy` and :func:`from_scipy` are the only places that cross that boundary.
The conversions are smooth at the identity so gradients stay finite there.
"""

from __future__ import annotations

import numpy as np
import torch


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    angle = torch.linalg.norm(axis_angle, dim=-1, keepdim=True)
    half = 0.5 * angle
    small = angle < 1e-6
    safe = torch.where(small, torch.ones_like(angle), angle)
    # sin(a/2)/a with its Taylor series near zero.
    scale = torch.where(small, 0.5 - angle * angle / 48.0, torch.sin(half) / safe)
    return torch.cat([torch.cos(half), axis_angle * scale], dim=-1)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    q = canonicalize_quaternion(quaternion)
    w, xyz = q[..., :1], q[..., 1:]
    sin_half = torch.linalg.norm(xyz, dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, w)
    small = sin_half < 1e-6
    safe = torch.where(small, torch.ones_like(sin_half), sin_half)
    scale = torch.where(small, 2.0 / w.clamp_min(1e-12), angle / safe)
    return xyz * scale


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    q = quaternion / torch.linalg.norm(quaternion, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix to a unit quaternion with w >= 0 (numerically stable branch choice)."""
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidate solutions; the one with the largest denominator is the stable one.
    trace_terms = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    denom = 2.0 * torch.sqrt(trace_terms.clamp_min(1e-12))
    candidates = torch.stack(
        [
            torch.stack([denom[..., 0] ** 2 / 4, m[..., 2, 1] - m[..., 1, 2],
                         m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
            / denom[..., 0:1],
            torch.stack([m[..., 2, 1] - m[..., 1, 2], denom[..., 1] ** 2 / 4,
                         m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1)
            / denom[..., 1:2],
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                         denom[..., 2] ** 2 / 4, m[..., 1, 2] + m[..., 2, 1]], -1)
            / denom[..., 2:3],
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                         m[..., 1, 2] + m[..., 2, 1], denom[..., 3] ** 2 / 4], -1)
            / denom[..., 3:4],
        ],
        dim=-2,
    )
    best = trace_terms.argmax(dim=-1)
    index = best[..., None, None].expand(best.shape + (1, 4))
    q = torch.gather(candidates, -2, index).squeeze(-2)
    return canonicalize_quaternion(q / torch.linalg.norm(q, dim=-1, keepdim=True))


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    return quaternion_to_matrix(axis_angle_to_quaternion(axis_angle))


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def canonicalize_quaternion(quaternion: torch.Tensor) -> torch.Tensor:
    """Flip the sign so that w >= 0: q and -q are the same rotation."""
    sign = torch.where(quaternion[..., :1] < 0, -1.0, 1.0).to(quaternion.dtype)
    return quaternion * sign


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def wxyz_to_xyzw(quaternion):
    """Reorder (w, x, y, z) to scipy's (x, y, z, w); numpy arrays or tensors."""
    return quaternion[..., [1, 2, 3, 0]]


def xyzw_to_wxyz(quaternion):
    """Reorder scipy's (x, y, z, w) to (w, x, y, z); numpy arrays or tensors."""
    return quaternion[..., [3, 0, 1, 2]]


def to_scipy(quaternion_wxyz):
    """A scipy ``Rotation`` from (w, x, y, z) quaternions."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(wxyz_to_xyzw(np.asarray(quaternion_wxyz, dtype=np.float64)))


def from_scipy(rotation) -> np.ndarray:
    """(w, x, y, z) quaternions, w >= 0, from a scipy ``Rotation``."""
    q = xyzw_to_wxyz(np.atleast_2d(rotation.as_quat()))
    q = q * np.where(q[:, :1] < 0, -1.0, 1.0)
    return q if np.ndim(rotation.as_quat()) == 2 else q[0]
