"""Torch datasets over canonical shards: lazy row groups, decoded tensors, real+synthetic mixing.

:class:`ShardDataset` is map-style: it indexes the row groups of the shards the manifest
vouches for (checking each file's size and row count, not its checksum: that is
``data validate``), reads a row group the first time one of its rows is asked for and keeps
the last few (all of them when the shards total at most ``CACHE_ALL_BYTES``) in a per-process
cache, so ``num_workers > 0`` and ``DistributedSampler`` work unchanged. Random access over a
large dataset re-reads row groups; :class:`ShardSampler` shuffles row groups and rows within
them instead, and splits them across ranks.

Decoded values: RGB maps (image, normal, texture) are uint8 ``[3, H, W]`` and the mask uint8
``[H, W]`` (0 background, 1 hand, 2 object): a quarter of the bytes that float32 would move
between DataLoader workers; :func:`to_unit_float` converts on the training device. K ``[3, 3]``, joints ``[21, 3]`` / ``[21, 2]``, object_pose ``[3, 4]``
(``[R | t]``), vertices ``[V, 3]``, other lists float32 vectors; null stays ``None``. Use
:func:`collate_samples` with a DataLoader: it stacks tensors and keeps strings and ``None``
in lists.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyspng
import torch

from pipeline.data.manifest import read_manifest
from pipeline.data.schema import KINDS, fixed_list_block, pose12_matrix
from pipeline.errors import BadData, InputError

PNG_COLUMNS = ("image", "normal", "texture", "mask")
SHAPES = {"K": (3, 3), "joints_3d": (21, 3), "joints_2d": (21, 2), "object_pose": (3, 4), "vertices_3d": (-1, 3)}


def decode_png(data: bytes) -> torch.Tensor:
    """PNG bytes to a uint8 tensor: ``[3, H, W]`` for RGB, ``[H, W]`` for a one-channel mask.

    libspng (pyspng) decodes these crops about 1.6x faster than PIL, which is what bounds a
    DataLoader's samples/s (benchmarks/RESULTS.md).
    """
    array = pyspng.load(data)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)) if array.ndim == 3 else array)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB maps to float32 in [0, 1] (do it after moving the batch to its device)."""
    return images.float().div_(255.0)


def decode_value(column: str, value):
    """One cell as the model wants it (see the module docstring)."""
    if value is None:
        return None
    if column in PNG_COLUMNS:
        return decode_png(value)
    if isinstance(value, np.ndarray):
        if column == "object_pose":
            value = pose12_matrix(value)[:3]
        elif column in SHAPES:
            value = value.reshape(SHAPES[column])
        return torch.from_numpy(np.array(value, dtype=np.float32))
    return value


class _RowGroup:
    """A row group: fixed-size float lists as numpy blocks, other columns as Arrow arrays
    converted one cell at a time (a worker often needs only some of a group's rows)."""

    def __init__(self, table: pa.Table):
        self.blocks, self.arrays = {}, {}
        for name in table.column_names:
            column = table.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(column.type):
                self.blocks[name] = fixed_list_block(column)
            else:
                self.arrays[name] = column

    def row(self, index: int) -> dict:
        row = {name: array[index].as_py() for name, array in self.arrays.items()}
        for name, (block, valid) in self.blocks.items():
            row[name] = block[index] if valid[index] else None
        if row.get("vertices_3d") is not None:
            row["vertices_3d"] = np.asarray(row["vertices_3d"], dtype=np.float32)
        return row


# A dataset whose shards total at most this keeps every row group it reads: a training run's
# shuffled order then reads each once, where an LRU of a few groups re-read one in two rows.
CACHE_ALL_BYTES = 128 << 20


