"""ShardDataset, ShardSampler, MixedDataset, inspect and register."""

import io
import json
import os

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from flows.cli import main
from pipeline.data import ShardWriter
from pipeline.data.overview import inspect_dataset
from pipeline.data.reader import MixedDataset, ShardDataset, ShardSampler, collate_samples, to_unit_float
from pipeline.data.registry import register_dataset
from pipeline.errors import InputError

from dataset_fixtures import SIZE, make_row

ROWS = [make_row(i) for i in range(23)]


def write(out, rows=ROWS, name="demo", rows_per_shard=10):
    with ShardWriter(out, name=name, rows_per_shard=rows_per_shard, image_size=SIZE) as writer:
        writer.write_rows(rows)
    return out


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write(tmp_path_factory.mktemp("reader") / "ds")


def test_decoded_samples_match_what_was_written(dataset_dir):
    dataset = ShardDataset(dataset_dir)
    assert len(dataset) == 23
    for index in (0, 9, 10, 22, -1):
        sample, row = dataset[index], ROWS[index]
        image = np.array(Image.open(io.BytesIO(row["image"])))
        assert sample["image"].shape == (3, SIZE, SIZE) and sample["image"].dtype == torch.uint8
        assert torch.equal(sample["image"], torch.from_numpy(image).permute(2, 0, 1))
        assert torch.equal(to_unit_float(sample["image"]) * 255, sample["image"].float())
        assert sample["mask"].dtype == torch.uint8 and sample["mask"].shape == (SIZE, SIZE)
        assert torch.allclose(sample["joints_3d"], torch.from_numpy(row["joints_3d"].reshape(21, 3)))
        assert sample["K"].shape == (3, 3) and sample["joints_2d"].shape == (21, 2)
        assert torch.equal(sample["object_pose"][:, 3], torch.tensor([0.0, 0.0, 0.5]))
        assert sample["normal"] is None and sample["sample_id"] == row["sample_id"]
    with pytest.raises(IndexError):
        dataset[23]


def test_reads_through_a_filesystem_uri(dataset_dir):
    dataset = ShardDataset(dataset_dir.resolve().as_uri(), columns=["sample_id"])
    assert [dataset[i]["sample_id"] for i in range(len(dataset))] == [r["sample_id"] for r in ROWS]


def test_columns_and_transform(dataset_dir):
    dataset = ShardDataset(dataset_dir, columns=["sample_id", "hand_quat"], transform=lambda s: s["hand_quat"].sum())
    assert torch.isclose(dataset[3], torch.tensor(ROWS[3]["hand_quat"]).sum())
    with pytest.raises(InputError, match="unknown column"):
        ShardDataset(dataset_dir, columns=["nope"])


