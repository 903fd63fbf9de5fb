"""Run a reconstructor over a dataset: camera-frame predictions next to the truth.

Models predict the hand relative to its wrist; the absolute position comes from registering
the predicted 3D joints to the predicted 2D joints through the crop's K (least squares on
the projection equations), as MobRecon does. The truth comes from the hand model and each
row's MANO labels.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from pipeline.data.reader import collate_samples
from pipeline.reconstruction.data import make_targets, register_root
from pipeline.training import data_loader

META = ("sample_id", "object_id", "is_grasping", "source", "origin", "sampler", "sequence_id")


@torch.no_grad()
def predict(model, dataset, indices=None, batch_size: int = 64, num_workers: int = 0, progress: bool = False,
            desc: str = "predict") -> dict:
    """Predictions and truth for the rows ``indices`` of ``dataset`` (a ``recon_dataset``), as
    numpy: ``joints``/``vertices`` (camera frame, metres), ``joints_2d`` (pixels of the input),
    ``gt_joints`` (the dataset's annotated joints, as the official evaluations use) and
    ``gt_vertices`` (from the hand model and the MANO labels), and the rows' metadata."""
    model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, list(indices))
    loader = data_loader(subset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples,
                         shuffle=False)
    hand_model = model.hand(torch.zeros((), device=device, dtype=torch.float32))
    out: dict[str, list] = {key: [] for key in ("joints", "vertices", "joints_2d", "gt_joints", "gt_vertices", *META)}
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        targets = make_targets(batch, hand_model, device)
        outputs = model(targets["images"].to(dtype))
        size = targets["images"].shape[-1]
        joints_2d = outputs["joints_2d"].float() * size
        root = register_root(outputs["joints"].float(), joints_2d, targets["K"]).float()[:, None]
        out["joints"].append((outputs["joints"].float() + root).cpu().numpy())
        out["vertices"].append((outputs["vertices"].float() + root).cpu().numpy())
        out["joints_2d"].append(joints_2d.cpu().numpy())
        if "spread_mm" in outputs:  # models that sample several hypotheses
            out.setdefault("spread_mm", []).append(outputs["spread_mm"].float().cpu().numpy())
        out["gt_joints"].append(batch["joints_3d"].numpy())
        out["gt_vertices"].append(targets["vertices_abs"].cpu().numpy())
        for key in META:
            values = batch.get(key, [None] * len(batch["sample_id"]))
            out[key].extend(values.tolist() if torch.is_tensor(values) else values)
    arrays = {key: np.concatenate(out[key]) if out[key] else np.zeros((0,))
              for key in ("joints", "vertices", "joints_2d", "gt_joints", "gt_vertices", "spread_mm") if key in out}
    return {**arrays, **{key: out[key] for key in META}}


def selection_score(summary: dict) -> float:
    """HandBooster's model selection: MPJPE + PA-MPJPE + MPVPE + PA-MPVPE, root-relative, mm."""
    return (summary["joints"]["root_relative"]["mean_mm"] + summary["joints"]["procrustes"]["mean_mm"]
            + summary["vertices"]["root_relative"]["mean_mm"] + summary["vertices"]["procrustes"]["mean_mm"])
