"""Reading and checking datasets: a reader trusts only shards the manifest vouches for."""

from __future__ import annotations

import io
import json
import os
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.schema import KINDS, fixed_list_block
from pipeline.data.shards import is_shard_name
from pipeline.errors import BadData, InputError
from pipeline.storage import JOURNAL, LEGACY_MANIFEST, MANIFEST, Location, is_temporary, manifest_fingerprint

REQUIRED_KEYS = ("name", "kind", "schema_version", "rows", "shards")


def manifest_name(location: Location) -> str:
    """``.manifest.json``, or ``manifest.json`` in a folder written before the Arrow-friendly
    layout (it still reads; ``handbooster data migrate`` renames it)."""
    return LEGACY_MANIFEST if not location.exists(MANIFEST) and location.exists(LEGACY_MANIFEST) else MANIFEST


def datasets_inside(location: Location, depth: int = 2) -> list[str]:
    """The dataset folders up to ``depth`` levels inside a local folder, relative to it, the
    nearest first: what a user pointing at a stage's folder (``conditions/cross``) meant
    (``conditions/cross/all``)."""
    if not location.is_local or not os.path.isdir(location.path):
        return []
    found = []
    for folder, subfolders, files in os.walk(location.path):
        relative = os.path.relpath(folder, location.path)
        level = 0 if relative == "." else relative.count(os.sep) + 1
        if level and (MANIFEST in files or LEGACY_MANIFEST in files):
            found.append(relative)
        subfolders[:] = [] if level and (MANIFEST in files or level >= depth) else sorted(subfolders)
    return sorted(found, key=lambda relative: (relative.count(os.sep), relative))


def read_manifest(where) -> tuple[Location, dict]:
    """The folder's manifest, checked for its keys, kind and schema version."""
    location = Location.parse(where)
    name = manifest_name(location)
    if not location.exists(name):
        inside = datasets_inside(location)
        if inside:
            listed = ", ".join(inside[:4]) + (f" and {len(inside) - 4} more" if len(inside) > 4 else "")
            raise InputError(f"no {MANIFEST}: expected a dataset folder; the dataset(s) inside it: {listed}",
                             location)
        if location.is_local and not os.path.exists(location.path):  # a typo, not an interrupted run
            raise InputError("no such file or folder: expected a dataset folder written by handbooster", location)
        raise InputError(f"no {MANIFEST}: expected a dataset folder written by handbooster "
                         "(an interrupted run leaves none: re-run it to resume)", location)
    try:
        manifest = json.loads(location.read_bytes(name))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadData(f"{name} is not valid JSON", location) from None
    if not isinstance(manifest, dict):
        raise BadData(f"{name}: expected a JSON object", location)
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BadData(f"{name}: missing key(s) {', '.join(missing)}", location)
    kind = KINDS.get(manifest["kind"])
    if kind is None:
        raise BadData(f"{name}: 'kind': expected one of {', '.join(KINDS)}, got {manifest['kind']!r}", location)
    if manifest["schema_version"] != kind.version:
        raise BadData(f"{name}: 'schema_version': this code reads {kind.name} schema v{kind.version}, "
                      f"the dataset is v{manifest['schema_version']}", location)
    for shard in manifest["shards"]:
        path = shard.get("path") if isinstance(shard, dict) else None
        if not isinstance(path, str) or not is_shard_name(path) or "/" in path or "\\" in path:
            raise BadData(f"{name}: shard path {path!r}: expected a file name part-NNNNN.parquet inside the "
                          "folder", location)
    return location, manifest



def dataset_name(where) -> str:
    """The name a dataset folder's manifest gives it."""
    return read_manifest(where)[1]["name"]

def dataset_fingerprint(where) -> str:
    """A digest of what a dataset holds (its name, kind and every shard's sha256): stays the
    same wherever the folder is moved, changes with any row. Cheap: read from the manifest."""
    return manifest_fingerprint(read_manifest(where)[1])


