"""The objects stage: SDF grids and convex pieces of a library computed and cached ahead of use."""

from __future__ import annotations

from pydantic import Field

from pipeline.config import PipelineConfig
from pipeline.stage import ReportSummary, StageInputs, stage
from pipeline.storage import Location


class PrepareInputs(StageInputs):
    objects: list[str] | None = Field(None, description="object names (default: the whole library)")


@stage("objects_prepare", PrepareInputs, ReportSummary, ("objects",), uri_out=True)
def objects_prepare(config: PipelineConfig, inputs: PrepareInputs, out: Location) -> ReportSummary:
    """Precompute and cache SDF grids and convex decompositions (progress bar); OUT gets prepared.json."""
    from pipeline.objects.commands import prepare_objects

    result = prepare_objects(config.objects, inputs.objects, progress=config.run.progress, workers=config.run.workers)
    out.write_json("prepared.json", result)
    return ReportSummary(files={"prepared": out.address("prepared.json")}, details=result)
