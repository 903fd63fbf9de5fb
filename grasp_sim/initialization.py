"""Starting hands for the optimiser: open, natural hands facing the object from outside.

As in DexGraspNet, each hand starts off a point of the object's convex hull, palm towards
it: the palm centre sits ``init_distance_m`` out along the hull normal, the palm direction
is that normal jittered by up to ``init_tilt_deg``, the roll about it uniform unless the
start is object-aware (below). Points whose normal faces the supporting plane, or that lie
too close to it, are not used: a hand cannot come from under the table. The fingers start at
``init_opening`` of a natural random pose: open hands (0.1) are accepted more often than
half-closed ones (0.5), whose fingertips start inside large objects.

Object-aware starts (``grasp.init_object_aware``): the roll about the palm normal decides
where the thumb goes. It should oppose the fingers across a side of the object the hand can
span, as a person takes a bottle or a cereal box. Each candidate approach gets the width the
hand would span at each roll: the extent, along the palm's width (thumb side to little
finger), of the object's surface in the hand's reach (a slab ``SLAB_M`` either side of the
plane the thumb and fingers close in, ``DEPTH_M`` deep), so a hammer's thin handle counts as
thin although its head is wide. The approach is drawn among the candidates whose narrowest
roll spans at most ``WRAP_M`` (all of them when none does), and the roll among that
approach's rolls that span at most ``WRAP_M``, or within ``ROLL_SLACK_M`` of its narrowest: a ball keeps a uniform roll, a bottle is taken with the fingers along it
and the thumb around its girth. (Aiming the fingers across the narrow side instead, the
first idea, lost acceptance: on the water bottle 31% fell to 6%, the thumb lying along it.)
An object no approach spans (the 10.2 cm coffee can) is taken the other way: the roll within
``ROLL_SLACK_M`` of the widest, the palm's width along the can and the fingers curling round
its girth; fingers laid along it ended on the can with their tips only and let it slip (3 of
64 accepted at 100 steps, 11 of 64 this way, the same starts otherwise).

The same spans judge the resting poses (:func:`spannable_rests`): a pose counts when some
approach from above the table has a roll within 45 degrees of level that spans at most
``WRAP_M``; a steeper roll would put the fingers under the object. A cereal box lying flat has
none, so object-aware hands find it standing (the grasp stage draws resting poses among the
spannable ones).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from pipeline.config import GraspConfig
from pipeline.geometry import sample_surface

MIN_HEIGHT_M = 0.01  # hull points this close to the plane are not approached
MAX_DOWNWARD = 0.2  # hull normals pointing further down than this (cos to -up) are not approached
WRAP_M = 0.09  # the widest side the thumb is set to oppose the fingers across (a hand spans about 9 cm)
ROLL_SLACK_M = 0.01  # rolls this close to an approach's narrowest count as narrow too
ROLLS = 24  # rolls tried per approach, over half a turn (the fingers then point either way)
SLAB_M = 0.04  # the hand closes on the object within this of the plane its thumb and fingers move in...
DEPTH_M = 0.08  # ...and this deep behind the approach point
SURFACE_SAMPLES = 1024  # object surface points the local widths are measured on
CANDIDATES_PER_HAND = 8  # approach points an object-aware start is drawn from, per hand
REST_CANDIDATES = 256  # approach points a resting pose is judged on
LEVEL = 0.7  # a grip across a direction steeper than 45 degrees from the table puts fingers under the object


def _rotation_taking(source: np.ndarray, targets: np.ndarray) -> Rotation:
    """Rotations taking unit vector ``source`` onto each of ``targets [n, 3]`` (shortest arc)."""
    axes = np.cross(source, targets)
    sin = np.linalg.norm(axes, axis=1)
    cos = targets @ source
    angles = np.arctan2(sin, cos)
    fallback = np.cross(source, [1.0, 0.0, 0.0] if abs(source[0]) < 0.9 else [0.0, 1.0, 0.0])
    axes = np.where(sin[:, None] > 1e-9, axes / np.maximum(sin[:, None], 1e-12), fallback / np.linalg.norm(fallback))
    return Rotation.from_rotvec(axes * angles[:, None])


def _jitter(directions: np.ndarray, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Each unit direction turned by a uniform angle up to ``max_deg`` about a random perpendicular."""
    random = rng.normal(size=directions.shape)
    perpendicular = np.cross(directions, random)
    perpendicular /= np.linalg.norm(perpendicular, axis=1, keepdims=True)
    angles = np.deg2rad(max_deg) * rng.random(len(directions))
    return Rotation.from_rotvec(perpendicular * angles[:, None]).apply(directions)


