"""What the grasp energy and the validator need to know about a hand model's surface.

Derived once per model from its rest mesh and skinning weights, so the builtin hand and the
official MANO get the same treatment:

- contact candidates: vertices on the finger pads and the palm, where a grasp touches (the
  role of DexGraspNet's 84 hand-picked MANO vertices), grouped by part (thumb first);
- finger capsules: one per finger segment (joint to child joint in the canonical 21-joint
  order) with a radius fitted to the segment's own vertices; overlap between capsules of
  different fingers, beyond what the flat hand already has, is self-penetration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.geometry import farthest_points, vertex_normals
from pipeline.hand.anatomy import palm_side_normal
from pipeline.hand.joints import CANONICAL21, FINGER_CHAINS, FINGERS, PALM_JOINTS

PAD_FACING = 0.45  # cos of the largest angle between a pad's normal and the way to the grip centre
PALM_FACING = 0.75  # cos of the largest angle between a palm vertex's normal and the palm normal
PALM_RADIUS_M = 0.035  # palm candidates lie this close to the palm centre
CANDIDATES_PER_PART = 12
PENETRATION_VERTICES = 384  # hand vertices the penetration terms look at (the validator checks all)


def segment_distance(p0: torch.Tensor, p1: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor) -> torch.Tensor:
    """Distance between segments ``p0-p1`` and ``q0-q1`` (``[..., 3]`` each), differentiable.

    The clamped closest-point parameters of Ericson, Real-Time Collision Detection, 5.1.9.
    """
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a, e = (d1 * d1).sum(-1).clamp_min(1e-12), (d2 * d2).sum(-1).clamp_min(1e-12)
    b, c, f = (d1 * d2).sum(-1), (d1 * r).sum(-1), (d2 * r).sum(-1)
    denom = a * e - b * b
    s = torch.where(denom > 1e-12, ((b * f - c * e) / denom.clamp_min(1e-12)).clamp(0, 1), torch.zeros_like(a))
    t = (b * s + f) / e
    s = torch.where(t < 0, (-c / a).clamp(0, 1), torch.where(t > 1, ((b - c) / a).clamp(0, 1), s))
    t = t.clamp(0, 1)
    return (p0 + d1 * s[..., None] - q0 - d2 * t[..., None]).norm(dim=-1)


@dataclass(frozen=True)
class HandGeometry:
    """Contact candidates and finger capsules of one hand model (see the module docstring)."""

    candidate_ids: torch.Tensor  # [C] vertex ids
    candidate_part: np.ndarray  # [C] index into ("palm",) + FINGERS
    thumb_candidates: torch.Tensor  # [T] positions in candidate_ids that lie on the thumb
    segment_joints: torch.Tensor  # [S, 2] canonical joint indices (start, end)
    segment_radius: torch.Tensor  # [S]
    pairs: torch.Tensor  # [P, 2] segments on different fingers
    rest_overlap: torch.Tensor  # [P] overlap of each pair in the flat hand
    penetration_vertex_ids: torch.Tensor  # [K] vertices spread over the hand, for the penetration terms
    faces: torch.Tensor  # [F, 3] closed surface
    palm_centre: np.ndarray  # [3] rest-pose palm centre (wrist frame of the flat hand)
    palm_normal: np.ndarray  # [3] unit, out of the palm
    palm_width_direction: np.ndarray  # [3] unit, across the palm (perpendicular to its normal and the fingers)

    def to(self, device) -> HandGeometry:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return HandGeometry(**moved)

    def segment_overlap(self, joints: torch.Tensor) -> torch.Tensor:
        """Overlap beyond the flat hand's, metres, ``[B, P]``, of finger capsules (joints ``[B, 21, 3]``)."""
        ends = joints[:, self.segment_joints]  # [B, S, 2, 3]
        first, second = ends[:, self.pairs[:, 0]], ends[:, self.pairs[:, 1]]
        distance = segment_distance(first[..., 0, :], first[..., 1, :], second[..., 0, :], second[..., 1, :])
        radii = self.segment_radius[self.pairs].sum(-1)
        return torch.relu(radii - distance - self.rest_overlap)


