"""Importers: tiny DexYCB, HO3D and HandOccNet-JSON datasets in their official layouts."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.cli import main
from pipeline.data import validate_dataset
from pipeline.data.importers import ImportInputs, import_data
from pipeline.data.reader import ShardDataset
from pipeline.errors import DatasetConflict, InputError
from pipeline.hand import load_hand_model

import dataset_fixtures as fx
from conftest import make_config

MAKERS = {"dexycb": fx.make_dexycb, "ho3d": fx.make_ho3d, "handoccnet-json": fx.make_handoccnet}
SIZE = 128


def make(fmt: str, tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / fmt
    root.mkdir()
    return root, MAKERS[fmt](root)


def import_dataset(fmt, root, split, out, workers: int = 0, data_image_size: int | None = None):
    config = make_config({"hand.model": "builtin", "data.image_size": data_image_size, "run.workers": workers})
    return import_data(config, ImportInputs(format=fmt, root=str(root), split=split), out)


def run(fmt, root, info, out, **kwargs):
    return import_dataset(fmt, root, info["split"], out, data_image_size=SIZE, **kwargs)


def folder_state(path: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())} if path.exists() else {}


@pytest.mark.parametrize("fmt", list(MAKERS))
def test_import_converts_crops_and_mirrors(fmt, tmp_path):
    root, info = make(fmt, tmp_path)
    report = run(fmt, root, info, tmp_path / "out")
    assert report["frames"] == info["frames"]
    assert report["imported"] == info["frames"] - info["unlabelled"]
    assert report["skipped"] == ({"no_hand_label": info["unlabelled"]} if info["unlabelled"] else {})
    assert report["mirrored_left_hands"] == info.get("left", 0)
    assert validate_dataset(tmp_path / "out")["ok"]

    model = load_hand_model("builtin", dtype=torch.float64)
    dataset = ShardDataset(tmp_path / "out")
    assert len(dataset) == report["imported"]
    assert sum(sample["mirrored"] for sample in dataset) == info.get("left", 0)
    for sample in dataset:
        # The joints reproject onto the stored 2D joints (the dataset's own 2D labels where it has them).
        uvw = sample["joints_3d"].double() @ sample["K"].double().T
        assert (uvw[:, :2] / uvw[:, 2:] - sample["joints_2d"]).abs().max() < 1.0
        # The canonical right-hand parameters reproduce the joints (PCA, OpenGL and mirroring undone).
        _, joints = model(sample["hand_pose"].double()[None], sample["hand_betas"].double()[None],
                          sample["hand_trans"].double()[None])
        assert (joints[0] - sample["joints_3d"]).norm(dim=-1).max() < 5e-4
        # The pixels agree with the labels: red disc on the wrist, blue on the middle fingertip.
        image = sample["image"].permute(1, 2, 0).numpy().astype(float)
        for joint, colour in ((0, fx.WRIST_RGB), (fx.MIDDLE_TIP, fx.TIP_RGB)):
            u, v = np.round(sample["joints_2d"][joint].numpy()).astype(int)
            if 0 <= u < SIZE and 0 <= v < SIZE:
                assert np.abs(image[v, u] - colour).max() < 60, (sample["sample_id"], joint, image[v, u])
        quat = sample["hand_quat"]
        assert quat[0] >= 0 and abs(float(quat.norm()) - 1) < 1e-5
        assert sample["normal"] is None and sample["source"] == "real" and sample["split"] == info["split"]


def test_dexycb_splits_grasping_and_objects(tmp_path):
    root, info = make("dexycb", tmp_path)
    run("dexycb", root, info, tmp_path / "out")
    rows = [ShardDataset(tmp_path / "out").raw(i) for i in range(len(ShardDataset(tmp_path / "out")))]
    sequences = {r["sequence_id"].split("/")[1] for r in rows}
    assert sequences == {"20200709_140000", "20200709_140001", "20200709_140002", "20200709_140003"}  # i % 5 != 4
    assert all(r["is_grasping"] == (r["frame"] > 0) for r in rows)  # the object moves after frame 0
    assert {r["object_id"] for r in rows} == {"025_mug"}
    left = [r for r in rows if r["sequence_id"].startswith("20200709-subject-01/20200709_140001")]
    assert left and all(r["mirrored"] for r in left) and not any(r["mirrored"] for r in rows if r not in left)
    test_report = import_dataset("dexycb", root, "s0_val", tmp_path / "val")
    assert test_report["frames"] == 6  # the fifth sequence, two cameras, three frames


def test_rerun_resumes_and_yields_the_same_manifest(tmp_path):
    root, info = make("ho3d", tmp_path)
    run("ho3d", root, info, tmp_path / "out")
    first = (tmp_path / "out" / ".manifest.json").read_bytes()
    again = run("ho3d", root, info, tmp_path / "out", workers=2)
    assert again["resumed_rows"] == again["imported"]
    assert (tmp_path / "out" / ".manifest.json").read_bytes() == first
    parallel = run("ho3d", root, info, tmp_path / "parallel", workers=2)
    assert parallel["rows"] == again["rows"]
    assert folder_state(tmp_path / "parallel")["part-00000.parquet"] == folder_state(tmp_path / "out")["part-00000.parquet"]


def test_missing_annotation_or_broken_image_leaves_the_output_as_it_was(tmp_path, capsys):
    root, info = make("dexycb", tmp_path)
    label = root / "20200709-subject-01" / "20200709_140003" / "836212060125" / "labels_000002.npz"
    label.unlink()
    code = main(["data", "import", "dexycb", str(root), "--split", "s0_train", "--mano", "builtin",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and str(label) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    root, info = make("ho3d", tmp_path)
    run("ho3d", root, info, tmp_path / "ho3d_out")
    before = folder_state(tmp_path / "ho3d_out")
    image = root / "train" / "MC1" / "rgb" / "0001.jpg"
    image.write_bytes(image.read_bytes()[:200])  # truncated JPEG: found while cropping
    with pytest.raises(InputError, match="0001.jpg"):
        run("ho3d", root, info, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    with pytest.raises(DatasetConflict, match=r"differs in inputs\.root"):  # its rows came from the old root
        run("ho3d", root, info, tmp_path / "ho3d_out")
    assert folder_state(tmp_path / "ho3d_out") == before


def test_wrong_hand_model_is_caught_before_writing(tmp_path):
    root, info = make("handoccnet-json", tmp_path)
    path = root / "annotations" / "DEX_YCB_s0_train_data.json"
    data = json.loads(path.read_text())
    for ann in data["annotations"]:
        ann["mano_param"]["pose"] = (np.asarray(ann["mano_param"]["pose"]) + np.r_[np.zeros(3), np.full(45, 0.4)]).tolist()
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="--mano"):
        run("handoccnet-json", root, info, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_split_and_root(tmp_path):
    root, _ = make("dexycb", tmp_path)
    with pytest.raises(InputError, match="s0_train, s0_val"):
        import_dataset("dexycb", root, "s9_train", tmp_path / "out")
    with pytest.raises(InputError, match="dataset root not found"):
        import_dataset("ho3d", tmp_path / "nowhere", "train", tmp_path / "out")


def test_a_split_without_hand_labels_is_refused_and_writes_nothing(tmp_path, capsys):
    """HO3D's evaluation split keeps its hand poses on the challenge server: before, its import
    wrote a dataset of 0 rows and exited 0, which only failed later, at training."""
    import pickle

    root, _ = make("ho3d", tmp_path)
    for meta in (root / "train").glob("*/meta/*.pkl"):
        labels = pickle.loads(meta.read_bytes())
        meta.write_bytes(pickle.dumps({**labels, "handPose": None}, protocol=2))
    code = main(["data", "import", "ho3d", str(root), "--split", "train", "--mano", "builtin",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "none of its 6 frames can be imported (no_hand_label: 6)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
