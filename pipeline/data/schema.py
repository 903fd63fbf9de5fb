"""Record kinds and their versioned pyarrow schemas; rows are checked before they are written.

The canonical sample (schema v1) is one Parquet row per image crop with its labels; other
record kinds (grasp records, condition specs) register their own :class:`RecordKind` and go
through the same writer. A row that breaks its schema is reported by sample id and column.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1
SOURCES = ("real", "synthetic")
ORIGINS = ("real", "real_novel_view", "sim_grasp")
SAMPLERS = ("fps", "cross", "random", "none")
MASK_VALUES = (0, 1, 2)  # background, hand, object


def _floats(size: int) -> pa.DataType:
    return pa.list_(pa.float32(), size)


GEN_TYPE = pa.struct([("checkpoint_sha", pa.string()), ("seed", pa.int64()), ("steps", pa.int32()),
                      ("scheduler", pa.string()), ("guidance", pa.float32())])
FILTER_TYPE = pa.struct([("mpjpe", pa.float32()), ("mpvpe", pa.float32()), ("pa_mpjpe", pa.float32()),
                         ("pa_mpvpe", pa.float32()), ("kept", pa.bool_())])

FIXED_FLOAT_COLUMNS = {"crop_box": 4, "K": 9, "hand_pose": 48, "hand_betas": 10, "hand_trans": 3, "hand_quat": 4,
                       "joints_3d": 63, "joints_2d": 42, "object_pose": 12}

SAMPLE_FIELDS = [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("dataset", pa.string()),
    pa.field("split", pa.string()),
    pa.field("sequence_id", pa.string()),
    pa.field("frame", pa.int32()),
    pa.field("image", pa.binary()),
    pa.field("normal", pa.binary()),
    pa.field("texture", pa.binary()),
    pa.field("mask", pa.binary()),
    *[pa.field(name, _floats(size)) for name, size in FIXED_FLOAT_COLUMNS.items() if name != "object_pose"],
    pa.field("vertices_3d", pa.list_(pa.float32())),
    pa.field("object_id", pa.string()),
    pa.field("object_pose", _floats(12)),
    pa.field("is_grasping", pa.bool_()),
    pa.field("origin", pa.string()),
    pa.field("sampler", pa.string()),
    pa.field("mirrored", pa.bool_()),  # a left hand mirrored to the canonical right on import
    pa.field("gen", GEN_TYPE),
    pa.field("filter", FILTER_TYPE),
]


class RowError(ValueError):
    """A row that does not fit its record kind; the message names the row and the column."""


@dataclass(frozen=True)
class RecordKind:
    """A kind of record: its schema, the columns manifests count by, and its row check."""

    name: str
    version: int
    fields: list[pa.Field]
    check_row: Callable[[dict, dict], None]  # (row, context) -> raises RowError
    id_column: str = "sample_id"
    count_by: tuple[str, ...] = ()
    context_keys: tuple[str, ...] = field(default=())

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(self.fields, metadata={"handbooster.kind": self.name,
                                                "handbooster.schema_version": str(self.version)})


def _fail(row: dict, column: str, expected: str, got) -> None:
    what, row_id = ("grasp", row.get("grasp_id")) if "grasp_id" in row else ("sample", row.get("sample_id"))
    raise RowError(f"{what} {row_id!r}: column '{column}': expected {expected}, got {got}")


def _check_png(row: dict, column: str, image_size: int | None, mode: str) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    data = row.get(column)
    if data is None:
        return None
    if not isinstance(data, (bytes, bytearray)):
        _fail(row, column, "PNG bytes", type(data).__name__)
    try:
        image = Image.open(io.BytesIO(data))
        image_format, image_mode, size = image.format, image.mode, image.size
    except (UnidentifiedImageError, OSError):
        _fail(row, column, "PNG bytes", "bytes that are not an image")
    if image_format != "PNG":
        _fail(row, column, "a PNG", image_format)
    if image_mode != mode:
        _fail(row, column, f"mode {mode}", image_mode)
    if image_size is not None and size != (image_size, image_size):
        _fail(row, column, f"{image_size}x{image_size} pixels", f"{size[0]}x{size[1]}")
    return np.asarray(image) if column == "mask" else None


def _check_floats(row: dict, column: str, size: int | None) -> np.ndarray | None:
    value = row.get(column)
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if size is not None and array.size != size:
        _fail(row, column, f"{size} values", f"{array.size}")
    if not np.isfinite(array).all():
        _fail(row, column, "finite values", "NaN or inf")
    return array


def _check_choice(row: dict, column: str, choices: tuple[str, ...], required: bool = False) -> None:
    value = row.get(column)
    if value is None and not required:
        return
    if value not in choices:
        _fail(row, column, f"one of {', '.join(choices)}", repr(value))


def check_sample_row(row: dict, context: dict) -> None:
    """Shapes, finite values, unit quaternions, rotations, image sizes and mask values."""
    sample_id = row.get("sample_id")
    if not isinstance(sample_id, str) or not sample_id:
        _fail(row, "sample_id", "a non-empty string", repr(sample_id))
    _check_choice(row, "source", SOURCES, required=True)
    _check_choice(row, "origin", ORIGINS)
    _check_choice(row, "sampler", SAMPLERS)
    image_size = context.get("image_size")
    for column in ("image", "normal", "texture"):
        _check_png(row, column, image_size, "RGB")
    mask = _check_png(row, "mask", image_size, "L")
    if mask is not None and not np.isin(mask, MASK_VALUES).all():
        _fail(row, "mask", "values 0 (background), 1 (hand), 2 (object)", sorted(set(np.unique(mask)) - set(MASK_VALUES)))
    arrays = {name: _check_floats(row, name, size) for name, size in FIXED_FLOAT_COLUMNS.items()}
    vertices = _check_floats(row, "vertices_3d", None)
    if vertices is not None and vertices.size % 3:
        _fail(row, "vertices_3d", "a multiple of 3 values", vertices.size)
    quat = arrays["hand_quat"]
    if quat is not None and abs(np.linalg.norm(quat) - 1) > 1e-3:
        _fail(row, "hand_quat", "a unit quaternion (w, x, y, z)", f"norm {np.linalg.norm(quat):.4f}")
    _check_pose12(row, "object_pose", arrays["object_pose"])


def _check_pose12(row: dict, column: str, pose: np.ndarray | None) -> None:
    if pose is not None:
        rotation = pose[:9].reshape(3, 3)
        if np.abs(rotation @ rotation.T - np.eye(3)).max() > 1e-3 or np.linalg.det(rotation) < 0:
            _fail(row, column, "a rotation matrix (row-major 3x3) then a translation", "a non-rotation")


SAMPLE = RecordKind("sample", SCHEMA_VERSION, SAMPLE_FIELDS, check_sample_row,
                    count_by=("source", "split"), context_keys=("image_size",))

# Grasp records (grasp_sim output, sampling input): a hand posed in the object's frame.
ENERGY_TYPE = pa.struct([(name, pa.float32()) for name in (
    "total", "force_closure", "contact_distance", "penetration", "self_penetration", "joint_limits", "plane")])
GRASP_FLOAT_COLUMNS = {"resting_pose": 12, "hand_pose": 48, "hand_betas": 10, "hand_trans": 3}
GRASP_FIELDS = [
    pa.field("grasp_id", pa.string(), nullable=False),
    pa.field("object_id", pa.string(), nullable=False),
    pa.field("resting_pose_index", pa.int32()),
    *[pa.field(name, _floats(size)) for name, size in GRASP_FLOAT_COLUMNS.items()],
    pa.field("seed", pa.int64()),
    pa.field("energy", ENERGY_TYPE),
    pa.field("contact_fingers", pa.int32()),  # fingers (thumb included) within the contact distance
    pa.field("thumb_contact", pa.bool_()),
    pa.field("penetration_depth_mm", pa.float32()),
    pa.field("intersection_volume_cm3", pa.float32()),
    pa.field("self_penetration_mm", pa.float32()),
    pa.field("sim_displacement_mm", pa.float32()),
    pa.field("accepted", pa.bool_()),
    pa.field("reject_reasons", pa.string()),
]


def check_grasp_row(row: dict, context: dict) -> None:
    """Ids, shapes, finite values and the resting pose's rotation."""
    for column in ("grasp_id", "object_id"):
        if not isinstance(row.get(column), str) or not row[column]:
            _fail(row, column, "a non-empty string", repr(row.get(column)))
    arrays = {name: _check_floats(row, name, size) for name, size in GRASP_FLOAT_COLUMNS.items()}
    for name in ("hand_pose", "hand_betas", "hand_trans"):
        if arrays[name] is None:
            _fail(row, name, f"{GRASP_FLOAT_COLUMNS[name]} values", "null")
    _check_pose12(row, "resting_pose", arrays["resting_pose"])


