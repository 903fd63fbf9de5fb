"""Configuration for every stage: pydantic models, loaded from YAML with clear errors.

One root model, :class:`PipelineConfig`, holds a section per stage; each stage function takes
its own section. Unknown keys are errors (a typo must not silently fall back to a default),
and every error names the file, the dotted key and what was expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.boost.arms import ARM_NAMES, arms_help
from pipeline.errors import ConfigError, MissingResource
from pipeline.storage import is_uri


def _no_repeats(values: list) -> list:
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ValueError(f"expected each value once, got {', '.join(map(str, dict.fromkeys(repeated)))} more than once")
    return values


Distinct = AfterValidator(_no_repeats)  # a list of names or seeds where a repeat would run the same work twice


def _ordered(pair: tuple) -> tuple:
    """A (low, high) pair: a range, read as [low, high]; reversed, it would be empty or raise deep inside."""
    if pair[0] > pair[1]:
        raise ValueError(f"expected a range, its first value <= its second, got {pair[0]},{pair[1]}")
    return pair


Ordered = AfterValidator(_ordered)
Beta = Annotated[float, Field(ge=0, lt=1)]


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are rejected, NaN and infinities too, and
    assignments re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class HandConfig(StrictModel):
    """Which hand model the pipeline uses."""

    model: str = Field(
        "builtin",
        description="'builtin', or a path to MANO_RIGHT.pkl/.npz or a folder holding it",
    )
    side: Literal["right", "left"] = "right"


class VhacdConfig(StrictModel):
    """pybullet's VHACD convex decomposition (results are cached per mesh and parameters)."""

    resolution: int = Field(1_000_000, ge=10_000, le=64_000_000, description="voxels used by VHACD")
    concavity: float = Field(0.0025, gt=0, le=1, description="largest allowed concavity of a piece")
    max_vertices_per_hull: int = Field(64, ge=4, le=1024)
    min_volume_per_hull: float = Field(0.0001, ge=0, le=0.01)

    def pybullet_params(self) -> dict:
        return {"resolution": self.resolution, "concavity": self.concavity,
                "maxNumVerticesPerCH": self.max_vertices_per_hull, "minVolumePerCH": self.min_volume_per_hull}


class ObjectsConfig(StrictModel):
    """Which objects the pipeline grasps and how their SDFs and convex pieces are prepared."""

    library: str = Field("builtin", description="'builtin', a YCB folder (models/<id>_<name>/) or a mesh folder")
    sdf_voxels: int = Field(2_500_000, ge=10_000, le=200_000_000, description="grid points per object SDF")
    vhacd: VhacdConfig = Field(default_factory=VhacdConfig)


class DataConfig(StrictModel):
    """Dataset import and shard layout."""

    image_size: int = Field(128, ge=16, le=1024, description="side of the square crops, pixels")
    crop_scale: float = Field(1.3, ge=1.0, le=4.0, description="crop side / side of the projected hand's box")
    rows_per_shard: int = Field(4096, ge=1, description="rows in each Parquet shard")
    joint_tolerance_mm: float = Field(
        10.0, gt=0, description="largest mean distance between annotated joints and the joints of the "
                                "annotated MANO parameters; samples beyond it are skipped as 'mano_mismatch'")


class SamplingConfig(StrictModel):
    """Pose selection; the grasping split decides which real frames hold a lifted object."""

    grasp_rre_deg: float = Field(5.0, gt=0, description="object rotation from the sequence's first frame, degrees")
    grasp_rte_mm: float = Field(10.0, gt=0, description="object translation from the sequence's first frame, mm")
    sampler: Literal["cross", "fps", "random"] = Field(
        "cross", description="cross: farthest pose sampling, then cross-distribution draws (the full method); "
                             "fps: uniform draws from the FPS-kept grasps; random: no FPS, uniform draws")
    real_per_object: int = Field(10, ge=1, description="M: real grasping poses kept per object by farthest pose sampling")
    synthetic_per_object: int = Field(500, ge=1, description="N: simulated grasps kept per object by farthest pose sampling")
    total: int = Field(1000, ge=0, description="K: novel-grasp specs drawn by cross-distribution sampling, all objects")
    views_per_pose: int = Field(4, ge=0, description="novel views made of each kept real grasping pose")
    perturbation_deg: float = Field(
        30.0, ge=0, le=180, description="novel views and placed grasps turn about the wrist by x, y, z Euler angles "
                                        "uniform in [-this, +this] (the public code used [0, 30), positive only)")


