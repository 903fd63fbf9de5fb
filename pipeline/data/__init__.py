"""Datasets: the canonical schema, atomic resumable Parquet shards, manifests."""

from pipeline.data.manifest import read_manifest, validate_dataset
from pipeline.data.schema import SAMPLE, SCHEMA_VERSION, RecordKind, RowError
from pipeline.data.shards import ShardWriter

__all__ = ["SAMPLE", "SCHEMA_VERSION", "RecordKind", "RowError", "ShardWriter", "read_manifest", "validate_dataset"]
