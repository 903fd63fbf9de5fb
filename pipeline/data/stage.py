"""The data stages: merging datasets, registering and migrating them, a grid of samples.

``merge`` concatenates datasets of one kind, in order, into one. A flow cuts work into batches (an object's grasps, a chunk of rows to render or paint), each
writing its own dataset; merging them gives exactly the dataset one process would have
written: the same rows in the same order, re-sharded at ``rows_per_shard``.
"""

from __future__ import annotations

from pydantic import Field

from pipeline.config import PipelineConfig
from pipeline.errors import BadData
from pipeline.stage import ReportSummary, StageInputs, StageSummary, input_path, stage
from pipeline.storage import Location


class MergeInputs(StageInputs):
    datasets: list[str] = input_path("datasets of one kind, merged in this order")
    name: str = Field(description="the merged dataset's name")
    rows_per_shard: int | None = Field(None, ge=1, description="rows per shard (default: config data.rows_per_shard)")


class MergeSummary(StageSummary):
    rows: int
    shards: int
    sources: int


@stage("merge", MergeInputs, MergeSummary, (), uri_out=True)
def merge(config: PipelineConfig, inputs: MergeInputs, out: Location) -> MergeSummary:
    """Concatenate datasets of one kind, in order, into one dataset called NAME (resumable)."""
    from pipeline.data.manifest import read_manifest
    from pipeline.data.reader import ShardDataset
    from pipeline.data.schema import KINDS
    from pipeline.data.shards import ShardWriter

    if not inputs.datasets:
        raise BadData("merge needs at least one dataset")
    manifests = [read_manifest(where)[1] for where in inputs.datasets]
    kinds, sizes = {m["kind"] for m in manifests}, {m.get("image_size") for m in manifests}
    if len(kinds) > 1 or len(sizes) > 1:
        each = ", ".join(f"{where}: {m['kind']}, {m.get('image_size')} px" for where, m in zip(inputs.datasets, manifests))
        raise BadData(f"cannot merge datasets of different kinds or image sizes ({each}); import or render them at "
                      "one data.image_size")
    first = manifests[0]
    info = {key: first[key] for key in ("hand_model",) if key in first}
    with ShardWriter(out, KINDS[first["kind"]], name=inputs.name,
                     rows_per_shard=inputs.rows_per_shard or config.data.rows_per_shard, image_size=first.get("image_size"),
                     config={"sources": [m["identity"]["config"] if "identity" in m else m["name"] for m in manifests]},
                     overwrite=config.run.overwrite, info={**info, "merged_from": [m["name"] for m in manifests]}) as writer:
        skip = writer.resume_rows
        for where in inputs.datasets:
            rows = ShardDataset(where, decode=False)
            for index in range(min(skip, len(rows)), len(rows)):
                writer.write(rows.raw(index))
            skip = max(0, skip - len(rows))
    return MergeSummary(rows=writer.manifest["rows"], shards=len(writer.manifest["shards"]),
                        sources=len(inputs.datasets))


class DatasetInputs(StageInputs):
    dataset: str = input_path("a dataset folder or URI")


@stage("data_register", DatasetInputs, ReportSummary, ())
def data_register(config: PipelineConfig, inputs: DatasetInputs, out: Location) -> ReportSummary:
    """Validate a dataset and copy its manifest into the registry OUT as NAME.json (relative location)."""
    from pipeline.data.registry import register_dataset

    result = register_dataset(inputs.dataset, out.path, config.run.overwrite)
    return ReportSummary(files={"record": result.pop("registered")}, details=result)


class MigrateInputs(StageInputs):
    pass


@stage("data_migrate", MigrateInputs, ReportSummary, (), reuse=False, uri_out=True)
def data_migrate(config: PipelineConfig, inputs: MigrateInputs, out: Location) -> ReportSummary:
    """Give the dataset OUT, written by handbooster 0.1, the layout pandas, pyarrow, DuckDB and datasets open."""
    from pipeline.data.registry import migrate_dataset

    return ReportSummary(details=migrate_dataset(out.text))


class SheetInputs(DatasetInputs):
    samples: int = Field(8, ge=1, le=64, description="rows of the grid")


@stage("data_sheet", SheetInputs, ReportSummary, ())
def data_sheet(config: PipelineConfig, inputs: SheetInputs, out: Location) -> ReportSummary:
    """A grid of random samples (image | normal | texture | mask, joints drawn) as OUT/grid.png, and the counts."""
    from pathlib import Path

    from pipeline.data.overview import inspect_dataset

    result = inspect_dataset(inputs.dataset, Path(out.path) / "grid.png", inputs.samples, config.seed)
    return ReportSummary(files={"grid": result.pop("grid")}, details=result)
