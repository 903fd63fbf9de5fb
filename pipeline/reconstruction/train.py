"""Training a reconstructor on real (and synthetic) shards with accelerate.

Data: the real training rows (minus ``val_fraction`` of their sequences, held out to choose
the best checkpoint, unless a validation set is given) mixed with synthetic rows through
``MixedDataset`` (every synthetic row once per epoch, or ``synthetic_fraction`` of the
epoch). Each epoch's order is a permutation seeded by (seed, epoch) and each step's
augmentation comes from a generator seeded by (seed, step), so a run resumed from a
checkpoint gives the losses of an uninterrupted one.

Layout of ``out``: ``checkpoint-NNNNNN/`` (``model/`` via ``save_pretrained`` and
``training_state.pt``), ``model/`` (the best weights by the validation score, with
``reconstruction.json``: the config, the hand model and the datasets it saw), ``loss.json``,
``loss_curve.png``, ``val_curve.png``, ``training.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import ReconstructionConfig
from pipeline.data.manifest import dataset_fingerprint, dataset_name
from pipeline.data.reader import MixedDataset, collate_samples
from pipeline.errors import BadData
from pipeline.paths import atomic_write_bytes
from pipeline.reconstruction.data import draw_augmentation, make_targets, recon_dataset
from pipeline.reconstruction.losses import reconstruction_losses
from pipeline.reconstruction.metrics import evaluate
from pipeline.reconstruction.models import RECORD, model_class
from pipeline.reconstruction.predict import predict, selection_score
from pipeline.training import (
    STATE_FILE,
    FixedOrder,
    accelerator_on,
    autocast,
    check_output,
    data_loader,
    latest_checkpoint,
    load_training_state,
    loss_curve_png,
    replace_folder,
    require_finite_loss,
    save_checkpoint,
    save_model_folder,
    seeded,
    step_generator,
)

STATE_KEYS = {"optimizer", "lr_schedule", "step", "losses", "validation", "best"}


def held_out_rows(where, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Training and validation row indices of the dataset at ``where``: whole sequences go to
    validation, about ``fraction`` of them, chosen by a hash of (seed, sequence) so that the split
    does not depend on order."""
    if fraction <= 0:
        from pipeline.data.manifest import read_manifest

        return list(range(read_manifest(where)[1]["rows"])), []
    return _split_rows(_sequence_keys(where), fraction, seed)


def _sequence_keys(where) -> list:
    """Each row's sequence, or its sample id where it has none (a sequence of its own)."""
    from pipeline.data.manifest import read_columns

    _, table = read_columns(where, ["sequence_id", "sample_id"])
    return [s if s is not None else i for s, i in zip(table.column("sequence_id").to_pylist(),
                                                      table.column("sample_id").to_pylist())]


def _split_rows(keys: list, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    import hashlib

    if fraction <= 0:
        return list(range(len(keys))), []
    scale = 1 << 32
    held = [int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:4], "little") / scale < fraction
            for key in keys]
    train = [i for i, h in enumerate(held) if not h]
    val = [i for i, h in enumerate(held) if h]
    if not val or not train:  # too few sequences to hold whole ones out: every tenth row instead
        val = list(range(0, len(keys), max(2, round(1 / fraction))))
        held_rows = set(val)
        train = [i for i in range(len(keys)) if i not in held_rows]
    return train, val


def fewer_than_a_batch(rows: int, batch_size: int, data) -> BadData:
    return BadData(f"has {rows} training rows, fewer than one batch of {batch_size} (reconstruction.batch_size)",
                   data)


def require_one_batch(data, config: ReconstructionConfig, seeds) -> None:
    """``data`` alone fills one batch for each of ``seeds`` once its validation sequences are held
    out: a flow checks it before the hours of work that come before its trainings."""
    keys = _sequence_keys(data)  # read once for every seed
    for seed in seeds:
        rows = len(_split_rows(keys, config.val_fraction, seed)[0])
        if rows < config.batch_size:
            raise fewer_than_a_batch(rows, config.batch_size, data)


MODEL_OPTIONS = ("image_size", "backbone", "width", "pretrained", "kernels")  # config keys a model may take


def build_model(config: ReconstructionConfig, hand_model: str):
    """The configured model; it gets the config's values for the options its constructor takes."""
    import inspect

    cls = model_class(config.model)
    accepted = inspect.signature(cls.__init__).parameters
    return cls(hand_model=hand_model, **{name: getattr(config, name) for name in MODEL_OPTIONS if name in accepted})


