"""Training with accelerate: CPU, one GPU or several (``accelerate launch``), bf16 on GPU.

Randomness is a function of the step: each micro-step draws its timesteps, noise, guidance
drops and augmentation offsets from a generator seeded with (seed, micro-step), and each epoch's data order comes from
``ShardSampler(seed).set_epoch``. A checkpoint (model, EMA, optimiser, LR schedule, step,
losses) therefore resumes exactly: the next loss equals the uninterrupted run's.

Layout of ``out``: ``checkpoint-NNNNNN/`` (``unet/`` safetensors via ``save_pretrained``,
``ema_unet/``, ``training_state.pt`` read back with ``weights_only=True``), ``model/`` (the
EMA weights, the noise scheduler and ``synthesis.json``: what ``synth generate`` loads),
``loss.json`` + ``loss_curve.png`` and ``samples-NNNNNN.png`` written as it trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import SynthesisConfig
from pipeline.data.reader import ShardSampler, collate_samples
from pipeline.errors import InputError
from pipeline.imaging import png_bytes
from pipeline.paths import atomic_write_bytes
from pipeline.synthesis.data import model_dataset, shifted
from pipeline.synthesis.model import RECORD, HandObjectUNet, noise_schedule
from pipeline.synthesis.objective import diffusion_loss
from pipeline.training import (
    STATE_FILE,
    FixedOrder,
    accelerator_on,
    autocast,
    check_output,
    cpu_has_bf16,
    data_loader,
    latest_checkpoint,
    load_training_state,
    loss_curve_png,
    mixed_precision,
    require_finite_loss,
    save_checkpoint,
    save_model_folder,
    seeded,
    step_generator,
    write_record,
)

GRID_SAMPLES = 8
STATE_KEYS = {"optimizer", "lr_schedule", "ema", "step", "losses"}


def noise_scheduler(config: SynthesisConfig):
    return noise_schedule(config.num_train_timesteps, config.beta_start, config.beta_end, config.beta_schedule)


def ddpm_precision(setting: str, device: str) -> str:
    """``auto`` on a CPU with bf16 arithmetic is bf16: the UNet steps 1.8x faster there and paints
    as well (benchmarks/RESULTS.md); elsewhere :func:`mixed_precision`'s rule."""
    return "bf16" if setting == "auto" and device == "cpu" and cpu_has_bf16() else mixed_precision(setting, device)


def default_steps(config: SynthesisConfig, precision: str) -> int:
    """``max_steps_bf16`` where the DDPM trains in bf16 and the config has one, else ``max_steps``:
    a bf16 step takes about half the time on a CPU with bf16 arithmetic, so the cpu preset's half
    hour trains twice the steps there, and they paint closer to real (benchmarks/RESULTS.md)."""
    return config.max_steps_bf16 if precision == "bf16" and config.max_steps_bf16 else config.max_steps


