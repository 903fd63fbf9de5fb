"""The grasp stage: resting poses, batched optimisation and validation, written as grasp records.

``grasps`` makes exactly ``grasp.per_object`` grasp records per object (accepted or not, each
with its measured values), object after object, one shard per object at least, so an
interrupted run resumes at the first unfinished object (or batch, with several shards per
object). Each batch draws everything from a seed derived from (seed, object, batch index):
the same seed and config give the same records on CPU, however the run was interrupted.
"""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from grasp_sim.energy import TERMS, GraspEnergy, hand_pose, split_params
from pipeline.config import GraspConfig, PipelineConfig, config_record
from pipeline.data.schema import GRASP
from pipeline.data.shards import ShardWriter
from pipeline.stage import StageInputs, StageSummary, stage
from pipeline.storage import Location

DATASET_NAME = "grasps"
SECTIONS = ("hand.model", "objects.library", "objects.vhacd", "grasp")


class GraspInputs(StageInputs):
    objects: list[str] | None = Field(None, description="object names in config objects.library (default: the "
                                                        "whole library)")


class GraspSummary(StageSummary):
    objects: int
    grasps: int
    accepted: int
    made_this_run: int
    accepted_this_run: int
    accepted_per_second: float | None
    accepted_by_object_this_run: dict[str, int]

    def as_reused(self) -> GraspSummary:
        return self.model_copy(update={"reused": True, "made_this_run": 0, "accepted_this_run": 0,
                                       "accepted_per_second": None, "accepted_by_object_this_run": {}})


def batch_seed(seed: int, object_name: str, batch: int) -> int:
    digest = hashlib.sha256(f"{seed}/{object_name}/{batch}".encode()).digest()
    return int.from_bytes(digest[:6], "little")


def optimise_batch(asset, hand_model, geometry, resting_poses, size: int, seed: int, config: GraspConfig,
                   progress: bool = False) -> dict:
    """Optimise ``size`` hands on ``asset``; returns their parameters, energies and resting poses."""
    from grasp_sim.initialization import initial_params
    from grasp_sim.optimizer import optimise

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    frequencies = np.asarray([p.frequency for p in resting_poses])
    pose_index = rng.choice(len(resting_poses), size=size, p=frequencies / frequencies.sum())
    rests = np.stack([resting_poses[i].matrix for i in pose_index])
    device, dtype = hand_model.device, hand_model.dtype
    betas = torch.as_tensor(rng.normal(0.0, config.betas_std, (size, hand_model.num_betas)), dtype=dtype,
                            device=device)
    params = initial_params(asset, geometry, hand_model, betas, rests, config, rng)
    centre = torch.as_tensor(np.array(asset.trimesh.centroid), dtype=dtype, device=device)
    object_points, _ = asset.sample_surface(config.object_points, seed=seed, device=device, dtype=dtype)
    energy = GraspEnergy(hand_model, geometry, asset.sdf, centre, betas,
                         torch.as_tensor(rests, dtype=dtype, device=device), config.weights, object_points)
    result = optimise(energy, params, geometry, config, generator, progress=progress)
    params = result.params
    if config.close_fingers:
        from grasp_sim.closing import close_fingers

        params, _ = close_fingers(params, hand_model, geometry, betas, asset.sdf)
    with torch.no_grad():
        pose = hand_pose(params, hand_model.anatomy)
    translation, _, _ = split_params(params)
    return {"pose": pose, "betas": betas, "trans": translation, "energy": result.energy, "terms": result.terms,
            "resting_index": pose_index, "resting": rests, "history": result.history}