def test_dataloader_with_two_workers_reads_everything_once(dataset_dir):
    dataset = ShardDataset(dataset_dir, columns=["sample_id", "image", "mask", "joints_2d", "normal", "is_grasping"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_samples)
    ids = []
    for batch in loader:
        assert batch["image"].shape[1:] == (3, SIZE, SIZE) and batch["is_grasping"].dtype == torch.bool
        assert batch["normal"] == [None] * len(batch["sample_id"])
        ids.extend(batch["sample_id"])
    assert sorted(ids) == sorted(r["sample_id"] for r in ROWS)


def test_samplers_cover_every_row_and_keep_row_groups_together(tmp_path):
    dataset = ShardDataset(write(tmp_path / "ds", ROWS * 1 + [make_row(i) for i in range(23, 700)], rows_per_shard=600))
    assert len(dataset.row_group_bounds) == 4  # 600 rows = 256 + 256 + 88; then 100 rows
    distributed = [list(torch.utils.data.DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=True)) for r in (0, 1)]
    assert sorted(distributed[0] + distributed[1]) == list(range(len(dataset)))
    ranks = [ShardSampler(dataset, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    orders = [list(s) for s in ranks]
    assert len(orders[0]) == len(orders[1]) == 350 and set(orders[0]) | set(orders[1]) == set(range(700))
    groups = [dataset.row_group_of(i) for i in orders[0]]
    assert sum(a != b for a, b in zip(groups, groups[1:])) <= 3  # whole row groups, one after another
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != orders[0] and list(ShardSampler(dataset, seed=3, num_replicas=2, rank=0)) == orders[0]


def test_a_small_dataset_keeps_every_row_group_it_reads(tmp_path, monkeypatch):
    """Random order over a dataset under CACHE_ALL_BYTES reads each row group once; a larger one
    keeps the last few."""
    from pipeline.data import reader

    folder = write(tmp_path / "ds", [make_row(i) for i in range(120)], rows_per_shard=20)
    order = np.random.default_rng(0).permutation(120)
    for limit, kept in ((reader.CACHE_ALL_BYTES, 6), (0, 4)):
        monkeypatch.setattr(reader, "CACHE_ALL_BYTES", limit)
        dataset = ShardDataset(folder, decode=False)
        for index in order:
            dataset.raw(int(index))
        assert len(dataset.row_group_bounds) == 6 and len(dataset._cache) == kept


def test_mixed_dataset_ratio_and_concatenation(tmp_path):
    real = ShardDataset(write(tmp_path / "real", ROWS[:20]), columns=["sample_id"])
    synthetic = ShardDataset(write(tmp_path / "syn", [make_row(i) for i in range(100, 106)], name="syn"),
                             columns=["sample_id"])
    assert len(MixedDataset(real, synthetic)) == 26
    mixed = MixedDataset(real, synthetic, synthetic_fraction=0.5, seed=1)
    ids = [mixed[i]["sample_id"] for i in range(len(mixed))]
    assert len(ids) == 40 and sum(i >= "demo/0100" for i in ids) == 20  # 6 synthetic rows repeated to 20
    assert {i for i in ids if i >= "demo/0100"} == {r["sample_id"] for r in synthetic}
    first = [mixed[i]["sample_id"] for i in range(20, 40)]
    mixed.set_epoch(1)
    assert [mixed[i]["sample_id"] for i in range(20, 40)] != first
    with pytest.raises(ValueError):
        MixedDataset(real, synthetic, synthetic_fraction=1.0)


def test_shards_open_with_pandas_and_duckdb(dataset_dir):
    frame = pd.concat([pd.read_parquet(path) for path in sorted(dataset_dir.glob("part-*.parquet"))])
    assert list(frame["sample_id"]) == [r["sample_id"] for r in ROWS]
    count, real = duckdb.sql(f"select count(*), sum(case when source = 'real' then 1 else 0 end) "
                             f"from read_parquet('{dataset_dir}/part-*.parquet')").fetchall()[0]
    assert (count, real) == (23, sum(r["source"] == "real" for r in ROWS))


def test_reader_refuses_a_shard_the_manifest_does_not_vouch_for(tmp_path):
    out = write(tmp_path / "ds")
    shard = out / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(InputError, match="part-00001.parquet"):
        ShardDataset(out)


def test_inspect_counts_and_grid(dataset_dir, tmp_path, capsys):
    result = inspect_dataset(dataset_dir, tmp_path / "grid.png", samples=5, seed=0)
    assert result["counts"]["source"] == {"real": 15, "synthetic": 8}
    assert result["counts"]["object_id"] == {"mug": 23}
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[1] == 4 * 160 and grid.shape[0] == 16 + 5 * (160 + 16)
    assert main(["data", "inspect", str(dataset_dir)]) == 0
    assert "by split: test 16, train 7" in capsys.readouterr().out
    assert main(["data", "sheet", str(dataset_dir), "--out", str(tmp_path / "sheet"), "--samples", "3"]) == 0
    assert np.asarray(Image.open(tmp_path / "sheet" / "grid.png")).shape[0] == 16 + 3 * (160 + 16)


def test_register_copies_the_manifest_once(dataset_dir, tmp_path):
    registry = tmp_path / "data_manifests"
    result = register_dataset(dataset_dir, registry)
    record = json.loads((registry / "demo.json").read_text())
    assert record["rows"] == 23 and result["name"] == "demo"
    assert record["location"] == os.path.relpath(dataset_dir.resolve(), registry.resolve())  # never an absolute path
    assert (registry / record["location"]).resolve() == dataset_dir.resolve()
    register_dataset(dataset_dir, registry)  # same dataset again: fine
    other = write(tmp_path / "other", ROWS[:5])
    with pytest.raises(InputError, match="different dataset"):
        register_dataset(other, registry)
    assert main(["data", "register", str(other), "--registry", str(registry), "--overwrite"]) == 0
    assert json.loads((registry / "demo.json").read_text())["rows"] == 5
