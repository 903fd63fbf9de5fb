"""The synthesizer's stages: train the conditional DDPM, generate images for condition rows.

``synth_train`` trains on a dataset with images and maps (``synthesis`` section, its
``preset`` filled in); a folder already holding a run is continued only with
``run.resume`` (exact resume from the newest checkpoint). ``synth_generate`` paints an
image for every condition row with a trained checkpoint.
"""

from __future__ import annotations

from pipeline.config import PipelineConfig
from pipeline.data.storage import Location
from pipeline.stage import StageInputs, StageSummary, input_path, stage


class TrainInputs(StageInputs):
    data: str = input_path("a dataset with image, normal, texture, mask and hand_quat (real shards)")


class TrainSummary(StageSummary):
    steps: int
    loss_first: float | None
    loss_last: float | None
    model: str
    loss_curve: str


class GenerateInputs(StageInputs):
    ckpt: str = input_path("a folder written by synth_train")
    specs: str = input_path("rows with condition maps: rendered specs or a real dataset")
    rows: tuple[int, int] | None = None  # only rows [start, stop): a batch of a flow's generation


class GenerateSummary(StageSummary):
    rows: int
    checkpoint_sha: str
    scheduler: str
    steps: int
    guidance: float


@stage("synth_train", TrainInputs, TrainSummary, ("synthesis",), reuse=False)
def synth_train(config: PipelineConfig, inputs: TrainInputs, out: Location) -> TrainSummary:
    """Train the DDPM on ``inputs.data`` into ``out`` (accelerate: CPU, a GPU, or several)."""
    from pipeline.synthesis.presets import resolve
    from pipeline.synthesis.train import train

    result = train(inputs.data, out.path, resolve(overrides=config.synthesis), seed=config.seed,
                   resume=config.run.resume, progress=config.run.progress)
    return TrainSummary(**{key: value for key, value in result.items() if key != "out"})


@stage("synth_generate", GenerateInputs, GenerateSummary,
       ("synthesis.sample_scheduler", "synthesis.sample_steps", "synthesis.guidance"))
def synth_generate(config: PipelineConfig, inputs: GenerateInputs, out: Location) -> GenerateSummary:
    """An image for every row of ``inputs.specs``; the guidance is ``synthesis.guidance`` when the
    config sets it, else the checkpoint's training default."""
    from pipeline.synthesis.sample import generate

    synthesis = config.synthesis
    guidance = synthesis.guidance if "guidance" in synthesis.model_fields_set else None
    result = generate(inputs.ckpt, inputs.specs, out.text, scheduler=synthesis.sample_scheduler,
                      steps=synthesis.sample_steps, guidance=guidance, seed=config.seed,
                      batch_size=synthesis.generate_batch_size, overwrite=config.run.overwrite,
                      progress=config.run.progress, row_range=inputs.rows)
    return GenerateSummary(**{key: value for key, value in result.items() if key != "out"})
