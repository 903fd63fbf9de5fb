"""Every stage by name, declared once: the table the command line, ``run STAGE``, the Prefect
tasks and the UI's deployments are all generated from.

An entry names the stage function, the command that runs it (``"synth train"``), and the
command's config flags as a map from flag to dotted config key. The stage's own inputs become
flags (or positional arguments) of the same names, with their pydantic field descriptions as
help; a config flag's help is its config field's description. Adding a stage is one entry
here (and the function).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

RUN_FLAGS = {"--overwrite": "run.overwrite", "--workers": "run.workers", "--device": "run.device",
             "--resume": "run.resume"}


def run_flags(*names: str) -> dict[str, str]:
    """The ``run`` section's flags a command offers (``run_flags("overwrite", "device")``)."""
    return {f"--{name}": RUN_FLAGS[f"--{name}"] for name in names}


@dataclass(frozen=True)
class Entry:
    target: str  # "module:function" of the stage
    command: str | None = None  # its command ("synth train"); None: only 'run STAGE' and the UI
    flags: dict = field(default_factory=dict)  # flag -> dotted config key, or a tuple of keys for "A,B"
    arguments: tuple[str, ...] = ()  # input fields given as positional arguments, in order
    defaults: dict = field(default_factory=dict)  # input defaults of the command line, where they differ
    out: str = "--out"  # the output's flag, or the name of a positional argument
    out_default: str | None = None
    out_help: str = "output folder or URI"