class SynthesisConfig(StrictModel):
    """The conditional pixel-space DDPM: network, objective, training and sampling defaults.

    Presets (``pipeline.synthesis.presets``) fill these for tiny/small/base; keys set in a
    config file's ``synthesis`` section override the preset.
    """

    preset: Literal["tiny", "cpu", "small", "base"] = Field(
        "tiny", description="tiny: 32 px (tests); cpu: 64 px in about 30 minutes on 2 cores (the CPU demo); "
                            "small: 64 px (GPU); base: the paper's 128 px model (GPU). "
                            "Every other key set in the config overrides the preset's value")
    image_size: int = Field(128, ge=16, le=512, description="side of the generated images, pixels")
    block_out_channels: list[int] = Field(default_factory=lambda: [64, 128, 256, 256])
    layers_per_block: int = Field(2, ge=1, le=4)
    attention_resolutions: list[int] = Field(default_factory=lambda: [16, 32],
                                             description="feature-map sides whose down and up blocks get "
                                                         "self-attention")
    middle_attention: bool = Field(True, description="self-attention in the middle block, at the lowest "
                                                     "resolution (diffusers' default)")
    norm_num_groups: int = Field(32, ge=1)
    quat_embed_dim: int = Field(64, ge=4, description="width of the quaternion MLP's first layer")
    texture_residual: bool = Field(False, description="predict x0 as the texture map plus the network's output "
                                                      "(an untrained model paints the plain render)")
    prediction: Literal["x0", "v"] = Field("x0", description="what the network predicts: x0, or v of the residual "
                                                            "x0 - texture (x0 - 0 without texture_residual)")
    maps_every_resolution: bool = Field(False, description="also add the maps, pooled, to the features entering "
                                                           "every lower resolution (zero-initialised convolutions)")
    quat_drop_prob: float = Field(0.5, ge=0, le=1, description="classifier-free guidance: drop the quaternion "
                                                               "(the public code's 0.5)")
    maps_drop_prob: float = Field(0.0, ge=0, le=1, description="also drop the normal and texture maps")
    guidance: float = Field(3.0, ge=0, description="guidance scale when sampling (public code: 3); where neither "
                                                   "the config nor its preset sets it, the checkpoint's")
    num_train_timesteps: int = Field(1000, ge=10)
    beta_start: float = Field(1e-4, gt=0)
    beta_end: float = Field(0.02, gt=0)
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = Field(
        "linear", description="noise schedule: linear betas (DDPM) or the cosine schedule (improved DDPM; "
                              "beta_start and beta_end unused)")
    loss: Literal["l2", "l1"] = "l2"
    background_weight: float = Field(0.1, ge=0, le=1, description="loss weight of mask-0 pixels (hand/object: 1)")
    snr_gamma: float | None = Field(5.0, gt=0, description="min-SNR clip of the SNR weight; null: uncapped")
    augment_shift_px: int = Field(0, ge=0, le=16, description="training images and their maps moved together by "
                                                            "a random offset of up to this many pixels each way")
    learning_rate: float = Field(8e-5, gt=0)
    adam_betas: tuple[Beta, Beta] = Field((0.9, 0.99), description="Adam's beta1, beta2, each in [0, 1)")
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="after the warm-up: constant, or a cosine decay to 0 at the config's steps (a run "
                                "stopped earlier and resumed still follows it)")
    grad_clip: float = Field(1.0, gt=0)
    batch_size: int = Field(16, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    max_steps: int = Field(10_000, ge=1)
    max_steps_bf16: int | None = Field(
        None, ge=1, description="steps where the DDPM trains in bf16, which steps faster (the cpu preset: as many "
                                "as its fp32 max_steps take in the same half hour); null, or max_steps set "
                                "explicitly: max_steps")
    ema_decay: float = Field(0.9999, gt=0, lt=1, description="EMA decay cap (diffusers EMAModel, with warm-up)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPU and on a CPU with AVX-512 BF16 or AMX, else none; bf16 on the CPU is "
                            "torch's autocast; fp16 needs a GPU")
    checkpoint_every: int = Field(1000, ge=1)
    sample_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(3, ge=1)
    num_workers: int = Field(2, ge=0)
    sample_scheduler: Literal["ddpm", "ddim", "dpm"] = Field(
        "dpm", description="sampler of synth generate; where neither the config nor its preset sets it, the "
                           "checkpoint's")
    sample_steps: int = Field(25, ge=1, le=1000, description="denoising steps of synth generate; where neither the "
                                                             "config nor its preset sets them, the checkpoint's")
    generate_batch_size: int = Field(16, ge=1, description="images generated together")


class GraspEnergyWeights(StrictModel):
    """Weights of the grasp energy's terms (DexGraspNet's MANO branch: 1, 100, 100, 10, prior 0.5)."""

    force_closure: float = Field(1.0, ge=0)
    contact_distance: float = Field(100.0, ge=0, description="per metre of |SDF| at the contact points")
    penetration: float = Field(100.0, ge=0, description="per metre of hand vertices' depth inside the object")
    self_penetration: float = Field(10.0, ge=0, description="per metre of overlap between finger capsules")
    joint_limits: float = Field(1.0, ge=0, description="per radian beyond the anatomical limits")
    plane: float = Field(100.0, ge=0, description="per metre of hand vertices below the supporting plane")


class GraspConfig(StrictModel):
    """Resting poses, grasp optimisation and validation (``grasp_sim``)."""

    per_object: int = Field(64, ge=1, description="grasp records made per object (accepted or not)")
    batch_size: int = Field(64, ge=1, description="hands optimised together per object")
    iterations: int = Field(1000, ge=1, description="optimisation steps per batch (DexGraspNet: 6000)")
    contact_points: int = Field(4, ge=2, le=16, description="contact points of the force-closure term; "
                                                            "the first always on the thumb")
    switch_probability: float = Field(0.5, ge=0, le=1, description="chance that a contact point is redrawn "
                                                                   "in a step")
    step_size: float = Field(0.005, gt=0, description="first step (radians or metres after RMS normalisation)")
    step_decay: float = Field(0.95, gt=0, le=1, description="step factor, applied 120 times over the run "
                                                            "(every 50 of 6000 steps)")
    rms_momentum: float = Field(0.98, ge=0, lt=1)
    temperature: float = Field(18.0, gt=0, description="first Metropolis temperature")
    temperature_decay: float = Field(0.95, gt=0, le=1, description="temperature factor, applied 200 times over "
                                                                   "the run (every 30 of 6000 steps)")
    population_moves: int = Field(4, ge=0, description="times the worst hands are replaced by perturbed copies of "
                                                       "the best, spread over the first 60% of the run (0: never)")
    population_rank: Literal["opposition", "energy"] = Field(
        "opposition", description="which hands are worst and best at a population move: opposition: by how well the "
                                  "thumb opposes a finger once the fingers are closed in a trial (as candidate starts "
                                  "are judged); energy: by the grasp energy")
    population_fraction: float = Field(0.25, ge=0, le=0.5, description="fraction of the batch replaced per move")
    population_noise_m: float = Field(0.005, ge=0, description="translation noise of a copy (metres, std)")
    population_noise_rad: float = Field(0.1, ge=0, description="rotation and joint-angle noise of a copy "
                                                               "(radians, std)")
    weights: GraspEnergyWeights = Field(default_factory=GraspEnergyWeights)
    object_points: int = Field(256, ge=1, description="object surface samples for the object-in-hand depth")
    init_distance_m: Annotated[tuple[Annotated[float, Field(ge=0, le=0.5)], Annotated[float, Field(ge=0, le=0.5)]],
                               Ordered] = Field((0.02, 0.05), description="palm to object hull at the start: the "
                                                                          "range [low, high] drawn from, metres")
    init_tilt_deg: float = Field(20.0, ge=0, le=90, description="palm direction jitter around the hull normal")
    init_opening: float = Field(0.1, ge=0, le=1, description="starting finger angles as a fraction of a natural "
                                                             "random pose (0: flat)")
    init_object_aware: bool = Field(True, description="approach where the hand can close around the object and "
                                                      "roll the fingers across its narrow side (else: any hull "
                                                      "point, uniform roll)")
    init_candidates: int = Field(8, ge=1, description="candidate starts per hand: each is slid onto the object "
                                                       "and closed, and the one whose thumb opposes the fingers "
                                                       "best is optimised (1: the first start)")
    betas_std: float = Field(0.5, ge=0, description="hand shapes drawn from N(0, std²) per grasp")
    close_fingers: bool = Field(True, description="after optimisation, flex each finger until it touches the object "
                                                 "(GraspIt's auto-grasp); a finger that never reaches it stays as "
                                                 "optimised")
    close_wrap: bool = Field(True, description="closing stops each joint when its own bone or one beyond it "
                                              "touches, so a finger whose base meets the object curls its "
                                              "outer joints around it; false: a finger stops at its first "
                                              "touch")
    contact_mm: float = Field(5.0, gt=0, description="a finger touches when one of its vertices is this close")
    max_intersection_cm3: float = Field(1.0, gt=0, description="reject above this object volume inside the hand")
    max_self_penetration_mm: float = Field(3.0, gt=0, description="reject above this overlap of finger segments")
    max_displacement_mm: float = Field(20.0, gt=0, description="reject above this simulated object displacement")
    voxel_mm: float = Field(2.0, gt=0, le=10, description="grid pitch of the intersection volume")
    stability_mass_kg: float | None = Field(1.0, gt=0, description="object mass in the stability test "
                                                                    "(ObMan: 1 kg); null: the object's own")
    stability_friction: float = Field(3.0, gt=0, description="friction in the stability test (ObMan: 3)")
    grip_mm: float = Field(1.5, ge=0, le=5, description="the stability test's hand surface sits this far out "
                                                          "along its normals: a static rigid hand touching at zero "
                                                          "depth exerts no grip, soft finger pads squeeze")
    stability_steps: int = Field(35, ge=1, description="simulation steps of 1/240 s per gravity direction")
    stability_early_stop: bool = Field(True, description="end the stability test once the object is past "
                                                         "max_displacement_mm (same verdicts, a rejected grasp "
                                                         "stores where it was lost)")
    stability_tilt_deg: float = Field(45.0, ge=0, le=90, description="gravity is tried straight down and tilted "
                                                                      "this far towards ±x and ±y")
    resting_drops: int = Field(32, ge=1, description="random drops onto the plane per object")
    resting_angle_deg: float = Field(10.0, gt=0, description="drops whose up directions differ less are one pose")


DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


class RunConfig(StrictModel):
    """How a run executes: where, with how many processes, whether it may replace outputs.

    Never part of what an output records as its identity: the same data made on 2 or 16
    cores, or resumed with ``overwrite``, is the same data."""

    device: str = Field("auto", pattern=DEVICE_PATTERN,
                        description="auto (a GPU when there is one), cpu, cuda or cuda:N")
    workers: int = Field(2, ge=0, le=256, description="processes for parallel work (0: all in this process)")
    overwrite: bool = Field(False, description="replace an output folder that holds another run: a different dataset, "
                                               "or a trainer's run to start again (a finished run of the same "
                                               "inputs and settings is reused)")
    resume: bool = Field(False, description="continue a training run from the newest checkpoint in its folder")
    progress: bool = Field(True, description="show progress bars")


class DemoConfig(StrictModel):
    """The embedded demo dataset: a size preset, and any of its values set explicitly.

    ``size`` picks the preset (``pipeline.demo.plan.SIZES``); every other key, when set,
    overrides the preset's value."""

    size: Literal["tiny", "small", "bench", "medium", "large"] = Field(
        "small", description="tiny: tests; small: a laptop CPU in minutes; bench: the boost benchmark on a CPU "
                             "(32 test sequences per protocol, each with its own grasp); medium, large: GPU "
                             "machines")
    objects: Annotated[list[str], Distinct] | None = Field(None, min_length=1,
                                                           description="builtin objects filmed, in order")
    subjects: int | None = Field(None, ge=2, description="hand shapes and skin tones; the last one is unseen in s1")
    sequences: int | None = Field(None, ge=1, description="sequences per object and subject")
    approach_frames: int | None = Field(None, ge=1, description="frames of the hand approaching, before the grasp")
    lift_frames: int | None = Field(None, ge=1, description="frames of the object being lifted, after the grasp")
    views: int | None = Field(None, ge=1, description="cameras filming each sequence")
    grasps_per_object: int | None = Field(None, ge=3, description="grasps optimised per object and round")
    grasp_iterations: int | None = Field(None, ge=1, description="optimisation steps of the demo's grasps")
    accepted_per_object: int | None = Field(None, ge=3, description="accepted grasps each object's grasp rounds "
                                                                   "aim for (more: more distinct test grasps)")


class ReconstructionConfig(StrictModel):
    """3D hand-mesh reconstructors: which model, its size, its training and evaluation.

    ``preset`` (``pipeline.reconstruction.presets``) fills the values for the model: ``tiny``
    (tests, the CPU demo) or ``paper`` (the published schedules: MobRecon 128 px, lr 1e-3,
    x0.1 at 80%; HandOccNet 256 px, lr 1e-4, x0.9 per epoch); keys set here override it."""

    model: Literal["mobrecon", "handoccnet", "diffhand", "m3dhmr"] = Field(
        "mobrecon", description="mobrecon: 2D joints lifted to a spiral mesh decoder; handoccnet: feature pyramid, "
                                "hand/occluder attention, MANO regressor; diffhand: diffusion over vertices; "
                                "m3dhmr: dynamic spiral decoder with a region layer")
    preset: Literal["tiny", "paper"] = Field("tiny", description="tiny: tests and the CPU demo; paper: published sizes")
    backbone: Literal["dense", "lite0"] = Field(
        "dense", description="dense: a compact CNN trained from scratch (fast on CPU); lite0: EfficientNet-Lite0 "
                             "with the ImageNet weights its package ships")
    pretrained: bool = Field(True, description="lite0: start from the shipped ImageNet weights")
    image_size: int = Field(128, ge=32, le=512, description="input side, pixels (crops are resized to it)")
    width: int = Field(64, ge=8, le=1024, description="channels of the widest decoder level / latent features")
    kernels: int = Field(8, ge=1, le=64, description="m3dhmr: spiral kernels each dynamic spiral convolution mixes")
    batch_size: int = Field(32, ge=1)
    max_steps: int = Field(10_000, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    lr_schedule: Literal["step", "exponential", "constant"] = Field(
        "step", description="step: x lr_gamma at lr_milestone of the run; exponential: x lr_gamma every epoch")
    lr_milestone: float = Field(0.8, gt=0, le=1, description="step schedule: fraction of the run where the lr drops")
    lr_gamma: float = Field(0.1, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    loss_norm: Literal["l1", "l2"] = Field("l1", description="l1: MobRecon's (3D in decimetres); l2: HandOccNet's "
                                                               "MSE (3D in metres, weights near 1e4)")
    loss_vertices: float = Field(1.0, ge=0)
    loss_joints: float = Field(1.0, ge=0)
    loss_joints_2d: float = Field(1.0, ge=0)
    loss_normal: float = Field(0.1, ge=0, description="face normals of the prediction against the truth's")
    loss_edge: float = Field(1.0, ge=0, description="edge lengths of the prediction against the truth's")
    loss_pose: float = Field(0.0, ge=0, description="rotation matrices (models with MANO parameters)")
    loss_shape: float = Field(0.0, ge=0, description="betas (models with MANO parameters)")
    aug_scale: float = Field(0.25, ge=0, le=0.9, description="zoom by 1 + clip(N(0,1), -1, 1) x this")
    aug_rotation_deg: float = Field(30.0, ge=0, le=180, description="turn by clip(N(0,1), -2, 2) x this")
    aug_rotation_prob: float = Field(0.6, ge=0, le=1)
    aug_colour: float = Field(0.2, ge=0, le=1, description="each channel x U(1 - this, 1 + this)")
    synthetic_fraction: float | None = Field(
        None, ge=0, lt=1, description="share of synthetic samples in an epoch; null: every synthetic sample once")
    synthetic_count: int | None = Field(None, ge=1, description="use only this many synthetic rows (a seeded draw)")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="sequences of the real training data held out for "
                                                             "choosing the best checkpoint (when no val set is given)")
    eval_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    num_workers: int = Field(2, ge=0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPU, none on CPU; bf16 on the CPU is torch's autocast, 5-10x slower than "
                            "fp32 for these models on a CPU without AVX-512 BF16 and no faster on one with it "
                            "(benchmarks/RESULTS.md); fp16 needs a GPU")
    procrustes: Literal["freihand", "handoccnet"] = Field(
        "freihand", description="freihand: align_w_scale (FreiHAND/HO3D/DexYCB toolkit); handoccnet: rigid_align")
    eval_batch_size: int = Field(64, ge=1)


class FilterConfig(StrictModel):
    """The edge-case filter: a reconstructor trained on real data scores every generated image."""

    thresholds: str = Field(
        "auto", description="dexycb (25, 25, 10, 10 mm), ho3d (50, 50, 20, 20), auto (the reconstructor's own "
                            "error percentile on real validation images), or a JSON file {mpjpe, mpvpe, pa_mpjpe, "
                            "pa_mpvpe} in mm")
    auto_percentile: float = Field(95.0, gt=50, le=100, description="auto: an image fails when an error exceeds "
                                                                    "this percentile of the real images' errors")
    hypotheses_spread_mm: float | None = Field(
        None, gt=0, description="reconstructors that sample hypotheses (diffhand): also reject images whose "
                                "hypotheses lie further than this (mean vertex distance to their mean, mm)")
    hypotheses: int = Field(4, ge=2, le=64, description="with hypotheses_spread_mm: meshes sampled per image")


class ProtocolConfig(StrictModel):
    """One evaluation protocol: the real training split everything learns from, and the test
    splits only its models score."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="its folder in the run and its rows in the report")
    train: str = Field(description="the real training dataset (imported DexYCB s0_train, HO3D train...)")
    tests: Annotated[list[str], Distinct] = Field(min_length=1, description="its test datasets (DexYCB s0_test...)")


class BoostConfig(StrictModel):
    """The whole pipeline as one flow (``handbooster run boost``): where the real data comes from,
    the protocols it is scored under, and how the work is cut into batches for the task runner.

    Each protocol is run on its own: pose sampling, the DDPM, the filter and every arm's
    reconstructors learn from its training split only, and only its models score its tests."""

    real: str = Field("demo", description="'demo': build the embedded demo dataset (demo section), scored under "
                                          "demo_protocols; else the folder of a real training dataset scored on "
                                          "'tests' (one protocol, 'main'); or set 'protocols' instead")
    registry: str | None = Field(None, description="with the demo: a registry folder it is registered in (as demo-FOLDER.json)")
    tests: Annotated[list[str], Distinct] = Field(default_factory=list,
                                                  description="with real a folder: its test datasets")
    protocols: list[ProtocolConfig] = Field(default_factory=list, description="imported data under several "
                                                                              "protocols (instead of real and tests)")
    demo_protocols: Annotated[list[Literal["s0", "s1"]], Distinct] = Field(
        default_factory=lambda: ["s0", "s1"], min_length=1,
        description="with the demo: s0 (s0_train -> s0_test, seen subjects) and s1 (s1_train -> s1_test, the "
                    "unseen subject)")
    filter_rounds: int = Field(3, ge=1, le=10, description="the filtered arm: generation rounds (each repaints the "
                                                             "rows the filter rejected) until it keeps synthetic_count")
    grasp_objects: Annotated[list[str], Distinct] | None = Field(
        None, description="objects of the novel grasps (default: the real data's objects that the object library "
                          "holds)")
    arms: Annotated[list[Literal[ARM_NAMES]], Distinct] = Field(default_factory=lambda: list(ARM_NAMES),
                                                                description=arms_help())
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Distinct] = Field(
        default_factory=lambda: [0], min_length=1, description="reconstructor seeds per arm")
    arm_seeds: dict[Literal[ARM_NAMES], Annotated[list[int], Distinct]] = Field(
        default_factory=dict, description="arms trained on fewer seeds: arm -> some of 'seeds' (the sampler-ablation "
                                          "arms, say); real only, every arm's baseline, trains on all of them")
    synthetic_count: int = Field(512, ge=1, description="K: synthetic rows each arm adds (fewer if an arm has fewer)")
    render_chunk_rows: int = Field(256, ge=1, description="rows per condition-rendering task")
    generate_chunk_rows: int = Field(256, ge=1, description="rows per image-generation task")

    @model_validator(mode="after")
    def _one_source(self):
        if self.protocols and self.real != "demo":
            raise ValueError("set either real (and tests) or protocols, not both")
        if self.real != "demo" and not self.tests and not self.protocols:
            raise ValueError("real is a dataset folder: tests must name its test datasets")
        names = [protocol.name for protocol in self.protocols]
        if len(set(names)) < len(names):  # each protocol has its own folder
            raise ValueError(f"protocols: expected each name once, got {names}")
        return self

    @model_validator(mode="after")
    def _arm_seeds_among_seeds(self):
        for arm, seeds in self.arm_seeds.items():
            if arm == "real_only" or not seeds or not set(seeds) <= set(self.seeds):
                raise ValueError(f"arm_seeds.{arm}: expected some of seeds {self.seeds} for an arm other than "
                                 f"real_only, got {seeds}")
        return self

    def seeds_of(self, arm: str) -> list[int]:
        """The seeds ``arm``'s reconstructors train with: ``arm_seeds`` where it names the arm."""
        return self.arm_seeds.get(arm, self.seeds)


class PipelineConfig(StrictModel):
    """Root of a pipeline config file: a section per stage, plus how the run executes."""

    name: str = "handbooster"
    seed: int = Field(0, ge=0, le=2**31 - 1, description="every stage's random seed")
    run: RunConfig = Field(default_factory=RunConfig)
    hand: HandConfig = Field(default_factory=HandConfig)
    objects: ObjectsConfig = Field(default_factory=ObjectsConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    grasp: GraspConfig = Field(default_factory=GraspConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    reconstruction: ReconstructionConfig = Field(default_factory=ReconstructionConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    boost: BoostConfig = Field(default_factory=BoostConfig)


ModelT = TypeVar("ModelT", bound=BaseModel)


def _describe_error(error: dict[str, Any], names: dict[str, str] | None = None) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<root>"
    label = f"{names[key]} ({key})" if names and key in names else f"'{key}'"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    got = error.get("input")
    return f"{label}: {error['msg']} (got {got!r})"


def validate_config(data: dict[str, Any], model: type[ModelT], source: str | Path,
                    names: dict[str, str] | None = None) -> ModelT:
    """Validate a mapping against ``model``; errors name ``source`` and every bad key (and,
    through ``names``, the flag or parameter that set it)."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of config keys, got {type(data).__name__}", source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe_error(e, names) for e in exc.errors())
        raise ConfigError(problems, source) from None


def with_overrides(config: ModelT, overrides: dict[str, Any], source: str = "command line",
                   names: dict[str, str] | None = None) -> ModelT:
    """``config`` with dotted keys (``"grasp.iterations"``) set to new values, validated as a
    whole: the one way flags, seeds and Prefect parameters reach a config. ``None`` values
    are skipped (a flag left out keeps the config's value); keys the config file left unset
    stay unset, so presets still fill them. ``names`` maps keys to the flags that set them."""
    data = config.model_dump(exclude_unset=True)
    for dotted, value in overrides.items():
        if value is None:
            continue
        section = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise ConfigError(f"'{dotted}' is not a config key", source)
        section[leaf] = value
    return validate_config(data, type(config), source, names)


def absolute_path(value: str | None, *keywords: str) -> str | None:
    """A relative path made absolute from the current folder; keywords (``builtin``, ``demo``...),
    URIs, ``~`` paths, absolute paths and ``None`` stay as they are."""
    if value is None or value in keywords or is_uri(value) or value.startswith("~") or os.path.isabs(value):
        return value
    return os.path.abspath(value)


def absolute_paths(config: PipelineConfig) -> PipelineConfig:
    """``config`` with every relative path it names (the hand model, the object library, a
    thresholds file, the boost flow's datasets and registry) made absolute from the current
    folder, for tasks that run on Dask or Ray workers started in another folder."""
    boost = config.boost
    changed = {
        "hand.model": absolute_path(config.hand.model, "builtin"),
        "objects.library": absolute_path(config.objects.library, "builtin"),
        "filter.thresholds": absolute_path(config.filter.thresholds, "auto", "dexycb", "ho3d"),
        "boost.real": absolute_path(boost.real, "demo"), "boost.registry": absolute_path(boost.registry),
        "boost.tests": [absolute_path(test) for test in boost.tests],
        "boost.protocols": [{**protocol.model_dump(), "train": absolute_path(protocol.train),
                             "tests": [absolute_path(test) for test in protocol.tests]} for protocol in boost.protocols],
    }
    now = config.model_dump()
    changed = {key: value for key, value in changed.items() if value != _dotted(now, key)}
    return with_overrides(config, changed, "config") if changed else config


def _dotted(data: dict, key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def config_record(config: PipelineConfig, sections: tuple[str, ...]) -> dict[str, Any]:
    """The seed and the named sections (or single dotted keys such as ``sampling.grasp_rte_mm``),
    dumped in full, defaults included, as JSON values: what an output records about the
    settings that shaped it, and what resuming compares."""
    record: dict[str, Any] = {"seed": config.seed}
    dumped = config.model_dump(mode="json")
    for name in sections:
        record[name] = _dotted(dumped, name)
    return record


def parse_device(spec: str) -> str:
    """``auto`` resolved, and a CUDA device checked to exist (``MissingResource`` if not)."""
    if not re.match(DEVICE_PATTERN, spec):
        raise ConfigError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N")
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MissingResource(f"device {spec!r} asked for, but torch sees no CUDA GPU (use device cpu)")
        index = int(spec.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise MissingResource(f"device {spec!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return spec


def load_config(path: str | Path | None, model: type[ModelT] = PipelineConfig) -> ModelT:  # type: ignore[assignment]
    """Read a YAML config file into ``model``; ``None`` gives the defaults."""
    if path is None:
        return model()
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}): expected a YAML config file", path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}", path) from None
    return validate_config(data, model, path)
