"""Sampling: DDPM, DDIM or DPM-Solver++ over condition rows, written as synthetic shards.

Each sample's starting noise (and the noise of DDPM's stochastic steps) comes from its own
generator, seeded from the run's seed and the sample id: an image does not depend on which
batch it was generated in. Classifier-free guidance mixes the x0 predictions:
``x0 = x0_null + g (x0_cond - x0_null)``, the null branch using the learned null quaternion.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.config import SynthesisConfig
from pipeline.data.reader import ShardDataset, collate_samples
from pipeline.errors import BadData, InputError
from pipeline.imaging import png_bytes
from pipeline.synthesis.data import CONDITION_COLUMNS, ModelInputs

SCHEDULERS = ("ddpm", "ddim", "dpm")


def scheduler_for(name: str, training_config):
    """A sampler built from the training noise schedule, predicting x0."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = dict(training_config)
    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    if name == "ddim":
        return DDIMScheduler.from_config(config, clip_sample=True, set_alpha_to_one=True)
    if name == "dpm":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2,
                                                       thresholding=False)
    raise InputError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")


def sample_seed(seed: int, sample_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()[:8], "little") >> 1


@torch.no_grad()
def denoise(model, scheduler, batch: dict, steps: int, guidance: float, seeds: list[int]) -> torch.Tensor:
    """Images in [-1, 1] for a batch of conditions (``normal``, ``texture``, ``quat``), one seed each."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    size = model.config.image_size
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    sample = torch.stack([torch.randn(3, size, size, generator=g) for g in generators]).to(device, dtype)
    normal, texture = batch["normal"].to(device, dtype), batch["texture"].to(device, dtype)
    quat = batch["quat"].to(device, dtype)
    count = sample.shape[0]
    scheduler.set_timesteps(steps)
    guided = guidance != 1.0
    drop = torch.cat([torch.zeros(count, dtype=torch.bool), torch.ones(count, dtype=torch.bool)]).to(device)
    for t in scheduler.timesteps:
        timesteps = torch.full((count,), int(t), device=device, dtype=torch.long)
        if guided:
            both = model(torch.cat([sample, sample]), torch.cat([timesteps, timesteps]), torch.cat([normal, normal]),
                         torch.cat([texture, texture]), torch.cat([quat, quat]), drop_quat=drop)
            conditional, unconditional = both.chunk(2)
            x0 = unconditional + guidance * (conditional - unconditional)
        else:
            x0 = model(sample, timesteps, normal, texture, quat)
        sample = scheduler.step(x0, t, sample, generator=generators).prev_sample  # DDPM draws its noise here
    return sample.clamp(-1, 1)


def check_generated(images: torch.Tensor, sample_ids: list[str], guidance: float) -> None:
    """Refuse to write images that are not pictures: non-finite values, or one flat colour."""
    values = images.float().flatten(1)
    finite = torch.isfinite(values).all(dim=1)
    flat = values.nan_to_num().amax(dim=1) - values.nan_to_num().amin(dim=1) < 1e-3
    for sample_id, ok, constant in zip(sample_ids, finite.tolist(), flat.tolist()):
        if not ok or constant:
            what = "non-finite values" if not ok else "a single flat colour"
            raise BadData(f"sample {sample_id!r}: the generator produced {what} (guidance {guidance}); nothing of "
                          "this batch was written: check the checkpoint and the sampling settings")


def checkpoint_digest(folder: Path) -> str:
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise InputError("no *.safetensors weights: expected the 'model' folder written by 'synth train'", folder)
    digest = hashlib.sha256()
    for path in weights:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def generate(ckpt, specs, out, *, scheduler: str | None = None, steps: int | None = None, guidance: float | None = None,
             seed: int = 0, batch_size: int = 16, overwrite: bool = False, progress: bool = True,
             row_range: tuple[int, int] | None = None, device: str = "cpu") -> dict:
    """Paint an image for every row of ``specs`` (condition maps filled), or of its rows
    ``[start, stop)``, into synthetic shards at ``out``. ``scheduler``, ``steps`` and ``guidance``
    left None are the checkpoint's: those its training config (its preset) samples with."""
    from PIL import Image

    from pipeline.data.shards import ShardWriter
    from pipeline.synthesis.model import RECORD, HandObjectUNet
    from pipeline.training import model_folder, read_record

    folder = model_folder(ckpt, RECORD, "synth train")
    digest = checkpoint_digest(folder)
    model = HandObjectUNet.from_pretrained(folder).eval().to(device)
    training = read_record(folder, RECORD, "synth train")
    defaults = SynthesisConfig()  # a record without a key was written while the default held
    scheduler, steps, guidance = (training.get(key, getattr(defaults, key)) if given is None else given
                                  for key, given in (("sample_scheduler", scheduler), ("sample_steps", steps),
                                                     ("guidance", guidance)))
    sampler = scheduler_for(scheduler, json.loads((folder / "scheduler_config.json").read_text()))
    rows = ShardDataset(specs, decode=False)  # read once: conditions are decoded from the same raw rows
    if rows.manifest["kind"] != "sample":
        raise BadData(f"expected condition rows (samples with normal and texture maps), this dataset holds "
                      f"{rows.manifest['kind']} records", specs)
    if not len(rows):
        raise BadData("has no rows", specs)
    to_inputs = ModelInputs(model.config.image_size, with_image=False)

    def model_inputs(row: dict, index: int) -> dict:
        return to_inputs({column: rows.decode_cell(index, column, row[column]) for column in CONDITION_COLUMNS})

    model_inputs(rows.raw(0), 0)  # specs without maps fail here, naming the sample, before any work
    manifest = rows.manifest
    size = manifest.get("image_size") or model.config.image_size
    gen = {"checkpoint_sha": digest, "steps": steps, "scheduler": scheduler, "guidance": float(guidance)}
    first, stop = row_range or (0, len(rows))
    stop = min(stop, len(rows))
    config = {**gen, "seed": seed, "specs": manifest["name"], **({"rows": [first, stop]} if row_range else {})}
    with ShardWriter(out, name=f"{manifest['name']}_synthetic", rows_per_shard=manifest["shards"][0]["rows"]
                     if manifest["shards"] else 4096, image_size=size, config=config, overwrite=overwrite,
                     info={"hand_model": manifest.get("hand_model"),
                           "sources": {"checkpoint": str(folder), "specs": str(specs)}}) as writer:
        indices = list(range(first + writer.resume_rows, stop))
        bar = tqdm(total=len(indices), desc=f"synth generate ({scheduler}-{steps})", unit="img",
                   disable=not progress)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            raw = [rows.raw(i) for i in chunk]
            batch = collate_samples([model_inputs(row, i) for row, i in zip(raw, chunk)])
            seeds = [sample_seed(seed, sample_id) for sample_id in batch["sample_id"]]
            images = denoise(model, sampler, batch, steps, guidance, seeds)
            check_generated(images, batch["sample_id"], guidance)
            for row, image, sample_seed_value in zip(raw, images, seeds):
                array = ((image.float().cpu() + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
                picture = Image.fromarray(array)
                if picture.size[0] != size:
                    picture = picture.resize((size, size), Image.Resampling.BICUBIC)
                writer.write({**row, "image": png_bytes(picture), "source": "synthetic",
                              "gen": {**gen, "seed": sample_seed_value}})
                bar.update()
        bar.close()
    return {"out": str(out), "rows": writer.manifest["rows"], "checkpoint_sha": digest, "scheduler": scheduler,
            "steps": steps, "guidance": float(guidance)}