STAGES = {
    "import_data": Entry("pipeline.data.importers.stage:import_data", "data import",
                         {"--mano": "hand.model", "--image-size": "data.image_size", **run_flags("workers", "overwrite")},
                         arguments=("format", "root"), out_help="output dataset folder or URI"),
    "demo": Entry("flows.stage:demo", "data demo", {"--size": "demo.size", **run_flags("overwrite", "workers", "device")},
                  defaults={"registry": "data_manifests"},
                  out_help="output folder: OUT/s0_train, s0_test, s1_train, s1_test and OUT/grasps"),
    "data_register": Entry("pipeline.data.stage:data_register", "data register", run_flags("overwrite"),
                           arguments=("dataset",), out="--registry", out_default="data_manifests",
                           out_help="folder of registered manifests"),
    "data_migrate": Entry("pipeline.data.stage:data_migrate", "data migrate", out="dataset",
                          out_help="the dataset folder written by handbooster 0.1"),
    "data_sheet": Entry("pipeline.data.stage:data_sheet", "data sheet", arguments=("dataset",),
                        out_help="folder for grid.png"),
    "merge": Entry("pipeline.data.stage:merge", "data merge", run_flags("overwrite")),
    "hand_export": Entry("renderers.stage:hand_export", "hand export", {"--model": "hand.model", "--side": "hand.side"},
                         out_help="folder for hand.obj, hand.ply or hand.png"),
    "convert_mano": Entry("pipeline.hand.stage:convert_mano", "hand convert-mano", arguments=("mano",),
                          out_help="folder for MANO_RIGHT.npz / MANO_LEFT.npz"),
    "objects_prepare": Entry("pipeline.objects.stage:objects_prepare", "objects prepare",
                             {"--library": "objects.library", **run_flags("workers")}, out_default="out/objects",
                             out_help="folder for prepared.json (the SDFs and pieces go to the cache)"),
    "objects_sheet": Entry("renderers.stage:objects_sheet", "objects sheet", {"--library": "objects.library"},
                           out_help="folder for sheet.png"),
    "grasps": Entry("grasp_sim.stage:grasps", "grasp run",
                    {"--library": "objects.library", "--per-object": "grasp.per_object",
                     "--iterations": "grasp.iterations", "--batch-size": "grasp.batch_size",
                     **run_flags("workers", "device", "overwrite")}, out_help="output dataset folder or URI (grasp records)"),
    "grasp_report": Entry("flows.stage:grasp_report", "grasp report", arguments=("dataset",),
                          out_help="folder for report.json, histograms.png and contact_sheet.png"),
    "sample": Entry("pipeline.sampling.stage:sample", "sample",
                    {"--per-object": ("sampling.real_per_object", "sampling.synthetic_per_object"),
                     "--total": "sampling.total", "--views": "sampling.views_per_pose", "--sampler": "sampling.sampler",
                     "--mano": "hand.model", **run_flags("overwrite")}, out_help="output folder or URI for the specs"),
    "conditions": Entry("renderers.stage:conditions", "render conditions",
                        {"--library": "objects.library", "--mano": "hand.model", **run_flags("workers", "overwrite")},
                        out_help="output dataset folder or URI (a new copy with maps)"),
    "photos": Entry("renderers.stage:photos", "render photos",
                    {"--library": "objects.library", "--mano": "hand.model", **run_flags("workers", "overwrite")},
                    out_help="output dataset folder or URI (a new copy with maps and photos)"),
    "render_preview": Entry("renderers.stage:render_preview", "render preview", {"--library": "objects.library"},
                            out_help="folder for preview.png"),
    "synth_train": Entry("pipeline.synthesis.stage:synth_train", "synth train",
                         {"--preset": "synthesis.preset", "--max-steps": "synthesis.max_steps",
                          **run_flags("resume", "overwrite", "device")}, out_help="checkpoint folder"),
    "synth_generate": Entry("pipeline.synthesis.stage:synth_generate", "synth generate",
                            {"--scheduler": "synthesis.sample_scheduler", "--steps": "synthesis.sample_steps",
                             "--guidance": "synthesis.guidance", "--batch-size": "synthesis.generate_batch_size",
                             **run_flags("overwrite", "device")}, out_help="output dataset folder or URI"),
    "synth_eval": Entry("pipeline.synthesis.stage:synth_eval", "synth eval",
                        {"--scheduler": "synthesis.sample_scheduler", "--steps": "synthesis.sample_steps",
                         **run_flags("device")}, out_help="report folder"),
    "plain_renders": Entry("pipeline.synthesis.stage:plain_renders", "synth plain-renders", run_flags("overwrite"),
                           out_help="output dataset folder or URI"),
    "recon_train": Entry("pipeline.reconstruction.stage:recon_train", "recon train",
                         {"--model": "reconstruction.model", "--preset": "reconstruction.preset",
                          "--max-steps": "reconstruction.max_steps",
                          "--synthetic-fraction": "reconstruction.synthetic_fraction", "--mano": "hand.model",
                          **run_flags("resume", "overwrite", "device")}, out_help="checkpoint folder"),
    "recon_eval": Entry("pipeline.reconstruction.stage:recon_eval", "recon eval",
                        {"--procrustes": "reconstruction.procrustes", "--mano": "hand.model", **run_flags("device")},
                        out_help="report folder"),
    "recon_filter": Entry("pipeline.reconstruction.stage:recon_filter", "recon filter",
                          {"--thresholds": "filter.thresholds", "--percentile": "filter.auto_percentile",
                           **run_flags("device", "overwrite")}, out_help="folder: kept/, rejected/, report.json"),
    "recon_score": Entry("pipeline.reconstruction.stage:recon_score", "recon score",
                         {"--procrustes": "reconstruction.procrustes", "--mano": "hand.model"},
                         out_help="report folder: metrics.json, per_sample.csv, pck.png"),
    "experiment": Entry("pipeline.boost.stage:experiment", None, {}, out_help="experiment folder"),
}

GROUPS = {
    "data": "Datasets: import real ones, make the demo, validate, inspect, register and merge Parquet shards.",
    "hand": "Hand models: export meshes, convert official MANO files.",
    "objects": "Object library: list, prepare SDFs and convex pieces, render a contact sheet.",
    "grasp": "Novel grasps: optimise and validate them on objects, report how good they are.",
    "render": "Renderers: condition maps for datasets, previews of random scenes.",
    "synth": "The image synthesizer: train the conditional DDPM, generate images, evaluate it.",
    "recon": "Reconstructors: train, evaluate, score any predictions, filter generated images.",
}


def load_stage(name: str):
    """The stage function (a ``pipeline.stage.Stage``) called ``name`` (dashes read as underscores)."""
    from pipeline.errors import ConfigError

    key = name.replace("-", "_")
    if key not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)} or boost")
    module, _, attribute = STAGES[key].target.partition(":")
    return getattr(importlib.import_module(module), attribute)