GRASP = RecordKind("grasp", 1, GRASP_FIELDS, check_grasp_row, id_column="grasp_id", count_by=("object_id", "accepted"))

KINDS: dict[str, RecordKind] = {SAMPLE.name: SAMPLE, GRASP.name: GRASP}


def pose12_matrix(values) -> np.ndarray:
    """A 12-value pose column (row-major R, then t) as a 4x4 matrix; ``[..., 12]`` -> ``[..., 4, 4]``."""
    values = np.asarray(values, dtype=np.float64)
    matrix = np.zeros(values.shape[:-1] + (4, 4))
    matrix[..., :3, :3] = values[..., :9].reshape(values.shape[:-1] + (3, 3))
    matrix[..., :3, 3] = values[..., 9:]
    matrix[..., 3, 3] = 1.0
    return matrix


def fixed_list_block(column) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-size float list column as ``[rows, size]`` numpy plus its validity mask."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    block = column.values.to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
    return block, column.is_valid().to_numpy(zero_copy_only=False)


def to_table(rows: list[dict], kind: RecordKind) -> pa.Table:
    """Rows (dicts; missing columns are null) as a table of ``kind``'s schema."""
    schema = kind.schema
    columns = {f.name: [_plain(row.get(f.name)) for row in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.reshape(-1).tolist()
    if hasattr(value, "detach"):  # torch tensors
        return value.detach().cpu().reshape(-1).tolist()
    return value
