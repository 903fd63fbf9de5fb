"""Hand-mesh metrics with the official evaluation code's definitions, batched.

Everything the FreiHAND / HO3D / DexYCB-toolkit evaluation reports, per sample and in
aggregate, in millimetres:

- Procrustes: :func:`align_w_scale` is FreiHAND's (``eval_util.py``; byte-identical in HO3D
  and the DexYCB toolkit): centre both sets, divide each by its Frobenius norm (+1e-8),
  ``R, s = scipy.linalg.orthogonal_procrustes(gt, pred)``, ``aligned = pred_n R^T s |gt_c| +
  mean(gt)``; reflections are allowed. :func:`rigid_align` is HandOccNet's (SVD with the
  reflection fixed, scale ``sum(s) / var``), used in most DexYCB tables; the two agree on
  ordinary predictions and differ on mirrored ones.
- Vertices are aligned on their own when prediction and truth share a topology; otherwise
  with the joints' similarity transform. (FreiHAND's ``align_by_trafo`` omits the
  prediction's 1/|pred_c| scale and re-centres on the mesh's own mean; applying the joints'
  transform exactly is what it describes. Every MANO or builtin-hand prediction shares its
  truth's topology, so this path only serves other meshes.)
- AUC: ``EvalUtil.get_measures(0, 50 mm, 100)``: per keypoint, PCK with ``d <= t``, the
  trapezoid integral divided by the range, then the mean over keypoints.
- F@5 mm, F@15 mm: nearest neighbours both ways, strict ``d < t``, ``F = 2PR / (P + R)`` per
  sample (0 when both are 0), then the mean.
- Root-relative: joint 0 subtracted from prediction and truth (from their vertices too).
"""

from __future__ import annotations

import numpy as np

AUC_RANGE_MM = (0.0, 50.0)
AUC_STEPS = 100
F_THRESHOLDS_MM = (5.0, 15.0)
PROCRUSTES = ("freihand", "handoccnet")


def align_w_scale(gt: np.ndarray, pred: np.ndarray, return_trafo: bool = False):
    """FreiHAND's alignment of ``pred [N, K, 3]`` onto ``gt`` (batched; see the module docstring)."""
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    t1, t2 = gt.mean(axis=1, keepdims=True), pred.mean(axis=1, keepdims=True)
    gt_c, pred_c = gt - t1, pred - t2
    s1 = np.linalg.norm(gt_c, axis=(1, 2), keepdims=True) + 1e-8
    s2 = np.linalg.norm(pred_c, axis=(1, 2), keepdims=True) + 1e-8
    gt_n, pred_n = gt_c / s1, pred_c / s2
    u, w, vt = np.linalg.svd(np.einsum("nki,nkj->nij", gt_n, pred_n))  # orthogonal_procrustes(gt_n, pred_n)
    rotation = u @ vt
    scale = w.sum(axis=1)[:, None, None]
    aligned = np.einsum("nkj,nij->nki", pred_n, rotation) * scale * s1 + t1
    if return_trafo:
        return aligned, (rotation, scale, s1, t1, t2, s2)
    return aligned


def apply_trafo(points: np.ndarray, trafo) -> np.ndarray:
    """The similarity transform :func:`align_w_scale` found for the joints, applied to other points."""
    rotation, scale, s1, t1, t2, s2 = trafo
    return np.einsum("nkj,nij->nki", (np.asarray(points, np.float64) - t2) / s2, rotation) * scale * s1 + t1


