"""The synthesizer's stages: train the conditional DDPM, generate images for condition rows,
evaluate it, and the baseline synthesizer that uses the texture map as the image.

``synth_train`` trains on a dataset with images and maps (``synthesis`` section, its
``preset`` filled in); a folder already holding a run is continued only with
``run.resume`` (exact resume from the newest checkpoint). ``synth_generate`` paints an
image for every condition row with a trained checkpoint.
"""

from __future__ import annotations

from pydantic import Field

from pipeline.config import PipelineConfig
from pipeline.errors import BadData
from pipeline.stage import RowRange, StageInputs, StageSummary, input_path, row_range, stage
from pipeline.storage import Location


class TrainInputs(StageInputs):
    data: str = input_path("a dataset with image, normal, texture, mask and hand_quat (real shards)")


class TrainSummary(StageSummary):
    steps: int
    precision: str = Field("no", description="the forward passes' precision: no (fp32), bf16 or fp16")
    datasets: dict = Field({}, description="what it trained on: name, content fingerprint and rows")
    loss_first: float | None
    loss_last: float | None
    model: str
    loss_curve: str


class GenerateInputs(StageInputs):
    ckpt: str = input_path("a folder written by synth_train", local=True)
    specs: str = input_path("rows with condition maps: rendered specs or a real dataset")
    rows: RowRange | None = row_range("generation")


class GenerateSummary(StageSummary):
    rows: int
    checkpoint_sha: str
    scheduler: str
    steps: int
    guidance: float


@stage("synth_train", TrainInputs, TrainSummary, ("synthesis",), reuse=False,
       resume_may_change=("synthesis.max_steps", "synthesis.max_steps_bf16", "synthesis.num_workers"))
def synth_train(config: PipelineConfig, inputs: TrainInputs, out: Location) -> TrainSummary:
    """Train the DDPM (accelerate: CPU, a GPU, or several with 'accelerate launch')."""
    from pipeline.synthesis.presets import resolve
    from pipeline.synthesis.train import train

    result = train(inputs.data, out.path, resolve(overrides=config.synthesis), seed=config.seed,
                   resume=config.run.resume, progress=config.run.progress, device=config.run.device)
    return TrainSummary(**{key: value for key, value in result.items() if key != "out"})


@stage("synth_generate", GenerateInputs, GenerateSummary,
       ("synthesis.preset", "synthesis.sample_scheduler", "synthesis.sample_steps", "synthesis.guidance"), uri_out=True)
def synth_generate(config: PipelineConfig, inputs: GenerateInputs, out: Location) -> GenerateSummary:
    """Paint an image for every condition row; writes synthetic shards with generator provenance.

    The sampler's settings (scheduler, steps, guidance) are the config's over its preset's where
    either sets them, else the checkpoint's: those of the preset it was trained with."""
    from pipeline.synthesis.presets import resolve
    from pipeline.synthesis.sample import generate

    synthesis = resolve(overrides=config.synthesis)
    scheduler, steps, guidance = (getattr(synthesis, key) if key in synthesis.model_fields_set else None
                                  for key in ("sample_scheduler", "sample_steps", "guidance"))
    result = generate(inputs.ckpt, inputs.specs, out.text, scheduler=scheduler, steps=steps, guidance=guidance,
                      seed=config.seed, batch_size=synthesis.generate_batch_size, overwrite=config.run.overwrite,
                      progress=config.run.progress, row_range=inputs.rows, device=config.run.device)
    return GenerateSummary(**{key: value for key, value in result.items() if key != "out"})


class EvalInputs(StageInputs):
    ckpt: str = input_path("a folder written by synth_train", local=True)
    real: str = input_path("real test images with their condition maps")
    recon: str | None = input_path("a reconstructor trained on real data (recon_train), for condition fidelity",
                                  None, local=True)
    train: str | None = input_path("a real training split, for the floor distance (real images of other "
                                   "sequences against the test)", None)


class EvalSummary(StageSummary):
    count: int
    frechet_distance: float
    frechet_distance_plain_renders: float
    frechet_distance_real_floor: float | None
    feature_network: str
    fidelity: dict | None
    files: dict[str, str]


