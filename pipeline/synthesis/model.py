"""The denoiser: diffusers ``UNet2DModel`` on [noisy RGB | texture | normal] (9 channels) that
predicts the clean image x0, conditioned on the hand's global orientation through a
quaternion MLP whose output enters with the time embedding (``class_embed_type="identity"``).

With ``texture_residual`` the network's output is added to the texture map: x0 = texture +
UNet(...). The texture map is the plain render of the same hand and object, so an untrained
model already paints them where they are, and training spends its steps on what the maps
lack (shading, skin, the room behind). Still a pixel-space DDPM, only its x0 is parameterised
around the condition; the ``cpu`` preset uses it, a guidance-dropped sample keeps the texture.

With ``prediction="v"`` the network predicts v (Salimans & Ho 2022) of the residual r = x0 -
prior (prior: the texture map with ``texture_residual``, else 0), and forward converts it:
x0 = prior + sqrt(a) (x_t - sqrt(a) prior) - sqrt(1 - a) v, a = alpha_bar(t). At high noise that
is the residual parameterisation (x0 = texture - v), at low noise x0 ~ x_t, so the network
never has to undo its own input. The model keeps alpha_bar of its noise schedule for that, and
forward still returns x0: training's loss and the samplers stay the same (the x0 loss with
min(SNR, gamma) weights is the min-SNR v loss).

With ``maps_every_resolution`` the condition maps also enter below the input: pooled to each
lower resolution, through a zero-initialised 3x3 convolution (ControlNet's zero convolution),
and added to the features entering every down block after the first and the middle block; the
skip connections carry them up. At initialisation the model is the plain one.

Classifier-free guidance: a learned null embedding replaces the quaternion's (and zeros the
maps, when those are dropped too). The class is a diffusers ``ModelMixin``/``ConfigMixin``, so
``save_pretrained``/``from_pretrained`` write and read safetensors with the config beside them.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.configuration_utils import register_to_config

from pipeline.config import SynthesisConfig
from pipeline.training import SavedModel

MODEL_KEYS = ("image_size", "block_out_channels", "layers_per_block", "attention_resolutions", "middle_attention",
              "norm_num_groups", "quat_embed_dim", "texture_residual", "prediction", "maps_every_resolution",
              "num_train_timesteps", "beta_start", "beta_end", "beta_schedule")


def block_types(image_size: int, levels: int, attention_resolutions) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Down/up block types with self-attention only where the feature map side is listed."""
    attention = [image_size // 2 ** level in set(attention_resolutions) for level in range(levels)]
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return down, up


RECORD = ("synthesis.json", "config.json", "scheduler_config.json")  # a model folder beside its weights

class HandObjectUNet(SavedModel):
    """``forward(noisy, timesteps, normal, texture, quat, drop_quat=None, drop_maps=None) -> x0``."""

    @register_to_config
    def __init__(self, image_size: int = 32, block_out_channels=(32, 64), layers_per_block: int = 1,
                 attention_resolutions=(16,), middle_attention: bool = True, norm_num_groups: int = 8,
                 quat_embed_dim: int = 32, texture_residual: bool = False, prediction: str = "x0",
                 maps_every_resolution: bool = False, num_train_timesteps: int = 1000,
                 beta_start: float = 1e-4, beta_end: float = 0.02, beta_schedule: str = "linear"):
        super().__init__()
        if prediction not in ("x0", "v"):
            raise ValueError(f"prediction {prediction!r}: expected 'x0' or 'v'")
        self.texture_residual = texture_residual
        self.prediction = prediction
        schedule = noise_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule)
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.float(), persistent=False)
        down, up = block_types(image_size, len(block_out_channels), attention_resolutions)
        self.unet = UNet2DModel(sample_size=image_size, in_channels=9, out_channels=3,
                                block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
                                down_block_types=down, up_block_types=up, class_embed_type="identity",
                                norm_num_groups=norm_num_groups, add_attention=middle_attention)
        time_dim = 4 * block_out_channels[0]
        self.quat_mlp = torch.nn.Sequential(
            torch.nn.Linear(4, quat_embed_dim), torch.nn.GELU(), torch.nn.Linear(quat_embed_dim, time_dim),
            torch.nn.GELU(), torch.nn.Linear(time_dim, time_dim))
        self.null_quat = torch.nn.Parameter(torch.zeros(time_dim))
        self.maps_every_resolution = maps_every_resolution
        if maps_every_resolution:  # down block i >= 1 takes block i - 1's width, the middle block the last one's
            self.map_injections = torch.nn.ModuleList(zero_convolution(6, width) for width in block_out_channels)

    @classmethod
    def from_synthesis_config(cls, config: SynthesisConfig) -> HandObjectUNet:
        return cls(**{key: getattr(config, key) for key in MODEL_KEYS})

    def forward(self, noisy, timesteps, normal, texture, quat, drop_quat=None, drop_maps=None) -> torch.Tensor:
        embedding = self.quat_mlp(quat)
        if drop_quat is not None:
            embedding = torch.where(drop_quat[:, None], self.null_quat.to(embedding.dtype).expand_as(embedding),
                                    embedding)
        if drop_maps is not None:
            keep = (~drop_maps).to(normal.dtype)[:, None, None, None]
            normal, texture = normal * keep, texture * keep
        inputs = torch.cat([noisy, texture, normal], dim=1)
        if self.maps_every_resolution:
            predicted = self.unet_with_maps(inputs, timesteps, embedding, torch.cat([texture, normal], dim=1))
        else:
            predicted = self.unet(inputs, timesteps, class_labels=embedding).sample
        if self.prediction == "v":
            prior = texture if self.texture_residual else torch.zeros_like(texture)
            return x0_from_v(noisy, predicted, self.alphas_cumprod[timesteps], prior)
        return predicted + texture if self.texture_residual else predicted

    def unet_with_maps(self, inputs, timesteps, embedding, maps) -> torch.Tensor:
        """``UNet2DModel.forward`` for this model's configuration (no skip or Fourier variants),
        with the pooled maps added where ``map_injections`` say."""
        unet = self.unet
        timesteps = torch.as_tensor(timesteps, device=inputs.device).reshape(-1).expand(inputs.shape[0])
        emb = unet.time_embedding(unet.time_proj(timesteps).to(dtype=unet.dtype))
        emb = emb + unet.class_embedding(embedding).to(dtype=unet.dtype)
        injections = iter(self.map_injections)

        def with_maps(features):
            pooled = torch.nn.functional.interpolate(maps, size=features.shape[-2:], mode="area")
            return features + next(injections)(pooled.to(features.dtype))

        sample = unet.conv_in(inputs)
        residuals = (sample,)
        for level, block in enumerate(unet.down_blocks):
            sample, block_residuals = block(hidden_states=with_maps(sample) if level else sample, temb=emb)
            residuals += block_residuals
        sample = unet.mid_block(with_maps(sample), emb)
        for block in unet.up_blocks:
            count = len(block.resnets)
            sample = block(sample, residuals[-count:], emb)
            residuals = residuals[:-count]
        return unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))


def zero_convolution(in_channels: int, out_channels: int) -> torch.nn.Conv2d:
    convolution = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
    torch.nn.init.zeros_(convolution.weight)
    torch.nn.init.zeros_(convolution.bias)
    return convolution


def noise_schedule(num_train_timesteps: int, beta_start: float, beta_end: float, beta_schedule: str) -> DDPMScheduler:
    """The training noise schedule (x0 targets, clipped), one definition for the trainer and the model's v."""
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule=beta_schedule, prediction_type="sample", clip_sample=True)


def x0_from_v(noisy: torch.Tensor, v: torch.Tensor, alpha_bar: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """x0 from v of the residual x0 - prior, for ``noisy`` = sqrt(a) x0 + sqrt(1 - a) noise."""
    a = alpha_bar.to(noisy.dtype)[:, None, None, None]
    return prior + a.sqrt() * (noisy - a.sqrt() * prior) - (1 - a).sqrt() * v
