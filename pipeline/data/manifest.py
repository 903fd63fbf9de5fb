"""Reading and checking datasets: a reader trusts only shards the manifest vouches for."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.schema import KINDS, fixed_list_block
from pipeline.data.shards import MANIFEST
from pipeline.data.storage import Location
from pipeline.errors import InputError

REQUIRED_KEYS = ("name", "kind", "schema_version", "rows", "shards")


def read_manifest(where) -> tuple[Location, dict]:
    """The folder's manifest, checked for its keys, kind and schema version."""
    location = Location.parse(where)
    if not location.exists(MANIFEST):
        raise InputError(f"no {MANIFEST}: expected a dataset folder written by handbooster "
                         "(an interrupted run leaves none: re-run it to resume)", location)
    try:
        manifest = json.loads(location.read_bytes(MANIFEST))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{MANIFEST} is not valid JSON", location) from None
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise InputError(f"{MANIFEST}: missing key(s) {', '.join(missing)}", location)
    kind = KINDS.get(manifest["kind"])
    if kind is None:
        raise InputError(f"{MANIFEST}: 'kind': expected one of {', '.join(KINDS)}, got {manifest['kind']!r}", location)
    if manifest["schema_version"] != kind.version:
        raise InputError(f"{MANIFEST}: 'schema_version': this code reads {kind.name} schema v{kind.version}, "
                         f"the dataset is v{manifest['schema_version']}", location)
    return location, manifest


def read_columns(where, columns: list[str] | None = None) -> tuple[dict, pa.Table]:
    """The manifest and the named columns of every shard it lists, as one table (labels, not images)."""
    location, manifest = read_manifest(where)
    tables = []
    for shard in manifest["shards"]:
        try:
            with location.fs.open_input_file(location.join(shard["path"])) as handle:
                tables.append(pq.ParquetFile(handle).read(columns=columns))
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{shard['path']}: not a readable Parquet shard ({exc}); run 'handbooster data "
                             "validate'", location) from None
    schema = KINDS[manifest["kind"]].schema
    if not tables:
        wanted = columns or schema.names
        return manifest, pa.table({c: pa.array([], schema.field(c).type) for c in wanted})
    return manifest, pa.concat_tables(tables)


def column_arrays(table: pa.Table, names) -> dict[str, np.ndarray]:
    """Columns as numpy: fixed-size float lists as ``[rows, size]`` float64, the rest as objects."""
    out = {}
    for name in names:
        column = table.column(name)
        out[name] = fixed_list_block(column)[0].astype(np.float64) if hasattr(column.type, "list_size") \
            else np.asarray(column.to_pylist(), dtype=object)
    return out


def read_grasp_arrays(where, columns: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest and the named columns of a grasp dataset (``handbooster grasp run``) as numpy."""
    manifest, table = read_columns(where, columns)
    if manifest["kind"] != "grasp":
        raise InputError(f"expected grasp records (handbooster grasp run), this one holds {manifest['kind']} "
                         "records", where)
    return manifest, column_arrays(table, columns)


def _schema_problems(name: str, schema: pa.Schema, expected: pa.Schema) -> list[str]:
    problems = []
    have = {f.name: f.type for f in schema}
    for field in expected:
        if field.name not in have:
            problems.append(f"{name}: missing column '{field.name}'")
        elif have[field.name] != field.type:
            problems.append(f"{name}: column '{field.name}': expected {field.type}, got {have[field.name]}")
    extra = set(have) - set(expected.names)
    if extra:
        problems.append(f"{name}: unexpected column(s) {', '.join(sorted(extra))}")
    return problems


def validate_dataset(where) -> dict:
    """Re-check every shard's checksum, size, row count and schema; lists every problem."""
    location, manifest = read_manifest(where)
    kind = KINDS[manifest["kind"]]
    problems, rows = [], 0
    listed = {shard["path"] for shard in manifest["shards"]}
    for shard in manifest["shards"]:
        name = shard["path"]
        if not location.exists(name):
            problems.append(f"{name}: missing")
            continue
        sha, size = location.sha256(name)
        if size != shard["bytes"]:
            problems.append(f"{name}: {size} bytes, manifest says {shard['bytes']}")
        if sha != shard["sha256"]:
            problems.append(f"{name}: sha256 mismatch (file changed or corrupted)")
            continue
        try:
            parquet = pq.ParquetFile(pa.BufferReader(location.read_bytes(name)))
        except (pa.ArrowInvalid, OSError) as exc:
            problems.append(f"{name}: not a readable Parquet file ({exc})")
            continue
        if parquet.metadata.num_rows != shard["rows"]:
            problems.append(f"{name}: {parquet.metadata.num_rows} rows, manifest says {shard['rows']}")
        problems.extend(_schema_problems(name, parquet.schema_arrow, kind.schema))
        rows += parquet.metadata.num_rows
    if rows != manifest["rows"] and not problems:
        problems.append(f"{MANIFEST}: says {manifest['rows']} rows, shards hold {rows}")
    for name in location.list_files():
        if name.startswith("part-") and name not in listed:
            problems.append(f"{name}: not listed in {MANIFEST} (left over from another run?)")
    return {"dataset": str(location), "name": manifest["name"], "rows": manifest["rows"],
            "shards": len(manifest["shards"]), "problems": problems, "ok": not problems}
