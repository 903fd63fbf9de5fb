"""The edge-case filter: does a generated image show the hand its labels say?

A reconstructor trained on the real training split predicts each generated image's hand; its
errors against the labels the image was generated from (root-relative MPJPE and MPVPE,
PA-MPJPE and PA-MPVPE, in mm) decide. HandBooster's public code drops a DexYCB image when
MPJPE or MPVPE > 25 mm or PA-MPJPE or PA-MPVPE > 10 mm (HO3D: 50/50/20/20). Fixed millimetres
mean different things for different reconstructors and domains, so ``auto`` takes each
threshold from the same reconstructor's errors on real validation images: an image fails
when it is harder for the reconstructor than 95% of real images (``filter.auto_percentile``).
That keeps generated images that are as readable as real ones, whatever the reconstructor's
own accuracy, and rejects those whose hand does not match its labels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError
from pipeline.reconstruction.metrics import evaluate
from pipeline.reconstruction.predict import predict

CRITERIA = ("mpjpe", "mpvpe", "pa_mpjpe", "pa_mpvpe")
PER_SAMPLE = {"mpjpe": "joints_root_relative_mm", "mpvpe": "vertices_root_relative_mm",
              "pa_mpjpe": "joints_procrustes_mm", "pa_mpvpe": "vertices_procrustes_mm"}
FIXED = {"dexycb": {"mpjpe": 25.0, "mpvpe": 25.0, "pa_mpjpe": 10.0, "pa_mpvpe": 10.0},
         "ho3d": {"mpjpe": 50.0, "mpvpe": 50.0, "pa_mpjpe": 20.0, "pa_mpvpe": 20.0}}


def row_errors(model, dataset, rows=None, batch_size: int = 64, procrustes: str = "freihand",
               progress: bool = False) -> dict:
    """Per row: the four errors (mm) and the rows' metadata, in dataset order."""
    predictions = predict(model, dataset, rows, batch_size, progress=progress, desc="filter")
    per_sample = evaluate(predictions["gt_joints"], predictions["joints"], predictions["gt_vertices"],
                          predictions["vertices"], procrustes)["per_sample"]
    return {**{name: per_sample[column] for name, column in PER_SAMPLE.items()},
            **{key: predictions[key] for key in ("sample_id", "object_id", "origin", "sampler", "spread_mm")
               if key in predictions}}


def fixed_thresholds(spec: str, has_val: bool) -> dict[str, float] | None:
    """The thresholds ``spec`` names, checked before any model runs: ``dexycb``, ``ho3d`` or a
    JSON file of the four criteria (positive finite mm); None for ``auto``, which
    :func:`auto_thresholds` sets from real validation errors (so it needs the val input)."""
    expected = f"expected dexycb, ho3d, auto or a JSON file with {', '.join(CRITERIA)} in mm"
    if spec in FIXED:
        return dict(FIXED[spec])
    if spec == "auto":
        if not has_val:
            raise ConfigError("filter.thresholds auto needs real validation images (the val input)")
        return None
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"filter.thresholds: {expected}; no such word or file: {spec!r}")
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ConfigError(f"filter.thresholds: not valid JSON: {expected}", spec) from None
    if not isinstance(values, dict):
        raise ConfigError(f"filter.thresholds: {expected}", spec)
    thresholds = {}
    for name in CRITERIA:
        value = values.get(name)
        try:
            number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) or number <= 0:
            raise ConfigError(f"filter.thresholds: field '{name}': expected a positive finite number of mm, "
                              f"got {value!r}", spec)
        thresholds[name] = number
    return thresholds


def auto_thresholds(real_errors: dict, percentile: float) -> dict[str, float]:
    """The ``percentile`` of the reconstructor's errors on real validation images, per criterion."""
    return {name: round(float(np.percentile(real_errors[name], percentile)), 3) for name in CRITERIA}


def kept_mask(errors: dict, thresholds: dict[str, float], spread_mm: float | None = None) -> np.ndarray:
    """Every error within its threshold (and, given ``spread_mm``, the hypotheses' spread within it)."""
    tests = [np.asarray(errors[name]) <= thresholds[name] for name in CRITERIA]
    if spread_mm is not None:
        tests.append(np.asarray(errors["spread_mm"]) <= spread_mm)
    return np.all(tests, axis=0)


def pass_rates(kept: np.ndarray, groups: list) -> dict[str, dict]:
    """Rows, kept rows and pass rate per group (``None`` grouped as "null")."""
    keys = np.array(["null" if g is None else str(g) for g in groups])
    kept = np.asarray(kept, dtype=bool)
    return {key: {"count": int((keys == key).sum()), "kept": int(kept[keys == key].sum()),
                  "pass_rate": round(float(kept[keys == key].mean()), 4)} for key in sorted(set(keys.tolist()))}


def histograms_png(errors: dict, thresholds: dict, real_errors: dict | None) -> bytes:
    from pipeline.imaging import figure_png, pyplot

    fig, axes = pyplot().subplots(1, 4, figsize=(16, 3.4))
    for axis, name in zip(axes, CRITERIA):
        values = np.asarray(errors[name])
        top = max(values.max(), thresholds[name] * 1.5, 1.0)
        bins = np.linspace(0, top, 40)
        axis.hist(values, bins=bins, alpha=0.7, color="tab:orange", label="generated", density=True)
        if real_errors is not None:
            axis.hist(real_errors[name], bins=bins, alpha=0.5, color="tab:blue", label="real (validation)",
                      density=True)
        axis.axvline(thresholds[name], color="tab:red", linestyle="--", label="threshold")
        axis.set(title=f"{name} (mm)")
    axes[0].legend(fontsize=8)
    return figure_png(fig)
