"""The render stages: condition maps for a dataset's rows (and photo-style images for the demo
domain), and the pictures: a posed hand, an object contact sheet, random scene previews.

``conditions`` copies a dataset (imported samples or condition specs) to a new folder with
``normal``, ``texture`` and ``mask`` rendered from each row's labels; ``photos`` also paints
the ``image`` column with the demo domain's photo renderer, the "oracle" that draws what a
perfect generator would for the demo. Shards are written anew, never edited in place.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config import PipelineConfig, config_record
from pipeline.errors import BadData
from pipeline.parallel import parallel_map
from pipeline.stage import ReportSummary, RowRange, StageInputs, StageSummary, input_path, row_range, stage
from pipeline.storage import Location
from renderers.sample import LABEL_COLUMNS, SampleRenderer, scene_of

SECTIONS = ("objects.library", "hand.model")


class RenderInputs(StageInputs):
    dataset: str = input_path("imported samples, demo samples or condition specs")
    rows: RowRange | None = row_range("rendering")


class RenderSummary(StageSummary):
    rows: int
    shards: int
    resumed_rows: int

    def as_reused(self) -> RenderSummary:
        return self.model_copy(update={"reused": True, "resumed_rows": self.rows})


class RowPainter:
    """What rendering a dataset's rows needs in each process: library, hand model, renderer."""

    def __init__(self, library_spec: str, hand_spec: str, size: int, what: str, seed: int):
        import torch

        from pipeline.hand import load_hand_model
        from pipeline.objects import load_object_library

        self.library = load_object_library(library_spec)
        self.hand_model = load_hand_model(hand_spec, dtype=torch.float64)
        self.renderer = SampleRenderer(size)
        self.what, self.seed = what, seed

    def __call__(self, item: tuple[str, dict]) -> dict[str, bytes]:
        """PNG bytes of one row (its id and its ``LABEL_COLUMNS``)."""
        from pipeline.synthesis.sample import sample_seed

        sample_id, labels = item
        scene = scene_of(labels, self.hand_model, self.library)
        photo_seed = sample_seed(self.seed, sample_id) if self.what == "photos" else None
        return self.renderer.render(scene, self.hand_model.faces, photo_seed=photo_seed)


def render_rows(config: PipelineConfig, inputs: RenderInputs, out: Location, what: str) -> RenderSummary:
    from pipeline.data.manifest import read_columns
    from pipeline.data.reader import ShardDataset
    from pipeline.data.shards import ShardWriter
    from pipeline.objects import load_object_library
    from pipeline.sampling.stage import hand_model_spec

    rows = ShardDataset(inputs.dataset, decode=False)
    manifest = rows.manifest
    if manifest["kind"] != "sample":
        raise BadData(f"expected a dataset of samples, this one holds {manifest['kind']} records", inputs.dataset)
    size = manifest.get("image_size")
    if not size:
        raise BadData(".manifest.json: 'image_size' is missing; the crops' size is needed to render", inputs.dataset)
    library = load_object_library(config.objects.library)
    _, table = read_columns(inputs.dataset, ["sample_id", *LABEL_COLUMNS])
    labels = table.to_pylist()
    wanted = {row["object_id"] for row in labels if row["object_id"] is not None and row["object_pose"] is not None}
    library.require(wanted, inputs.dataset)
    hand_spec = hand_model_spec(config, manifest)
    first, stop = inputs.rows or (0, len(labels))
    stop = min(stop, len(labels))
    record = {**config_record(config, SECTIONS), "source": manifest["name"], "hand_model": hand_spec, "what": what,
              **({"rows": [first, stop]} if inputs.rows else {})}
    rows_per_shard = manifest["shards"][0]["rows"] if manifest["shards"] else config.data.rows_per_shard
    with ShardWriter(out, name=f"{manifest['name']}_{what}", rows_per_shard=rows_per_shard, image_size=size,
                     config=record, overwrite=config.run.overwrite,
                     info={"hand_model": hand_spec, "source": inputs.dataset}) as writer:
        start = first + writer.resume_rows
        items = [(row.pop("sample_id"), row) for row in labels[start:stop]]
        painted = parallel_map(None, items, workers=config.run.workers, desc=f"render {what}", unit="row",
                               progress=config.run.progress, make_worker=RowPainter,
                               worker_args=(config.objects.library, hand_spec, size, what, config.seed))
        for index, pictures in enumerate(painted, start):
            row = rows.raw(index)
            if what == "photos":
                row["source"] = "synthetic"
            writer.write({**row, **pictures})
    return RenderSummary(rows=writer.manifest["rows"], shards=len(writer.manifest["shards"]),
                         resumed_rows=start - first)


