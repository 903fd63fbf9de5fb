"""Importers of real datasets (DexYCB, HO3D, HandOccNet JSON) into canonical shards."""

from pipeline.data.importers.run import FORMATS, import_dataset

__all__ = ["FORMATS", "import_dataset"]
