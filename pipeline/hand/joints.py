"""Joint orders, the MANO kinematic tree, parts and fingertip vertices.

Three orders meet in this project:

- ``MANO16``: the model's own joints (wrist; index, middle, little, ring, thumb, 3 each).
- ``MANO21``: MANO16 followed by the five tips (thumb, index, middle, ring, little); the
  order of HandOccNet's JSON annotations and of manopth.
- ``CANONICAL21`` (FreiHAND/DexYCB): wrist; thumb 1-4; index 1-4; middle 1-4; ring 1-4;
  little 1-4. Every file this project writes uses it.
"""

from __future__ import annotations

FINGERS = ("thumb", "index", "middle", "ring", "little")
PART_NAMES = ("palm",) + FINGERS

MANO16 = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "little1", "little2", "little3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
MANO21 = MANO16 + ("thumb4", "index4", "middle4", "ring4", "little4")
CANONICAL21 = ("wrist",) + tuple(f"{finger}{k}" for finger in FINGERS for k in range(1, 5))
# Each CANONICAL21 joint's parent in the skeleton (-1 for the wrist): what pictures draw.
CANONICAL_PARENTS = (-1,) + tuple(0 if k == 1 else CANONICAL21.index(f"{finger}{k - 1}")
                                  for finger in FINGERS for k in range(1, 5))

# MANO16 indices of each finger's three joints, proximal to distal.
FINGER_CHAINS = {
    finger: tuple(MANO16.index(f"{finger}{k}") for k in range(1, 4)) for finger in FINGERS
}
# Part of the body each MANO16 joint's bone belongs to (joint 0 drives the palm).
JOINT_PART = tuple(0 if name == "wrist" else PART_NAMES.index(name[:-1]) for name in MANO16)

# Fingertip vertices of the official MANO topology (thumb, index, middle, ring, little).
MANO_TIP_VERTEX_IDS = (744, 320, 443, 554, 671)

# CANONICAL21 indices of the wrist and the four finger bases: their mean is the palm's centre.
PALM_JOINTS = (0,) + tuple(CANONICAL21.index(f"{finger}1") for finger in FINGERS[1:])

ORDERS = {"mano16": MANO16, "mano21": MANO21, "canonical21": CANONICAL21}


def permutation(src: str, dst: str) -> list[int]:
    """Indices ``p`` such that ``joints_dst = joints_src[..., p, :]``."""
    try:
        src_names, dst_names = ORDERS[src], ORDERS[dst]
    except KeyError as exc:
        raise ValueError(f"unknown joint order {exc.args[0]!r}; known: {sorted(ORDERS)}") from None
    missing = [name for name in dst_names if name not in src_names]
    if missing:
        raise ValueError(f"order {src!r} lacks joints {missing} needed by {dst!r}")
    return [src_names.index(name) for name in dst_names]


def reorder_joints(joints, src: str, dst: str):
    """Reorder a ``[..., J, D]`` array or tensor of joints from order ``src`` to ``dst``."""
    return joints[..., permutation(src, dst), :]
