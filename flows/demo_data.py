"""Build the embedded demo dataset end to end: objects, grasps, rendered sequences, splits.

``build_demo`` is the plain function behind ``handbooster data demo`` (and, later, a Prefect
task): it prepares the objects, runs ``grasp_sim`` until every object has enough accepted
grasps (rounds of ``grasps_per_object`` attempts, each a resumable grasp dataset under
``OUT/grasps/round-N``), plans and renders the sequences of :mod:`renderers.demo` and writes
every frame into its s0 and its s1 split, ``OUT/s0_train`` ... ``OUT/s1_test`` (datasets
``demo_s0_train`` ...). The four manifests, with the generator config, seed and the grasp
ids each split used, are registered together as ``<registry>/demo.json``.

Resuming: the grasp rounds resume on their own; each split's shards end at object
boundaries, so a re-run skips the frames every split already holds without rendering them.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.config import GraspConfig, PipelineConfig
from pipeline.errors import InputError
from renderers.demo import POOLS, SIZES, SPLITS, DemoSize, demo_frames, demo_generator_info, grasps_by_split, \
    plan_demo

DATASET = "demo"
MAX_GRASP_ROUNDS = 4
GRASP_COLUMNS = ["grasp_id", "object_id", "accepted", "hand_pose", "hand_betas", "hand_trans", "resting_pose"]
PREPARE_WORKERS = 2


def resolve_size(size: str | DemoSize) -> tuple[str, DemoSize]:
    if isinstance(size, DemoSize):
        if size.subjects < 2 or not size.objects:
            raise InputError("a demo needs at least one object and two subjects (the last one is unseen in s1)")
        return "custom", size
    if size not in SIZES:
        raise InputError(f"unknown demo size {size!r}; expected one of {', '.join(SIZES)}")
    return size, SIZES[size]


def demo_grasps(out: Path, size: DemoSize, seed: int, config: PipelineConfig, grasp_config: GraspConfig,
                device: str = "cpu", overwrite: bool = False,
                progress: bool = True) -> tuple[dict[str, np.ndarray], list[str]]:
    """Grasp records of the demo's objects: rounds of ``size.grasps_per_object`` attempts for
    the objects still short of one accepted grasp per pool, at most ``MAX_GRASP_ROUNDS``."""
    from grasp_sim.run import run_grasps
    from pipeline.data.manifest import read_grasp_arrays

    parts: list[dict[str, np.ndarray]] = []
    folders = []
    for round_index in range(MAX_GRASP_ROUNDS):
        accepted = Counter(str(o) for part in parts for o, a in zip(part["object_id"], part["accepted"]) if a)
        short = [name for name in size.objects if accepted[name] < len(POOLS)]
        if not short:
            break
        where = out / "grasps" / f"round-{round_index}"
        run_grasps("builtin:" + ",".join(short), where, per_object=size.grasps_per_object, seed=seed + round_index,
                   config=grasp_config, hand=config.hand.model, vhacd=config.objects.vhacd.pybullet_params(),
                   device=device, rows_per_shard=config.data.rows_per_shard, overwrite=overwrite, progress=progress)
        _, arrays = read_grasp_arrays(where, GRASP_COLUMNS)
        arrays["grasp_id"] = np.array([f"round-{round_index}/{g}" for g in arrays["grasp_id"]])
        parts.append(arrays)
        folders.append(str(where))
    return {column: np.concatenate([part[column] for part in parts]) for column in GRASP_COLUMNS}, folders


def write_frames(writers: dict, frames) -> tuple[int, int]:
    """Write each ``(splits, row, render)`` into its s0 and s1 split, rendering only frames that
    some split still lacks; returns (rendered, skipped). Shards end where the object changes,
    so that what a split holds is always a prefix of whole objects (the unit a re-run resumes at)."""
    produced = {split: 0 for split in writers}
    rendered = skipped = 0
    current_object = None
    for splits, row, render in frames:
        if row["object_id"] != current_object:
            for writer in writers.values():
                writer.end_shard()
            current_object = row["object_id"]
        targets = [f"{protocol}_{part}" for protocol, part in splits.items()]
        todo = [split for split in targets if produced[split] >= writers[split].resume_rows]
        images = render() if todo else {}
        rendered, skipped = rendered + bool(todo), skipped + (not todo)
        for split in todo:
            writers[split].write({**row, **images, "split": split})
        for split in targets:
            produced[split] += 1
    return rendered, skipped


def build_demo(out, size: str | DemoSize = "small", seed: int = 0, config: PipelineConfig | None = None,
               registry: str | Path | None = "data_manifests", overwrite: bool = False, workers: int = PREPARE_WORKERS,
               device: str = "cpu", progress: bool = True) -> dict:
    """Make (or finish) the demo dataset in ``out``; see the module docstring. ``workers``:
    objects prepared at once (SDF grids, convex pieces) on a cold cache; ``device``: where the
    grasps are optimised. Returns a summary with the seconds each stage took."""
    import torch

    from pipeline.data.overview import registry_record, write_registry_record
    from pipeline.data.shards import ShardWriter
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library
    from pipeline.objects.commands import prepare_objects

    config = config or PipelineConfig()
    size_name, demo_size = resolve_size(size)
    out = Path(out)
    library = load_object_library("builtin")
    library.checked_names(list(demo_size.objects))
    grasp_config = config.grasp.model_copy(update={"iterations": demo_size.grasp_iterations})
    generator = {**demo_generator_info(size_name, demo_size, seed), "hand_model": config.hand.model,
                 "image_size": config.data.image_size, "crop_scale": config.data.crop_scale,
                 "grasp_rre_deg": config.sampling.grasp_rre_deg, "grasp_rte_mm": config.sampling.grasp_rte_mm,
                 "grasp": grasp_config.model_dump(mode="json")}
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:  # opened first: a folder holding another dataset fails before any work
        writers = {split: stack.enter_context(ShardWriter(
            out / split, name=f"{DATASET}_{split}", rows_per_shard=config.data.rows_per_shard,
            image_size=config.data.image_size, config=generator, overwrite=overwrite)) for split in SPLITS}
        prepare_objects(config.objects.model_copy(update={"library": "builtin"}), list(demo_size.objects),
                        progress=progress, workers=workers)
        prepared = time.perf_counter()
        grasps, grasp_folders = demo_grasps(out, demo_size, seed, config, grasp_config, device, overwrite, progress)
        grasped = time.perf_counter()
        hand_model = load_hand_model(config.hand.model, dtype=torch.float64)
        plan = plan_demo(grasps, library, hand_model.num_betas, demo_size, seed)
        if not plan["objects"]:
            raise InputError(f"no demo object got {len(POOLS)} accepted grasps in {MAX_GRASP_ROUNDS} rounds of "
                             f"{demo_size.grasps_per_object}; raise grasps_per_object or grasp_iterations", out)
        used = grasps_by_split(plan)
        for split, writer in writers.items():
            writer.info.update({"hand_model": hand_model.name, "objects_used": plan["objects"],
                                "objects_left_out": plan["left_out"], "grasp_folders": grasp_folders,
                                "grasp_ids": used[split]})
        rendered, skipped = write_frames(writers, demo_frames(plan, library, hand_model, demo_size, config.data,
                                                              config.sampling, progress))
    finished = time.perf_counter()
    result = {"out": str(out), "size": size_name, "seed": seed, "objects": plan["objects"],
              "objects_left_out": plan["left_out"], "grasp_folders": grasp_folders,
              "splits": {split: {"rows": writers[split].manifest["rows"], "grasps": len(used[split])}
                         for split in SPLITS},
              "frames_rendered": rendered, "frames_resumed": skipped,
              "stage_seconds": {"prepare_objects": round(prepared - started, 1), "grasps": round(grasped - prepared, 1),
                                "frames": round(finished - grasped, 1)},
              "seconds": round(finished - started, 1)}
    if registry is not None:
        record = {"name": DATASET, "kind": "collection", "generator": generator,
                  "splits": {split: registry_record(out / split) for split in SPLITS}}
        result["registered"] = str(write_registry_record(record, registry, overwrite))
    return result
