"""Closing the fingers after optimisation, as GraspIt's auto-grasp and ObMan do.

The annealed optimiser leaves many hands a few millimetres short of the object with one or
two fingers: they pass contact but the object slips out in the stability test. Here every
finger flexes (``CLOSE_STEP_DEG`` at a time, within the anatomical limits) until its bones
reach the surface (``CONTACT_GAP_MM``, 0) or pass inside it by less than a step. As in
GraspIt's auto-grasp, links stop, not fingers (``grasp.close_wrap``): a joint stops once its
own bone or a bone beyond it touches, so a finger whose base meets a can first goes on
curling its middle and tip round it; a tip that touches first stops the whole finger.
Stopping at the surface, not short of it, lets the stability test's grip
(``grasp.grip_mm``) press the pads into the object: in a paired probe over the 20 objects
(16 attempts, 300 steps, the first seed, on which the levers were tuned) stopping at 0 mm
accepted 143 grasps where stopping 1 mm short accepted 137, and on the 8 hardest objects 41
against 36.
A finger whose next step would press it into another finger (capsule overlap beyond
``OVERLAP_MM`` and beyond what the optimised hand had) stops there. A finger that never
reaches the object keeps its optimised angles, and outer joints that curl on without
touching go back to where the finger first touched, so closing never curls a free finger
into a fist. Batched: each step is one forward pass of the hand model and one SDF query for
every hand.

A finger the optimiser left deep inside the object (over ``RETRACT_DEPTH_MM``) first extends,
a step at a time, until it is out, and then closes onto the surface like the others. Hands
that end with a finger or the thumb several millimetres inside fail the intersection test (on
the wood block and the mustard bottle at 300 steps, 30 and 20 of 64 hands were over 5 mm deep,
the thumb deepest in most, and none of them was accepted); backing such fingers out took the
8 hardest objects, 64 attempts each at 100 steps, from 211 to 258 accepted of 512 on seed 1
and from 227 to 273 on seed 0 (the wood block 14 -> 27 and 16 -> 37).
"""

from __future__ import annotations

import numpy as np
import torch

from grasp_sim.energy import split_params
from pipeline.hand.joints import JOINT_PART

CLOSE_STEP_DEG = 1.5
MAX_FLEXION_DEG = 90.0  # added flexion per joint, at most
CONTACT_GAP_MM = 0.0  # a finger stops this close to the surface (the validator counts 5 mm as contact)
OVERLAP_MM = 2.0  # a finger stops before overlapping another by more (the validator rejects 3 mm)
RETRACT_DEPTH_MM = 3.0  # a finger deeper than this inside the object first extends until it is out
RETRACT_DEG = 45.0  # ... by at most this much


