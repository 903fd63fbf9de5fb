"""Score any model's predictions against a dataset with the official-parity metrics.

A predictions file is JSON (``{sample_id: {"joints": [21][3], "vertices": [V][3]}}``) or npz
(arrays ``sample_id [N]``, ``joints [N, 21, 3]``, optionally ``vertices [N, V, 3]``; read with
``allow_pickle=False``), camera frame, metres. Every row of the dataset needs exactly one
prediction; vertices, where given, for every row and in the hand model's topology. The truth:
the dataset's annotated joints, and vertices from its hand model and MANO labels.

Writes ``metrics.json`` (``{"count", "joints": {"absolute", "root_relative", "procrustes":
{"mean_mm", "auc"}}, "vertices": {... each also "f5", "f15"}}``), ``per_sample.csv``,
``pck.png`` and the curves' values in ``pck.json``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from pipeline.data.manifest import column_arrays, read_columns, require_labels
from pipeline.errors import BadData
from pipeline.imaging import figure_png, pyplot
from pipeline.reconstruction.metrics import evaluate
from pipeline.storage import Location

MAX_COORDINATE_M = 20.0  # camera-frame metres: anything farther is not a hand (millimetres, or garbage)


def load_predictions(path) -> dict[str, dict[str, np.ndarray]]:
    """``sample_id -> {"joints", "vertices"?}`` from a JSON or npz file; structure errors name the field."""
    path = Path(path)
    if not path.is_file():
        raise BadData("predictions file not found", path)
    if path.suffix.lower() == ".npz":
        return _npz_predictions(path)
    try:
        data = json.loads(path.read_text(), object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BadData(f"not valid JSON ({str(exc)[:120] or 'nested too deep'})", path) from None
    except ValueError as exc:  # _unique_keys
        raise BadData(str(exc), path) from None
    if not isinstance(data, dict):
        raise BadData("expected a JSON object mapping sample ids to {\"joints\": ..., \"vertices\": ...}", path)
    out = {}
    for sid, entry in data.items():
        if not isinstance(entry, dict) or "joints" not in entry:
            raise BadData(f"sample {sid!r}: expected an object with 'joints' (and optionally 'vertices')", path)
        out[sid] = {key: _coordinates(entry[key], f"sample {sid!r}: field '{key}'", path)
                    for key in ("joints", "vertices") if key in entry}
    return out


def _unique_keys(pairs: list) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"sample {duplicate!r}: given more than once")
    return dict(pairs)


def _coordinates(value, what: str, path) -> np.ndarray:
    """Real numbers in metres as float64; refuses booleans, complex numbers, strings, non-finite
    values and coordinates beyond ``MAX_COORDINATE_M`` (millimetres, most likely)."""
    if _holds_booleans(value):  # numpy would read true as 1.0
        raise BadData(f"{what}: expected real numbers (metres), got bool values", path)
    try:
        array = np.asarray(value)
        if array.dtype == object:  # ragged lists, or numbers too large for a float (10**400)
            array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise BadData(f"{what}: expected nested lists of real numbers (metres)", path) from None
    if array.dtype.kind not in "iuf":
        raise BadData(f"{what}: expected real numbers (metres), got {array.dtype.name} values", path)
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise BadData(f"{what}: expected finite values, got NaN or inf", path)
    if array.size and np.abs(array).max() > MAX_COORDINATE_M:
        raise BadData(f"{what}: values up to {np.abs(array).max():.3g}: expected metres in the camera frame "
                      f"(at most {MAX_COORDINATE_M:g} m; millimetres? divide by 1000)", path)
    return array


def _holds_booleans(value) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, list):
            pending.extend(item)
    return False


def _npz_predictions(path: Path) -> dict[str, dict[str, np.ndarray]]:
    import zipfile

    expected = "expected sample_id [N], joints [N, 21, 3], optional vertices [N, V, 3]"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise BadData(f"not a readable npz of arrays ({exc})", path) from None
    for key in ("sample_id", "joints"):
        if key not in arrays:
            raise BadData(f"missing array '{key}' ({expected})", path)
    ids_array = arrays["sample_id"]
    if ids_array.ndim != 1 or ids_array.dtype.kind not in "UiuS":
        raise BadData(f"array 'sample_id': expected a 1-D array of ids, got {ids_array.dtype.name} of shape "
                      f"{list(ids_array.shape)} ({expected})", path)
    ids = [s.decode() if isinstance(s, bytes) else str(s) for s in ids_array]
    if len(set(ids)) != len(ids):
        duplicate = next(sid for sid in ids if ids.count(sid) > 1)
        raise BadData(f"array 'sample_id': sample {duplicate!r} given more than once", path)
    for key in ("joints", "vertices"):
        if key in arrays:
            if arrays[key].ndim != 3 or len(arrays[key]) != len(ids):
                raise BadData(f"array '{key}': expected shape [{len(ids)}, ..., 3], got {list(arrays[key].shape)}",
                              path)
            arrays[key] = _coordinates(arrays[key], f"array '{key}'", path)
    return {sid: {key: arrays[key][i] for key in ("joints", "vertices") if key in arrays}
            for i, sid in enumerate(ids)}


def ground_truth(where, hand_spec: str) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """Sample ids, annotated joints ``[N, 21, 3]``, vertices ``[N, V, 3]`` and row metadata."""
    from pipeline.hand import load_hand_model

    columns = ["sample_id", "joints_3d", "hand_pose", "hand_betas", "hand_trans", "object_id", "is_grasping"]
    manifest, table = read_columns(where, columns)
    arrays = column_arrays(table, columns)
    require_labels(where, table)
    hand_model = load_hand_model(hand_spec, dtype=torch.float64)
    vertices = []
    with torch.no_grad():
        for start in range(0, len(arrays["sample_id"]), 1024):
            chunk = slice(start, start + 1024)
            v, _ = hand_model(*(torch.as_tensor(arrays[k][chunk]) for k in ("hand_pose", "hand_betas", "hand_trans")))
            vertices.append(v.numpy())
    ids = [str(s) for s in arrays["sample_id"]]
    meta = {"object_id": list(arrays["object_id"]), "is_grasping": list(arrays["is_grasping"])}
    return ids, arrays["joints_3d"].reshape(-1, 21, 3), np.concatenate(vertices) if vertices else np.zeros((0, 0, 3)), \
        meta


def match_predictions(predictions: dict, ids: list[str], num_vertices: int, path) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions in the dataset's row order, checked: every id once, shapes, finite values."""
    missing = [sid for sid in ids if sid not in predictions]
    if missing:
        raise BadData(f"sample {missing[0]!r}: no prediction (and {len(missing) - 1} more missing)", path)
    known = set(ids)
    extra = [sid for sid in predictions if sid not in known]
    if extra:
        raise BadData(f"sample {extra[0]!r}: not in the dataset ({len(extra)} unknown id(s))", path)
    with_vertices = {sid for sid, entry in predictions.items() if "vertices" in entry}
    if with_vertices and len(with_vertices) != len(ids):
        sid = next(s for s in ids if s not in with_vertices)
        raise BadData(f"sample {sid!r}: field 'vertices' missing while other samples have it", path)
    for sid in ids:
        for field, shape in (("joints", (21, 3)), ("vertices", (num_vertices, 3))):
            if field not in predictions[sid]:
                continue
            value = predictions[sid][field]
            if value.shape != shape:
                raise BadData(f"sample {sid!r}: field '{field}': expected shape {list(shape)}, got {list(value.shape)}",
                              path)
            if not np.isfinite(value).all():
                raise BadData(f"sample {sid!r}: field '{field}': expected finite values, got NaN or inf", path)
    joints = np.stack([predictions[sid]["joints"] for sid in ids]).astype(np.float64)
    vertices = np.stack([predictions[sid]["vertices"] for sid in ids]).astype(np.float64) if with_vertices else None
    return joints, vertices


