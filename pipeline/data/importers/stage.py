"""The import stage: a real dataset in its official layout -> canonical shards.

The format modules only read their official layout into :class:`SourceFrame` records;
:mod:`~pipeline.data.importers.checks` checks every hand; this module mirrors left hands,
crops a square around the projected hand and writes the rows.
"""

from __future__ import annotations

import functools
import importlib
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from pipeline.config import PipelineConfig, config_record
from pipeline.data.importers.checks import check_hands, label_grasping
from pipeline.data.importers.frames import MIRROR, HandModels, SourceFrame, crop_image_png
from pipeline.data.labels import labelled_crop
from pipeline.data.shards import ShardWriter
from pipeline.errors import BadData, InputError
from pipeline.hand.conversions import mirror_pose, mirror_translation
from pipeline.parallel import parallel_map
from pipeline.stage import StageInputs, StageSummary, input_path, stage
from pipeline.storage import Location

FORMATS = {
    "dexycb": "pipeline.data.importers.dexycb",
    "ho3d": "pipeline.data.importers.ho3d",
    "handoccnet-json": "pipeline.data.importers.handoccnet",
}
SECTIONS = ("hand.model", "data", "sampling.grasp_rre_deg", "sampling.grasp_rte_mm")


class ImportInputs(StageInputs):
    format: Literal["dexycb", "ho3d", "handoccnet-json"] = Field(description="the dataset's official layout")
    root: str = input_path("the dataset's root folder, in its official layout", local=True)
    split: str = Field(description="dexycb: s0_train, s1_test...; ho3d: train or evaluation; handoccnet-json: the "
                                   "split in the file name")
    annotations: str | None = input_path("handoccnet-json: the annotation JSON, if not "
                                         "ROOT/annotations/*_SPLIT_data.json", None, local=True)
    limit: int | None = Field(None, ge=1, description="import only the first N frames")


class ImportSummary(StageSummary):
    format: str
    dataset: str
    split: str
    frames: int
    imported: int
    rows: int
    shards: int
    resumed_rows: int
    skipped: dict[str, int]
    mirrored_left_hands: int
    grasping: int
    mano_error_mm: dict
    joints_2d_residual_px: dict
    pose_convention: dict[str, int] = {}

    def as_reused(self) -> ImportSummary:
        return self.model_copy(update={"reused": True, "resumed_rows": self.imported})


def frame_to_row(frame: SourceFrame, dataset: str, split: str, size: int) -> dict:
    """The canonical row of a checked frame: mirrored if left, cropped, labels in crop space."""
    box, mirrored = frame.extra["box"], frame.side == "left"
    pose, trans, joints = frame.pose, frame.trans, frame.joints_3d
    rotation, translation = frame.object_rotation, frame.object_translation
    if mirrored:
        pose = mirror_pose(torch.as_tensor(pose)).numpy()
        trans = mirror_translation(torch.as_tensor(trans)).numpy()
        joints = joints @ MIRROR
        if rotation is not None:
            rotation, translation = MIRROR @ rotation @ MIRROR, MIRROR @ translation
    object_pose = None if rotation is None else np.concatenate([rotation.reshape(-1), translation])
    return {
        "sample_id": frame.sample_id, "source": "real", "dataset": dataset, "split": split,
        "sequence_id": frame.sequence_id, "frame": int(frame.frame),
        "image": crop_image_png(frame.image_path, box, size, mirrored),
        **labelled_crop(pose, frame.betas, trans, joints, frame.K, box, size, mirrored=mirrored,
                        joints_2d_source=frame.joints_2d),
        "object_id": frame.object_id,
        "object_pose": None if object_pose is None else object_pose.astype(np.float32),
        "is_grasping": frame.extra.get("is_grasping"), "origin": "real", "sampler": "none", "mirrored": mirrored,
    }


@stage("import_data", ImportInputs, ImportSummary, SECTIONS, uri_out=True)
def import_data(config: PipelineConfig, inputs: ImportInputs, out: Location) -> ImportSummary:
    """Import a real dataset in its official layout into canonical shards (resumable)."""
    root, data, mano = Path(inputs.root), config.data, config.hand.model
    if inputs.annotations and inputs.format != "handoccnet-json":
        raise InputError("annotations: only the handoccnet-json format reads an annotation file")
    if not root.is_dir():
        raise InputError(f"dataset root not found: expected the {inputs.format} folder", root)
    reader = importlib.import_module(FORMATS[inputs.format])
    models = HandModels(mano)
    options = {"annotations": inputs.annotations} if inputs.annotations else {}
    frames, dataset = reader.index_frames(root, inputs.split, models, **options)
    if inputs.limit is not None:
        frames = frames[:inputs.limit]
    checks = check_hands(frames, models, data.crop_scale, data.joint_tolerance_mm)
    mismatched = sum(f.skip == "mano_mismatch" for f in frames)
    if mismatched and mismatched >= 0.5 * checks["mano_error_mm"]["count"]:
        raise BadData(
            f"for {mismatched} of {checks['mano_error_mm']['count']} frames the annotated MANO parameters do not "
            f"reproduce the annotated joints (median {checks['mano_error_mm']['median']:.1f} mm): is hand.model "
            f"(--mano, now {mano}) the MANO model this dataset was annotated with?", root)
    label_grasping(frames, config.sampling)
    kept = [f for f in frames if f.skip is None]
    report = {"format": inputs.format, "dataset": dataset, "split": inputs.split, "frames": len(frames),
              "imported": len(kept),
              "skipped": dict(sorted(Counter(f.skip for f in frames if f.skip is not None).items())),
              "mirrored_left_hands": sum(f.side == "left" for f in kept),
              "grasping": sum(bool(f.extra.get("is_grasping")) for f in kept), **checks}
    if not kept:  # before anything is written: a dataset of no rows only fails later, at training
        reasons = ", ".join(f"{reason}: {count}" for reason, count in report["skipped"].items())
        found = f"none of its {len(frames)} frames can be imported ({reasons})" if frames else "it has no frames here"
        raise InputError(f"split {inputs.split!r}: {found}; a split without hand labels (HO3D's evaluation split "
                         "keeps them on its challenge server) has nothing to train or score on", root)
    conventions = Counter(f.extra["pose_convention"] for f in kept if "pose_convention" in f.extra)
    if conventions:
        report["pose_convention"] = dict(conventions)
    record = {**config_record(config, SECTIONS), "hand_model": models("right").name,
              "inputs": inputs.model_dump(exclude={"root", "annotations"})}
    with ShardWriter(out, name=f"{dataset}_{inputs.split}", rows_per_shard=data.rows_per_shard,
                     image_size=data.image_size, config=record, overwrite=config.run.overwrite,
                     info={"hand_model": models("right").name, "import": report,
                           "source": {"root": str(root.resolve()), "annotations": inputs.annotations}}) as writer:
        todo = kept[writer.resume_rows:]
        convert = functools.partial(frame_to_row, dataset=dataset, split=inputs.split, size=data.image_size)
        writer.write_rows(parallel_map(convert, todo, workers=config.run.workers, desc=f"import {dataset} "
                                       f"{inputs.split}", unit="img", progress=config.run.progress, chunksize=16))
    return ImportSummary(**report, rows=writer.manifest["rows"], shards=len(writer.manifest["shards"]),
                         resumed_rows=len(kept) - len(todo))
