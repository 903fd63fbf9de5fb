"""Named model sizes: ``tiny`` (smoke tests, CPU demo), ``small`` (64 px), ``base`` (128 px)."""

from __future__ import annotations

from pipeline.config import SynthesisConfig
from pipeline.errors import InputError

PRESETS: dict[str, dict] = {
    "tiny": {"image_size": 32, "block_out_channels": [32, 64], "layers_per_block": 1, "attention_resolutions": [16],
             "norm_num_groups": 8, "quat_embed_dim": 32, "batch_size": 8, "max_steps": 200, "checkpoint_every": 100,
             "sample_every": 100, "learning_rate": 2e-4},
    "small": {"image_size": 64, "block_out_channels": [64, 128, 256], "layers_per_block": 2,
              "attention_resolutions": [16], "batch_size": 16, "max_steps": 50_000},
    "base": {"image_size": 128, "block_out_channels": [64, 128, 256, 256], "layers_per_block": 2,
             "attention_resolutions": [16, 32], "batch_size": 32, "max_steps": 200_000},
}


def resolve(preset: str | None = None, overrides: SynthesisConfig | None = None) -> SynthesisConfig:
    """The preset's values (``overrides.preset`` when ``preset`` is None), then every key the
    config set explicitly."""
    preset = preset or (overrides.preset if overrides is not None else "tiny")
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    explicit = overrides.model_dump(exclude_unset=True) if overrides is not None else {}
    return SynthesisConfig.model_validate({**PRESETS[preset], **explicit, "preset": preset})
