"""The boost experiment's arms, declared once: what each trains on, where its synthetic rows
come from, and how the report names it. Config validation, the boost flow, the experiment
stage and the report all read this table, so an arm is added here and nowhere else.

Sources of synthetic rows: ``ddpm`` (the DDPM paints the variant's conditions), ``filtered``
(the same, then kept by the filter), ``plain_renders`` (the variant's texture map as the
image), ``photos`` (the demo domain's own renderer draws the conditions: only for the demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import BoostConfig


@dataclass(frozen=True)
class Arm:
    name: str
    label: str  # its row in the report
    source: str | None  # None: real data only
    variant: str | None  # the pose-sampling variant whose conditions feed it
    description: str


# Pose-sampling variants: the sampling settings that make each one's condition specs.
VARIANTS = {
    "views": {"sampling.total": 0},
    "random": {"sampling.sampler": "random"},
    "fps": {"sampling.sampler": "fps"},
    "cross": {"sampling.sampler": "cross"},
}

ARMS = {arm.name: arm for arm in (
    Arm("real_only", "real only", None, None, "the real training data alone"),
    Arm("plain_renders", "+ plain renders (texture as image)", "plain_renders", "cross",
        "the full method's conditions, the texture map as the image"),
    Arm("novel_views", "+ DDPM novel views", "ddpm", "views", "DDPM images of novel views only"),
    Arm("random_grasps", "+ novel grasps, random", "ddpm", "random", "+ novel grasps drawn at random"),
    Arm("fps_grasps", "+ novel grasps, FPS", "ddpm", "fps", "+ novel grasps drawn by FPS"),
    Arm("full", "+ FPS + cross-distribution, filtered (full)", "filtered", "cross",
        "FPS + cross-distribution, DDPM images kept by the filter"),
    Arm("oracle", "oracle: the domain's own renderer", "photos", "cross",
        "the demo's photo renderer draws the full method's conditions"),
)}
ARM_NAMES = tuple(ARMS)
ONLY_FOR_DEMO = ("oracle",)  # only the demo's domain has a renderer of its own


def arms_help() -> str:
    return "the experiment's arms: " + "; ".join(f"{arm.name} ({arm.description})" for arm in ARMS.values())


def variants_of(arms: list[str]) -> list[str]:
    """The pose-sampling variants the arms need, in table order."""
    used = {ARMS[name].variant for name in arms}
    return [name for name in VARIANTS if name in used]


def ddpm_variants(arms: list[str]) -> list[str]:
    """The variants whose conditions the DDPM paints (for an arm of source ``ddpm`` or ``filtered``)."""
    used = {ARMS[name].variant for name in arms if ARMS[name].source in ("ddpm", "filtered")}
    return [name for name in VARIANTS if name in used]


@dataclass(frozen=True)
class ArmJob:
    """One reconstructor of the experiment: everything its training and evaluation tasks need."""

    arm: str
    seed: int
    train: dict  # recon_train inputs
    folder: Path  # the run folder: train/ and eval-<test>/
    overrides: dict  # config overrides of the task (seed, resume, the synthetic count)
    evals: list[tuple[dict, Path]]  # (recon_eval inputs, folder) per test

    @property
    def train_folder(self) -> Path:
        return self.folder / "train"

    @property
    def label(self) -> str:
        return f"{self.arm} seed-{self.seed}"


def arm_run(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / "arms" / arm / f"seed-{seed}"


def arm_jobs(boost: BoostConfig, real: str, tests: list[str], synthetic: dict[str, str], out: Path) -> list[ArmJob]:
    """Every reconstructor of the experiment, arm by arm and seed by seed (``boost.seeds_of``, with
    ``boost.synthetic_count`` synthetic rows); ``synthetic`` maps an arm to its synthetic dataset
    ('' for real only)."""
    from pipeline.data.manifest import dataset_name

    jobs = []
    for arm, data in synthetic.items():
        for seed in boost.seeds_of(arm):
            run = arm_run(out, arm, seed)
            overrides = {"seed": seed, "run.resume": True,
                         "reconstruction.synthetic_count": boost.synthetic_count if data else None}
            evals = [({"ckpt": str(run / "train"), "data": test}, run / f"eval-{dataset_name(test)}") for test in tests]
            jobs.append(ArmJob(arm, seed, {"data": real, **({"synthetic": data} if data else {})}, run, overrides,
                               evals))
    return jobs