def pck_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, labels: dict[str, str] | None = None) -> bytes:
    fig, axis = pyplot().subplots(figsize=(6, 4))
    for name, (thresholds, curve) in curves.items():
        axis.plot(thresholds, curve, label=(labels or {}).get(name, name))
    axis.set(xlabel="threshold (mm)", ylabel="PCK", ylim=(0, 1.02), xlim=(0, thresholds[-1]), title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure_png(fig)


def write_scores(out: Location, result: dict, ids: list[str], extra: dict[str, list] | None = None) -> None:
    """``metrics.json``, ``per_sample.csv`` (one row per sample) and ``pck.png`` into ``out``."""
    out.write_json("metrics.json", result["summary"])
    buffer = io.StringIO()
    columns = list(result["per_sample"])
    writer = csv.writer(buffer)
    writer.writerow(["sample_id", *(extra or {}), *columns])
    for i, sid in enumerate(ids):
        writer.writerow([sid, *(values[i] for values in (extra or {}).values()),
                         *(f"{result['per_sample'][c][i]:.4f}" for c in columns)])
    out.write_atomic("per_sample.csv", buffer.getvalue().encode())
    out.write_atomic("pck.png", pck_figure(result["curves"], f"PCK, {result['summary']['count']} samples"))
    out.write_json("pck.json", {name: {"thresholds_mm": thresholds.tolist(), "pck": curve.tolist()}
                                for name, (thresholds, curve) in result["curves"].items()})


def score_predictions(predictions: dict, where, out: Location, hand_spec: str, procrustes: str = "freihand",
                      source="predictions") -> dict:
    """Score ``sample_id -> {"joints", "vertices"?}`` against the dataset ``where``, write the
    reports into ``out``; returns the full result (summary, per-sample values, curves)."""
    ids, gt_joints, gt_vertices, meta = ground_truth(where, hand_spec)
    joints, vertices = match_predictions(predictions, ids, gt_vertices.shape[1], source)
    result = evaluate(gt_joints, joints, gt_vertices if vertices is not None else None, vertices, procrustes)
    write_scores(out, result, ids, meta)
    return {**result, "ids": ids, "meta": meta}


def score_file(pred_path, where, out: Location, hand_spec: str, procrustes: str = "freihand") -> dict:
    """Score a predictions file against the dataset ``where``; returns the metrics summary."""
    return score_predictions(load_predictions(pred_path), where, out, hand_spec, procrustes, pred_path)["summary"]
