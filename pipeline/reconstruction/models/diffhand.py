"""Diffusion reconstructor (DiffHand, with HHMR's maskable conditions): the mesh is denoised.

An encoder gives feature maps; the stride-16 map becomes image tokens, the pooled stride-32
map a global embedding, and a heatmap head the 2D joints (as in MobRecon). A denoiser predicts
the clean root-relative vertices x0 (decimetres) from noisy ones under a cosine schedule
(DiffHand's cross-modality decoder): each vertex embeds its noisy position, its rest position,
the timestep and the global embedding; a U-shaped vertex block pools the points down by 4 twice
(farthest point sampling on the rest mesh, max over each kept point's nearest neighbours),
runs attention blocks there (self-attention over the points plus the global token, then
cross-attention to the condition tokens), and brings the features back up with an MLP over the
skip connection. Trained with the shared reconstruction losses on the predicted x0 (vertices,
3D and 2D joints, normal consistency: DiffHand's loss), one random timestep per image.

HHMR's conditions: the image tokens and 2D-joint tokens live in one feature space and are
each replaced by learned null tokens at random in training (``mask_image``, ``mask_joints``),
so one model reconstructs from the image alone, from the image plus given 2D joints, or
completes a partial mesh (known vertices are put back, noised to the current step, after
every denoising step). Sampling uses DDIM (``sample_steps``, 10 by default) from noise drawn
from a fixed seed, so the same image gives the same mesh; ``hypotheses`` > 1 samples several
meshes whose mean is returned, with their per-vertex spread (``spread_mm``, an uncertainty the
filter can use).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from pipeline.reconstruction.backbones import make_backbone
from pipeline.reconstruction.layers import AttentionBlock, sample_at, soft_argmax
from pipeline.reconstruction.models.base import Reconstructor

UNIT_M = 0.1  # vertices are denoised in decimetres
TRAIN_TIMESTEPS = 1000
NEIGHBOURS = 8
SAMPLE_SEED = 0


def schedule() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2",
                         prediction_type="sample", clip_sample=False)


def pooling_levels(rest: np.ndarray, levels: int = 2, factor: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level, from the rest mesh (so every sample pools the same way): each point kept by
    farthest point sampling with its ``NEIGHBOURS`` nearest finer points (pooling down), and
    each finer point's nearest kept point, as a position among the kept (copying up)."""
    from scipy.spatial import cKDTree

    from pipeline.geometry import farthest_points

    out, points = [], np.asarray(rest, np.float64)
    for _ in range(levels):
        kept = farthest_points(points, max(1, len(points) // factor))
        _, neighbours = cKDTree(points).query(points[kept], k=min(NEIGHBOURS, len(points)))
        _, nearest = cKDTree(points[kept]).query(points)
        out.append((np.asarray(neighbours, np.int64).reshape(len(kept), -1), np.asarray(nearest, np.int64)))
        points = points[kept]
    return out


class PointMLP(nn.Sequential):
    def __init__(self, in_dim: int, dim: int):
        super().__init__(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim))


class DiffHandNet(Reconstructor):
    trains_on_targets = True  # training noises the true mesh

    @register_to_config
    def __init__(self, hand_model: str = "builtin", image_size: int = 128, backbone: str = "dense", width: int = 64,
                 pretrained: bool = False, depth: int = 2, heads: int = 4, sample_steps: int = 10,
                 hypotheses: int = 1, mask_image: float = 0.1, mask_joints: float = 0.5):
        super().__init__()
        from pipeline.hand import load_hand_model
        from pipeline.reconstruction.mesh import hand_hierarchy

        self.encoder = make_backbone(backbone, width, pretrained)
        channels, dim = self.encoder.channels, 2 * width
        self.heatmaps = nn.Sequential(nn.Conv2d(channels[1], channels[1], 3, 1, 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(channels[1], 21, 1))
        self.image_tokens = nn.Linear(channels[2], dim)
        self.image_positions = nn.Parameter(torch.zeros(1, (image_size // 16) ** 2, dim))
        self.global_embed = nn.Linear(channels[3], dim)
        self.joint_tokens = nn.Linear(2 + channels[1], dim)
        self.joint_ids = nn.Parameter(torch.randn(1, 21, dim) * 0.02)
        self.null_image = nn.Parameter(torch.zeros(1, 1, dim))
        self.null_joints = nn.Parameter(torch.zeros(1, 21, dim))
        self.time_proj = Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(dim, dim)
        rest = hand_hierarchy(load_hand_model(hand_model)).vertices[0]
        self.register_buffer("rest", torch.as_tensor(rest / UNIT_M, dtype=torch.float32), persistent=False)
        levels = pooling_levels(rest)
        for i, (neighbours, nearest) in enumerate(levels):
            self.register_buffer(f"neighbours_{i}", torch.as_tensor(neighbours), persistent=False)
            self.register_buffer(f"nearest_{i}", torch.as_tensor(nearest), persistent=False)
        self.point_in = PointMLP(6, dim)
        self.down = nn.ModuleList([PointMLP(dim, dim) for _ in levels])
        self.up = nn.ModuleList([PointMLP(2 * dim, dim) for _ in levels])
        self.blocks = nn.ModuleList([nn.ModuleList([AttentionBlock(dim, heads), AttentionBlock(dim, heads)])
                                     for _ in range(depth)])
        self.point_out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 3))

    # ------------------------------------------------------------------ conditions and the denoiser

    def conditions(self, images: torch.Tensor, joints_2d: torch.Tensor | None = None,
                   drop_image: torch.Tensor | None = None, use_joints: torch.Tensor | None = None) -> dict:
        """Image tokens, the global embedding and the predicted 2D joints; given ``joints_2d``
        ([B, 21, 2] in [0, 1]) become joint tokens (for the images ``use_joints`` marks, default
        all), otherwise the null joint tokens stand in. The encoder runs once."""
        features = self.encoder(images)
        predicted_2d = soft_argmax(self.heatmaps(features[1]))
        tokens = self.image_tokens(features[2].flatten(2).transpose(1, 2)) + self.image_positions
        global_ = self.global_embed(features[3].mean(dim=(2, 3)))
        batch = len(images)
        if drop_image is not None:
            tokens = torch.where(drop_image[:, None, None], self.null_image.expand_as(tokens), tokens)
        joints = self.null_joints.expand(batch, -1, -1)
        if joints_2d is not None:
            local = sample_at(features[1], joints_2d)
            given = self.joint_tokens(torch.cat([joints_2d.to(local.dtype), local], dim=-1)) + self.joint_ids
            joints = given if use_joints is None else torch.where(use_joints[:, None, None], given, joints)
        return {"context": torch.cat([tokens, joints], dim=1), "global": global_, "joints_2d": predicted_2d}

    def denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, conditions: dict) -> torch.Tensor:
        """x0 (decimetres, [B, V, 3], relative to its own regressed wrist) from noisy vertices."""
        batch = len(noisy)
        step = self.time_embed(self.time_proj(timesteps).to(noisy.dtype))
        globals_ = (step + conditions["global"])[:, None]
        x = self.point_in(torch.cat([noisy, self.rest.to(noisy.dtype).expand(batch, -1, -1)], dim=-1)) + globals_
        skips = []
        for i, mlp in enumerate(self.down):
            skips.append(x)
            neighbours = getattr(self, f"neighbours_{i}")
            x = mlp(x[:, neighbours.reshape(-1)].reshape(batch, *neighbours.shape, -1)).amax(dim=2)
        for self_block, cross_block in self.blocks:
            x = self_block(torch.cat([globals_, x], dim=1))[:, 1:]
            x = cross_block(x, conditions["context"])
        for i in reversed(range(len(self.up))):
            nearest = getattr(self, f"nearest_{i}")
            x = self.up[i](torch.cat([skips[i], x[:, nearest]], dim=-1)) + skips[i]
        x0 = self.point_out(x)
        # Root-relative like the truth: the losses cannot see a translation, the noisy inputs can.
        return x0 - self.hand(x0).regress_joints(x0)[:, :1]

    # ------------------------------------------------------------------ training and sampling

    def outputs(self, x0: torch.Tensor, joints_2d: torch.Tensor) -> dict:
        vertices, joints = self.root_relative(x0 * UNIT_M)
        return {"vertices": vertices, "joints": joints, "joints_2d": joints_2d}

    def forward(self, images: torch.Tensor, targets: dict | None = None, generator: torch.Generator | None = None,
                joints_2d: torch.Tensor | None = None, known: torch.Tensor | None = None,
                known_mask: torch.Tensor | None = None) -> dict:
        """Training (``targets`` given, train mode): x0 predicted from the true mesh noised at a
        random step (drawn from ``generator``: the training step's), conditions masked at
        random. Otherwise: DDIM sampling, see ``sample``."""
        if targets is None or not self.training:
            return self.sample(images, joints_2d=joints_2d, known=known, known_mask=known_mask)
        batch, device = len(images), images.device
        draws = torch.rand(batch, 2, generator=generator).to(device)
        drop_image = draws[:, 0] < self.config.mask_image
        use_joints = draws[:, 1] >= self.config.mask_joints
        timesteps = torch.randint(0, TRAIN_TIMESTEPS, (batch,), generator=generator).to(device)
        clean = targets["vertices"] / UNIT_M
        noise = torch.randn(clean.shape, generator=generator).to(clean)
        noisy = schedule().add_noise(clean, noise, timesteps)
        conditions = self.conditions(images, targets["joints_2d"], drop_image, use_joints)
        return self.outputs(self.denoise(noisy, timesteps, conditions), conditions["joints_2d"])

    @torch.no_grad()
    def sample(self, images: torch.Tensor, joints_2d: torch.Tensor | None = None, known: torch.Tensor | None = None,
               known_mask: torch.Tensor | None = None, hypotheses: int | None = None, steps: int | None = None,
               seed: int = SAMPLE_SEED) -> dict:
        """DDIM from seeded noise; ``known`` root-relative vertices (metres, [B, V, 3]) where
        ``known_mask`` ([B, V] or [V]) is set are kept (inpainting). With several hypotheses the
        mean is returned, and ``spread_mm``: each sample's mean vertex distance to that mean."""
        hypotheses = hypotheses or self.config.hypotheses
        conditions = self.conditions(images, joints_2d)
        batch, count = len(images), len(self.rest)
        repeat = {key: value.repeat_interleave(hypotheses, dim=0) for key, value in conditions.items()}
        ddim = DDIMScheduler.from_config(schedule().config)
        ddim.set_timesteps(steps or self.config.sample_steps)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.randn(batch * hypotheses, count, 3, generator=generator).to(images.device, images.dtype)
        noise = torch.randn(x.shape, generator=generator).to(x)
        if known is not None:
            known = (known / UNIT_M).to(x).repeat_interleave(hypotheses, dim=0)
            mask = torch.as_tensor(known_mask, device=x.device).bool().expand(batch, count)
            mask = mask.repeat_interleave(hypotheses, dim=0)[..., None]
        for t in ddim.timesteps:
            timesteps = torch.full((len(x),), int(t), device=x.device, dtype=torch.long)
            x0 = self.denoise(x, timesteps, repeat)
            if known is not None:
                x0 = torch.where(mask, known, x0)
            x = ddim.step(x0, t, x).prev_sample
            if known is not None:  # the known vertices, noised to the step just reached
                previous = int(t) - TRAIN_TIMESTEPS // ddim.num_inference_steps
                placed = ddim.add_noise(known, noise, torch.tensor([previous])) if previous >= 0 else known
                x = torch.where(mask, placed, x)
        samples = x.reshape(batch, hypotheses, count, 3)  # the last DDIM step lands on its x0 (alpha 1)
        out = self.outputs(samples.mean(dim=1), conditions["joints_2d"])
        out["spread_mm"] = (samples - samples.mean(dim=1, keepdim=True)).norm(dim=-1).mean(dim=(1, 2)) * UNIT_M * 1000
        return out
