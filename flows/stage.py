"""Stages that span packages: the embedded demo dataset (grasps from ``grasp_sim``, pictures from
``renderers``, the plan and every label from ``pipeline.demo``), and the grasp report (pass
rates from ``grasp_sim``, its contact sheet from ``renderers``).

``demo`` prepares the objects, runs the grasps stage until every object has enough accepted
grasps (rounds sized from the acceptance seen so far, up to a cap per object, each a resumable
grasp dataset under ``OUT/grasps/round-N``), plans and renders the sequences and writes every frame into its s0
and its s1 split, ``OUT/s0_train`` ... ``OUT/s1_test`` (datasets ``demo_s0_train`` ...).
The four manifests, with the generator config, seed and the grasp ids each split used, are
registered together when a registry is given, under a name that includes the folder
(``demo-out-demo-real`` for ``out/demo/real``), so that demo folders register side by side.

Resuming: the grasp rounds resume on their own; each split's shards end at object
boundaries, so a re-run skips the frames every split already holds without rendering them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
from pydantic import Field

from pipeline.config import PipelineConfig, config_record, with_overrides
from pipeline.demo.plan import POOLS, SPLITS, demo_frames, demo_generator_info, demo_size, grasps_by_split, plan_demo
from pipeline.errors import BadData
from pipeline.stage import ReportSummary, StageInputs, StageSummary, input_path, stage
from pipeline.storage import Location

DATASET = "demo"
# Grasp rounds: an object gets at most ATTEMPT_CAP x grasps_per_object attempts; after round 0
# each round asks for ROUND_MARGIN times what the acceptance so far says is still needed, at
# most ROUND_CAP x grasps_per_object (smaller rounds overshoot less).
ATTEMPT_CAP = 16
ROUND_CAP = 4
ROUND_MARGIN = 1.5
GRASP_COLUMNS = ["grasp_id", "object_id", "accepted", "hand_pose", "hand_betas", "hand_trans", "resting_pose"]
SECTIONS = ("demo", "hand.model", "data.image_size", "data.crop_scale", "data.rows_per_shard",
            "sampling.grasp_rre_deg", "sampling.grasp_rte_mm", "grasp", "objects.vhacd")


class DemoInputs(StageInputs):
    registry: str | None = Field(None, description="a folder of registered manifests: the four splits are "
                                                   "registered there as demo-FOLDER")


class DemoSummary(StageSummary):
    size: str
    seed: int
    objects: list[str]
    objects_left_out: list[str]
    grasp_folders: list[str]
    grasp_shortfall: str | None = None  # one line naming the objects left out for want of grasps
    splits: dict[str, dict[str, int]]
    frames_rendered: int
    frames_resumed: int
    stage_seconds: dict[str, float]
    registered: str | None = None

    def as_reused(self) -> DemoSummary:
        return self.model_copy(update={"reused": True, "frames_rendered": 0,
                                       "frames_resumed": self.frames_rendered + self.frames_resumed})


def registry_name(out: Location, registry: str) -> str:
    """``demo-`` and the folder, relative to the registry's parent (a repository's root) or its
    URI: two demo folders register side by side (``out/demo/real``: ``demo-out-demo-real``)."""
    text = out.text.split("://", 1)[1] if not out.is_local else os.path.relpath(
        out.path, os.path.dirname(os.path.abspath(registry)))
    parts = [re.sub(r"[^A-Za-z0-9_]+", "_", part) for part in re.split(r"[\\/]+", text)
             if part not in ("", ".", "..")]
    return "-".join([DATASET, *parts])


def next_round_attempts(accepted: int, attempted: int, per_object: int, target: int = len(POOLS)) -> int:
    """Attempts for an object's next grasp round: enough that it most likely reaches
    ``target`` accepted grasps, from the acceptance seen so far (Laplace-smoothed, so a
    round of no acceptances still asks for a finite number); at least ``per_object``, at most
    ``ROUND_CAP`` x ``per_object``, never past ``ATTEMPT_CAP`` x ``per_object`` in all."""
    rate = (accepted + 1) / (attempted + 2)
    wanted = math.ceil(ROUND_MARGIN * (target - accepted) / rate)
    return max(0, min(ATTEMPT_CAP * per_object - attempted, ROUND_CAP * per_object, max(per_object, wanted)))


def demo_grasps(config: PipelineConfig, out: Location, objects: tuple[str, ...], per_object: int,
                iterations: int, target: int = len(POOLS)) -> tuple[dict[str, np.ndarray], list[str], str | None]:
    """Grasp records of the demo's objects, and a line naming the objects that fell short (or None).

    Round 0 makes ``per_object`` attempts per object; each later round, for the objects still
    short of ``target`` accepted grasps (at least one per pool), as many as the acceptance seen
    so far says they need (times ``ROUND_MARGIN``), until each has enough or has had
    ``ATTEMPT_CAP`` × ``per_object`` attempts. Each round is a resumable grasp dataset
    ``OUT/grasps/round-N`` made with seed + N, and its size follows from the rounds before it,
    so a re-run repeats the same rounds."""
    from grasp_sim.stage import GraspInputs, grasps
    from pipeline.data.manifest import read_grasp_arrays

    parts: list[dict[str, np.ndarray]] = []
    folders = []
    cap = ATTEMPT_CAP * per_object
    accepted, attempted = Counter(), Counter()
    for round_index in itertools.count():
        wanted = {name: per_object if round_index == 0 else next_round_attempts(
            accepted[name], attempted[name], per_object, target) for name in objects if accepted[name] < target}
        wanted = {name: count for name, count in wanted.items() if count > 0}
        if not wanted:
            break
        where = out.child("grasps").child(f"round-{round_index}")
        round_config = with_overrides(config, {"seed": config.seed + round_index, "objects.library": "builtin",
                                               "grasp.per_object": max(wanted.values()),
                                               "grasp.iterations": iterations})
        grasps(round_config, GraspInputs(objects=list(wanted)), where)
        _, arrays = read_grasp_arrays(where, GRASP_COLUMNS)
        arrays["grasp_id"] = np.array([f"round-{round_index}/{g}" for g in arrays["grasp_id"]])
        parts.append(arrays)
        folders.append(str(where))
        attempted.update(str(o) for o in arrays["object_id"])
        accepted.update(str(o) for o, a in zip(arrays["object_id"], arrays["accepted"]) if a)
    short = [f"{name} {accepted[name]} of {len(POOLS)} in {attempted[name]} attempts"
             for name in objects if accepted[name] < len(POOLS)]
    shortfall = (f"left out, short of accepted grasps at the cap of {cap} attempts: " + "; ".join(short)
                 if short else None)
    return {column: np.concatenate([part[column] for part in parts]) for column in GRASP_COLUMNS}, folders, shortfall


def write_frames(writers: dict, frames, render) -> tuple[int, int]:
    """Write each ``(splits, row, scene)`` into its s0 and s1 split, rendering (``render(scene)``)
    only frames that some split still lacks; returns (rendered, skipped). Shards end where the
    object changes, so that what a split holds is always a prefix of whole objects (the unit
    a re-run resumes at)."""
    produced = {split: 0 for split in writers}
    rendered = skipped = 0
    current_object = None
    for splits, row, scene in frames:
        if row["object_id"] != current_object:
            for writer in writers.values():
                writer.end_shard()
            current_object = row["object_id"]
        targets = [f"{protocol}_{part}" for protocol, part in splits.items()]
        todo = [split for split in targets if produced[split] >= writers[split].resume_rows]
        images = render(scene) if todo else {}
        rendered, skipped = rendered + bool(todo), skipped + (not todo)
        for split in todo:
            writers[split].write({**row, **images, "split": split})
        for split in targets:
            produced[split] += 1
    return rendered, skipped


def render_frame(renderer, faces, scene: dict) -> dict[str, bytes]:
    """The maps and the photo-style image of one demo frame."""
    return renderer.render(scene, faces, photo_seed=scene["seed"], skin=scene["skin"], studio=scene["studio"])


@stage("demo", DemoInputs, DemoSummary, SECTIONS)
def demo(config: PipelineConfig, inputs: DemoInputs, out: Location) -> DemoSummary:
    """Make the embedded demo dataset: grasps, rendered capture sequences, s0/s1 splits (resumable)."""
    import torch

    from pipeline.data.registry import registry_target
    from pipeline.data.shards import ShardWriter
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library
    from pipeline.objects.commands import prepare_objects
    from renderers.sample import SampleRenderer

    size = demo_size(config.demo)
    library = load_object_library("builtin")
    library.checked_names(list(size.objects))
    if inputs.registry is not None:
        registry_target(registry_name(out, inputs.registry), out, inputs.registry,
                        config.run.overwrite)  # a conflict fails before any work
    generator = {**demo_generator_info(config.demo.size, size, config.seed),
                 **config_record(config, SECTIONS)}
    timings = {}
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:  # opened first: a folder holding another dataset fails before any work
        writers = {split: stack.enter_context(ShardWriter(
            out.child(split), name=f"{DATASET}_{split}", rows_per_shard=config.data.rows_per_shard,
            image_size=config.data.image_size, config=generator, overwrite=config.run.overwrite)) for split in SPLITS}
        prepare_objects(config.objects.model_copy(update={"library": "builtin"}), list(size.objects),
                        progress=config.run.progress, workers=config.run.workers)
        timings["prepare_objects"] = time.perf_counter()
        grasps, grasp_folders, shortfall = demo_grasps(config, out, size.objects, size.grasps_per_object,
                                                       size.grasp_iterations, size.accepted_per_object)
        if shortfall:
            logging.getLogger(__name__).warning("demo: %s", shortfall)
        timings["grasps"] = time.perf_counter()
        hand_model = load_hand_model(config.hand.model, dtype=torch.float64)
        plan = plan_demo(grasps, library, hand_model.num_betas, size, config.seed)
        if not plan["objects"]:
            raise BadData(f"no demo object got {len(POOLS)} accepted grasps ({shortfall}); "
                          "raise demo.grasp_iterations", out)
        used = grasps_by_split(plan)
        for split, writer in writers.items():
            writer.info.update({"hand_model": hand_model.name, "objects_used": plan["objects"],
                                "objects_left_out": plan["left_out"], "grasp_folders": grasp_folders,
                                "grasp_ids": used[split]})
        renderer = SampleRenderer(config.data.image_size)
        rendered, skipped = write_frames(
            writers, demo_frames(plan, library, hand_model, size, config.data, config.sampling, config.run.progress),
            lambda scene: render_frame(renderer, hand_model.faces, scene))
    timings["frames"] = time.perf_counter()
    summary = DemoSummary(
        size=config.demo.size, seed=config.seed, objects=plan["objects"], objects_left_out=plan["left_out"],
        grasp_folders=grasp_folders, grasp_shortfall=shortfall,
        splits={split: {"rows": writers[split].manifest["rows"], "grasps": len(used[split])} for split in SPLITS},
        frames_rendered=rendered, frames_resumed=skipped,
        stage_seconds={name: round(moment - previous, 1) for (name, moment), previous in
                       zip(timings.items(), [started, *timings.values()])})
    if inputs.registry is not None:
        summary.registered = str(register_demo(out, inputs.registry, generator, config.run.overwrite))
    return summary


def register_demo(out: Location, registry: str, generator: dict, overwrite: bool) -> Path:
    """Register the four splits in ``out`` together, as ``registry_name(out, registry)``."""
    from pipeline.data.registry import registry_record, write_registry_record

    record = {"name": registry_name(out, registry), "kind": "collection", "generator": generator,
              "splits": {split: registry_record(out.child(split)) for split in SPLITS}}
    return write_registry_record(record, registry, overwrite)


class GraspReportInputs(StageInputs):
    dataset: str = input_path("grasp records (the grasps stage)")
    per_object: int = Field(3, ge=0, le=50, description="accepted grasps of each object on the contact sheet")


@stage("grasp_report", GraspReportInputs, ReportSummary, ())
def grasp_report(config: PipelineConfig, inputs: GraspReportInputs, out: Location) -> ReportSummary:
    """Pass rate of each check per object, value histograms, a contact sheet of accepted grasps (OUT/report.json,
    histograms.png, contact_sheet.png)."""
    from grasp_sim.report import grasp_report as make_report
    from renderers.sheet import grasp_sheet

    report = make_report(inputs.dataset, out.path, sheet_per_object=inputs.per_object, sheet=grasp_sheet)
    return ReportSummary(files=report.pop("files"), details={key: report[key] for key in ("overall", "objects")})
