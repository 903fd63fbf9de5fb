"""The sampling stage: real grasps + simulated grasps -> condition specs, with a report.

Per object present in both inputs, with ``sampling.sampler = cross`` (the full method):
farthest pose sampling keeps ``M`` real grasping poses and ``N`` accepted simulated grasps;
every kept real pose gets ``views_per_pose`` novel views; cross-distribution sampling draws
that object's share of ``total`` novel grasps from the kept simulated ones, each placed with
the orientation and wrist position of a random real grasping sample and turned a little
about the wrist. ``fps`` draws the novel grasps uniformly from the FPS-kept ones; ``random``
keeps real and simulated poses at random and draws uniformly (the ablation's baselines). The
report (``__report__/``) counts specs per object and origin and plots the paper's Fig. 4:
how similar the kept real poses are to each other (FPS vs random), and how similar synthetic
poses are to the real ones before and after cross sampling.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import PipelineConfig, config_record
from pipeline.data.manifest import column_arrays, read_columns, read_grasp_arrays
from pipeline.data.schema import pose12_matrix
from pipeline.data.shards import ShardWriter
from pipeline.errors import BadData
from pipeline.imaging import figure_png, pyplot
from pipeline.sampling.fps import cross_distribution_probabilities, draw_without_replacement, farthest_pose_sampling
from pipeline.sampling.pose_vectors import pose_vectors, unit_rows
from pipeline.sampling.prepare import finish_specs, place_grasps, random_rotations, rotate_about_wrist
from pipeline.stage import StageInputs, StageSummary, input_path, stage
from pipeline.storage import REPORT_DIR, Location

SECTIONS = ("sampling", "data.crop_scale", "hand.model")


class SampleInputs(StageInputs):
    real: str = input_path("a real dataset (imported or demo) with the grasping split")
    grasps: str = input_path("grasp records from the grasps stage")


class SampleSummary(StageSummary):
    specs: int
    objects: dict[str, dict[str, int]]
    specs_by_object_and_origin: dict[str, dict[str, int]]
    dropped_behind_camera: int
    objects_without_grasps: list[str]
    objects_without_real_frames: list[str]
    cross_distribution: str | None = None
    report: str
    figure: str

REAL_COLUMNS = ["sample_id", "sequence_id", "dataset", "object_id", "is_grasping", "hand_pose", "hand_betas", "hand_trans",
                "joints_3d", "object_pose", "K", "crop_box", "mirrored"]
GRASP_COLUMNS = ["grasp_id", "object_id", "hand_pose", "hand_betas", "hand_trans", "accepted"]


def load_real_grasps(where) -> tuple[dict, dict[str, np.ndarray]]:
    manifest, table = read_columns(where, REAL_COLUMNS)
    if manifest["kind"] != "sample":
        raise BadData(f"expected a dataset of samples, this one holds {manifest['kind']} records", where)
    keep = np.asarray([bool(g) and p is not None for g, p in zip(table.column("is_grasping").to_pylist(),
                                                                   table.column("object_pose").to_pylist())])
    real = column_arrays(table.filter(keep), REAL_COLUMNS)
    real["mirrored"] = np.asarray([bool(m) for m in real["mirrored"]])
    return manifest, real


def load_accepted_grasps(where) -> dict[str, np.ndarray]:
    _, grasps = read_grasp_arrays(where, GRASP_COLUMNS)
    keep = grasps["accepted"].astype(bool)
    return {name: values[keep] for name, values in grasps.items()}


def _pairwise_similarity(vectors: np.ndarray) -> np.ndarray:
    unit = unit_rows(vectors)
    similarity = unit @ unit.T
    return similarity[np.triu_indices(len(unit), k=1)]


def hand_model_spec(config: PipelineConfig, manifest: dict) -> str:
    """The hand model a dataset's labels were made with: ``hand.model`` when the config (or a
    flag) sets it, else the one the manifest names, else the default."""
    if "model" in config.hand.model_fields_set:
        return config.hand.model
    return manifest.get("hand_model") or config.hand.model


def _kept(vectors: np.ndarray, rows: np.ndarray, count: int, sampler: str, seed: int) -> np.ndarray:
    """``count`` of ``rows``: farthest pose sampling, or (sampler ``random``) a random subset."""
    count = min(count, len(rows))
    if sampler == "random":
        return np.sort(np.random.default_rng(seed).choice(rows, count, replace=False))
    return rows[farthest_pose_sampling(vectors[rows], count, seed=seed)]


@stage("sample", SampleInputs, SampleSummary, SECTIONS, uri_out=True)
def sample(config: PipelineConfig, inputs: SampleInputs, out: Location) -> SampleSummary:
    """Pick diverse, novel poses: FPS on real and simulated grasps, cross-distribution sampling, novel views;
    writes the condition specs, with their report in the output's __report__/ folder.

    The hand model is the one the real dataset's labels were made with (:func:`hand_model_spec`):
    wrists and joints must come from the model the labels were made with.
    """
    from pipeline.hand import load_hand_model

    sampling, data, seed = config.sampling, config.data, config.seed
    manifest, real = load_real_grasps(inputs.real)
    hand_model = load_hand_model(hand_model_spec(config, manifest), dtype=torch.float64)
    grasps = load_accepted_grasps(inputs.grasps)
    size = manifest.get("image_size") or data.image_size
    real_objects, grasp_objects = set(real["object_id"]), set(grasps["object_id"])
    objects = sorted(real_objects & grasp_objects)
    if not objects:
        raise BadData(f"no object has both real grasping frames ({', '.join(sorted(real_objects)) or 'none'}) "
                      f"and accepted grasps ({', '.join(sorted(grasp_objects)) or 'none'})", inputs.grasps)
    with torch.no_grad():
        grasp_rest_wrist = hand_model.rest_wrist(torch.as_tensor(grasps["hand_betas"])).double().numpy()
    grasp_wrist = grasp_rest_wrist + grasps["hand_trans"]
    object_poses = pose12_matrix(real["object_pose"])
    real_vectors = pose_vectors(real["hand_pose"], real["joints_3d"][:, :3], object_poses[:, :3, :3],
                                object_poses[:, :3, 3])
    identity = np.broadcast_to(np.eye(3), (len(grasp_wrist), 3, 3))
    grasp_vectors = pose_vectors(grasps["hand_pose"], grasp_wrist, identity, np.zeros_like(grasp_wrist))
    shares = np.full(len(objects), sampling.total // len(objects))
    shares[:sampling.total % len(objects)] += 1

    specs: list[dict] = []
    figures = {"fps": [], "random": [], "before": [], "after": []}
    per_object = {}
    for index, name in enumerate(tqdm(objects, desc="sample poses", unit="object", disable=not config.run.progress)):
        rng = np.random.default_rng([seed, index])
        real_rows = np.flatnonzero(real["object_id"] == name)
        grasp_rows = np.flatnonzero(grasps["object_id"] == name)
        kept_real = _kept(real_vectors, real_rows, sampling.real_per_object, sampling.sampler, seed + index)
        kept_grasps = _kept(grasp_vectors, grasp_rows, sampling.synthetic_per_object, sampling.sampler, seed + index)
        probabilities = cross_distribution_probabilities(grasp_vectors[kept_grasps], real_vectors[kept_real]) \
            if sampling.sampler == "cross" else np.full(len(kept_grasps), 1.0 / len(kept_grasps))
        drawn = kept_grasps[draw_without_replacement(probabilities, min(int(shares[index]), len(kept_grasps)),
                                                     seed=seed + index)]
        view_sampler = "random" if sampling.sampler == "random" else "fps"
        specs.append(_novel_views(real, kept_real, sampling, view_sampler, rng))
        specs.append(_novel_grasps(real, grasps, grasp_rest_wrist, drawn, name, sampling, rng))
        mean_similarity = (unit_rows(grasp_vectors[kept_grasps]) @ unit_rows(real_vectors[kept_real]).T).mean(axis=1)
        figures["before"].append(mean_similarity)
        figures["after"].append(mean_similarity[np.isin(kept_grasps, drawn)])
        if len(kept_real) > 1:
            figures["fps"].append(_pairwise_similarity(real_vectors[kept_real]))
            figures["random"].append(_pairwise_similarity(real_vectors[rng.choice(real_rows, len(kept_real),
                                                                                   replace=False)]))
        per_object[name] = {"real_grasping": int(len(real_rows)), "real_kept": int(len(kept_real)),
                            "grasps_accepted": int(len(grasp_rows)), "grasps_kept": int(len(kept_grasps)),
                            "grasps_drawn": int(len(drawn))}

    merged = {key: np.concatenate([s[key] for s in specs]) for key in specs[0]}
    rows, dropped = finish_specs(hand_model, merged, size, data.crop_scale)
    origins: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = origins.setdefault(row["object_id"], {})
        counts[row["origin"]] = counts.get(row["origin"], 0) + 1
    report = {"objects": per_object, "specs_by_object_and_origin": origins, "specs": len(rows),
              "dropped_behind_camera": dropped,
              "objects_without_grasps": sorted(real_objects - grasp_objects),
              "objects_without_real_frames": sorted(grasp_objects - real_objects),
              "cross_distribution": _cross_choice(per_object, shares) if sampling.sampler == "cross" else None}
    record = {**config_record(config, SECTIONS), "hand_model": hand_model.name}
    with ShardWriter(out, name=f"{manifest['name']}_specs", rows_per_shard=data.rows_per_shard, image_size=size,
                     config=record, overwrite=config.run.overwrite,
                     info={"hand_model": hand_model.name, "sampling": report,
                           "sources": {"real": inputs.real, "grasps": inputs.grasps}}) as writer:
        writer.write_rows(rows[writer.resume_rows:])
    out.write_json(f"{REPORT_DIR}/sampling_report.json", report)
    out.write_atomic(f"{REPORT_DIR}/similarity.png", similarity_figure(figures))
    return SampleSummary(**report, report=out.address(f"{REPORT_DIR}/sampling_report.json"),
                         figure=out.address(f"{REPORT_DIR}/similarity.png"))


def _cross_choice(per_object: dict, shares: np.ndarray) -> str:
    """Whether cross-distribution sampling chose among the grasps FPS kept: where an object's
    share of ``sampling.total`` is at least what FPS kept, it draws them all, whatever its weights."""
    drawn = sum(entry["grasps_drawn"] for entry in per_object.values())
    kept = sum(entry["grasps_kept"] for entry in per_object.values())
    if any(entry["grasps_drawn"] < entry["grasps_kept"] for entry in per_object.values()):
        return f"drew {drawn} of the {kept} grasps farthest pose sampling kept"
    share = f"{shares.min()}" if shares.min() == shares.max() else f"{shares.min()}-{shares.max()}"
    return (f"drew all {kept} grasps farthest pose sampling kept, so it chose nothing: to give it a choice, keep "
            f"more per object (sampling.synthetic_per_object) than each object's share of sampling.total ({share})")


def _novel_views(real, kept, sampling, sampler: str, rng) -> dict:
    rows = np.repeat(kept, sampling.views_per_pose)
    delta = random_rotations(len(rows), sampling.perturbation_deg, rng)
    wrist = real["joints_3d"][rows, :3]
    object_poses = pose12_matrix(real["object_pose"][rows])
    pose, trans, rotation, translation = rotate_about_wrist(real["hand_pose"][rows], real["hand_trans"][rows], wrist,
                                                            object_poses[:, :3, :3], object_poses[:, :3, 3], delta)
    view = np.tile(np.arange(sampling.views_per_pose), len(kept))
    return {"sample_id": np.asarray([f"{real['sample_id'][r]}/view{v}" for r, v in zip(rows, view)], dtype=object),
            "dataset": real["dataset"][rows], "sequence_id": real["sequence_id"][rows], "hand_pose": pose,
            "hand_betas": real["hand_betas"][rows], "hand_trans": trans, "K": real["K"][rows],
            "crop_box": real["crop_box"][rows], "mirrored": real["mirrored"][rows], "object_id": real["object_id"][rows],
            "object_rotation": rotation, "object_translation": translation,
            "origin": np.full(len(rows), "real_novel_view", dtype=object),
            "sampler": np.full(len(rows), sampler, dtype=object)}


def _novel_grasps(real, grasps, grasp_rest_wrist, drawn, name, sampling, rng) -> dict:
    targets = rng.integers(len(real["sample_id"]), size=len(drawn))
    wrist = real["joints_3d"][targets, :3]
    pose, trans, rotation, translation = place_grasps(grasps["hand_pose"][drawn], grasps["hand_trans"][drawn],
                                                      grasp_rest_wrist[drawn], real["hand_pose"][targets], wrist)
    delta = random_rotations(len(drawn), sampling.perturbation_deg, rng)
    pose, trans, rotation, translation = rotate_about_wrist(pose, trans, wrist, rotation, translation, delta)
    betas = grasps["hand_betas"][drawn]
    return {"sample_id": np.asarray([f"sim/{name}/{grasps['grasp_id'][g]}" for g in drawn], dtype=object),
            "dataset": real["dataset"][targets], "sequence_id": grasps["grasp_id"][drawn], "hand_pose": pose,
            "hand_betas": betas, "hand_trans": trans, "K": real["K"][targets], "crop_box": real["crop_box"][targets],
            "mirrored": np.zeros(len(drawn), dtype=bool), "object_id": np.full(len(drawn), name, dtype=object),
            "object_rotation": rotation, "object_translation": translation,
            "origin": np.full(len(drawn), "sim_grasp", dtype=object),
            "sampler": np.full(len(drawn), sampling.sampler, dtype=object)}


def similarity_figure(figures: dict[str, list[np.ndarray]]) -> bytes:
    """Fig. 4 of the paper as a PNG: left, similarity among kept real poses (FPS vs random);
    right, mean similarity of synthetic poses to the real ones before and after cross sampling."""
    def joined(key):
        return np.concatenate(figures[key]) if figures[key] else np.zeros(0)

    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.8))
    values = np.concatenate([joined(key) for key in figures] + [np.ones(1)])
    bins = np.linspace(min(values.min(), 0.999), 1.0, 41)  # pose similarities crowd near 1: zoom in
    for key, colour in (("random", "tab:gray"), ("fps", "tab:blue")):
        axes[0].hist(joined(key), bins=bins, alpha=0.6, color=colour, label=f"{key} ({len(joined(key))} pairs)",
                     density=len(joined(key)) > 0)  # an empty density divides by zero
    axes[0].set(title="real poses kept per object: pairwise similarity", xlabel="cosine similarity")
    for key, colour in (("before", "tab:gray"), ("after", "tab:orange")):
        axes[1].hist(joined(key), bins=bins, alpha=0.6, color=colour, label=f"{key} ({len(joined(key))} poses)",
                     density=len(joined(key)) > 0)
    axes[1].set(title="synthetic to real: mean similarity", xlabel="cosine similarity")
    for axis in axes:
        axis.legend()
    return figure_png(fig)