def _over_shards(where, read) -> tuple[dict, list]:
    """The manifest, and ``read(location, manifest, shard, parquet_file)`` of every shard it lists;
    a shard that does not open or read is an error that names it."""
    location, manifest = read_manifest(where)
    results = []
    for shard in manifest["shards"]:
        try:
            with location.fs.open_input_file(location.join(shard["path"])) as handle:
                results.append(read(location, manifest, shard, pq.ParquetFile(handle)))
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{shard['path']}: not a readable Parquet shard ({exc}); run 'handbooster data "
                             "validate'", location) from None
    return manifest, results


def _require_columns(location, manifest: dict, shard: dict, shard_file: pq.ParquetFile, columns) -> None:
    missing = [c for c in columns or [] if c not in shard_file.schema_arrow.names]
    if missing:
        raise InputError(f"{shard['path']}: no column '{missing[0]}' (a {manifest['kind']} dataset "
                         f"has {', '.join(KINDS[manifest['kind']].schema.names)})", location)


def read_columns(where, columns: list[str] | None = None) -> tuple[dict, pa.Table]:
    """The manifest and the named columns of every shard it lists, as one table (labels, not images)."""
    def read(location, manifest, shard, shard_file):
        _require_columns(location, manifest, shard, shard_file, columns)
        return shard_file.read(columns=columns)

    manifest, tables = _over_shards(where, read)
    schema = KINDS[manifest["kind"]].schema
    if not tables:
        wanted = columns or schema.names
        return manifest, pa.table({c: pa.array([], schema.field(c).type) for c in wanted})
    return manifest, pa.concat_tables(tables)


def column_nulls(where, columns: list[str]) -> tuple[dict[str, int], int]:
    """The null count of each of ``columns`` over every shard, and the rows, from the Parquet
    footers' statistics in one pass: a dataset's images and condition maps are gigabytes, and
    whether every row has them needs none of them (a shard written without statistics is read)."""
    def count(location, manifest, shard, shard_file):
        _require_columns(location, manifest, shard, shard_file, columns)
        metadata, nulls = shard_file.metadata, {}
        for column in columns:
            index = shard_file.schema_arrow.get_field_index(column)
            stats = [metadata.row_group(g).column(index).statistics for g in range(metadata.num_row_groups)]
            nulls[column] = sum(stat.null_count for stat in stats) if all(
                stat is not None and stat.has_null_count for stat in stats) else \
                shard_file.read(columns=[column]).column(column).null_count
        return nulls, metadata.num_rows

    _, counts = _over_shards(where, count)
    return {column: sum(nulls[column] for nulls, _ in counts) for column in columns}, sum(r for _, r in counts)


def require_labels(where, table: pa.Table | None = None, columns=("joints_3d", "hand_pose")) -> pa.Table:
    """The dataset's ``columns``, checked to hold a value in every row (by default the MANO labels
    that training or scoring a reconstructor needs); ``table``: those columns, if already read."""
    if table is None:
        _, table = read_columns(where, list(columns))
    for column in columns:
        if not table.column(column).is_valid().to_numpy(zero_copy_only=False).all():
            raise BadData(f"rows without '{column}': expected {', '.join(columns)} in every row", where)
    return table


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
    _, manifest = read_manifest(where)
    if manifest["kind"] != "grasp":
        raise InputError(f"expected grasp records (handbooster grasp run), this one holds {manifest['kind']} "
                         "records", where)
    manifest, table = read_columns(where, columns)
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


