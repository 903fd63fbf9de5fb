"""Importers of real datasets (DexYCB, HO3D, HandOccNet JSON) into canonical shards."""

from pipeline.data.importers.stage import FORMATS, ImportInputs, import_data

__all__ = ["FORMATS", "ImportInputs", "import_data"]
