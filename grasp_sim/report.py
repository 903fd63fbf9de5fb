"""``handbooster grasp report``: how trustworthy a set of grasp records is, in numbers and pictures.

Writes ``report.json`` (pass rate of each check per object and overall, value percentiles,
diversity), ``histograms.png`` (each check's value, all grasps vs accepted, with its
threshold) and ``contact_sheet.png`` (accepted grasps rendered with their objects).

Diversity is the mean pairwise distance between accepted grasps of one object: the mean
Euclidean distance of the 21 joints, in the object's frame, in millimetres (absent for an
object with fewer than two accepted grasps). It comes with its two parts: placement, the
mean pairwise distance of the hands' joint centroids (where on the object the hand sits), and
articulation, the same as diversity with the wrist at the origin and the global rotation
zeroed (how the fingers are posed).

Thumb opposition, per object, the mean over accepted and over rejected grasps: the cosine
between the object's surface normal under the thumb and under the finger that opposes it
most (-1: thumb and finger press against each other; 0: they touch faces at right angles).
It says why grasps fail the stability test: on the boxes and the can, accepted grasps average
-0.65 to -0.85, rejected ones -0.02 to -0.35, their thumb on a face square to the fingers'.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from grasp_sim.pregrasp import hand_oppositions
from grasp_sim.validation import CHECKS
from pipeline.config import GraspConfig
from pipeline.data.manifest import read_grasp_arrays
from pipeline.imaging import figure_png, pyplot
from pipeline.paths import atomic_write_bytes, atomic_write_png

VALUE_COLUMNS = ("contact_fingers", "penetration_depth_mm", "intersection_volume_cm3", "self_penetration_mm",
                 "sim_displacement_mm")
COLUMNS = ["grasp_id", "object_id", "resting_pose", "hand_pose", "hand_betas", "hand_trans", "accepted",
           "reject_reasons", *VALUE_COLUMNS]


def load_grasps(where) -> tuple[dict, dict[str, np.ndarray]]:
    """Manifest and report columns of a grasp dataset, plus which checks each grasp failed."""
    manifest, arrays = read_grasp_arrays(where, COLUMNS)
    arrays["accepted"] = arrays["accepted"].astype(bool)
    arrays["failed"] = {check: np.asarray([check in reasons.split(",") for reasons in arrays["reject_reasons"]])
                        for check in CHECKS}
    return manifest, arrays


def pairwise_joint_distances(joints: np.ndarray) -> torch.Tensor:
    """[N, N] mean per-joint distances (metres) between the hands ``joints [N, 21, 3]``."""
    flat = torch.as_tensor(joints)
    return (flat[:, None] - flat[None]).norm(dim=-1).mean(dim=-1)


def mean_pairwise_joint_distance(joints: np.ndarray) -> float | None:
    """Mean over pairs of the mean per-joint distance, ``joints [N, 21, 3]`` in metres -> mm."""
    if len(joints) < 2:
        return None
    distance = pairwise_joint_distances(joints)
    upper = torch.triu_indices(len(joints), len(joints), offset=1)
    return float(distance[upper[0], upper[1]].mean()) * 1000


def articulated_joints(hand_model, pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Joints ``[N, 21, 3]`` of hands ``pose [N, 48]`` with the global rotation zeroed and the
    wrist at the origin: the fingers' pose alone."""
    local_pose = pose.clone()
    local_pose[:, :3] = 0
    with torch.no_grad():
        _, joints = hand_model(local_pose, betas, torch.zeros((len(pose), 3), dtype=pose.dtype, device=pose.device))
    return joints - joints[:, :1]


def diversity_parts(joints: np.ndarray, articulated: np.ndarray) -> dict[str, float]:
    """Diversity, placement and articulation (mm, module docstring) of at least two hands, from
    their joints ``[N, 21, 3]`` in the object's frame and :func:`articulated_joints`."""
    return {"diversity_mm": round(mean_pairwise_joint_distance(joints), 2),
            "placement_mm": round(mean_pairwise_joint_distance(joints.mean(axis=1, keepdims=True)), 2),
            "articulation_mm": round(mean_pairwise_joint_distance(articulated), 2)}


def opposition_by_verdict(vertices: torch.Tensor, accepted: np.ndarray, asset, parts: np.ndarray,
                          contact_m: float) -> dict:
    """Mean thumb opposition (:func:`grasp_sim.pregrasp.thumb_opposition`) of the accepted and of the
    rejected hands (``vertices [N, V, 3]``, ``accepted [N]``; None where there are none, or none with
    thumb and finger contact)."""
    values = hand_oppositions(vertices, asset.sdf, parts, contact_m)
    return {verdict: round(float(np.nanmean(values[keep])), 3) if np.isfinite(values[keep]).any() else None
            for verdict, keep in (("accepted", accepted), ("rejected", ~accepted))}


