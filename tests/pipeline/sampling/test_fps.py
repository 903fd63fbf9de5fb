"""Grasping split, pose vectors, farthest pose sampling, cross-distribution sampling, the sample stage."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from flows.cli import main
from pipeline.data import ShardWriter, validate_dataset
from pipeline.data.importers import ImportInputs, import_data
from pipeline.data.manifest import read_columns
from pipeline.data.reader import ShardDataset
from pipeline.data.schema import GRASP
from pipeline.errors import InputError
from pipeline.hand import load_hand_model
from pipeline.sampling import grasping_frames
from pipeline.sampling.fps import (
    cross_distribution_probabilities,
    draw_without_replacement,
    farthest_pose_sampling,
    farthest_pose_sampling_reference,
)
from pipeline.sampling.pose_vectors import POSE_VECTOR_SIZE, pose_vectors

import dataset_fixtures as fx
from conftest import make_config


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fps_equals_algorithm_1(seed):
    vectors = np.random.default_rng(seed).normal(size=(150, POSE_VECTOR_SIZE))
    expected = farthest_pose_sampling_reference(vectors, 25, first=seed * 7)
    assert farthest_pose_sampling(vectors, 25, first_index=seed * 7).tolist() == expected
    assert farthest_pose_sampling(vectors, 25, first_index=seed * 7, chunk=16).tolist() == expected
    drawn = farthest_pose_sampling(vectors, 25, seed=seed)
    assert drawn.tolist() == farthest_pose_sampling_reference(vectors, 25, first=int(drawn[0]))
    assert len(set(farthest_pose_sampling(vectors, 150, seed=seed).tolist())) == 150


def test_fps_picks_the_extremes_and_breaks_ties_by_index():
    angles = np.radians([0, 10, 20, 90, 180, 185, 270, 275])
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert farthest_pose_sampling(directions, 4, first_index=0).tolist() == [0, 4, 3, 6]
    duplicates = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 2)
    assert farthest_pose_sampling(duplicates, 4, first_index=1).tolist() == [1, 3, 0, 2]


def test_cross_distribution_orders_by_novelty():
    real = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]])
    synthetic = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [0.7, 0.7, 0.0]])
    p = cross_distribution_probabilities(synthetic, real)
    assert np.isclose(p.sum(), 1) and p[0] == 0  # the least novel pose is never drawn
    assert np.argsort(p).tolist() == [0, 3, 1, 2]
    assert np.allclose(cross_distribution_probabilities(synthetic[:1].repeat(3, 0), real), 1 / 3)
    drawn = draw_without_replacement(p, 4, seed=0)
    assert sorted(drawn.tolist()) == [0, 1, 2, 3] and drawn[-1] == 0
    counts = np.bincount(np.concatenate([draw_without_replacement(p, 1, seed=s) for s in range(400)]), minlength=4)
    assert counts[0] == 0 and counts[2] > counts[1] > counts[3]


def test_pose_vectors_ignore_quaternion_sign_and_the_global_frame():
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.4, (5, 48))
    wrist, rotation, translation = rng.normal(size=(5, 3)), Rotation.random(5, random_state=1).as_matrix(), rng.normal(size=(5, 3))
    vectors = pose_vectors(pose, wrist, rotation, translation)
    flipped = pose.copy().reshape(5, 16, 3)
    angle = np.linalg.norm(flipped, axis=-1, keepdims=True)
    flipped = (flipped / angle * (angle - 2 * np.pi)).reshape(5, 48)  # same rotations, quaternions of opposite sign
    assert np.allclose(pose_vectors(flipped, wrist, rotation, translation), vectors, atol=1e-9)
    turn = Rotation.random(random_state=3).as_matrix()
    moved_pose = pose.copy()
    moved_pose[:, :3] = (Rotation.from_matrix(turn) * Rotation.from_rotvec(pose[:, :3])).as_rotvec()
    shift = np.array([0.3, -0.1, 0.5])
    moved = pose_vectors(moved_pose, wrist @ turn.T + shift, turn @ rotation, translation @ turn.T + shift)
    assert np.allclose(moved, vectors, atol=1e-9)


def test_grasping_split_finds_the_lift():
    frames = np.arange(10)
    rotations = np.stack([Rotation.from_euler("z", 0 if f < 4 else 3 * (f - 3), degrees=True).as_matrix() for f in frames])
    translations = np.array([[0, 0, 0.5 + (0.004 * (f - 6) if f > 6 else 0)] for f in frames])
    flags = grasping_frames(rotations, translations, ["a"] * 10, frames)
    assert flags.tolist() == [False] * 5 + [True] * 5  # 6 degrees from frame 5 on
    translations_only = grasping_frames(np.repeat(np.eye(3)[None], 10, 0), translations, ["a"] * 10, frames)
    assert translations_only.tolist() == [False] * 9 + [True]  # 12 mm at frame 9
    rotations[0] = np.nan  # an unlabelled first frame is not the reference
    assert not grasping_frames(rotations, translations, ["a"] * 10, frames)[:4].any()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sampling")
    (tmp / "dex").mkdir()
    fx.make_dexycb(tmp / "dex")
    import_data(make_config({"data.image_size": 64}), ImportInputs(format="dexycb", root=str(tmp / "dex"),
                                                                   split="s0_train"), tmp / "real")
    with ShardWriter(tmp / "grasps", GRASP, name="grasps") as writer:
        writer.write_rows(fx.make_grasp_rows("025_mug", 30, seed=1) + fx.make_grasp_rows("banana", 6, seed=2))
    return tmp


def test_sample_stage_writes_specs_that_keep_the_grasps(inputs, tmp_path):
    sampling = {"real_per_object": 4, "synthetic_per_object": 12, "total": 6, "views_per_pose": 2}
    report = sample_and_check(inputs, tmp_path / "specs", sampling)
    assert report["objects"]["025_mug"] == {"real_grasping": 15, "real_kept": 4, "grasps_accepted": 20,
                                            "grasps_kept": 12, "grasps_drawn": 6}
    assert report["objects_without_real_frames"] == ["banana"]
    assert report["specs_by_object_and_origin"] == {"025_mug": {"real_novel_view": 8, "sim_grasp": 6}}
    assert report.cross_distribution == "drew 6 of the 12 grasps farthest pose sampling kept"
    image = Image.open(tmp_path / "specs" / "__report__" / "similarity.png")
    assert image.size[0] > 500
    again = sample_and_check(inputs, tmp_path / "again", sampling)
    paths = {"out", "report", "figure", "seconds"}
    assert again.model_dump(exclude=paths) == report.model_dump(exclude=paths)
    assert (tmp_path / "again" / "part-00000.parquet").read_bytes() == (tmp_path / "specs" / "part-00000.parquet").read_bytes()


def sample_conditions(real, grasps, out, sampling: dict | None = None, seed: int = 0):
    from pipeline.sampling.stage import SampleInputs, sample

    config = make_config({"seed": seed, **{f"sampling.{k}": v for k, v in (sampling or {}).items()}})
    return sample(config, SampleInputs(real=str(real), grasps=str(grasps)), out)


def sample_and_check(inputs, out, sampling):
    report = sample_conditions(inputs / "real", inputs / "grasps", out, sampling=sampling, seed=0)
    assert validate_dataset(out)["ok"]
    model = load_hand_model("builtin", dtype=torch.float64)
    specs = ShardDataset(out)
    _, grasps = read_columns(inputs / "grasps")
    grasp_rows = {g["grasp_id"]: g for g in grasps.to_pylist()}
    _, real = read_columns(inputs / "real")
    real_rows = {r["sample_id"]: r for r in real.to_pylist()}
    for spec in specs:
        assert spec["image"] is None and spec["source"] == "synthetic" and spec["is_grasping"]
        pose, betas, trans = (spec[k].double()[None] for k in ("hand_pose", "hand_betas", "hand_trans"))
        _, joints = model(pose, betas, trans)
        assert (joints[0] - spec["joints_3d"]).abs().max() < 1e-5
        uvw = spec["joints_3d"].double() @ spec["K"].double().T
        assert (uvw[:, :2] / uvw[:, 2:] - spec["joints_2d"]).abs().max() < 1e-2
        assert spec["joints_2d"].min() > -32 and spec["joints_2d"].max() < 96  # the crop follows the hand
        vector = pose_vectors(pose.numpy(), spec["joints_3d"][:1].numpy(), spec["object_pose"][None, :, :3].numpy(),
                              spec["object_pose"][None, :, 3].numpy())
        if spec["origin"] == "sim_grasp":  # placed rigidly: the grasp, as simulated, in the object's frame
            g = grasp_rows[spec["sequence_id"]]
            wrist = model.rest_wrist(torch.tensor([g["hand_betas"]], dtype=torch.float64)).numpy() + g["hand_trans"]
            expected = pose_vectors(np.array([g["hand_pose"]]), wrist, np.eye(3)[None], np.zeros((1, 3)))
            assert spec["sampler"] == "cross" and not spec["mirrored"]
        else:  # a novel view: the real grasp, turned about the wrist
            r = real_rows[spec["sample_id"].rsplit("/view", 1)[0]]
            assert spec["sequence_id"] == r["sequence_id"]  # the real frame's sequence, for the boost guard
            pose12 = np.array(r["object_pose"])
            expected = pose_vectors(np.array([r["hand_pose"]]), np.array([r["joints_3d"][:3]]),
                                    pose12[None, :9].reshape(1, 3, 3), pose12[None, 9:])
            assert np.allclose(spec["joints_3d"][0].numpy(), r["joints_3d"][:3], atol=1e-5)
            assert spec["mirrored"] == r["mirrored"] and spec["sampler"] == "fps"
        assert np.allclose(vector, expected, atol=2e-4)
    return report


def test_sample_cli_and_bad_inputs(inputs, tmp_path, capsys):
    code = main(["sample", "--real", str(inputs / "real"), "--grasps", str(inputs / "grasps"), "--out",
                 str(tmp_path / "specs"), "--per-object", "3,5", "--total", "4", "--views", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["specs"] == 3 + 4 and result["objects"]["025_mug"]["grasps_kept"] == 5
    everything = sample_conditions(inputs / "real", inputs / "grasps", tmp_path / "all",
                                   {"real_per_object": 3, "synthetic_per_object": 5, "total": 8, "views_per_pose": 1})
    assert everything.objects["025_mug"]["grasps_drawn"] == 5  # the share, 8, exceeds the 5 kept
    assert "chose nothing" in everything.cross_distribution and "synthetic_per_object" in everything.cross_distribution
    assert main(["sample", "--real", str(inputs / "real"), "--grasps", str(inputs / "grasps"), "--out",
                 str(tmp_path / "x"), "--per-object", "3"]) == 2
    assert "--per-object: expected 2 comma-separated values" in capsys.readouterr().err
    with pytest.raises(InputError, match="expected grasp records"):
        sample_conditions(inputs / "real", inputs / "real", tmp_path / "y")