class ShardDataset(torch.utils.data.Dataset):
    """Rows of a dataset folder (local or URI) as dicts of tensors; see the module docstring."""

    def __init__(self, where, columns=None, transform=None, decode: bool = True, cache_row_groups: int = 4):
        self.location, self.manifest = read_manifest(where)
        schema = KINDS[self.manifest["kind"]].schema
        self.columns = list(columns) if columns is not None else list(schema.names)
        unknown = [c for c in self.columns if c not in schema.names]
        if unknown:
            raise InputError(f"unknown column(s) {', '.join(unknown)}; the {self.manifest['kind']} schema has "
                             f"{', '.join(schema.names)}", self.location)
        self.transform = transform
        self.decode = decode
        self.cache_row_groups = max(1, cache_row_groups)
        self.image_size = self.manifest.get("image_size")
        self._groups: list[tuple[str, int]] = []
        self._starts: list[int] = []
        total = 0
        for shard in self.manifest["shards"]:
            metadata = self._parquet(shard["path"], check=shard).metadata
            for group in range(metadata.num_row_groups):
                self._groups.append((shard["path"], group))
                self._starts.append(total)
                total += metadata.row_group(group).num_rows
        self._length = total
        if sum(shard["bytes"] for shard in self.manifest["shards"]) <= CACHE_ALL_BYTES:
            self.cache_row_groups = max(self.cache_row_groups, len(self._groups))
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._files: dict[str, pq.ParquetFile] = {}
        self._cache: OrderedDict[int, _RowGroup] = OrderedDict()

    def __getstate__(self) -> dict:  # workers open their own files
        state = dict(self.__dict__)
        state["_files"], state["_cache"] = {}, OrderedDict()
        return state

    def _parquet(self, name: str, check: dict | None = None) -> pq.ParquetFile:
        try:
            handle = self.location.fs.open_input_file(self.location.join(name))
            parquet = pq.ParquetFile(handle)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{name}: not a readable Parquet shard ({exc}); run 'handbooster data validate'",
                             self.location) from None
        if check is not None and (handle.size() != check["bytes"] or parquet.metadata.num_rows != check["rows"]):
            raise InputError(f"{name}: {handle.size()} bytes and {parquet.metadata.num_rows} rows, the manifest "
                             f"says {check['bytes']} and {check['rows']}; run 'handbooster data validate'",
                             self.location)
        return parquet

    def __len__(self) -> int:
        return self._length

    def row_group_of(self, index: int) -> int:
        return bisect.bisect_right(self._starts, index) - 1

    @property
    def row_group_bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` row indices of every row group, in order."""
        stops = self._starts[1:] + [self._length]
        return list(zip(self._starts, stops))

    def _row_group(self, group: int) -> _RowGroup:
        if os.getpid() != self._pid:
            self._reset_process_state()
        if group in self._cache:
            self._cache.move_to_end(group)
            return self._cache[group]
        path, number = self._groups[group]
        if path not in self._files:
            self._files[path] = self._parquet(path)
        loaded = _RowGroup(self._files[path].read_row_group(number, columns=self.columns))
        self._cache[group] = loaded
        while len(self._cache) > self.cache_row_groups:
            self._cache.popitem(last=False)
        return loaded

    def raw(self, index: int) -> dict:
        """The row as stored (PNG bytes, flat float arrays)."""
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} rows")
        group = self.row_group_of(index)
        return self._row_group(group).row(index - self._starts[group])

    def __getitem__(self, index: int) -> dict:
        row = self.raw(index)
        sample = {name: self.decode_cell(index, name, value) for name, value in row.items()} if self.decode else row
        return self.transform(sample) if self.transform is not None else sample

    def decode_cell(self, index: int, column: str, value):
        """One cell of row ``index`` decoded; a cell that does not decode is bad data naming the
        shard, the sample and the column."""
        try:
            return decode_value(column, value)
        except (RuntimeError, ValueError, OSError) as exc:
            raise BadData(f"{self.where_is(index)}: column '{column}': does not decode ({exc}); run "
                          "'handbooster data validate --deep'", self.location) from None

    def where_is(self, index: int) -> str:
        """``part-NNNNN.parquet: sample 'ID'`` of a row, for error messages."""
        if index < 0:
            index += self._length
        sample_id = self.raw(index).get("sample_id") if "sample_id" in self.columns else index
        return f"{self._groups[self.row_group_of(index)][0]}: sample {sample_id!r}"


class ShardSampler(torch.utils.data.Sampler):
    """Shuffles row groups, then rows inside each, and gives each rank whole row groups.

    Reads each row group about once per epoch, where a fully random order reads one per
    sample. ``set_epoch`` reshuffles, as with ``DistributedSampler``. Ranks get the same
    number of indices (the last rank's list wraps around), so DDP steps stay in lockstep.
    """

    def __init__(self, dataset: ShardDataset, shuffle: bool = True, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.bounds = dataset.row_group_bounds
        self.length = len(dataset)
        self.shuffle, self.seed, self.num_replicas, self.rank = shuffle, seed, num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = rng.permutation(len(self.bounds)) if self.shuffle else np.arange(len(self.bounds))
        parts = []
        for group in groups:
            start, stop = self.bounds[group]
            rows = np.arange(start, stop)
            parts.append(rng.permutation(rows) if self.shuffle else rows)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return -(-self.length // self.num_replicas)

    def __iter__(self):
        order = self._order()
        per_rank = len(self)
        padded = np.resize(order, per_rank * self.num_replicas) if len(order) else order
        return iter(padded[self.rank * per_rank:(self.rank + 1) * per_rank].tolist())


class MixedDataset(torch.utils.data.Dataset):
    """Real and synthetic samples: concatenated, or with a given synthetic fraction per epoch.

    With ``synthetic_fraction=f`` an epoch holds every real sample and ``round(R f / (1 - f))``
    synthetic ones, drawn without replacement (repeating the whole set when it is too small)
    from a permutation that ``set_epoch`` changes.
    """

    def __init__(self, real: torch.utils.data.Dataset, synthetic: torch.utils.data.Dataset,
                 synthetic_fraction: float | None = None, seed: int = 0):
        if synthetic_fraction is not None and not 0 <= synthetic_fraction < 1:
            raise ValueError(f"synthetic_fraction must be in [0, 1), got {synthetic_fraction}")
        self.real, self.synthetic = real, synthetic
        self.fraction, self.seed = synthetic_fraction, seed
        if synthetic_fraction is None:
            self.num_synthetic = len(synthetic)
        else:
            self.num_synthetic = int(round(len(real) * synthetic_fraction / (1 - synthetic_fraction)))
            if self.num_synthetic and not len(synthetic):
                raise ValueError("synthetic_fraction > 0 needs a non-empty synthetic dataset")
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if self.fraction is None:
            self._synthetic_index = np.arange(self.num_synthetic)
            return
        rng = np.random.default_rng([self.seed, epoch])
        repeats = -(-self.num_synthetic // max(len(self.synthetic), 1))
        order = np.concatenate([rng.permutation(len(self.synthetic)) for _ in range(repeats)]) if repeats else []
        self._synthetic_index = np.asarray(order[:self.num_synthetic], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.real) + self.num_synthetic

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if index < len(self.real):
            return self.real[index]
        return self.synthetic[int(self._synthetic_index[index - len(self.real)])]


def collate_samples(batch: list[dict]) -> dict:
    """Stack tensors and numbers; keep strings, dicts and anything with a ``None`` as lists."""
    out = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        if all(isinstance(v, torch.Tensor) for v in values) and len({v.shape for v in values}) == 1:
            out[key] = torch.stack(values)
        elif all(isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
