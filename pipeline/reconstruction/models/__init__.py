"""The reconstructor zoo, one file each, one interface (``models.base.Reconstructor``)."""

from __future__ import annotations

from pipeline.errors import BadData

RECORD = ("reconstruction.json", "config.json")  # what a reconstructor's model folder holds beside its weights
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
    from pipeline.training import model_folder, read_record

    record = read_record(folder, RECORD, "recon train")
    folder = model_folder(folder, RECORD, "recon train")
    name = record.get("model")
    if not isinstance(name, str):
        raise BadData(f"reconstruction.json: field 'model': expected one of {', '.join(MODELS)}", folder)
    overrides = {"hand_model": hand_model} if hand_model else {}
    return model_class(name).from_pretrained(folder, **overrides).eval()
