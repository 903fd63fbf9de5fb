"""The grasp stage: resting poses, batched optimisation and validation, written as grasp records.

``run_grasps`` makes exactly ``per_object`` grasp records per object (accepted or not, each
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
from tqdm import tqdm

from pipeline.config import GraspConfig
from pipeline.data.schema import GRASP
from pipeline.data.shards import ShardWriter
from pipeline.errors import InputError

from grasp_sim.energy import TERMS, GraspEnergy, hand_pose, split_params

DATASET_NAME = "grasps"


def parse_objects(spec: str) -> tuple[str, list[str]]:
    """``'builtin:mug,banana'`` -> ('builtin', ['mug', 'banana']); ``'builtin'`` -> all of it.

    The part before the last colon is the library ('builtin', a YCB or mesh folder)."""
    library, _, names = spec.rpartition(":") if ":" in spec else (spec, "", "")
    return library, [n.strip() for n in names.split(",") if n.strip()]


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
    with torch.no_grad():
        pose = hand_pose(result.params, hand_model.anatomy)
    translation, _, _ = split_params(result.params)
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


def run_grasps(objects: str, out, *, per_object: int, seed: int = 0, config: GraspConfig | None = None,
               hand: str = "builtin", vhacd: dict | None = None, device: str = "cpu", rows_per_shard: int = 4096,
               overwrite: bool = False, progress: bool = True) -> dict:
    """Make ``per_object`` validated grasp records for each object of ``objects`` (see
    :func:`parse_objects`) into ``out``; returns a summary."""
    from grasp_sim.hand_geometry import build_hand_geometry
    from grasp_sim.physics import PhysicsWorld
    from grasp_sim.resting import find_resting_poses
    from grasp_sim.validation import GraspValidator
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library

    config = config or GraspConfig()
    if per_object < 1:
        raise InputError(f"--per-object must be at least 1, got {per_object}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    library_spec, names = parse_objects(objects)
    library = load_object_library(library_spec)
    names = library.checked_names(names)
    hand_model = load_hand_model(hand, device=device)
    geometry = build_hand_geometry(hand_model).to(device)
    identity = {"objects": names, "library": library.source, "per_object": per_object, "seed": seed,
                "hand_model": hand_model.name, "grasp": config.model_dump(mode="json"), "vhacd": vhacd or {}}
    started, accepted, made = time.perf_counter(), 0, 0
    per_object_accepted: dict[str, int] = {}
    with PhysicsWorld() as world, ShardWriter(out, GRASP, name=DATASET_NAME, rows_per_shard=rows_per_shard,
                                              config=identity, overwrite=overwrite,
                                              info={"hand_model": hand_model.name}) as writer:
        done = writer.resume_rows
        bar = tqdm(total=len(names) * per_object, initial=done, desc="grasps", unit="grasp", disable=not progress)
        resting_report = {}
        for object_index, name in enumerate(names):
            asset = library[name]
            resting = find_resting_poses(asset, config.resting_drops, config.resting_angle_deg, seed, vhacd, world)
            resting_report[name] = [{"up": np.round(p.up, 4).tolist(), "frequency": p.frequency} for p in resting]
            already = min(per_object, max(0, done - object_index * per_object))
            validator = GraspValidator(asset, hand_model, geometry, config, world, vhacd)
            for batch_index in range(math.ceil(per_object / config.batch_size)):
                first = batch_index * config.batch_size
                size = min(config.batch_size, per_object - first)
                if first + size <= already:
                    continue
                bar.set_postfix(object=name, accepted=accepted)
                seed_k = batch_seed(seed, name, batch_index)
                batch = optimise_batch(asset, hand_model, geometry, resting, size, seed_k, config)
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
    return {"out": str(out), "objects": len(names), "grasps": manifest["rows"],
            "accepted": manifest["counts"]["accepted"].get("True", 0),
            "made_this_run": made, "accepted_this_run": accepted, "seconds": round(seconds, 1),
            "accepted_per_second": round(accepted / seconds, 3) if made else None,
            "accepted_by_object_this_run": per_object_accepted}
