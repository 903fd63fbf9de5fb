"""Anatomical pose space: flexion, abduction and twist per finger joint, with limits.

Each of the 15 finger joints gets a frame derived from the rest-pose joints of the model it
belongs to (so it works for the builtin hand and for real MANO alike):

- flexion axis ``d x n``: positive flexion curls the bone ``d`` toward the palm side ``n``;
- abduction axis ``d x (d x n)``: positive abduction moves the bone toward the thumb side;
- twist axis ``d``: rotation about the bone.

A joint's local rotation is ``F Rx(flex) Ry(abd) Rz(twist) F^T`` with ``F`` the frame, which
is exactly the rotation the flat-hand axis-angle pose holds for that joint. The inverse is the
intrinsic XYZ Euler decomposition in the frame, unique inside the limits. Left hands use the
mirror of the right-hand frames, so a mirrored pose has the same anatomical angles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.hand.joints import FINGER_CHAINS, FINGERS, MANO16
from pipeline.hand.rotations import axis_angle_to_matrix, matrix_to_axis_angle

# Limits in degrees: (flex, abduction, twist) x (low, high), per finger and level.
_FINGER_LIMITS = {
    1: ((-30, 90), None, (-12, 12)),
    2: ((-5, 110), (-6, 6), (-6, 6)),
    3: ((-15, 90), (-6, 6), (-6, 6)),
}
_MCP_ABDUCTION = {"index": (-15, 25), "middle": (-15, 15), "ring": (-20, 12), "little": (-35, 12)}
_THUMB_LIMITS = {
    1: ((-25, 60), (-40, 40), (-35, 45)),
    2: ((-15, 70), (-12, 12), (-12, 12)),
    3: ((-20, 90), (-6, 6), (-6, 6)),
}

# Named poses in degrees: finger level -> (flex, abd, twist); abduction per finger for MCP.
_NAMED = {
    "relaxed": {
        "fingers": {1: (22, 0, 0), 2: (28, 0, 0), 3: (16, 0, 0)},
        "spread": {"index": 4, "middle": 0, "ring": -4, "little": -9},
        "curl_extra": {"index": 0, "middle": 3, "ring": 6, "little": 10},
        "thumb": {1: (12, 8, 5), 2: (12, 0, 0), 3: (12, 0, 0)},
    },
    "fist": {
        "fingers": {1: (88, 0, 0), 2: (105, 0, 0), 3: (70, 0, 0)},
        "spread": {"index": 2, "middle": 0, "ring": -2, "little": -6},
        "curl_extra": {"index": 0, "middle": 0, "ring": 0, "little": 0},
        "thumb": {1: (50, -25, 40), 2: (45, 0, 0), 3: (40, 0, 0)},
    },
}
NAMED_POSES = ("flat", "relaxed", "fist")


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _perp(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return _normalize(v - np.dot(v, axis) * axis)


def palm_side_normal(joints16: np.ndarray) -> np.ndarray:
    """Unit normal of a right hand's palm plane, pointing out of the palm (not the back)."""
    wrist, index1, little1 = (joints16[MANO16.index(n)] for n in ("wrist", "index1", "little1"))
    return _normalize(np.cross(index1 - wrist, little1 - wrist))


def _right_hand_frames(joints16: np.ndarray, tips: np.ndarray) -> np.ndarray:
    """Frames (15, 3, 3), columns (flex, abduction, twist) axes, for a right hand."""
    middle1 = joints16[MANO16.index("middle1")]
    palm_side = palm_side_normal(joints16)
    frames = np.zeros((15, 3, 3))
    for finger_index, finger in enumerate(FINGERS):
        chain = FINGER_CHAINS[finger]
        points = [joints16[j] for j in chain] + [tips[finger_index]]
        for level, joint in enumerate(chain):
            bone = _normalize(points[level + 1] - points[level])
            if finger == "thumb":
                # The thumb curls toward the middle finger's base, across the palm.
                toward = _normalize(middle1 - points[level]) + palm_side
            else:
                toward = palm_side
            n = _perp(toward, bone)
            flex_axis = _normalize(np.cross(bone, n))
            abd_axis = np.cross(bone, flex_axis)
            frames[joint - 1] = np.stack([flex_axis, abd_axis, bone], axis=1)
    return frames


