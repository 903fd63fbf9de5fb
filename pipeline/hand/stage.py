"""The hand stage: an official MANO file converted to the npz files the pipeline reads."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.stage import ReportSummary, StageInputs, input_path, stage
from pipeline.storage import Location


class ConvertInputs(StageInputs):
    mano: str = input_path("an official MANO_RIGHT.pkl or MANO_LEFT.pkl (no chumpy needed)", local=True)


@stage("convert_mano", ConvertInputs, ReportSummary, ())
def convert_mano(config: PipelineConfig, inputs: ConvertInputs, out: Location) -> ReportSummary:
    """Convert an official MANO pickle (no chumpy needed) into MANO_RIGHT.npz / MANO_LEFT.npz."""
    from pipeline.hand.export import convert_mano as convert

    result = convert(Path(inputs.mano), Path(out.path))
    return ReportSummary(files={"npz": result.pop("out")}, details=result)