def tangent_directions(normals: np.ndarray, rolls: int) -> np.ndarray:
    """``[N, rolls, 3]`` unit directions perpendicular to each normal, over half a turn."""
    helper = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    first = np.cross(normals, helper)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = np.cross(normals, first)
    angles = np.pi * np.arange(rolls) / rolls
    return np.cos(angles)[None, :, None] * first[:, None] + np.sin(angles)[None, :, None] * second[:, None]


def local_spans(points: np.ndarray, normals: np.ndarray, directions: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """``[N, R]``: for a palm at each of ``points [N, 3]`` facing its ``-normals``, the extent along
    each of ``directions [N, R, 3]`` (tangent) of the ``surface [M, 3]`` points in the hand's reach:
    within :data:`SLAB_M` of the plane of the normal and that direction, and at most
    :data:`DEPTH_M` deep."""
    offsets = surface[None] - points[:, None]  # [N, M, 3]
    shallow = -np.einsum("nmi,ni->nm", offsets, normals) < DEPTH_M
    widths = np.empty(directions.shape[:2])
    for roll in range(directions.shape[1]):
        across = directions[:, roll]
        in_slab = shallow & (np.abs(np.einsum("nmi,ni->nm", offsets, np.cross(normals, across))) < SLAB_M)
        along = np.where(in_slab, np.einsum("nmi,ni->nm", offsets, across), 0.0)  # 0: the approach point
        widths[:, roll] = along.max(1).clip(min=0.0) - along.min(1).clip(max=0.0)
    return widths


def narrow_rolls(widths: np.ndarray) -> np.ndarray:
    """Boolean ``[N, R]``: the rolls of each approach that the hand can close around. Where no
    roll spans at most :data:`WRAP_M` (a can wider than the hand), the widest rolls: the
    palm's width along the object's longest extent, the fingers curling round its girth."""
    narrow = (widths <= WRAP_M) | (widths <= widths.min(axis=1, keepdims=True) + ROLL_SLACK_M)
    wide = widths >= widths.max(axis=1, keepdims=True) - ROLL_SLACK_M
    return np.where(widths.min(axis=1, keepdims=True) <= WRAP_M, narrow, wide)


def roll_onto(facing: np.ndarray, current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Signed angles ``[B]`` about each unit ``facing`` taking ``current [B, 3]`` onto ``target [B, 3]``
    (both first projected onto the plane perpendicular to ``facing``)."""
    current = current - (current * facing).sum(1, keepdims=True) * facing
    target = target - (target * facing).sum(1, keepdims=True) * facing
    return np.arctan2((np.cross(current, target) * facing).sum(1), (current * target).sum(1))


def spannable_rests(asset, rests: np.ndarray, seed: int) -> np.ndarray:
    """Boolean ``[P]``: whether the object lying in each resting pose ``[P, 4, 4]`` leaves the hand
    a side it can span, an approach from above the table with a roll within 45 degrees of
    level that spans at most :data:`WRAP_M`. A cereal box lying flat has none: across its
    thickness the fingers would go under the table, and its other sides are too wide."""
    hull = asset.trimesh.convex_hull
    points, normals = sample_surface(hull.vertices, hull.faces, hull.vertex_normals, REST_CANDIDATES, seed)
    mesh = asset.trimesh
    surface, _ = sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.faces), np.asarray(mesh.vertex_normals),
                                SURFACE_SAMPLES, seed + 1)
    directions = tangent_directions(normals, ROLLS)
    narrow = local_spans(points, normals, directions, surface) <= WRAP_M
    spannable = []
    for rest in rests:
        up, offset = rest[2, :3], rest[2, 3]
        usable = (points @ up + offset > MIN_HEIGHT_M) & (normals @ up > -MAX_DOWNWARD)
        level = np.abs(directions @ up) < LEVEL
        spannable.append(bool((narrow & level & usable[:, None]).any()))
    return np.asarray(spannable)


def initial_params(asset, geometry, hand_model, betas: torch.Tensor, resting_poses: np.ndarray,
                   config: GraspConfig, rng: np.random.Generator, pool_for: int | None = None) -> torch.Tensor:
    """Optimiser parameters ``[B, 51]`` (see :mod:`grasp_sim.energy`) for ``B = len(betas)`` hands,
    their approach points drawn from a pool sized for ``pool_for`` hands (default ``B``)."""
    batch = len(betas)
    hull = asset.trimesh.convex_hull  # trimesh caches it on the mesh
    candidates = (CANDIDATES_PER_HAND if config.init_object_aware else 64) * (pool_for or batch)
    points, normals = sample_surface(hull.vertices, hull.faces, hull.vertex_normals, candidates,
                                     int(rng.integers(1 << 31)))
    up = resting_poses[:, 2, :3]
    offset = resting_poses[:, 2, 3]
    if config.init_object_aware:
        mesh = asset.trimesh
        surface, _ = sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.faces), np.asarray(mesh.vertex_normals),
                                    SURFACE_SAMPLES, int(rng.integers(1 << 31)))
        directions = tangent_directions(normals, ROLLS)
        widths = local_spans(points, normals, directions, surface)
        narrow, wrappable = narrow_rolls(widths), widths.min(axis=1) <= WRAP_M
    chosen = np.empty(batch, dtype=np.int64)
    for b in range(batch):
        heights = points @ up[b] + offset[b]
        usable = (heights > MIN_HEIGHT_M) & (normals @ up[b] > -MAX_DOWNWARD)
        pool = np.flatnonzero(usable)
        if config.init_object_aware and (usable & wrappable).any():
            pool = np.flatnonzero(usable & wrappable)
        pool = pool if len(pool) else np.arange(len(points))
        chosen[b] = pool[rng.integers(len(pool))]
    surface, outward = points[chosen], normals[chosen]
    distance = rng.uniform(*config.init_distance_m, size=batch)
    palm_target = surface + outward * distance[:, None]
    facing = _jitter(-outward, config.init_tilt_deg, rng)
    aligned = _rotation_taking(geometry.palm_normal, facing)
    if config.init_object_aware:
        picks = [rng.choice(np.flatnonzero(narrow[c])) for c in chosen]
        target = directions[chosen, picks] * rng.choice([-1.0, 1.0], size=(batch, 1))
        angle = roll_onto(facing, aligned.apply(geometry.palm_width_direction), target)
    else:
        angle = rng.uniform(0, 2 * np.pi, size=batch)
    rotation = Rotation.from_rotvec(facing * angle[:, None]) * aligned

    with torch.no_grad():
        wrist = hand_model.rest_wrist(betas).double().cpu().numpy()
    # MANO turns the hand about its rest wrist, then translates: palm = R (c - w) + w + t.
    translation = palm_target - wrist - rotation.apply(geometry.palm_centre - wrist)
    angles = hand_model.anatomy.sample_angles(batch, int(rng.integers(1 << 31))) * config.init_opening
    params = np.concatenate([translation, rotation.as_rotvec(), angles.reshape(batch, 45).numpy()], axis=1)
    return torch.as_tensor(params, dtype=betas.dtype, device=betas.device)
