"""The reconstructor zoo, one file each, one interface (``models.base.Reconstructor``)."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import BadData

MODELS = {
    "mobrecon": "pipeline.reconstruction.models.mobrecon:MobReconNet",
    "handoccnet": "pipeline.reconstruction.models.handoccnet:HandOccNet",
    "m3dhmr": "pipeline.reconstruction.models.m3dhmr:M3DHMRNet",
    "diffhand": "pipeline.reconstruction.models.diffhand:DiffHandNet",
}


def model_class(name: str):
    import importlib

    if name not in MODELS:
        raise BadData(f"unknown reconstructor {name!r}; expected one of {', '.join(MODELS)}")
    module, _, cls = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def load_reconstructor(folder, hand_model: str | None = None):
    """A reconstructor saved with ``save_pretrained`` (``model/`` of a training run, or the
    folder itself); ``hand_model`` replaces the recorded one (a MANO path from another machine)."""
    from pipeline.training import read_json_file

    folder = Path(folder)
    for candidate in (folder / "model", folder):
        if (candidate / "config.json").is_file() and (candidate / "reconstruction.json").is_file():
            folder = candidate
            break
    else:
        raise BadData("expected a folder written by recon train (model/ with config.json, reconstruction.json and "
                      "safetensors weights)", folder)
    record = read_json_file(folder / "reconstruction.json", "reconstructor record")
    name = record.get("model") if isinstance(record, dict) else None
    if not isinstance(name, str):
        raise BadData(f"reconstruction.json: field 'model': expected one of {', '.join(MODELS)}", folder)
    overrides = {"hand_model": hand_model} if hand_model else {}
    return model_class(name).from_pretrained(folder, **overrides).eval()