def _summary(arrays: dict, rows: np.ndarray) -> dict:
    count = int(rows.sum())
    result = {"grasps": count, "accepted": int(arrays["accepted"][rows].sum())}
    result["pass_rate"] = {check: round(1 - float(arrays["failed"][check][rows].mean()), 4) if count else None
                           for check in CHECKS}
    result["pass_rate"]["all"] = round(result["accepted"] / count, 4) if count else None
    return result


def _percentiles(values: np.ndarray) -> dict:
    if not len(values):
        return {}
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (10, 50, 90)}


def _histograms(arrays: dict, config: GraspConfig) -> bytes:
    plt = pyplot()
    limits = {"intersection_volume_cm3": config.max_intersection_cm3, "self_penetration_mm": config.max_self_penetration_mm,
              "sim_displacement_mm": config.max_displacement_mm, "contact_fingers": None, "penetration_depth_mm": None}
    fig, axes = plt.subplots(1, len(VALUE_COLUMNS), figsize=(4 * len(VALUE_COLUMNS), 3.2))
    accepted = arrays["accepted"].astype(bool)
    for axis, column in zip(axes, VALUE_COLUMNS):
        values = arrays[column].astype(float)
        measured = np.isfinite(values)  # records made without a check carry no value for it
        if not measured.any():
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
            axis.set_title(column)
            continue
        bins = np.arange(-0.5, 6.5) if column == "contact_fingers" else np.histogram_bin_edges(values[measured], 30)
        axis.hist(values[measured], bins=bins, color="0.7", label="all")
        axis.hist(values[measured & accepted], bins=bins, color="tab:green", alpha=0.8, label="accepted")
        if limits[column] is not None:
            axis.axvline(limits[column], color="tab:red", linestyle="--", label="limit")
        axis.set_title(column)
        axis.set_yscale("log" if column != "contact_fingers" else "linear")
    axes[0].legend()
    return figure_png(fig)


def grasp_report(where, out, config: GraspConfig | None = None, hand: str | None = None,
                 sheet_per_object: int = 3, sheet=None) -> dict:
    """Write report.json, histograms.png and, given ``sheet(arrays, rows, hand_model, library) ->
    RGB array`` (the renderers' ``grasp_sheet``), contact_sheet.png for the grasp dataset ``where``."""
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library

    manifest, arrays = load_grasps(where)
    config = config or GraspConfig.model_validate(manifest["config"].get("grasp", {}))
    out = Path(out)
    objects = sorted(set(arrays["object_id"].tolist()))
    hand_model = load_hand_model(hand or manifest.get("hand_model") or "builtin", dtype=torch.float64)
    library_name = manifest["config"].get("library", "builtin")
    library = load_object_library(library_name)
    accepted = arrays["accepted"].astype(bool)
    report = {"dataset": str(where), "overall": _summary(arrays, np.ones(len(accepted), bool)), "objects": {}}
    report["overall"]["accepted_values"] = {c: _percentiles(arrays[c][accepted].astype(float)) for c in VALUE_COLUMNS}
    parts = np.asarray(hand_model.vertex_parts)
    for name in objects:
        rows = arrays["object_id"] == name
        entry = _summary(arrays, rows)
        pose, betas, trans = (torch.as_tensor(arrays[c][rows]) for c in ("hand_pose", "hand_betas", "hand_trans"))
        with torch.no_grad():  # every hand of the object, once: the diversity and the opposition read them
            vertices, joints = hand_model(pose, betas, trans)
        kept = accepted[rows]
        if kept.sum() >= 2:  # one grasp has no spread to measure: no figure rather than 0
            chosen = torch.as_tensor(kept)
            entry.update(diversity_parts(joints[chosen].numpy(),
                                         articulated_joints(hand_model, pose[chosen], betas[chosen]).numpy()))
        if name in library.names:
            entry["thumb_opposition"] = opposition_by_verdict(vertices.double(), kept, library[name], parts,
                                                              config.contact_mm / 1000)
        report["objects"][name] = entry
    atomic_write_bytes(out / "histograms.png", _histograms(arrays, config))
    chosen = [i for name in objects for i in np.flatnonzero((arrays["object_id"] == name) & accepted)[:sheet_per_object]]
    missing = sorted(set(objects) - set(library.names))
    if missing:
        report["contact_sheet_skipped"] = f"object(s) {', '.join(missing)} not in the library {library_name}"
    chosen = chosen if sheet is not None and not missing else []
    if chosen:
        atomic_write_png(out / "contact_sheet.png", sheet(arrays, chosen, hand_model, library_name))
    report["files"] = {"histograms": str(out / "histograms.png"),
                       "contact_sheet": str(out / "contact_sheet.png") if chosen else None}
    atomic_write_bytes(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    return report