def _segments() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical joint pairs of the 15 finger segments, their finger and their MANO16 joint."""
    joints, fingers, mano_joints = [], [], []
    for finger_index, finger in enumerate(FINGERS):
        names = [f"{finger}{k}" for k in range(1, 5)]
        for level in range(3):
            joints.append((CANONICAL21.index(names[level]), CANONICAL21.index(names[level + 1])))
            fingers.append(finger_index)
            mano_joints.append(FINGER_CHAINS[finger][level])
    return np.asarray(joints), np.asarray(fingers), np.asarray(mano_joints)


def _point_segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip((points - a) @ ab / max(ab @ ab, 1e-12), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def build_hand_geometry(hand_model) -> HandGeometry:
    """Derive the :class:`HandGeometry` of ``hand_model`` (a :class:`~pipeline.hand.HandModel`)."""
    skin_joint = np.asarray(hand_model.mano.lbs_weights.detach().cpu().argmax(dim=1).numpy())
    parts = np.asarray(hand_model.vertex_parts)
    with torch.no_grad():
        flat = torch.zeros(1, 48, dtype=hand_model.dtype, device=hand_model.device)
        rest_vertices, rest_joints = (t[0].double().cpu().numpy() for t in hand_model(flat))
        relaxed = hand_model.pose_from_name("relaxed").to(hand_model.device)
        grip_vertices, grip_joints = (t[0].double().cpu().numpy() for t in hand_model(relaxed))
        joints16 = (hand_model.mano.J_regressor.double().cpu().numpy() @ rest_vertices)
    if hand_model.side == "left":
        joints16 = joints16 * np.array([-1.0, 1.0, 1.0])
        palm_normal = palm_side_normal(joints16) * np.array([-1.0, 1.0, 1.0])
    else:
        palm_normal = palm_side_normal(joints16)
    segment_joints, segment_finger, segment_mano = _segments()

    radii = []
    for (start, end), mano_joint in zip(segment_joints, segment_mano):
        on_segment = rest_vertices[skin_joint == mano_joint]
        radii.append(np.median(_point_segment_distance(on_segment, rest_joints[start], rest_joints[end])))
    radii = np.asarray(radii)

    pairs = np.asarray([(i, j) for i in range(15) for j in range(i + 1, 15) if segment_finger[i] != segment_finger[j]])
    rest = torch.as_tensor(rest_joints)[None]
    rest_ends = rest[:, torch.as_tensor(segment_joints)]
    first, second = rest_ends[:, pairs[:, 0]], rest_ends[:, pairs[:, 1]]
    rest_distance = segment_distance(first[..., 0, :], first[..., 1, :], second[..., 0, :], second[..., 1, :])[0]
    rest_overlap = np.maximum(radii[pairs].sum(-1) - rest_distance.numpy(), 0.0)

    # Pads: in the relaxed pose, finger vertices whose normals face the grip's centre.
    normals = vertex_normals(grip_vertices, hand_model.closed_faces)
    # The relaxed pose keeps the flat hand's global orientation, so its palm normal holds.
    tips = grip_joints[[CANONICAL21.index(f"{f}4") for f in FINGERS]]
    grip_palm_centre = grip_joints[list(PALM_JOINTS)].mean(axis=0)
    grip_centre = 0.5 * (tips.mean(axis=0) + grip_palm_centre + 0.03 * palm_normal)
    toward = grip_centre - grip_vertices
    toward /= np.linalg.norm(toward, axis=1, keepdims=True)
    facing = (normals * toward).sum(axis=1)
    distal_levels = {FINGER_CHAINS[f][level] for f in FINGERS for level in (1, 2)}
    candidate_ids, candidate_part = [], []
    for part in range(len(FINGERS) + 1):
        if part == 0:
            near_centre = np.linalg.norm(grip_vertices - grip_palm_centre, axis=1) < PALM_RADIUS_M
            mask = (parts == 0) & near_centre & ((normals @ palm_normal) > PALM_FACING)
        else:
            mask = (parts == part) & np.isin(skin_joint, list(distal_levels)) & (facing > PAD_FACING)
        ids = np.flatnonzero(mask)
        if len(ids) == 0:
            raise ValueError(f"hand model {hand_model.name}: found no contact candidates on the "
                             f"{(('palm',) + FINGERS)[part]}")
        ids = ids[farthest_points(grip_vertices[ids], CANDIDATES_PER_PART)]
        candidate_ids.extend(ids.tolist())
        candidate_part.extend([part] * len(ids))
    candidate_part = np.asarray(candidate_part)
    forward = rest_joints[CANONICAL21.index("middle1")] - rest_joints[0]
    forward -= (forward @ palm_normal) * palm_normal
    return HandGeometry(
        candidate_ids=torch.as_tensor(candidate_ids, dtype=torch.long),
        candidate_part=candidate_part,
        thumb_candidates=torch.as_tensor(np.flatnonzero(candidate_part == 1), dtype=torch.long),
        segment_joints=torch.as_tensor(segment_joints, dtype=torch.long),
        segment_radius=torch.as_tensor(radii, dtype=hand_model.dtype),
        pairs=torch.as_tensor(pairs, dtype=torch.long),
        rest_overlap=torch.as_tensor(rest_overlap, dtype=hand_model.dtype),
        penetration_vertex_ids=torch.as_tensor(farthest_points(rest_vertices, PENETRATION_VERTICES), dtype=torch.long),
        faces=torch.as_tensor(hand_model.closed_faces, dtype=torch.long),
        palm_centre=rest_joints[list(PALM_JOINTS)].mean(axis=0),
        palm_normal=palm_normal,
        palm_width_direction=np.cross(palm_normal, forward / np.linalg.norm(forward)),
    )