def _limits_degrees() -> np.ndarray:
    limits = np.zeros((15, 3, 2))
    for finger in FINGERS:
        for level, joint in enumerate(FINGER_CHAINS[finger], start=1):
            if finger == "thumb":
                rows = _THUMB_LIMITS[level]
            else:
                flex, abd, twist = _FINGER_LIMITS[level]
                rows = (flex, abd if abd is not None else _MCP_ABDUCTION[finger], twist)
            limits[joint - 1] = np.asarray(rows, dtype=float)
    return limits


@dataclass(frozen=True)
class AnatomicalSpace:
    """Anatomical angles <-> 45 flat-hand axis-angle values for one hand model."""

    frames: np.ndarray  # (15, 3, 3)
    lower: np.ndarray  # (15, 3) radians
    upper: np.ndarray  # (15, 3) radians

    @classmethod
    def from_rest_joints(cls, joints16: np.ndarray, tips: np.ndarray, side: str = "right") -> AnatomicalSpace:
        """Frames from rest-pose joints (16, 3) and fingertips (5, 3: thumb..little)."""
        joints16 = np.asarray(joints16, dtype=np.float64)
        tips = np.asarray(tips, dtype=np.float64)
        if side == "left":
            mirror = np.diag([-1.0, 1.0, 1.0])
            frames = -mirror @ _right_hand_frames(joints16 @ mirror, tips @ mirror)
        else:
            frames = _right_hand_frames(joints16, tips)
        limits = np.deg2rad(_limits_degrees())
        return cls(frames=frames, lower=limits[..., 0], upper=limits[..., 1])

    def _frames(self, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.frames, dtype=like.dtype, device=like.device)

    def to_axis_angle(self, angles: torch.Tensor) -> torch.Tensor:
        """Angles ``[..., 15, 3]`` (flex, abd, twist; radians) to hand pose ``[..., 45]``."""
        a, b, c = angles.unbind(-1)
        zeros, ones = torch.zeros_like(a), torch.ones_like(a)
        rx = torch.stack([ones, zeros, zeros, zeros, a.cos(), -a.sin(), zeros, a.sin(), a.cos()], -1)
        ry = torch.stack([b.cos(), zeros, b.sin(), zeros, ones, zeros, -b.sin(), zeros, b.cos()], -1)
        rz = torch.stack([c.cos(), -c.sin(), zeros, c.sin(), c.cos(), zeros, zeros, zeros, ones], -1)
        shape = angles.shape[:-1] + (3, 3)
        local = rx.reshape(shape) @ ry.reshape(shape) @ rz.reshape(shape)
        frames = self._frames(angles)
        rotation = frames @ local @ frames.transpose(-1, -2)
        return matrix_to_axis_angle(rotation).reshape(angles.shape[:-2] + (45,))

    def from_axis_angle(self, hand_pose: torch.Tensor) -> torch.Tensor:
        """Hand pose ``[..., 45]`` to angles ``[..., 15, 3]`` (flex, abd, twist; radians)."""
        rotation = axis_angle_to_matrix(hand_pose.reshape(hand_pose.shape[:-1] + (15, 3)))
        frames = self._frames(hand_pose)
        local = frames.transpose(-1, -2) @ rotation @ frames
        abd = torch.asin(local[..., 0, 2].clamp(-1 + 1e-7, 1 - 1e-7))
        flex = torch.atan2(-local[..., 1, 2], local[..., 2, 2])
        twist = torch.atan2(-local[..., 0, 1], local[..., 0, 0])
        return torch.stack([flex, abd, twist], dim=-1)

    def limit_penalty(self, hand_pose: torch.Tensor) -> torch.Tensor:
        """Differentiable sum of squared limit violations (radians²) per pose ``[...]``."""
        angles = self.from_axis_angle(hand_pose)
        lower = torch.as_tensor(self.lower, dtype=angles.dtype, device=angles.device)
        upper = torch.as_tensor(self.upper, dtype=angles.dtype, device=angles.device)
        excess = torch.relu(lower - angles) + torch.relu(angles - upper)
        return (excess**2).sum(dim=(-1, -2))

    def clamp(self, angles: torch.Tensor) -> torch.Tensor:
        lower = torch.as_tensor(self.lower, dtype=angles.dtype, device=angles.device)
        upper = torch.as_tensor(self.upper, dtype=angles.dtype, device=angles.device)
        return torch.maximum(torch.minimum(angles, upper), lower)

    def named_angles(self, name: str) -> torch.Tensor:
        """Angles (15, 3) of a named pose: 'flat', 'relaxed' or 'fist'."""
        if name not in NAMED_POSES:
            raise ValueError(f"unknown pose {name!r}; expected one of {', '.join(NAMED_POSES)}")
        angles = np.zeros((15, 3))
        if name != "flat":
            spec = _NAMED[name]
            for finger in FINGERS:
                for level, joint in enumerate(FINGER_CHAINS[finger], start=1):
                    if finger == "thumb":
                        angles[joint - 1] = spec["thumb"][level]
                        continue
                    flex, abd, twist = spec["fingers"][level]
                    angles[joint - 1] = (flex + spec["curl_extra"][finger], abd, twist)
                    if level == 1:
                        angles[joint - 1, 1] = spec["spread"][finger]
        return self.clamp(torch.as_tensor(np.deg2rad(angles), dtype=torch.float64))

    def named_pose(self, name: str) -> torch.Tensor:
        """Hand pose (45,) of a named pose."""
        return self.to_axis_angle(self.named_angles(name))

    def sample_angles(self, n: int, seed: int = 0) -> torch.Tensor:
        """Natural random poses as angles ``[n, 15, 3]``: fingers close together, not at random.

        A shared grip closure drives every finger's flexion, with per-finger deviations, the
        distal joints coupled to the middle ones, spread shrinking as the hand closes, and
        small twists; everything clamped to the limits. Deterministic per seed.
        """
        rng = np.random.default_rng(seed)
        grip = rng.beta(1.3, 1.3, size=(n, 1))
        angles = np.zeros((n, 15, 3))
        spread = rng.uniform(0, 1, size=(n, 1)) * (1 - 0.7 * grip)
        spread_gain = {"index": 16, "middle": 3, "ring": -8, "little": -20}
        for finger in FINGERS:
            chain = [j - 1 for j in FINGER_CHAINS[finger]]
            closure = np.clip(grip + 0.22 * rng.standard_normal((n, 1)), 0, 1)[:, 0]
            if finger == "thumb":
                angles[:, chain[0], 0] = -5 + 40 * closure + 8 * rng.standard_normal(n)
                angles[:, chain[0], 1] = 25 - 40 * closure + 10 * rng.standard_normal(n)
                angles[:, chain[0], 2] = 30 * closure + 8 * rng.standard_normal(n)
                angles[:, chain[1], 0] = 50 * closure + 8 * rng.standard_normal(n)
                angles[:, chain[2], 0] = 60 * closure + 10 * rng.standard_normal(n)
            else:
                angles[:, chain[0], 0] = -10 + 90 * closure + 8 * rng.standard_normal(n)
                angles[:, chain[0], 1] = spread_gain[finger] * spread[:, 0] + 3 * rng.standard_normal(n)
                angles[:, chain[1], 0] = 100 * closure + 10 * rng.standard_normal(n)
                angles[:, chain[2], 0] = 0.7 * angles[:, chain[1], 0] + 6 * rng.standard_normal(n)
            for joint in chain:
                angles[:, joint, 2] += 3 * rng.standard_normal(n)
                if joint != chain[0]:
                    angles[:, joint, 1] += 2 * rng.standard_normal(n)
        return self.clamp(torch.as_tensor(np.deg2rad(angles), dtype=torch.float64))

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Natural random hand poses ``[n, 45]`` (see :meth:`sample_angles`)."""
        return self.to_axis_angle(self.sample_angles(n, seed))