def rigid_align(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """HandOccNet's ``rigid_align(pred, gt)`` (batched): reflection-free similarity transform."""
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    centroid_pred, centroid_gt = pred.mean(axis=1, keepdims=True), gt.mean(axis=1, keepdims=True)
    h = np.einsum("nki,nkj->nij", pred - centroid_pred, gt - centroid_gt) / pred.shape[1]
    u, s, vt = np.linalg.svd(h)
    rotation = np.einsum("nji,nkj->nik", vt, u)  # V^T U^T with numpy's vt = V^T... as HandOccNet writes it
    flip = np.linalg.det(rotation) < 0
    s = s.copy()
    s[flip, -1] *= -1
    vt = vt.copy()
    vt[flip, 2] *= -1
    rotation = np.einsum("nji,nkj->nik", vt, u)
    scale = s.sum(axis=1) / pred.var(axis=1).sum(axis=1)
    translation = centroid_gt[:, 0] - scale[:, None] * np.einsum("nij,nj->ni", rotation, centroid_pred[:, 0])
    return scale[:, None, None] * np.einsum("nij,nkj->nki", rotation, pred) + translation[:, None]


def procrustes_align(gt: np.ndarray, pred: np.ndarray, variant: str = "freihand") -> np.ndarray:
    if variant == "freihand":
        return align_w_scale(gt, pred)
    if variant == "handoccnet":
        return rigid_align(gt, pred)
    raise ValueError(f"unknown Procrustes variant {variant!r}; expected one of {', '.join(PROCRUSTES)}")


def point_errors_mm(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Euclidean distances ``[N, K]`` in millimetres (inputs in metres)."""
    return np.linalg.norm(np.asarray(gt, np.float64) - np.asarray(pred, np.float64), axis=-1) * 1000.0


def pck_curve(errors_mm: np.ndarray, low: float = AUC_RANGE_MM[0], high: float = AUC_RANGE_MM[1],
              steps: int = AUC_STEPS) -> tuple[np.ndarray, np.ndarray, float]:
    """EvalUtil's PCK: thresholds, the curve averaged over keypoints, and the AUC (mean over
    keypoints of each keypoint's normalised trapezoid integral)."""
    thresholds = np.linspace(low, high, steps)
    per_keypoint = (errors_mm[:, :, None] <= thresholds[None, None, :]).mean(axis=0)  # [K, T]
    norm = np.trapezoid(np.ones_like(thresholds), thresholds)
    auc = float(np.mean(np.trapezoid(per_keypoint, thresholds, axis=1) / norm))
    return thresholds, per_keypoint.mean(axis=0), auc


def f_scores(gt: np.ndarray, pred: np.ndarray, thresholds_mm=F_THRESHOLDS_MM) -> np.ndarray:
    """``[N, len(thresholds)]`` F-scores of predicted against true vertices (module docstring)."""
    from scipy.spatial import cKDTree

    out = np.zeros((len(gt), len(thresholds_mm)))
    for i, (g, p) in enumerate(zip(np.asarray(gt, np.float64), np.asarray(pred, np.float64))):
        to_pred, _ = cKDTree(p).query(g)  # each true point's nearest prediction
        to_gt, _ = cKDTree(g).query(p)
        for j, threshold in enumerate(thresholds_mm):
            recall = float(np.mean(to_gt < threshold / 1000.0))
            precision = float(np.mean(to_pred < threshold / 1000.0))
            out[i, j] = 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0
    return out


def _summary(errors_mm: np.ndarray) -> dict:
    _, _, auc = pck_curve(errors_mm)
    return {"mean_mm": float(errors_mm.mean()), "auc": auc}


def evaluate(gt_joints, pred_joints, gt_vertices=None, pred_vertices=None, procrustes: str = "freihand") -> dict:
    """Every metric, in aggregate (``summary``: the shape ``recon score`` writes) and per sample
    (``per_sample``: mean errors in mm and F-scores), plus the PCK curves (``curves``)."""
    gt_joints, pred_joints = np.asarray(gt_joints, np.float64), np.asarray(pred_joints, np.float64)
    views = {"absolute": (gt_joints, pred_joints),
             "root_relative": (gt_joints - gt_joints[:, :1], pred_joints - pred_joints[:, :1])}
    aligned_joints, trafo = align_w_scale(gt_joints, pred_joints, return_trafo=True)
    views["procrustes"] = (gt_joints, aligned_joints if procrustes == "freihand" else
                           procrustes_align(gt_joints, pred_joints, procrustes))
    summary: dict = {"count": int(len(gt_joints)), "joints": {}}
    per_sample: dict[str, np.ndarray] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (gt, pred) in views.items():
        errors = point_errors_mm(gt, pred)
        summary["joints"][name] = _summary(errors)
        per_sample[f"joints_{name}_mm"] = errors.mean(axis=1)
        thresholds, curve, _ = pck_curve(errors)
        curves[f"joints_{name}"] = (thresholds, curve)
    if pred_vertices is None:
        return {"summary": summary, "per_sample": per_sample, "curves": curves}
    gt_vertices, pred_vertices = np.asarray(gt_vertices, np.float64), np.asarray(pred_vertices, np.float64)
    if pred_vertices.shape[1] == gt_vertices.shape[1]:
        aligned_vertices = procrustes_align(gt_vertices, pred_vertices, procrustes)
    else:
        aligned_vertices = apply_trafo(pred_vertices, trafo)
    vertex_views = {"absolute": (gt_vertices, pred_vertices),
                    "root_relative": (gt_vertices - gt_joints[:, :1], pred_vertices - pred_joints[:, :1]),
                    "procrustes": (gt_vertices, aligned_vertices)}
    summary["vertices"] = {}
    same_topology = pred_vertices.shape[1] == gt_vertices.shape[1]
    for name, (gt, pred) in vertex_views.items():
        fs = f_scores(gt, pred)
        entry = {"f5": float(fs[:, 0].mean()), "f15": float(fs[:, 1].mean())}
        if same_topology:
            errors = point_errors_mm(gt, pred)
            entry = {**_summary(errors), **entry}
            per_sample[f"vertices_{name}_mm"] = errors.mean(axis=1)
            thresholds, curve, _ = pck_curve(errors)
            curves[f"vertices_{name}"] = (thresholds, curve)
        per_sample[f"vertices_{name}_f5"], per_sample[f"vertices_{name}_f15"] = fs[:, 0], fs[:, 1]
        summary["vertices"][name] = entry
    return {"summary": summary, "per_sample": per_sample, "curves": curves}
