"""``ShardWriter``: rows -> Parquet shards + ``.manifest.json``, atomic and resumable.

Rows are checked against their record kind and buffered; every ``rows_per_shard`` rows a
shard ``part-NNNNN.parquet`` (row groups of 256, zstd) is written under a temporary name and
moved into place, and a progress journal records its rows, bytes and sha256. The manifest
is written last, atomically, when the writer closes without error.

Resuming: shards are written in order, so the journal vouches for a prefix of them. A re-run
into the same folder with the same name, kind and config finds that prefix (each shard's
checksum re-verified), starts at ``writer.resume_rows`` and redoes everything after it. A
folder holding a different dataset is refused unless ``overwrite=True``. The writer holds
the folder's lock from start to close: a second process writing the same folder is refused.

Bad input (an :class:`InputError` raised inside the ``with`` block) rolls back what this run
wrote, so the folder is left as it was; any other exception (a crash, Ctrl-C, a full disk)
keeps the journal so that the next run resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.schema import SAMPLE, RecordKind, RowError, to_table
from pipeline.errors import DatasetConflict, InputError, MissingResource
from pipeline.storage import (
    JOURNAL,
    LEGACY_MANIFEST,
    MANIFEST,
    Location,
    code_version,
    differing_keys,
    folder_lock,
    is_temporary,
    written_for,
)

ROW_GROUP_SIZE = 256


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def is_shard_name(name: str) -> bool:
    return name.startswith("part-") and name.endswith(".parquet")


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=ROW_GROUP_SIZE, compression="zstd")
    return buffer.getvalue()


class ShardWriter:
    """Context manager writing one dataset; see the module docstring for the guarantees."""

    def __init__(self, out, kind: RecordKind = SAMPLE, *, name: str, rows_per_shard: int = 4096,
                 image_size: int | None = None, config: dict | None = None, info: dict | None = None,
                 overwrite: bool = False):
        if rows_per_shard < 1:
            raise ValueError("rows_per_shard must be positive")
        self.location = Location.parse(out)
        self._folder_existed = self.location.exists()
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(folder_lock(self.location))
        try:
            self._open(kind, name, rows_per_shard, image_size, config, info, overwrite)
        except BaseException:
            self._lock.close()
            raise

    def _open(self, kind, name, rows_per_shard, image_size, config, info, overwrite) -> None:
        self.kind = kind
        self.rows_per_shard = rows_per_shard
        self.context = {"image_size": image_size}
        inputs = written_for()
        identity = {"name": name, "kind": kind.name, "schema_version": kind.version,
                    "rows_per_shard": rows_per_shard, "image_size": image_size, "config": config or {},
                    **({"inputs": inputs} if inputs is not None else {})}
        self.identity = json.loads(json.dumps(identity))  # as the journal will read it back (tuples -> lists)
        self.info = info or {}
        self._buffer: list[dict] = []
        self._ids: set[str] = set()
        self.shards: list[dict] = []
        self.manifest: dict | None = None
        if overwrite and not self._holds(self.identity):
            self._clear()
        self._resume()
        self._journal_before = self.location.read_bytes(JOURNAL) if self.location.exists(JOURNAL) else None
        self._shards_before = len(self.shards)

    # ------------------------------------------------------------------ resume

    def _holds(self, identity: dict) -> bool:
        """The folder holds (part of) this very dataset, which ``overwrite`` keeps, to resume."""
        files = self.location.list_files()
        source = JOURNAL if JOURNAL in files else MANIFEST if MANIFEST in files else None
        try:
            return source is not None and json.loads(self.location.read_bytes(source)).get("identity") == identity
        except (ValueError, UnicodeDecodeError, AttributeError):
            return False

    def _clear(self) -> None:
        for name in self.location.list_files():
            if name in (MANIFEST, JOURNAL, LEGACY_MANIFEST) or is_shard_name(name) or is_temporary(name):
                self.location.delete(name)

    def _resume(self) -> None:
        files = self.location.list_files()
        source = JOURNAL if JOURNAL in files else MANIFEST if MANIFEST in files else None
        if source is None:
            if LEGACY_MANIFEST in files:
                raise DatasetConflict("holds a dataset in handbooster 0.1's layout (manifest.json); run "
                                      "'handbooster data migrate' on it, or pass overwrite=True to replace it",
                                      self.location)
            if any(is_shard_name(n) for n in files):
                raise DatasetConflict("holds shards without a manifest or progress journal; "
                                      "pass overwrite=True to replace them", self.location)
            return
        try:
            previous = json.loads(self.location.read_bytes(source))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DatasetConflict(f"{source} is not valid JSON; pass overwrite=True to start again",
                                  self.location) from None
        if previous.get("identity") != self.identity:
            raise DatasetConflict(f"holds a different dataset ({_difference(previous.get('identity'), self.identity)}); "
                                  "pass overwrite=True to replace it", self.location)
        for entry in previous.get("shards", []):
            if not self.location.exists(entry["path"]) or self.location.sha256(entry["path"]) != \
                    (entry["sha256"], entry["bytes"]):
                break
            self.shards.append(entry)
        vouched = {s["path"] for s in self.shards}
        for name in self.location.list_files():  # leftovers of an interrupted run: redone
            if is_temporary(name) or (is_shard_name(name) and name not in vouched):
                self.location.delete(name)

    @property
    def resume_rows(self) -> int:
        """Rows already written by an earlier run: the producer starts after them."""
        return sum(s["rows"] for s in self.shards)

    # ------------------------------------------------------------------ writing

    def write(self, row: dict) -> None:
        try:
            self.kind.check_row(row, self.context)
        except RowError as exc:
            raise InputError(str(exc), self.location) from None
        row_id = row[self.kind.id_column]
        if row_id in self._ids:
            raise InputError(f"sample {row_id!r}: column '{self.kind.id_column}': expected a unique id, "
                             "got a duplicate", self.location)
        self._ids.add(row_id)
        self._buffer.append(row)
        if len(self._buffer) >= self.rows_per_shard:
            self._flush()

    def write_rows(self, rows) -> None:
        for row in rows:
            self.write(row)

    def end_shard(self) -> None:
        """Write what is buffered as a shard now, so that a resumed run restarts after it."""
        self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = to_table(self._buffer, self.kind)
        data = parquet_bytes(table)
        name = shard_name(len(self.shards))
        self.location.write_atomic(name, data)
        counts = {column: _counts(table.column(column).to_pylist()) for column in self.kind.count_by}
        self.shards.append({"path": name, "rows": table.num_rows, "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(), "counts": counts})
        self._buffer = []
        self._write_json(JOURNAL, {"identity": self.identity, "shards": self.shards})

    def _write_json(self, name: str, payload: dict) -> None:
        self.location.write_json(name, payload)

    def close(self) -> dict:
        """Flush the last shard and write the manifest; returns it."""
        self._flush()
        counts: dict[str, dict[str, int]] = {column: {} for column in self.kind.count_by}
        for shard in self.shards:
            for column, values in shard["counts"].items():
                for value, count in values.items():
                    counts[column][value] = counts[column].get(value, 0) + count
        self.manifest = {
            "name": self.identity["name"],
            "kind": self.kind.name,
            "schema_version": self.kind.version,
            "image_size": self.identity["image_size"],
            "rows": self.resume_rows,
            "counts": counts,
            "shards": self.shards,
            "config": self.identity["config"],
            "code_version": code_version(),
            "identity": self.identity,
            **self.info,
        }
        self._write_json(MANIFEST, self.manifest)
        self.location.delete(JOURNAL)
        self._lock.close()
        return self.manifest

    def __enter__(self) -> ShardWriter:
        return self

    def rollback(self) -> None:
        """Remove the shards this run wrote and restore the journal it found."""
        for shard in self.shards[self._shards_before:]:
            self.location.delete(shard["path"])
        del self.shards[self._shards_before:]
        self._buffer = []
        if self._journal_before is None:
            self.location.delete(JOURNAL)
        else:
            self.location.write_atomic(JOURNAL, self._journal_before)
        if not self._folder_existed:
            self.location.remove_if_empty()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.close()
            elif issubclass(exc_type, InputError) and not issubclass(exc_type, MissingResource):
                self.rollback()
        finally:
            self._lock.close()


def _difference(before: dict | None, now: dict) -> str:
    """Which identity keys differ, for the error message (``config.grasp.iterations``)."""
    if not isinstance(before, dict):
        return "no identity recorded"
    changed = differing_keys(before, now)
    return "differs in " + ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "") if changed else "same"


def _counts(values) -> dict[str, int]:
    result: dict[str, int] = {}
    for value in values:
        key = "null" if value is None else str(value)
        result[key] = result.get(key, 0) + 1
    return dict(sorted(result.items()))
