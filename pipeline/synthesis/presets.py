"""Named model sizes: ``tiny`` (smoke tests), ``cpu`` (64 px in half an hour on two cores: the CPU
demo's and benchmark's), ``small`` (64 px, GPU) and ``base`` (the paper's 128 px, GPU).

``cpu`` came out of ``benchmarks/bench_synth_recipes.py`` (RESULTS: "A synthesizer for the
CPU"): a narrow three-level UNet without self-attention (in the down and up blocks: a third
faster a step, and the lowest distance at equal time; in the middle block: 4-10% faster a step,
the same distance at equal steps) that predicts x0 as the texture map plus a residual, every
pixel weighted alike (the room behind the hand is half of what makes an image look real), a
high learning rate after a short warm-up, sized so that its default steps take at most about
30 minutes on two cores at full speed: 1,300 in fp32, 2,800 in bf16 (which ``auto`` takes on a
CPU with AVX-512 BF16 or AMX, where a step takes half the time). It samples with 50
DPM-Solver++ steps and no guidance: on the boost benchmark's two models, 50 steps put the
re-synthesised test images 3.6-5.5% closer to their conditions than 10 (a real-trained
reconstructor's MPJPE; intervals that exclude 0) and a little closer to real (Fréchet); 100
add little for twice the time, and guidance (3, 6) only costs fidelity. 50 steps take about
1.25 s an image on two cores.
"""

from __future__ import annotations

from pipeline.config import SynthesisConfig
from pipeline.errors import ConfigError, InputError

PRESETS: dict[str, dict] = {
    "tiny": {"image_size": 32, "block_out_channels": [32, 64], "layers_per_block": 1, "attention_resolutions": [16],
             "norm_num_groups": 8, "quat_embed_dim": 32, "batch_size": 8, "max_steps": 200, "checkpoint_every": 100,
             "sample_every": 100, "learning_rate": 2e-4},
    "cpu": {"image_size": 64, "block_out_channels": [32, 64, 128], "layers_per_block": 1,
            "attention_resolutions": [], "middle_attention": False, "norm_num_groups": 8, "quat_embed_dim": 32,
            "batch_size": 16, "learning_rate": 3e-4, "warmup_steps": 100, "ema_decay": 0.999, "background_weight": 1.0,
            "snr_gamma": 5.0, "texture_residual": True, "max_steps": 1300, "max_steps_bf16": 2800,
            "checkpoint_every": 100, "sample_every": 650, "num_workers": 0, "sample_steps": 50, "guidance": 1.0},
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
    if "max_steps" in explicit:
        explicit.setdefault("max_steps_bf16", None)  # steps the config asks for hold in every precision
    return network_checked(SynthesisConfig.model_validate({**PRESETS[preset], **explicit, "preset": preset}))


def network_checked(config: SynthesisConfig) -> SynthesisConfig:
    """The UNet's shape, checked once the preset is filled in (before, a zero width or one that
    its norm groups do not divide was a traceback from torch, and an attention resolution the
    network never reaches was ignored)."""
    channels, groups = config.block_out_channels, config.norm_num_groups
    if not channels or any(width < 1 or width % groups for width in channels):
        raise ConfigError(f"synthesis.block_out_channels: expected widths that synthesis.norm_num_groups ({groups}) "
                          f"divides, got {channels}")
    if config.image_size % 2 ** (len(channels) - 1):
        raise ConfigError(f"synthesis.image_size: {config.image_size} px is not halved {len(channels) - 1} times "
                          f"evenly, as {len(channels)} levels of synthesis.block_out_channels need")
    sides = [config.image_size // 2 ** level for level in range(len(channels))]
    unreached = sorted(set(config.attention_resolutions) - set(sides))
    if unreached:
        raise ConfigError(f"synthesis.attention_resolutions: {unreached} are not feature-map sides of this network "
                          f"(it has {sides})")
    return config