@stage("synth_eval", EvalInputs, EvalSummary,
       ("synthesis.preset", "synthesis.sample_scheduler", "synthesis.sample_steps", "synthesis.guidance",
        "reconstruction.procrustes"), uri_out=True)
def synth_eval(config: PipelineConfig, inputs: EvalInputs, out: Location) -> EvalSummary:
    """Re-synthesise the real test images from their own conditions, then their Fréchet distance to
    the real images beside the plain renders' (the texture maps as images) and the real floor's
    (as many images of a real training split), the reconstructor's errors on both, and a grid of the pairs."""
    import numpy as np

    from pipeline.data.manifest import read_columns, require_labels
    from pipeline.data.reader import ShardDataset
    from pipeline.imaging import png_bytes
    from pipeline.synthesis.evaluate import dataset_images, frechet_distance, image_features

    _, table = read_columns(inputs.real, ["image", "normal", "texture"])  # checked before any image is made
    require_labels(inputs.real, table, ("image", "normal", "texture"))
    if inputs.recon is not None:
        require_labels(inputs.real)
    resynthesised = out.child("resynthesised")
    synth_generate(config, GenerateInputs(ckpt=inputs.ckpt, specs=inputs.real), resynthesised)
    real = ShardDataset(inputs.real, columns=["normal", "texture"])
    real_images, fake_images = dataset_images(inputs.real), dataset_images(resynthesised)
    device = config.run.device
    real_features = image_features(real_images, device=device)
    distances = {"frechet_distance": frechet_distance(image_features(fake_images, device=device), real_features),
                 "frechet_distance_plain_renders": frechet_distance(image_features(
                     dataset_images(inputs.real, column="texture"), device=device), real_features),
                 "frechet_distance_real_floor": None if inputs.train is None else frechet_distance(image_features(
                     dataset_images(inputs.train, len(real_images), spread=True), device=device), real_features)}
    distances = {name: None if value is None else round(value, 4) for name, value in distances.items()}
    fidelity = None
    if inputs.recon is not None:
        from pipeline.reconstruction.data import recon_dataset
        from pipeline.reconstruction.filter import CRITERIA, row_errors
        from pipeline.reconstruction.models import load_reconstructor

        model = load_reconstructor(inputs.recon).to(config.run.device)
        errors = {name: row_errors(model, recon_dataset(where, model.config.image_size),
                                   procrustes=config.reconstruction.procrustes)
                  for name, where in (("real", inputs.real), ("resynthesised", resynthesised))}
        fidelity = {name: {c: round(float(np.mean(values[c])), 3) for c in CRITERIA} for name, values in errors.items()}
    pairs = []
    for i in np.linspace(0, len(real) - 1, min(8, len(real))).astype(int):
        row = real[int(i)]
        pairs.append(np.concatenate([image.permute(1, 2, 0).numpy() for image in (
            real_images[i], fake_images[i], row["normal"], row["texture"])], axis=1))
    out.write_atomic("real_vs_resynthesised.png", png_bytes(np.concatenate(pairs, axis=0)))
    out.write_json("synth_eval.json", {**distances, "fidelity": fidelity, "count": len(real)})
    return EvalSummary(count=len(real), **distances, fidelity=fidelity,
                       feature_network="EfficientNet-Lite0 (ImageNet), last block pooled, 224 px; not comparable "
                                       "with published Inception FID",
                       files={name: out.address(name) for name in ("real_vs_resynthesised.png", "synth_eval.json",
                                                                    "resynthesised")})


class PlainSummary(StageSummary):
    rows: int
    shards: int


class PlainInputs(StageInputs):
    dataset: str = input_path("rows with condition maps (rendered specs)")


@stage("plain_renders", PlainInputs, PlainSummary, (), uri_out=True)
def plain_renders(config: PipelineConfig, inputs: PlainInputs, out: Location) -> PlainSummary:
    """A copy of the dataset whose image is its texture map: the rendering-based baseline synthesizer
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
    return PlainSummary(rows=writer.manifest["rows"], shards=len(writer.manifest["shards"]))