def learning_rate_schedule(optimizer, config: ReconstructionConfig, steps_per_epoch: int):
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [max(1, int(config.lr_milestone * config.max_steps))],
                                                    gamma=config.lr_gamma)
    if config.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: config.lr_gamma ** (step // steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def validate(model, dataset, rows, config: ReconstructionConfig) -> dict:
    predictions = predict(model, dataset, rows, config.eval_batch_size)
    summary = evaluate(predictions["gt_joints"], predictions["joints"], predictions["gt_vertices"],
                       predictions["vertices"], config.procrustes)["summary"]
    return {"score": selection_score(summary), "joints_rr_mm": summary["joints"]["root_relative"]["mean_mm"],
            "joints_pa_mm": summary["joints"]["procrustes"]["mean_mm"],
            "vertices_rr_mm": summary["vertices"]["root_relative"]["mean_mm"],
            "vertices_pa_mm": summary["vertices"]["procrustes"]["mean_mm"]}


def export(folder: Path, model, config: ReconstructionConfig, hand_model: str, seen: dict) -> None:
    save_model_folder(folder, [model], RECORD[0], {"model": config.model, "hand_model": hand_model,
                                                       "config": config.model_dump(mode="json"), "datasets": seen})


def train_reconstructor(data, out, config: ReconstructionConfig, *, hand_model: str, seed: int = 0,
                        synthetic=None, val=None, resume: bool = False, progress: bool = True,
                        device: str = "cpu") -> dict:
    """Train ``config.model`` on ``data`` (+ ``synthetic``) into ``out``; returns a summary."""
    out = Path(out)
    check_output(out, resume)
    real = recon_dataset(data, config.image_size)
    if val is not None:
        val_set, val_rows, train_rows = recon_dataset(val, config.image_size), None, list(range(len(real)))
    else:
        train_rows, val_rows = held_out_rows(data, config.val_fraction, seed)
        val_set = real if val_rows else None
    train_set = torch.utils.data.Subset(real, train_rows)
    seen = {"real": {"name": real.manifest["name"], "fingerprint": dataset_fingerprint(data), "rows": len(train_rows),
                     "validation_rows": val_rows or []}}
    if synthetic is not None:
        fake = recon_dataset(synthetic, config.image_size)
        used = len(fake)
        if config.synthetic_count is not None and config.synthetic_count < len(fake):
            used = config.synthetic_count
            keep = np.sort(np.random.default_rng([seed, 7]).permutation(len(fake))[:used])
            fake = torch.utils.data.Subset(fake, keep.tolist())
        train_set = MixedDataset(train_set, fake, config.synthetic_fraction, seed=seed)
        seen["synthetic"] = {"name": dataset_name(synthetic), "fingerprint": dataset_fingerprint(synthetic),
                             "rows": used, "fraction": config.synthetic_fraction}
    if val is not None:
        seen["validation"] = {"name": val_set.manifest["name"], "fingerprint": dataset_fingerprint(val)}
    accelerator = accelerator_on(device, config.mixed_precision)
    processes, process = accelerator.num_processes, accelerator.process_index
    batches_per_epoch = len(train_set) // (config.batch_size * processes)  # each process takes its own batch
    if batches_per_epoch == 0:
        raise fewer_than_a_batch(len(train_set), config.batch_size * processes, data)
    main = accelerator.is_main_process
    checkpoint = latest_checkpoint(out) if resume else None
    with seeded(seed):
        model = build_model(config, hand_model)
    if checkpoint is not None:
        try:
            model.load_state_dict(model_class(config.model).from_pretrained(checkpoint / "model").state_dict())
        except RuntimeError as exc:
            raise BadData(f"the checkpoint's weights do not fit the configured {config.model} model (another "
                          f"reconstruction config?): {str(exc).splitlines()[0][:200]}", checkpoint) from None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    lr_schedule = learning_rate_schedule(optimizer, config, batches_per_epoch)
    step, losses, validation, best = 0, [], [], None
    if checkpoint is not None:
        state = load_training_state(checkpoint / STATE_FILE, STATE_KEYS)
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        step, losses, validation, best = int(state["step"]), list(state["losses"]), list(state["validation"]), \
            state["best"]
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    hand = accelerator.unwrap_model(model).hand(torch.zeros((), device=device))
    trains_on_targets = accelerator.unwrap_model(model).trains_on_targets
    faces = torch.as_tensor(hand.faces, device=device)

    def checkpoint_now() -> None:
        unwrapped = accelerator.unwrap_model(model)

        def write(tmp: Path) -> None:
            unwrapped.save_pretrained(tmp / "model")
            torch.save({"optimizer": optimizer.state_dict(), "lr_schedule": lr_schedule.state_dict(), "step": step,
                        "losses": losses, "validation": validation, "best": best}, tmp / STATE_FILE)

        save_checkpoint(out, step, write, config.keep_checkpoints)

    bar = tqdm(total=config.max_steps, initial=step, desc=f"recon train ({config.model})", unit="step",
               disable=not (progress and main))
    while step < config.max_steps:
        epoch, position = divmod(step, batches_per_epoch)
        if isinstance(train_set, MixedDataset):
            train_set.set_epoch(epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(train_set))
        order = order[:batches_per_epoch * config.batch_size * processes][process::processes]
        loader = data_loader(train_set, batch_size=config.batch_size, collate_fn=collate_samples,
                             sampler=FixedOrder(order.tolist(), position * config.batch_size),
                             num_workers=config.num_workers, drop_last=True)
        model.train()
        for batch in loader:
            generator = step_generator(seed, step, process)
            targets = make_targets(batch, hand, device, draw_augmentation(len(batch["sample_id"]), config, generator))
            with autocast(accelerator, device, config.mixed_precision):
                outputs = model(targets["images"], targets, generator) if trains_on_targets else \
                    model(targets["images"])
            terms = reconstruction_losses({k: v.float() for k, v in outputs.items()}, targets, config, faces)
            accelerator.backward(terms["total"])
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(dict(zip(terms, accelerator.reduce(torch.stack([value.detach().float() for value in
                                                                          terms.values()]), "mean").tolist())))
            require_finite_loss(losses[-1]["total"], step, out, "reconstruction.learning_rate", config.learning_rate)
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]['total']:.4f}")
            last = step >= config.max_steps
            if main and val_set is not None and (step % config.eval_every == 0 or last):
                result = validate(accelerator.unwrap_model(model), val_set, val_rows, config)
                validation.append({"step": step, **result})
                if best is None or result["score"] < best["score"]:
                    best = {"step": step, "score": result["score"]}
                    export(out / "best", accelerator.unwrap_model(model), config, hand_model, seen)
                model.train()
            if main and (step % config.checkpoint_every == 0 or last):
                checkpoint_now()
                write_curves(out, losses, validation)
            if last:
                break
    bar.close()
    accelerator.wait_for_everyone()
    if processes > 1:  # validation ran on the main process
        from accelerate.utils import broadcast_object_list

        best, validation = broadcast_object_list([best, validation])
    summary = {"steps": step, "best_step": best["step"] if best else step,
               "best_score_mm": round(best["score"], 3) if best else None,
               "loss_first": losses[0]["total"] if losses else None, "loss_last": losses[-1]["total"] if losses else None,
               "validation": validation[-1] if validation else None, "datasets": seen,
               "model": str(out / "model"), "loss_curve": str(out / "loss_curve.png")}
    if main:
        if (out / "best").exists():
            replace_folder(out / "model", lambda tmp: _copy_tree(out / "best", tmp))
        else:
            export(out / "model", accelerator.unwrap_model(model), config, hand_model, seen)
        atomic_write_bytes(out / "training.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return summary


def _copy_tree(source: Path, target: Path) -> None:
    import shutil

    for item in source.iterdir():
        shutil.copy2(item, target / item.name)


def write_curves(out: Path, losses: list[dict], validation: list[dict]) -> None:
    atomic_write_bytes(out / "loss.json", json.dumps({"loss": losses, "validation": validation}).encode())
    names = [name for name in losses[0] if name != "total"] if losses else []
    series = {"total": [entry["total"] for entry in losses],
              **{name: [entry.get(name, math.nan) for entry in losses] for name in names}}
    atomic_write_bytes(out / "loss_curve.png", loss_curve_png(series, "recon train", "weighted loss"))
    if validation:
        steps = [v["step"] for v in validation]
        curves = {name: (steps, [v[name] for v in validation]) for name in
                  ("joints_rr_mm", "joints_pa_mm", "vertices_rr_mm", "vertices_pa_mm")}
        atomic_write_bytes(out / "val_curve.png", loss_curve_png(curves, "validation (root-relative and PA, mm)",
                                                                  "mm", log=False))
