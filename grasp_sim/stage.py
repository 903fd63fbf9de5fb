"""The grasp stage: resting poses, batched optimisation and validation, written as grasp records.

``grasps`` makes exactly ``grasp.per_object`` grasp records per object (accepted or not, each
with its measured values), object after object, one shard per object at least, so an
interrupted run resumes at the first unfinished object (or batch, with several shards per
object). Each batch draws everything from a seed derived from (seed, object, batch index):
the same seed and config give the same records on CPU, however the run was interrupted. On a
CPU, ``run.workers`` processes make the batches (one torch thread each; the writer takes them
in order), so a run with workers and one without may differ in the last bits of their floats.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import closing
from functools import partial

import numpy as np
import torch
from pydantic import Field

from grasp_sim.energy import TERMS, GraspEnergy, hand_pose, split_params
from pipeline.config import GraspConfig, PipelineConfig, config_record
from pipeline.data.schema import GRASP
from pipeline.data.shards import ShardWriter
from pipeline.parallel import parallel_map
from pipeline.stage import StageInputs, StageSummary, stage
from pipeline.storage import Location

DATASET_NAME = "grasps"
SECTIONS = ("hand.model", "objects.library", "objects.vhacd", "grasp")
REST_SEED = 0  # the surface points resting poses are judged on: the same for every batch


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


def rest_weights(asset, resting_poses, config: GraspConfig) -> np.ndarray:
    """How often the hands find the object in each resting pose: as often as it comes to rest so,
    with object-aware starts only among the poses that leave a side the hand can span (all of
    them when none does)."""
    frequencies = np.asarray([p.frequency for p in resting_poses])
    if not config.init_object_aware:
        return frequencies
    from grasp_sim.initialization import spannable_rests

    spannable = spannable_rests(asset, np.stack([p.matrix for p in resting_poses]), REST_SEED)
    return frequencies * spannable if spannable.any() else frequencies


def optimise_batch(asset, hand_model, geometry, resting_poses, size: int, seed: int, config: GraspConfig,
                   progress: bool = False) -> dict:
    """Optimise ``size`` hands on ``asset``; returns their parameters, energies and resting poses."""
    from grasp_sim.initialization import initial_params
    from grasp_sim.optimizer import optimise

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    weights = rest_weights(asset, resting_poses, config)
    pose_index = rng.choice(len(resting_poses), size=size, p=weights / weights.sum())
    rests = np.stack([resting_poses[i].matrix for i in pose_index])
    device, dtype = hand_model.device, hand_model.dtype
    betas = torch.as_tensor(rng.normal(0.0, config.betas_std, (size, hand_model.num_betas)), dtype=dtype,
                            device=device)
    many = config.init_candidates  # candidate starts per hand, consecutive
    candidate_betas = betas.repeat_interleave(many, dim=0)
    params = initial_params(asset, geometry, hand_model, candidate_betas, np.repeat(rests, many, axis=0), config, rng,
                            pool_for=size)
    if many > 1:
        from grasp_sim.pregrasp import choose_starts

        params, _ = choose_starts(params, hand_model, geometry, candidate_betas, asset.sdf, many,
                                  config.contact_mm / 1000)
    centre = torch.as_tensor(np.array(asset.trimesh.centroid), dtype=dtype, device=device)
    object_points, _ = asset.sample_surface(config.object_points, seed=seed, device=device, dtype=dtype)
    energy = GraspEnergy(hand_model, geometry, asset.sdf, centre, betas,
                         torch.as_tensor(rests, dtype=dtype, device=device), config.weights, object_points)
    rank = None
    if config.population_rank == "opposition":
        from grasp_sim.pregrasp import opposition_rank

        rank = partial(opposition_rank, hand_model=hand_model, geometry=geometry, betas=betas, sdf=asset.sdf,
                       contact_m=config.contact_mm / 1000)
    result = optimise(energy, params, geometry, config, generator, progress=progress, rank=rank)
    params = result.params
    if config.close_fingers:
        from grasp_sim.closing import close_fingers

        params, _ = close_fingers(params, hand_model, geometry, betas, asset.sdf, wrap=config.close_wrap)
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


class BatchMaker:
    """What one process needs to make grasp batches: the object library, the hand, a physics
    world, and per object its resting poses and validator (found on first use)."""

    def __init__(self, config: PipelineConfig):
        from grasp_sim.hand_geometry import build_hand_geometry
        from grasp_sim.physics import PhysicsWorld
        from pipeline.hand import load_hand_model
        from pipeline.objects import load_object_library

        self.config, self.grasp, self.seed = config, config.grasp, config.seed
        self.library = load_object_library(config.objects.library)
        self.vhacd = config.objects.vhacd.pybullet_params()
        self.hand_model = load_hand_model(config.hand.model, device=config.run.device)
        self.geometry = build_hand_geometry(self.hand_model).to(config.run.device)
        self.world = PhysicsWorld()
        self.objects: dict[str, tuple] = {}

    def prepared(self, name: str) -> tuple:
        """(asset, resting poses, validator) of object ``name``."""
        from grasp_sim.resting import find_resting_poses
        from grasp_sim.validation import GraspValidator

        if name not in self.objects:
            asset = self.library[name]
            resting = find_resting_poses(asset, self.grasp.resting_drops, self.grasp.resting_angle_deg, self.seed,
                                         self.vhacd, self.world)
            validator = GraspValidator(asset, self.hand_model, self.geometry, self.grasp, self.world, self.vhacd)
            self.objects[name] = asset, resting, validator
        return self.objects[name]

    def __call__(self, job: tuple[str, int | None, int, int, int]) -> tuple[list[dict], list[dict]]:
        """The grasp rows of one batch (minus the first ``skip``, written before an interruption)
        and the object's resting poses; a batch index of None: only the resting poses."""
        name, batch_index, first, size, skip = job
        asset, resting, validator = self.prepared(name)
        report = [{"up": np.round(p.up, 4).tolist(), "frequency": p.frequency} for p in resting]
        if batch_index is None:
            return [], report
        seed = batch_seed(self.seed, name, batch_index)
        batch = optimise_batch(asset, self.hand_model, self.geometry, resting, size, seed, self.grasp)
        checks = validator(batch["pose"], batch["betas"], batch["trans"], batch["resting"])
        return grasp_rows(name, first, seed, batch, checks)[skip:], report

    def close(self) -> None:
        self.world.close()