def finger_overlap(geometry, joints: torch.Tensor) -> torch.Tensor:
    """The largest capsule overlap (metres) of each finger with any other, ``[B, 5]`` (thumb .. little)."""
    overlap = geometry.segment_overlap(joints)  # [B, P]; segments are finger-major, three per finger
    found = overlap.new_zeros(len(overlap), 5)
    for side in (0, 1):
        index = (geometry.pairs[:, side] // 3).expand_as(overlap)
        found = found.scatter_reduce(1, index, overlap, reduce="amax")
    return found


@torch.no_grad()
def close_fingers(params: torch.Tensor, hand_model, geometry, betas: torch.Tensor, sdf,
                  wrap: bool = True, step_deg: float = CLOSE_STEP_DEG) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed ``params [B, 51]`` and which fingers (``[B, 5]``: thumb .. little) reached the object.

    With ``wrap``, a joint stops only once its own bone or a bone beyond it touches, so a finger
    whose base meets a can first goes on curling its outer joints around it (GraspIt's
    auto-grasp stops links, not fingers); without, the whole finger stops at its first touch.
    A coarser ``step_deg`` is cheaper and stops up to a step inside the surface."""
    anatomy = hand_model.anatomy
    translation, rotation, angles = split_params(params)
    joint_finger = torch.as_tensor(np.asarray(JOINT_PART[1:]) - 1, device=params.device)  # [15] -> 0..4
    bones = torch.as_tensor(np.asarray(hand_model.vertex_joints), device=params.device)
    bone_vertices = [bones == joint for joint in range(1, 16)]  # each bone's vertices, MANO16 joints 1..15
    step = np.deg2rad(step_deg)
    angles = _retracted(angles, rotation, translation, hand_model, betas, sdf, bone_vertices, joint_finger, step)
    start = angles.clone()
    touched = torch.zeros(len(params), 15, dtype=torch.bool, device=params.device)  # per bone
    blocked = torch.zeros(len(params), 5, dtype=torch.bool, device=params.device)  # per finger
    at_touch = start.clone()  # each finger's angles when it first touched
    allowed = previous = None
    for _ in range(int(np.ceil(MAX_FLEXION_DEG / step_deg)) + 1):
        nearest, joints = _bone_distances(angles, rotation, translation, hand_model, betas, sdf, bone_vertices)
        overlap = finger_overlap(geometry, joints)
        reached = _fingers_of(touched, joint_finger)
        if allowed is None:
            allowed = overlap.clamp_min(OVERLAP_MM / 1000)
        else:  # a finger pressed into another: back one step, and stop it
            pressed = ~blocked & (overlap > allowed) & _fingers_of(~_stopped(touched, wrap), joint_finger)
            angles = torch.where(pressed[:, joint_finger][..., None], previous, angles)
            blocked |= pressed
        touched |= ~blocked[:, joint_finger] & (nearest <= CONTACT_GAP_MM / 1000)
        first = _fingers_of(touched, joint_finger) & ~reached
        at_touch = torch.where(first[:, joint_finger][..., None], angles, at_touch)
        closing = ~_stopped(touched, wrap) & ~blocked[:, joint_finger]
        if not closing.any():
            break
        previous = angles
        angles = _flexed(angles, anatomy, step * closing.to(angles.dtype))
    stopped = _stopped(touched, wrap)
    # joints that never stopped on the object go back: to the finger's angles at its first touch,
    # or, for a finger that never reached it, as optimised
    angles = torch.where(stopped[..., None], angles, at_touch)
    return torch.cat([translation, rotation, angles.reshape(len(params), 45)], dim=1), \
        _fingers_of(touched, joint_finger)


def _retracted(angles: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, hand_model,
               betas: torch.Tensor, sdf, bone_vertices: list, joint_finger: torch.Tensor, step: float) -> torch.Tensor:
    """``angles [B, 15, 3]`` with each finger that is deeper than :data:`RETRACT_DEPTH_MM` inside
    the object extended a step at a time until it is out (at most :data:`RETRACT_DEG`)."""
    moving = None
    for _ in range(int(np.ceil(np.deg2rad(RETRACT_DEG) / step)) + 1):
        nearest, _ = _bone_distances(angles, rotation, translation, hand_model, betas, sdf, bone_vertices)
        finger_nearest = torch.stack([nearest[:, joint_finger == finger].amin(dim=1) for finger in range(5)], dim=1)
        inside = finger_nearest < (-RETRACT_DEPTH_MM / 1000 if moving is None else 0.0)
        moving = inside if moving is None else moving & inside
        if not moving.any():
            break
        angles = _flexed(angles, hand_model.anatomy, -step * moving[:, joint_finger].to(angles.dtype))
    return angles


def _bone_distances(angles: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, hand_model,
                    betas: torch.Tensor, sdf, bone_vertices: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Each bone's nearest signed distance to the object ``[B, 15]`` (negative: inside) and the
    hand's joints, for finger ``angles [B, 15, 3]``."""
    pose = torch.cat([rotation, hand_model.anatomy.to_axis_angle(angles)], dim=1)
    vertices, joints = hand_model(pose, betas, translation)
    distance = sdf(vertices)
    return torch.stack([distance[:, on_bone].amin(dim=1) for on_bone in bone_vertices], dim=1), joints


def _flexed(angles: torch.Tensor, anatomy, change: torch.Tensor) -> torch.Tensor:
    """``angles [B, 15, 3]`` with ``change [B, 15]`` (radians) added to each joint's flexion,
    clamped to the anatomy's limits."""
    return anatomy.clamp(torch.stack([angles[..., 0] + change, angles[..., 1], angles[..., 2]], dim=-1))


def _stopped(touched: torch.Tensor, wrap: bool) -> torch.Tensor:
    """``[B, 15]``: joints that stop flexing, given which bones touch (MANO16 order: three per
    finger, base to tip)."""
    per_finger = touched.reshape(-1, 5, 3)
    if wrap:  # a joint stops when its bone or one beyond it touches
        stopped = per_finger.flip(-1).int().cummax(dim=-1).values.flip(-1).bool()
    else:
        stopped = per_finger.any(dim=-1, keepdim=True).expand_as(per_finger)
    return stopped.reshape(-1, 15)


def _fingers_of(joints: torch.Tensor, joint_finger: torch.Tensor) -> torch.Tensor:
    """``[B, 5]`` (thumb .. little): whether any of each finger's joints ``[B, 15]`` is set."""
    return torch.stack([joints[:, joint_finger == finger].any(dim=1) for finger in range(5)], dim=1)
