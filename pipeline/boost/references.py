"""Reference rows of the boost report, which involve no training and no image: what knowing
nothing about the image scores, and what knowing the nearest training pose scores.

- ``constant``: the training split's mean root-relative joints, predicted for every test row.
- ``nearest_pose``: for each test row, the training row whose root-relative joints lie
  nearest its true ones (an oracle retrieval: the floor a reconstructor that only memorises
  training poses could reach).

A learned reconstructor well below ``constant`` has learned something from the images.
"""

from __future__ import annotations

import numpy as np

from pipeline.reconstruction.metrics import evaluate


def root_relative_joints(where) -> np.ndarray:
    """``[N, 21, 3]`` joints of a labelled dataset, the wrist at the origin, in metres."""
    from pipeline.data.manifest import read_columns

    _, table = read_columns(where, ["joints_3d"])
    joints = np.asarray(table.column("joints_3d").to_pylist(), np.float64).reshape(-1, 21, 3)
    return joints - joints[:, :1]


def reference_predictions(train, test) -> dict[str, np.ndarray]:
    """Each reference's predicted joints for every row of ``test``."""
    import torch

    known, wanted = root_relative_joints(train), root_relative_joints(test)
    distances = torch.cdist(torch.as_tensor(wanted.reshape(len(wanted), -1)),
                            torch.as_tensor(known.reshape(len(known), -1)))
    nearest = distances.argmin(dim=1).numpy()
    return {"constant": np.broadcast_to(known.mean(axis=0), wanted.shape), "nearest_pose": known[nearest]}


def reference_errors(train, test, procrustes: str = "freihand") -> dict[str, dict]:
    """``reference -> {rr_mm, pa_mm, rr_per_sample, pa_per_sample}`` on ``test``."""
    truth = root_relative_joints(test)
    found = {}
    for name, predicted in reference_predictions(train, test).items():
        result = evaluate(truth, predicted, procrustes=procrustes)
        per_sample = result["per_sample"]
        found[name] = {"rr_mm": float(per_sample["joints_root_relative_mm"].mean()),
                       "pa_mm": float(per_sample["joints_procrustes_mm"].mean()),
                       "rr_per_sample": per_sample["joints_root_relative_mm"],
                       "pa_per_sample": per_sample["joints_procrustes_mm"]}
    return found