def grasp_rows(object_name: str, first: int, seed: int, batch: dict, checks: list[dict]) -> list[dict]:
    rows = []
    for i, values in enumerate(checks):
        rest = batch["resting"][i]
        rows.append({
            "grasp_id": f"{object_name}/{first + i:06d}", "object_id": object_name,
            "resting_pose_index": int(batch["resting_index"][i]),
            "resting_pose": np.concatenate([rest[:3, :3].ravel(), rest[:3, 3]]),
            "hand_pose": batch["pose"][i].double().cpu().numpy(),
            "hand_betas": batch["betas"][i].double().cpu().numpy(),
            "hand_trans": batch["trans"][i].detach().double().cpu().numpy(), "seed": seed,
            "energy": {"total": float(batch["energy"][i]), **{k: float(batch["terms"][k][i]) for k in TERMS}},
            **values,
        })
    return rows


@stage("grasps", GraspInputs, GraspSummary, SECTIONS)
def grasps(config: PipelineConfig, inputs: GraspInputs, out: Location) -> GraspSummary:
    """Resting poses, batched grasp optimisation and validation: grasp.per_object records per object (resumable)."""
    from grasp_sim.hand_geometry import build_hand_geometry
    from grasp_sim.physics import PhysicsWorld
    from grasp_sim.resting import find_resting_poses
    from grasp_sim.validation import GraspValidator
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library

    grasp, seed, per_object = config.grasp, config.seed, config.grasp.per_object
    device = config.run.device
    library = load_object_library(config.objects.library)
    names = library.checked_names(inputs.objects)
    vhacd = config.objects.vhacd.pybullet_params()
    hand_model = load_hand_model(config.hand.model, device=device)
    geometry = build_hand_geometry(hand_model).to(device)
    identity = {**config_record(config, SECTIONS), "objects": names, "library": library.source,
                "hand_model": hand_model.name}
    started, accepted, made = time.perf_counter(), 0, 0
    per_object_accepted: dict[str, int] = {}
    with PhysicsWorld() as world, ShardWriter(out, GRASP, name=DATASET_NAME, rows_per_shard=config.data.rows_per_shard,
                                              config=identity, overwrite=config.run.overwrite,
                                              info={"hand_model": hand_model.name}) as writer:
        done = writer.resume_rows
        bar = tqdm(total=len(names) * per_object, initial=done, desc="grasps", unit="grasp",
                   disable=not config.run.progress)
        resting_report = {}
        for object_index, name in enumerate(names):
            asset = library[name]
            resting = find_resting_poses(asset, grasp.resting_drops, grasp.resting_angle_deg, seed, vhacd, world)
            resting_report[name] = [{"up": np.round(p.up, 4).tolist(), "frequency": p.frequency} for p in resting]
            already = min(per_object, max(0, done - object_index * per_object))
            validator = GraspValidator(asset, hand_model, geometry, grasp, world, vhacd)
            for batch_index in range(math.ceil(per_object / grasp.batch_size)):
                first = batch_index * grasp.batch_size
                size = min(grasp.batch_size, per_object - first)
                if first + size <= already:
                    continue
                bar.set_postfix(object=name, accepted=accepted)
                seed_k = batch_seed(seed, name, batch_index)
                batch = optimise_batch(asset, hand_model, geometry, resting, size, seed_k, grasp)
                checks = validator(batch["pose"], batch["betas"], batch["trans"], batch["resting"])
                rows = grasp_rows(name, first, seed_k, batch, checks)[max(0, already - first):]
                writer.write_rows(rows)
                kept = sum(r["accepted"] for r in rows)
                accepted += kept
                made += len(rows)
                per_object_accepted[name] = per_object_accepted.get(name, 0) + kept
                bar.update(len(rows))
            writer.end_shard()
        bar.close()
        writer.info["resting_poses"] = resting_report
    seconds = time.perf_counter() - started
    manifest = writer.manifest
    return GraspSummary(objects=len(names), grasps=manifest["rows"],
                        accepted=manifest["counts"]["accepted"].get("True", 0), made_this_run=made,
                        accepted_this_run=accepted,
                        accepted_per_second=round(accepted / seconds, 3) if made else None,
                        accepted_by_object_this_run=per_object_accepted)
