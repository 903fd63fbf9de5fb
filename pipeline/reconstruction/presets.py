"""Named reconstructor sizes per model: ``tiny`` (tests, the CPU demo) and ``paper`` (published).

``paper`` follows the originals: MobRecon at 128 px, latent 256, Adam 1e-3 dropped x0.1 at
80% of the run (HandBooster's DexYCB runs: epoch 60 of 76), L1 losses with normal 0.1 and
edge 1.0, grad clip 0.1; HandOccNet at 256 px, Adam 1e-4 x0.9 per epoch, MSE losses
(vertices 1e4, joints 1e4, pose 10, shape 0.1, 2D 100), on an ImageNet backbone (Lite0 here,
ResNet-50 there, whose weights cannot be fetched). Set ``max_steps`` for your dataset size
(epochs x rows / batch size); the defaults are DexYCB s0's.
"""

from __future__ import annotations

from pipeline.config import ReconstructionConfig

MOBRECON_LOSSES = {"loss_norm": "l1", "loss_vertices": 1.0, "loss_joints": 1.0, "loss_joints_2d": 1.0,
                   "loss_normal": 0.1, "loss_edge": 1.0, "loss_pose": 0.0, "loss_shape": 0.0}
HANDOCCNET_LOSSES = {"loss_norm": "l2", "loss_vertices": 1e4, "loss_joints": 1e4, "loss_joints_2d": 100.0,
                     "loss_normal": 0.0, "loss_edge": 0.0, "loss_pose": 10.0, "loss_shape": 0.1}

PRESETS: dict[tuple[str, str], dict] = {
    ("mobrecon", "tiny"): {"image_size": 64, "width": 32, "batch_size": 16, "max_steps": 300, "learning_rate": 1e-3,
                           "lr_schedule": "step", "eval_every": 100, "checkpoint_every": 100, "grad_clip": 1.0,
                           **MOBRECON_LOSSES},
    ("mobrecon", "paper"): {"image_size": 128, "width": 64, "batch_size": 32, "max_steps": 960_000,
                            "learning_rate": 1e-3, "lr_schedule": "step", "lr_milestone": 0.79, "lr_gamma": 0.1,
                            "grad_clip": 0.1, "eval_every": 10_000, "checkpoint_every": 10_000, **MOBRECON_LOSSES},
    ("handoccnet", "tiny"): {"image_size": 64, "width": 32, "batch_size": 16, "max_steps": 300, "learning_rate": 1e-3,
                             "lr_schedule": "step", "eval_every": 100, "checkpoint_every": 100, **HANDOCCNET_LOSSES},
    ("handoccnet", "paper"): {"image_size": 256, "width": 64, "backbone": "lite0", "batch_size": 16,
                              "max_steps": 640_000, "learning_rate": 1e-4, "lr_schedule": "exponential",
                              "lr_gamma": 0.9, "eval_every": 10_000, "checkpoint_every": 10_000, **HANDOCCNET_LOSSES},
}
# DiffHand: vertices + joints (3D and 2D, weight 1) + normal consistency (0.05), on MobRecon's sizes and schedule;
# M3DHMR trains as MobRecon does.
DIFFHAND_LOSSES = {**MOBRECON_LOSSES, "loss_normal": 0.05, "loss_edge": 0.0}
for _preset in ("tiny", "paper"):
    PRESETS[("diffhand", _preset)] = {**PRESETS[("mobrecon", _preset)], **DIFFHAND_LOSSES}
    PRESETS[("m3dhmr", _preset)] = dict(PRESETS[("mobrecon", _preset)])


def resolve(config: ReconstructionConfig) -> ReconstructionConfig:
    """The preset of ``config.model``/``config.preset``, then every key the config set explicitly."""
    preset = PRESETS[(config.model, config.preset)]
    explicit = config.model_dump(exclude_unset=True)
    return ReconstructionConfig.model_validate({**preset, **explicit})
