"""Every stage by name: the one table the command line, the Prefect tasks and the UI share."""

from __future__ import annotations

import importlib

STAGES = {
    "import_data": "pipeline.data.importers.stage:import_data",
    "demo": "flows.stage:demo",
    "grasps": "grasp_sim.stage:grasps",
    "merge": "pipeline.data.stage:merge",
    "plain_renders": "pipeline.data.stage:plain_renders",
    "sample": "pipeline.sampling.stage:sample",
    "conditions": "renderers.stage:conditions",
    "photos": "renderers.stage:photos",
    "synth_train": "pipeline.synthesis.stage:synth_train",
    "synth_generate": "pipeline.synthesis.stage:synth_generate",
    "synth_eval": "pipeline.synthesis.stage:synth_eval",
    "recon_train": "pipeline.reconstruction.stage:recon_train",
    "recon_eval": "pipeline.reconstruction.stage:recon_eval",
    "recon_score": "pipeline.reconstruction.stage:recon_score",
    "recon_filter": "pipeline.reconstruction.stage:recon_filter",
    "experiment": "pipeline.boost.stage:experiment",
}


def load_stage(name: str):
    """The stage function (a ``pipeline.stage.Stage``) called ``name`` (dashes read as underscores)."""
    from pipeline.errors import ConfigError

    key = name.replace("-", "_")
    if key not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)} or boost")
    module, _, attribute = STAGES[key].partition(":")
    return getattr(importlib.import_module(module), attribute)
