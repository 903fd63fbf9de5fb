"""Choosing among candidate starts by trying each one: approach, close, judge the thumb.

On the boxes and the wide can, grasps fail the stability test when the thumb ends on a face
square to the fingers' (``grasp report``'s thumb opposition: accepted grasps average -0.65 to
-0.85, rejected ones -0.02 to -0.35), and the annealed optimiser does not carry a thumb from
an adjacent face to the opposite one. So the start has to put it there. As GraspIt's
auto-grasp does for a pre-grasp, each of ``grasp.init_candidates`` starts per hand is slid
along its palm direction until the hand touches the object, its fingers are closed until
they touch (:func:`grasp_sim.closing.close_fingers`), and the start whose closed hand
opposes the thumb best (:func:`thumb_opposition`) is the one optimised. The open start is
kept, not the closed hand: the optimiser still has all its freedom.

The annealing then loses much of that opposition (on the foam brick 95% of the chosen starts
opposed the thumb at a cosine under -0.8, 16% of the optimised hands did, and those were
accepted 8 times in 10, the rest 2 in 54). So the optimiser's population moves judge hands the
same way (:func:`opposition_rank`, ``grasp.population_rank``): the hands whose trial-closed
thumb opposes least are replaced by copies of those that oppose best.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from grasp_sim.closing import close_fingers
from grasp_sim.energy import hand_pose, split_params, surface_normals

APPROACH_STEP_M = 0.003
APPROACH_REACH_M = 0.1  # starts are 2-5 cm off the hull; a hand that touches nothing in 10 cm stays put
TRIAL_CLOSE_STEP_DEG = 4.5  # a trial closing needs the faces the fingers reach, not the last degree
UNOPPOSED = 1.0  # the score of a closed hand whose thumb or every finger misses the object


def thumb_opposition(distance: np.ndarray, normals: np.ndarray, parts: np.ndarray, contact_m: float) -> float:
    """The smallest cosine between the mean unit surface normal under the thumb's touching vertices
    and under any other finger's (``distance [V]`` SDF, ``normals [V, 3]``, ``parts [V]``: 0 palm,
    1 thumb .. 5 little); NaN when the thumb or every other finger is out of contact."""
    touching = distance <= contact_m
    means = {}
    for part in range(1, 6):
        on_part = touching & (parts == part)
        if on_part.any():
            mean = normals[on_part].mean(axis=0)
            means[part] = mean / max(np.linalg.norm(mean), 1e-12)
    if 1 not in means or len(means) < 2:
        return float("nan")
    return float(min(means[1] @ means[part] for part in means if part != 1))


def hand_oppositions(vertices: torch.Tensor, sdf, parts: np.ndarray, contact_m: float) -> np.ndarray:
    """:func:`thumb_opposition` of each hand, ``vertices [N, V, 3]`` -> ``[N]``."""
    with torch.no_grad():
        distance, normals = sdf(vertices).cpu().numpy(), surface_normals(sdf, vertices).cpu().numpy()
    return np.asarray([thumb_opposition(distance[i], normals[i], parts, contact_m) for i in range(len(vertices))])


@torch.no_grad()
def approach(params: torch.Tensor, hand_model, geometry, betas: torch.Tensor, sdf) -> torch.Tensor:
    """``params [B, 51]`` with each hand slid along its palm direction up to the step before it
    touches the object (unmoved when it touches already or nothing within reach)."""
    translation, rotation, _ = split_params(params)
    vertices, _ = hand_model(hand_pose(params, hand_model.anatomy), betas, translation)
    facing = torch.as_tensor(Rotation.from_rotvec(rotation.double().cpu().numpy()).apply(geometry.palm_normal),
                             dtype=params.dtype, device=params.device)
    vertices = vertices[:, geometry.penetration_vertex_ids]
    shifts = torch.arange(0.0, APPROACH_REACH_M, APPROACH_STEP_M, dtype=params.dtype, device=params.device)
    clear = torch.stack([sdf(vertices + shift * facing[:, None]).amin(dim=1) > 0 for shift in shifts], dim=1)
    blocked = (~clear).int().argmax(dim=1)  # the first shift that touches; 0 when none does (or the first)
    touches = ~clear.all(dim=1)
    shift = torch.where(touches, shifts[(blocked - 1).clamp_min(0)], torch.zeros_like(shifts[0]))
    moved = params.clone()
    moved[:, :3] = translation + shift[:, None] * facing
    return moved


def choose_starts(params: torch.Tensor, hand_model, geometry, betas: torch.Tensor, sdf, candidates: int,
                  contact_m: float) -> tuple[torch.Tensor, np.ndarray]:
    """From ``params [B * candidates, 51]`` (each hand's candidates consecutive, with ``betas``
    likewise), the ``[B, 51]`` open starts whose approached and closed hands oppose the thumb
    best, and the chosen ones' opposition ``[B]`` (NaN: thumb or every finger off the object)."""
    opposition = trial_oppositions(approach(params, hand_model, geometry, betas, sdf), hand_model, geometry, betas,
                                   sdf, contact_m)
    score = _badness(opposition).reshape(-1, candidates)
    best = score.argmin(axis=1) + candidates * np.arange(len(score))
    return params[torch.as_tensor(best, device=params.device)], opposition[best]


def trial_oppositions(params: torch.Tensor, hand_model, geometry, betas: torch.Tensor, sdf,
                      contact_m: float) -> np.ndarray:
    """:func:`thumb_opposition` ``[B]`` of the hands ``params [B, 51]`` once their fingers are closed
    in a trial (:data:`TRIAL_CLOSE_STEP_DEG` steps); ``params`` are left as they are."""
    closed, _ = close_fingers(params, hand_model, geometry, betas, sdf, step_deg=TRIAL_CLOSE_STEP_DEG)
    translation, _, _ = split_params(closed)
    with torch.no_grad():
        vertices, _ = hand_model(hand_pose(closed, hand_model.anatomy), betas, translation)
    return hand_oppositions(vertices, sdf, np.asarray(hand_model.vertex_parts), contact_m)


def opposition_rank(params: torch.Tensor, hand_model, geometry, betas: torch.Tensor, sdf,
                    contact_m: float) -> torch.Tensor:
    """How badly each hand ``params [B, 51]`` opposes its thumb after a trial closing, ``[B]``
    (lower is better; :data:`UNOPPOSED` for a thumb or every finger off the object): the
    optimiser's population moves replace the worst hands by this (``grasp.population_rank``)."""
    return torch.as_tensor(_badness(trial_oppositions(params, hand_model, geometry, betas, sdf, contact_m)),
                           dtype=params.dtype)


def _badness(opposition: np.ndarray) -> np.ndarray:
    """Oppositions as a rank, lower better: a hand without one (NaN) counts as :data:`UNOPPOSED`."""
    return np.where(np.isnan(opposition), UNOPPOSED, opposition)
