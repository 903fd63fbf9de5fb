"""What `handbooster info` reports: versions, device, render platform, hand models, objects."""

from __future__ import annotations

import platform
from importlib import metadata

from pipeline.config import PipelineConfig

_PACKAGES = ("handbooster", "torch", "numpy", "smplx", "trimesh", "pyrender", "PyOpenGL", "pybullet", "pydantic",
             "diffusers", "prefect")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def gather_info(config: PipelineConfig) -> dict:
    import torch

    from pipeline.hand.builtin import builtin_hand_status
    from pipeline.objects.builtin import BUILTIN_SPECS
    from renderers.platform import platform_status

    return {
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in _PACKAGES},
        "torch_device": "cuda" if torch.cuda.is_available() else "cpu",
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "render_platform": platform_status(),
        "hand_models": {"builtin": builtin_hand_status(), "configured": config.hand.model},
        "objects": {"builtin": len(BUILTIN_SPECS), "configured": config.objects.library},
    }
