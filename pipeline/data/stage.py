"""The merge stage: datasets of one kind concatenated, in order, into one.

A flow cuts work into batches (an object's grasps, a chunk of rows to render or paint), each
writing its own dataset; merging them gives exactly the dataset one process would have
written: the same rows in the same order, re-sharded at ``rows_per_shard``.
"""

from __future__ import annotations

from pipeline.config import PipelineConfig
from pipeline.data.storage import Location
from pipeline.errors import BadData
from pipeline.stage import StageInputs, StageSummary, input_path, stage


class MergeInputs(StageInputs):
    datasets: list[str] = input_path("datasets of one kind, merged in this order")
    name: str
    rows_per_shard: int | None = None  # default: config data.rows_per_shard


class MergeSummary(StageSummary):
    rows: int
    shards: int
    sources: int


@stage("merge", MergeInputs, MergeSummary, ())
def merge(config: PipelineConfig, inputs: MergeInputs, out: Location) -> MergeSummary:
    """Concatenate ``inputs.datasets`` into ``out`` as the dataset ``inputs.name``."""
    from pipeline.data.manifest import read_manifest
    from pipeline.data.reader import ShardDataset
    from pipeline.data.schema import KINDS
    from pipeline.data.shards import ShardWriter

    if not inputs.datasets:
        raise BadData("merge needs at least one dataset")
    manifests = [read_manifest(where)[1] for where in inputs.datasets]
    kinds, sizes = {m["kind"] for m in manifests}, {m.get("image_size") for m in manifests}
    if len(kinds) > 1 or len(sizes) > 1:
        raise BadData(f"cannot merge datasets of different kinds or image sizes ({sorted(kinds)}, {sorted(sizes, key=str)})")
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


class PlainInputs(StageInputs):
    dataset: str = input_path("rows with condition maps (rendered specs)")


@stage("plain_renders", PlainInputs, MergeSummary, ())
def plain_renders(config: PipelineConfig, inputs: PlainInputs, out: Location) -> MergeSummary:
    """A copy of ``inputs.dataset`` whose image is its texture map: the rendering-based baseline
    (ObMan-style renders of the same conditions, without the DDPM)."""
    from pipeline.data.manifest import read_manifest
    from pipeline.data.reader import ShardDataset
    from pipeline.data.shards import ShardWriter

    _, manifest = read_manifest(inputs.dataset)
    rows = ShardDataset(inputs.dataset, decode=False)
    with ShardWriter(out, name=f"{manifest['name']}_plain", rows_per_shard=config.data.rows_per_shard,
                     image_size=manifest.get("image_size"), config={"source": manifest["name"]},
                     overwrite=config.run.overwrite, info={"hand_model": manifest.get("hand_model")}) as writer:
        for index in range(writer.resume_rows, len(rows)):
            row = rows.raw(index)
            if row.get("texture") is None:
                raise BadData(f"sample {row.get('sample_id')!r}: column 'texture' is null: render conditions first",
                              inputs.dataset)
            writer.write({**row, "image": row["texture"], "source": "synthetic"})
    return MergeSummary(rows=writer.manifest["rows"], shards=len(writer.manifest["shards"]), sources=1)
