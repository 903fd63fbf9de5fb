"""Training and sampling inputs from canonical shards: images and maps in [-1, 1] at model size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.data.reader import ShardDataset
from pipeline.errors import InputError

TRAIN_COLUMNS = ["sample_id", "image", "normal", "texture", "mask", "hand_quat"]
CONDITION_COLUMNS = ["sample_id", "normal", "texture", "mask", "hand_quat"]


def to_signed(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` to float in [-1, 1] at ``size`` (antialiased when shrinking)."""
    x = images.float().div(127.5).sub(1.0)
    if x.shape[-1] != size:
        batched = x if x.dim() == 4 else x[None]
        batched = F.interpolate(batched, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = batched if x.dim() == 4 else batched[0]
    return x


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    if mask.shape[-1] == size:
        return mask
    return F.interpolate(mask[None, None].float(), size=(size, size), mode="nearest")[0, 0].to(torch.uint8)


class ModelInputs:
    """DataLoader transform: a decoded sample to the model's tensors; refuses rows without maps."""

    def __init__(self, size: int, with_image: bool = True):
        self.size, self.with_image = size, with_image

    def __call__(self, sample: dict) -> dict:
        needed = ("image", "normal", "texture", "mask", "hand_quat") if self.with_image else \
            ("normal", "texture", "hand_quat")
        missing = [c for c in needed if sample.get(c) is None]
        if missing:
            raise InputError(f"sample {sample.get('sample_id')!r}: column(s) {', '.join(missing)} are null "
                             "(condition maps come from 'handbooster render conditions')")
        out = {"sample_id": sample["sample_id"], "normal": to_signed(sample["normal"], self.size),
               "texture": to_signed(sample["texture"], self.size), "quat": sample["hand_quat"].float()}
        if sample.get("mask") is not None:
            out["mask"] = resize_mask(sample["mask"], self.size)
        if self.with_image:
            out["image"] = to_signed(sample["image"], self.size)
        return out


AUGMENTED = ("image", "normal", "texture", "mask")  # moved together: the maps stay registered with the image


def shifted(batch: dict, max_px: int, generator: torch.Generator) -> dict:
    """``batch`` with each sample's image, maps and mask moved by the same random whole-pixel
    offset of at most ``max_px`` each way, edges repeated: more distinct training images from
    a small real set, each still aligned with its conditions."""
    if max_px == 0:
        return batch
    count = len(batch["image"])
    offsets = torch.randint(-max_px, max_px + 1, (count, 2), generator=generator).tolist()
    out = dict(batch)
    for key in (k for k in AUGMENTED if k in batch):
        images = batch[key]
        flat = images[:, None].float() if images.dim() == 3 else images.float()  # masks are [B, H, W]
        size = flat.shape[-1]
        padded = F.pad(flat, (max_px,) * 4, mode="replicate")
        moved = torch.stack([padded[i, :, max_px - dy:max_px - dy + size, max_px - dx:max_px - dx + size]
                             for i, (dy, dx) in enumerate(offsets)])
        out[key] = (moved[:, 0] if images.dim() == 3 else moved).to(images.dtype)
    return out


def model_dataset(where, size: int, with_image: bool = True) -> ShardDataset:
    dataset = ShardDataset(where, columns=TRAIN_COLUMNS if with_image else CONDITION_COLUMNS,
                           transform=ModelInputs(size, with_image))
    if not len(dataset):
        raise InputError("has no rows", where)
    dataset[0]  # a dataset without maps fails here, with its sample id, before any work starts
    return dataset