def pending_batches(names: list[str], per_object: int, batch_size: int, done: int) -> list[tuple]:
    """(object, batch index, first row, size, rows to skip) of every batch an earlier run did not
    finish, in writing order; an object with none left gets a resting-poses-only job."""
    jobs = []
    for object_index, name in enumerate(names):
        already = min(per_object, max(0, done - object_index * per_object))
        batches = [(name, index, first, min(batch_size, per_object - first), max(0, already - first))
                   for index, first in enumerate(range(0, per_object, batch_size))
                   if first + min(batch_size, per_object - first) > already]
        jobs += batches or [(name, None, 0, 0, 0)]
    return jobs


@stage("grasps", GraspInputs, GraspSummary, SECTIONS, uri_out=True)
def grasps(config: PipelineConfig, inputs: GraspInputs, out: Location) -> GraspSummary:
    """Resting poses, batched grasp optimisation and validation: grasp.per_object records per object (resumable)."""
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library

    grasp, per_object = config.grasp, config.grasp.per_object
    library = load_object_library(config.objects.library)
    names = library.checked_names(inputs.objects)
    hand_name = load_hand_model(config.hand.model).name
    identity = {**config_record(config, SECTIONS), "objects": names, "library": library.source,
                "hand_model": hand_name}
    # On a GPU one process's batches use the device; on a CPU each worker process takes batches.
    workers = 0 if config.run.device.startswith("cuda") else config.run.workers
    started, accepted, made = time.perf_counter(), 0, 0
    per_object_accepted: dict[str, int] = {}
    with ShardWriter(out, GRASP, name=DATASET_NAME, rows_per_shard=config.data.rows_per_shard, config=identity,
                     overwrite=config.run.overwrite, info={"hand_model": hand_name}) as writer:
        jobs = pending_batches(names, per_object, grasp.batch_size, writer.resume_rows)
        resting_report: dict[str, list[dict]] = {}
        batches = parallel_map(None, jobs, workers=workers, desc="grasp batches", unit="batch",
                               progress=config.run.progress, make_worker=BatchMaker, worker_args=(config,), chunksize=1)
        with closing(batches):  # an error here still closes this process's physics world
            for index, ((name, *_), (rows, resting)) in enumerate(zip(jobs, batches, strict=True)):
                resting_report[name] = resting
                writer.write_rows(rows)
                kept = sum(r["accepted"] for r in rows)
                accepted += kept
                made += len(rows)
                per_object_accepted[name] = per_object_accepted.get(name, 0) + kept
                if index + 1 == len(jobs) or jobs[index + 1][0] != name:
                    writer.end_shard()  # one shard per object at least: a resumed run restarts at an object
        writer.info["resting_poses"] = resting_report
    seconds = time.perf_counter() - started
    manifest = writer.manifest
    return GraspSummary(objects=len(names), grasps=manifest["rows"],
                        accepted=manifest["counts"]["accepted"].get("True", 0), made_this_run=made,
                        accepted_this_run=accepted,
                        accepted_per_second=round(accepted / seconds, 3) if made else None,
                        accepted_by_object_this_run=per_object_accepted)
