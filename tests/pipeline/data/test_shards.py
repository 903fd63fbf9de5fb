"""Schema v1 rows, the atomic resumable shard writer, manifests and `data validate`."""

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from pipeline.data import ShardWriter, read_manifest, validate_dataset
from pipeline.data import shards as shards_module
from pipeline.errors import InputError

from dataset_fixtures import SIZE, make_row, png

ROWS = [make_row(i) for i in range(10)]


def write(out, rows=ROWS, **kwargs):
    with ShardWriter(out, name="demo", rows_per_shard=4, image_size=SIZE, config={"seed": 0}, **kwargs) as writer:
        writer.write_rows(rows[writer.resume_rows:])
    return writer.manifest


def test_round_trip_is_exact_and_opens_with_plain_pyarrow(tmp_path):
    manifest = write(tmp_path / "ds")
    assert manifest["rows"] == 10 and [s["rows"] for s in manifest["shards"]] == [4, 4, 2]
    assert manifest["counts"] == {"source": {"real": 6, "synthetic": 4}, "split": {"test": 3, "train": 7}}
    for shard in manifest["shards"]:
        data = (tmp_path / "ds" / shard["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
    table = pa.concat_tables([pq.read_table(tmp_path / "ds" / s["path"]) for s in manifest["shards"]])
    assert pq.ParquetFile(tmp_path / "ds" / "part-00000.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    back = table.to_pylist()
    for row, read in zip(ROWS, back):
        assert read["sample_id"] == row["sample_id"] and read["image"] == row["image"]
        assert np.array_equal(np.float32(read["hand_pose"]), row["hand_pose"])
        assert read["normal"] is None and read["gen"] is None
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [".manifest.json", "part-00000.parquet",
                                                                   "part-00001.parquet", "part-00002.parquet"]


def test_interrupted_run_resumes_to_the_same_manifest(tmp_path, monkeypatch):
    reference = write(tmp_path / "reference")
    real_bytes = shards_module.parquet_bytes
    calls = []

    def failing(table):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed mid-shard")
        return real_bytes(table)

    monkeypatch.setattr(shards_module, "parquet_bytes", failing)
    with pytest.raises(RuntimeError, match="killed"):
        write(tmp_path / "ds")
    assert not (tmp_path / "ds" / ".manifest.json").exists()
    monkeypatch.setattr(shards_module, "parquet_bytes", real_bytes)
    writer = ShardWriter(tmp_path / "ds", name="demo", rows_per_shard=4, image_size=SIZE, config={"seed": 0},
                         overwrite=True)  # overwrite replaces another dataset; this one's finished shards stay
    assert writer.resume_rows == 4
    writer.write_rows(ROWS[writer.resume_rows:])
    assert writer.close() == reference
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == sorted(p.name for p in (tmp_path / "reference").iterdir())
    assert write(tmp_path / "ds") == reference  # a complete dataset resumes as a no-op


def test_other_dataset_in_the_folder_needs_overwrite(tmp_path):
    write(tmp_path / "ds")
    with pytest.raises(InputError, match="different dataset.*overwrite"):
        with ShardWriter(tmp_path / "ds", name="other", rows_per_shard=4, image_size=SIZE):
            pass
    with ShardWriter(tmp_path / "ds", name="other", rows_per_shard=4, image_size=SIZE, overwrite=True) as writer:
        writer.write_rows(ROWS[:3])
    assert read_manifest(tmp_path / "ds")[1]["rows"] == 3
    assert validate_dataset(tmp_path / "ds")["ok"]


def test_file_uri(tmp_path):
    manifest = write(f"file://{tmp_path}/uri")
    assert validate_dataset(f"file://{tmp_path}/uri")["ok"] and manifest["rows"] == 10


@pytest.mark.parametrize("column, value, message", [
    ("hand_quat", [1.0, 1.0, 0.0, 0.0], "'hand_quat': expected a unit quaternion"),
    ("hand_pose", [0.0] * 47, "'hand_pose': expected 48 values, got 47"),
    ("joints_3d", [float("nan")] * 63, "'joints_3d': expected finite values"),
    ("mask", png(np.full((SIZE, SIZE), 5, np.uint8)), "'mask': expected values 0"),
    ("image", png(np.zeros((8, 8, 3), np.uint8)), "'image': expected 16x16 pixels, got 8x8"),
    ("image", b"not a png", "'image': expected PNG bytes"),
    ("source", "fake", "'source': expected one of real, synthetic"),
    ("object_pose", [2.0] * 12, "'object_pose': expected a rotation matrix"),
])
def test_bad_rows_name_the_sample_and_column(tmp_path, column, value, message):
    row = {**make_row(3), column: value}
    with pytest.raises(InputError, match=f"sample 'demo/0003': column {message}"):
        write(tmp_path / "ds", rows=[row])
    assert not (tmp_path / "ds" / ".manifest.json").exists()


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(InputError, match="expected a unique id"):
        write(tmp_path / "ds", rows=[ROWS[0], ROWS[0]])


def test_validate_catches_flipped_bytes_truncation_and_schema_problems(tmp_path, capsys):
    out = tmp_path / "ds"
    write(out)
    assert main(["data", "validate", str(out)]) == 0
    shard = out / "part-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["data", "validate", str(out)]) == 2
    assert "part-00001.parquet: sha256 mismatch" in capsys.readouterr().err

    (out / "part-00002.parquet").write_bytes((out / "part-00002.parquet").read_bytes()[:100])
    problems = validate_dataset(out)["problems"]
    assert any("part-00002.parquet: 100 bytes" in p for p in problems)

    foreign = pa.table({"sample_id": ["x"], "source": ["real"]})
    pq.write_table(foreign, out / "part-00000.parquet")
    manifest = json.loads((out / ".manifest.json").read_text())
    data = (out / "part-00000.parquet").read_bytes()
    manifest["shards"][0].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), rows=1)
    (out / ".manifest.json").write_text(json.dumps(manifest))
    problems = validate_dataset(out)["problems"]
    assert any("part-00000.parquet: missing column 'image'" in p for p in problems)

    manifest["schema_version"] = 99
    (out / ".manifest.json").write_text(json.dumps(manifest))
    assert main(["data", "validate", str(out)]) == 2
    assert "reads sample schema v1, the dataset is v99" in capsys.readouterr().err
    assert main(["data", "validate", str(tmp_path / "nothing")]) == 2  # a typo: said as such
    assert "nothing: no such file or folder: expected a dataset folder" in capsys.readouterr().err
    (tmp_path / "unfinished").mkdir()  # what an interrupted run leaves
    assert main(["data", "validate", str(tmp_path / "unfinished")]) == 2
    assert "no .manifest.json" in capsys.readouterr().err


def test_a_folder_that_holds_datasets_is_named_with_them(tmp_path, capsys):
    """A stage's folder (``conditions/cross``) is not a dataset; the error names the ones inside, nearest first."""
    write(tmp_path / "run" / "cross" / "chunks" / "0-4", ROWS[:4])
    write(tmp_path / "run" / "cross" / "all", ROWS[:4])
    write(tmp_path / "run" / "cross" / "chunks" / "0-4" / "deeper", ROWS[:4])  # inside a dataset: not listed
    assert main(["data", "inspect", str(tmp_path / "run" / "cross")]) == 2
    assert capsys.readouterr().err.strip().endswith("the dataset(s) inside it: all, chunks/0-4")
    with pytest.raises(InputError, match="inside it: cross/all$"):  # two levels down at most
        read_manifest(tmp_path / "run")


def test_bad_input_rolls_back_what_the_run_wrote(tmp_path):
    bad = dict(make_row(5), hand_quat=[1.0, 1.0, 1.0, 1.0])
    with pytest.raises(InputError, match="hand_quat"):
        write(tmp_path / "ds", ROWS[:5] + [bad])  # the first shard is already written when row 6 fails
    assert not (tmp_path / "ds").exists()
    write(tmp_path / "ok", ROWS[:6])
    before = {p.name: p.read_bytes() for p in (tmp_path / "ok").iterdir()}
    with pytest.raises(InputError):
        with ShardWriter(tmp_path / "ok", name="demo", rows_per_shard=4, image_size=SIZE, config={"seed": 0}) as writer:
            writer.write_rows([make_row(i) for i in range(20, 25)] + [bad])
    assert {p.name: p.read_bytes() for p in (tmp_path / "ok").iterdir()} == before


def test_null_counts_come_from_the_footers_and_match_the_values(tmp_path):
    """Whether every row has its condition maps is read from the shards' statistics (the maps
    themselves are gigabytes); a shard without statistics is read."""
    from pipeline.data.manifest import column_nulls

    rows = [{**row, "normal": png(np.full((SIZE, SIZE, 3), 128, np.uint8))} if i % 3 else row
            for i, row in enumerate(ROWS)]
    write(tmp_path / "ds", rows)
    assert column_nulls(tmp_path / "ds", ["normal", "image"]) == ({"normal": 4, "image": 0}, 10)
    shard = tmp_path / "ds" / "part-00000.parquet"
    table = pq.read_table(shard)
    pq.write_table(table, shard, write_statistics=False)
    assert pq.ParquetFile(shard).metadata.row_group(0).column(0).statistics is None
    assert column_nulls(tmp_path / "ds", ["normal"]) == ({"normal": 4}, 10)
    with pytest.raises(InputError, match="no column 'normals'"):
        column_nulls(tmp_path / "ds", ["normals"])
