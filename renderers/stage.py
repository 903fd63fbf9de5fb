"""The render stages: condition maps for a dataset's rows (and photo-style images for the demo domain).

``conditions`` copies a dataset (imported samples or condition specs) to a new folder with
``normal``, ``texture`` and ``mask`` rendered from each row's labels; ``photos`` also paints
the ``image`` column with the demo domain's photo renderer, the "oracle" that draws what a
perfect generator would for the demo. Shards are written anew, never edited in place.
"""

from __future__ import annotations

import multiprocessing
import os

from pipeline.config import PipelineConfig, config_record
from pipeline.data.storage import Location
from pipeline.errors import BadData
from pipeline.parallel import parallel_map
from pipeline.stage import StageInputs, StageSummary, input_path, stage
from renderers.sample import LABEL_COLUMNS, SampleRenderer, scene_of

SECTIONS = ("objects.library", "hand.model")


class RenderInputs(StageInputs):
    dataset: str = input_path("imported samples, demo samples or condition specs")
    rows: tuple[int, int] | None = None  # only rows [start, stop): a batch of a flow's rendering


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


_WORKER: RowPainter | None = None


def _start_worker(*args) -> None:
    global _WORKER
    if multiprocessing.parent_process() is not None:
        os.environ["LP_NUM_THREADS"] = "1"  # one llvmpipe thread per worker: the workers use the cores
    _WORKER = RowPainter(*args)


def _paint(item):
    return _WORKER(item)


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
    missing = sorted(wanted - set(library.names))
    if missing:
        raise BadData(f"object(s) {', '.join(missing)} not in the object library '{config.objects.library}' "
                      "(set objects.library to a library holding the dataset's objects, e.g. a YCB folder)",
                      inputs.dataset)
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
        painted = parallel_map(_paint, items, workers=config.run.workers, desc=f"render {what}", unit="row",
                               progress=config.run.progress, initializer=_start_worker,
                               initargs=(config.objects.library, hand_spec, size, what, config.seed))
        for index, pictures in enumerate(painted, start):
            row = rows.raw(index)
            if what == "photos":
                row["source"] = "synthetic"
            writer.write({**row, **pictures})
    return RenderSummary(rows=writer.manifest["rows"], shards=len(writer.manifest["shards"]),
                         resumed_rows=start - first)


@stage("conditions", RenderInputs, RenderSummary, SECTIONS)
def conditions(config: PipelineConfig, inputs: RenderInputs, out: Location) -> RenderSummary:
    """Copy ``inputs.dataset`` to ``out`` with its condition maps rendered from each row's labels."""
    return render_rows(config, inputs, out, "conditions")


@stage("photos", RenderInputs, RenderSummary, SECTIONS)
def photos(config: PipelineConfig, inputs: RenderInputs, out: Location) -> RenderSummary:
    """Like :func:`conditions`, and the ``image`` painted by the demo domain's photo renderer
    (seeded per sample): synthetic images as good as the domain's own renderer makes them."""
    return render_rows(config, inputs, out, "photos")