def validate_dataset(where, deep: bool = False) -> dict:
    """Re-check every shard's checksum, size, row count and schema, the manifest's counts
    against the rows, and leftovers in the folder; lists every problem. ``deep`` also decodes
    every image and checks its PNG mode and size."""
    location = Location.parse(where)
    try:
        _, manifest = read_manifest(location)
    except BadData as exc:
        return {"dataset": str(location), "name": None, "rows": None, "shards": None, "problems": [exc.message],
                "ok": False}
    kind = KINDS[manifest["kind"]]
    problems, rows = [], 0
    if manifest_name(location) == LEGACY_MANIFEST:
        problems.append(f"{LEGACY_MANIFEST}: handbooster 0.1's layout, which Arrow tools cannot open as a "
                        f"folder; run 'handbooster data migrate {location}'")
    listed = {shard["path"] for shard in manifest["shards"]}
    counted: dict[str, Counter] = {column: Counter() for column in manifest.get("counts", {})}
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
        schema_problems = _schema_problems(name, parquet.schema_arrow, kind.schema)
        problems.extend(schema_problems)
        rows += parquet.metadata.num_rows
        if schema_problems:
            continue
        present = [c for c in counted if c in kind.schema.names]
        table = parquet.read(columns=present)
        for column in present:
            counted[column].update("null" if v is None else str(v) for v in table.column(column).to_pylist())
        if deep:
            problems.extend(_image_problems(name, parquet, manifest.get("image_size")))
    if rows != manifest["rows"]:
        problems.append(f"{MANIFEST}: says {manifest['rows']} rows, shards hold {rows}")
    for column, counts in manifest.get("counts", {}).items():
        if column in counted and dict(counted[column]) != {k: v for k, v in counts.items() if v}:
            problems.append(f"{MANIFEST}: 'counts.{column}' says {dict(sorted(counts.items()))}, "
                            f"the shards hold {dict(sorted(counted[column].items()))}")
    for name in location.list_files():
        if is_shard_name(name) and name not in listed:
            problems.append(f"{name}: not listed in {MANIFEST} (left over from another run?)")
        elif is_temporary(name):
            problems.append(f"{name}: a temporary file left by an interrupted write (re-run the command that "
                            "made the dataset to resume it, or delete the file)")
        elif name == JOURNAL:
            problems.append(f"{name}: an unfinished run's journal (re-run the command that made the dataset to "
                            "finish it)")
    return {"dataset": str(location), "name": manifest["name"], "rows": manifest["rows"],
            "shards": len(manifest["shards"]), "deep": deep, "problems": problems, "ok": not problems}


IMAGE_MODES = {"image": "RGB", "normal": "RGB", "texture": "RGB", "mask": "L"}


def _image_problems(name: str, parquet: pq.ParquetFile, image_size: int | None) -> list[str]:
    """Every PNG column decoded: mode, size, and (masks) the values 0/1/2."""
    from PIL import Image, UnidentifiedImageError

    columns = [c for c in IMAGE_MODES if c in parquet.schema_arrow.names]
    if not columns:
        return []
    id_column = "sample_id" if "sample_id" in parquet.schema_arrow.names else None
    table = parquet.read(columns=columns + ([id_column] if id_column else []))
    problems = []
    ids = table.column(id_column).to_pylist() if id_column else list(range(table.num_rows))
    for column in columns:
        for sample_id, data in zip(ids, table.column(column).to_pylist()):
            if data is None:
                continue
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
                    mode, size, fmt = image.mode, image.size, image.format
                    values = np.unique(np.asarray(image)) if column == "mask" else None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                problems.append(f"{name}: sample {sample_id!r}: column '{column}': does not decode as PNG ({exc})")
                continue
            if fmt != "PNG" or mode != IMAGE_MODES[column]:
                problems.append(f"{name}: sample {sample_id!r}: column '{column}': expected a {IMAGE_MODES[column]} "
                                f"PNG, got {fmt} {mode}")
            elif image_size and size != (image_size, image_size):
                problems.append(f"{name}: sample {sample_id!r}: column '{column}': expected {image_size}x{image_size} "
                                f"pixels, got {size[0]}x{size[1]}")
            elif values is not None and not set(values.tolist()) <= {0, 1, 2}:
                problems.append(f"{name}: sample {sample_id!r}: column 'mask': values {sorted(values.tolist())}, "
                                "expected 0, 1, 2")
    return problems
