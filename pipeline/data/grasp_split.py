"""The grasping split: frames whose object has moved away from where it started.

HandBooster calls a real frame "grasping" when the object's pose differs from the first frame
of its sequence by a rotation error (RRE) above 5 degrees or a translation error (RTE) above
10 mm: the hand has picked the object up. Frames before that are approach frames.
"""

from __future__ import annotations

import numpy as np


def relative_pose_errors(rotations: np.ndarray, translations: np.ndarray, reference_rotation: np.ndarray,
                         reference_translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RRE in degrees and RTE in metres of poses ``[N, 3, 3]``, ``[N, 3]`` against one reference."""
    relative = np.einsum("ji,njk->nik", reference_rotation, rotations)
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos)), np.linalg.norm(translations - reference_translation, axis=-1)


def grasping_frames(rotations: np.ndarray, translations: np.ndarray, sequence_ids, frames,
                    rre_deg: float = 5.0, rte_mm: float = 10.0) -> np.ndarray:
    """Boolean ``[N]``: is each frame's object moved from the first frame of its sequence?

    ``rotations [N, 3, 3]`` and ``translations [N, 3]`` are object poses in one camera frame;
    rows with a NaN pose (no object label) are never grasping and never serve as reference.
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    translations = np.asarray(translations, dtype=np.float64)
    sequence_ids = np.asarray(sequence_ids)
    frames = np.asarray(frames)
    labelled = np.isfinite(rotations).all(axis=(1, 2)) & np.isfinite(translations).all(axis=1)
    result = np.zeros(len(frames), dtype=bool)
    for sequence in np.unique(sequence_ids):
        rows = np.flatnonzero((sequence_ids == sequence) & labelled)
        if rows.size == 0:
            continue
        first = rows[np.argmin(frames[rows])]
        rre, rte = relative_pose_errors(rotations[rows], translations[rows], rotations[first], translations[first])
        result[rows] = (rre > rre_deg) | (rte * 1000.0 > rte_mm)
    return result