def train(data, out, config: SynthesisConfig, *, seed: int = 0, max_steps: int | None = None, resume: bool = False,
          progress: bool = True, device: str = "cpu") -> dict:
    """Train on the shards at ``data`` into ``out``; returns a summary (steps, last losses, paths)."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    out = Path(out)
    check_output(out, resume)
    precision = ddpm_precision(config.mixed_precision, device)
    horizon = default_steps(config, precision)  # where the LR schedule ends, wherever this call stops
    max_steps = max_steps or horizon
    accelerator = accelerator_on(device, precision,
                                 gradient_accumulation_steps=config.gradient_accumulation)
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        model = HandObjectUNet.from_pretrained(checkpoint / "unet")
    else:
        with seeded(seed):
            model = HandObjectUNet.from_synthesis_config(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, betas=tuple(config.adam_betas),
                                  weight_decay=0.0)
    lr_schedule = get_scheduler({"constant": "constant_with_warmup", "cosine": "cosine"}[config.lr_schedule], optimizer,
                                num_warmup_steps=config.warmup_steps, num_training_steps=horizon)
    ema = EMAModel(model.parameters(), decay=config.ema_decay, use_ema_warmup=True, model_cls=HandObjectUNet,
                   model_config=model.config)
    step, losses = 0, []
    if checkpoint is not None:
        state = load_training_state(checkpoint / STATE_FILE, STATE_KEYS)
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        ema.load_state_dict(state["ema"])
        step, losses = int(state["step"]), list(state["losses"])
    scheduler = noise_scheduler(config)
    dataset = model_dataset(data, config.image_size)
    shard_sampler = ShardSampler(dataset, seed=seed, num_replicas=accelerator.num_processes,
                                 rank=accelerator.process_index)
    per_device = config.batch_size
    batches_per_epoch = len(shard_sampler) // per_device
    if batches_per_epoch == 0:
        raise InputError(f"has {len(dataset)} rows, fewer than one batch of {per_device}", data)
    model.train()  # from_pretrained returns eval mode, whose attention kernels round differently
    model, optimizer, lr_schedule = accelerator.prepare(model, optimizer, lr_schedule)
    ema.to(accelerator.device)
    alphas_cumprod = scheduler.alphas_cumprod.to(accelerator.device)
    grid_batch = collate_samples([dataset[i] for i in range(min(GRID_SAMPLES, len(dataset)))])

    bar = tqdm(total=max_steps, initial=step, desc="synth train", unit="step",
               disable=not (progress and accelerator.is_main_process))
    micro_step = step * config.gradient_accumulation
    window = []
    while step < max_steps:
        epoch, position = divmod(micro_step, batches_per_epoch)
        shard_sampler.set_epoch(epoch)
        order = list(shard_sampler)[:batches_per_epoch * per_device]
        loader = data_loader(dataset, batch_size=per_device, sampler=FixedOrder(order, position * per_device),
                             num_workers=config.num_workers, collate_fn=collate_samples, drop_last=True,
                             persistent_workers=False)
        for batch in loader:
            with accelerator.accumulate(model):
                with autocast(accelerator, accelerator.device, precision):
                    loss = _micro_step(model, scheduler, alphas_cumprod, batch, config, seed, micro_step,
                                       accelerator.device, accelerator.process_index)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                lr_schedule.step()
                optimizer.zero_grad(set_to_none=True)
            micro_step += 1
            window.append(float(accelerator.reduce(loss.detach().float(), "mean")))  # over the processes
            if not accelerator.sync_gradients:
                continue
            ema.step(accelerator.unwrap_model(model).parameters())
            step += 1
            losses.append(float(np.mean(window)))
            window = []
            require_finite_loss(losses[-1], step, out, "synthesis.learning_rate", config.learning_rate)
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if accelerator.is_main_process:
                if step % config.sample_every == 0 or step == max_steps:
                    _write_progress(out, step, losses, accelerator.unwrap_model(model), ema, scheduler, grid_batch,
                                    config, seed)
                if step % config.checkpoint_every == 0 or step == max_steps:
                    _save_checkpoint(out, step, accelerator.unwrap_model(model), ema, optimizer, lr_schedule, losses,
                                     config)
            if step >= max_steps:
                break
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        export_model(out / "model", accelerator.unwrap_model(model), ema, scheduler, config)
    from pipeline.data.manifest import dataset_fingerprint, dataset_name

    seen = {"train": {"name": dataset_name(data), "fingerprint": dataset_fingerprint(data), "rows": len(dataset)}}
    return {"out": str(out), "steps": step, "precision": precision, "datasets": seen,
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "model": str(out / "model"),
            "loss_curve": str(out / "loss_curve.png")}


def _micro_step(model, scheduler, alphas_cumprod, batch, config, seed, micro_step, device, process=0):
    generator = step_generator(seed, micro_step, process)
    shape = batch["image"].shape
    timesteps = torch.randint(0, config.num_train_timesteps, (shape[0],), generator=generator)
    noise = torch.randn(shape, generator=generator)
    drop_quat = torch.rand(shape[0], generator=generator) < config.quat_drop_prob
    drop_maps = torch.rand(shape[0], generator=generator) < config.maps_drop_prob
    batch = shifted(batch, config.augment_shift_px, generator)  # drawn last: when off it draws nothing
    x0 = batch["image"]
    x0, noise, timesteps = x0.to(device), noise.to(device), timesteps.to(device)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    predicted = model(noisy, timesteps, batch["normal"].to(device), batch["texture"].to(device),
                      batch["quat"].to(device), drop_quat.to(device), drop_maps.to(device))
    return diffusion_loss(predicted, x0, batch["mask"].to(device), timesteps, alphas_cumprod,
                          config.background_weight, config.snr_gamma, config.loss)


def _ema_copy(model, ema) -> HandObjectUNet:
    copy = HandObjectUNet.from_config(model.config)
    copy.load_state_dict(model.state_dict())
    ema.copy_to(copy.parameters())
    return copy.eval()


def export_model(folder: Path, model, ema, scheduler, config: SynthesisConfig) -> None:
    """EMA weights + noise scheduler + config: the inference checkpoint (written to a temp dir, then moved)."""
    save_model_folder(folder, [_ema_copy(model, ema), scheduler], RECORD[0], config.model_dump())


def _save_checkpoint(out: Path, step: int, model, ema, optimizer, lr_schedule, losses, config) -> None:
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp / "unet")
        _ema_copy(model, ema).save_pretrained(tmp / "ema_unet")
        torch.save({"optimizer": optimizer.state_dict(), "lr_schedule": lr_schedule.state_dict(),
                    "ema": ema.state_dict(), "step": step, "losses": losses}, tmp / STATE_FILE)
        write_record(tmp, RECORD[0], config.model_dump())

    save_checkpoint(out, step, write, config.keep_checkpoints)


def _write_progress(out, step, losses, model, ema, scheduler, grid_batch, config, seed) -> None:
    from pipeline.synthesis.sample import denoise, scheduler_for

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "loss.json", json.dumps({"step": step, "loss": losses}).encode())
    atomic_write_bytes(out / "loss_curve.png", loss_curve_png({"loss": losses}, "synth train", "weighted x0 loss"))
    copy = _ema_copy(model, ema).to(next(model.parameters()).device)
    sampler = scheduler_for(config.sample_scheduler, scheduler.config)
    seeds = list(range(len(grid_batch["sample_id"])))
    images = denoise(copy, sampler, grid_batch, config.sample_steps, config.guidance, [seed * 7919 + s for s in seeds])
    atomic_write_bytes(out / f"samples-{step:06d}.png", sample_grid_png(grid_batch, images))


def sample_grid_png(batch: dict, generated: torch.Tensor) -> bytes:
    """Rows: normal | texture | generated | real image, one per sample."""
    from PIL import Image

    def to_uint8(x):
        return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()

    rows = [np.concatenate([to_uint8(batch["normal"][i]), to_uint8(batch["texture"][i]), to_uint8(generated[i]),
                            to_uint8(batch["image"][i])], axis=1) for i in range(len(generated))]
    grid = np.concatenate(rows, axis=0)
    scale = max(1, 128 // grid.shape[1] * 4) if grid.shape[1] < 512 else 1
    return png_bytes(Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                                  Image.Resampling.NEAREST))