@stage("conditions", RenderInputs, RenderSummary, SECTIONS, uri_out=True)
def conditions(config: PipelineConfig, inputs: RenderInputs, out: Location) -> RenderSummary:
    """Fill the normal, texture and mask columns of a dataset (writes new shards, resumable)."""
    return render_rows(config, inputs, out, "conditions")


@stage("photos", RenderInputs, RenderSummary, SECTIONS, uri_out=True)
def photos(config: PipelineConfig, inputs: RenderInputs, out: Location) -> RenderSummary:
    """Like 'conditions', and the image painted by the demo domain's photo renderer (seeded per
    sample): the boost experiment's oracle arm."""
    return render_rows(config, inputs, out, "photos")


class HandExportInputs(StageInputs):
    pose: Literal["flat", "relaxed", "fist", "random"] = Field("relaxed", description="the hand's pose (random: "
                                                                                      "drawn from the seed)")
    format: Literal["obj", "ply", "png"] = Field("obj", description="obj, ply: a watertight mesh; png: a picture")


@stage("hand_export", HandExportInputs, ReportSummary, ("hand",))
def hand_export(config: PipelineConfig, inputs: HandExportInputs, out: Location) -> ReportSummary:
    """Write the hand in a named or random pose as a watertight mesh (OUT/hand.obj, .ply) or a picture (.png)."""
    from pathlib import Path

    from pipeline.hand.export import export_hand
    from renderers.preview import hand_picture

    result = export_hand(config.hand.model, config.hand.side, inputs.pose, config.seed,
                         Path(out.path) / f"hand.{inputs.format}", picture=hand_picture)
    return ReportSummary(files={"hand": result.pop("out")}, details=result)


class LibraryInputs(StageInputs):
    objects: list[str] | None = Field(None, description="object names (default: the whole library)")
    columns: int = Field(5, ge=1, le=20, description="pictures per row")


@stage("objects_sheet", LibraryInputs, ReportSummary, ("objects.library",))
def objects_sheet(config: PipelineConfig, inputs: LibraryInputs, out: Location) -> ReportSummary:
    """Render a labelled contact sheet of the object library as OUT/sheet.png."""
    from pathlib import Path

    from renderers.sheet import object_sheet

    result = object_sheet(config.objects, Path(out.path) / "sheet.png", inputs.objects, inputs.columns)
    return ReportSummary(files={"sheet": result.pop("out")}, details=result)


class PreviewInputs(StageInputs):
    scenes: int = Field(4, ge=1, le=32, description="random hand-object scenes")
    size: int = Field(256, ge=32, le=1024, description="panel side, pixels")


@stage("render_preview", PreviewInputs, ReportSummary, SECTIONS)
def render_preview(config: PipelineConfig, inputs: PreviewInputs, out: Location) -> ReportSummary:
    """photo | normal | texture | mask of random hand-object scenes, joints drawn, as OUT/preview.png."""
    from pathlib import Path

    from renderers.random_scenes import render_preview as preview

    result = preview(config, Path(out.path) / "preview.png", inputs.scenes, inputs.size)
    return ReportSummary(files={"preview": result.pop("preview")}, details=result)
