"""What every reconstructor shares: the diffusers save/load format and the hand model it predicts.

A reconstructor maps images ``[B, 3, S, S]`` (in [-1, 1]) to a dict with ``vertices``
``[B, V, 3]`` and ``joints`` ``[B, 21, 3]`` relative to the wrist (joint 0), in metres, in the
camera's orientation, and ``joints_2d`` ``[B, 21, 2]`` in [0, 1] of the input image; models
with MANO parameters add ``rotations`` ``[B, 16, 3, 3]`` and ``betas`` ``[B, 10]``. Weights
save with ``save_pretrained`` (safetensors + config.json) like the synthesizer's; derived
structures (the mesh hierarchy, spirals, the hand model) are rebuilt from the config's
``hand_model`` when a checkpoint loads.
"""

from __future__ import annotations

import torch

from pipeline.training import SavedModel


class Reconstructor(SavedModel):
    """Base of the reconstructors; subclasses register their config and define ``forward``."""

    has_mano = False
    trains_on_targets = False  # True: training calls model(images, targets, generator) (diffusion models)

    def hand(self, like: torch.Tensor):
        """The hand model on ``like``'s device and dtype (kept out of the state dict: it is data)."""
        cache = self.__dict__.setdefault("_hands", {})
        key = (like.device, like.dtype)
        if key not in cache:
            from pipeline.hand import load_hand_model

            cache[key] = load_hand_model(self.config.hand_model, device=like.device, dtype=like.dtype)
        return cache[key]

    def root_relative(self, vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertices and regressed joints, both relative to the regressed wrist."""
        joints = self.hand(vertices).regress_joints(vertices)
        root = joints[:, :1]
        return vertices - root, joints - root
