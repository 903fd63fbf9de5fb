"""The embedded demo dataset: determinism, resume, labels against pixels, grasping split, splits."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.camera import project
from pipeline.data.manifest import column_arrays, read_columns, read_manifest
from pipeline.data.schema import pose12_matrix
from pipeline.demo.plan import SIZES, SPLITS

from conftest import make_config

# Two quick objects, an unseen third subject, two sequences each, one camera: 72 frames.
TINY = SIZES["tiny"]
CONFIG = make_config({"seed": 3, "demo.size": "tiny"})
LABELS = ["sample_id", "sequence_id", "frame", "object_id", "is_grasping", "split", "K", "hand_pose", "hand_betas",
          "hand_trans", "joints_3d", "joints_2d", "object_pose"]


@pytest.fixture(scope="module")
def demo(tiny_demo):
    return tiny_demo


def _rows(where, columns=LABELS) -> dict[str, np.ndarray]:
    _, table = read_columns(where, columns)
    return column_arrays(table, columns)


def _shard_digests(where) -> list[str]:
    return [shard["sha256"] for shard in read_manifest(where)[1]["shards"]]


def _frames_made(result) -> int:
    """Frames of the objects that made it (each object's sequences have the same frames)."""
    return TINY.frames() // len(TINY.objects) * len(result["objects"])


def test_demo_builds_four_registered_splits(demo):
    root, result = demo
    assert sorted(result["objects"] + result["objects_left_out"]) == sorted(TINY.objects)
    assert result["objects"] and bool(result["objects_left_out"]) == bool(result["grasp_shortfall"])
    assert result["frames_rendered"] + result["frames_resumed"] == _frames_made(result)
    record = json.loads((root / "registry" / "demo-demo.json").read_text())
    assert record["kind"] == "collection" and record["generator"]["seed"] == 3
    assert set(record["splits"]) == set(SPLITS)
    total = {"s0": 0, "s1": 0}
    for split in SPLITS:
        manifest = record["splits"][split]
        assert manifest["name"] == f"demo_{split}" and manifest["config"]["seed"] == 3
        assert manifest["counts"]["split"] == {split: manifest["rows"]} and manifest["rows"] > 0
        total[split[:2]] += manifest["rows"]
    assert total == {"s0": _frames_made(result), "s1": _frames_made(result)}  # each frame in one split per protocol
    made = set(result["objects"])
    for split in SPLITS:  # each object that made it has frames in every split, and no other object has
        assert set(_rows(root / "demo" / split, ["object_id"])["object_id"]) == made


def test_two_demo_folders_register_side_by_side(demo, tmp_path):
    from flows.stage import register_demo, registry_name
    from pipeline.data.registry import list_registry
    from pipeline.storage import Location

    root, _ = demo
    registry = tmp_path / "data_manifests"
    for name in ("one", "two"):
        shutil.copytree(root / "demo", tmp_path / "out" / name, ignore=shutil.ignore_patterns("grasps"))
        register_demo(Location.parse(tmp_path / "out" / name), str(registry), {"seed": 3}, overwrite=False)
    assert registry_name(Location.parse(tmp_path / "out" / "one"), str(registry)) == "demo-out-one"
    entries = list_registry(registry)
    assert {entry["record"] for entry in entries} == {"demo-out-one.json", "demo-out-two.json"}
    assert len(entries) == 2 * len(SPLITS) and all(entry["valid"] for entry in entries)


def test_another_seed_reaches_every_planned_object(tmp_path):
    """The grasp rounds' budget leaves no planned object out, whatever the seed and the float path:
    the tiny demo's grasp rounds and plan for seed 11 (its frames are not rendered)."""
    from flows.stage import demo_grasps
    from pipeline.demo.plan import plan_demo
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library
    from pipeline.storage import Location

    config = make_config({"seed": 11, "demo.size": "tiny"})
    grasps, _, shortfall = demo_grasps(config, Location.parse(tmp_path / "demo"), TINY.objects,
                                       TINY.grasps_per_object, TINY.grasp_iterations, TINY.accepted_per_object)
    assert shortfall is None
    plan = plan_demo(grasps, load_object_library("builtin"), load_hand_model("builtin").num_betas, TINY, 11)
    assert plan["objects"] == list(TINY.objects) and not plan["left_out"]


def test_same_seed_same_bytes_and_interrupted_run_resumes(demo, tmp_path, monkeypatch):
    import flows.stage
    from flows.stage import DemoInputs

    root, result = demo
    shutil.copytree(root / "demo" / "grasps", tmp_path / "demo" / "grasps")  # finished rounds: reused
    per_object = TINY.frames() // len(TINY.objects)
    # past the first object when there are two or more (its shards are on disk), else within it
    crash_after, resumable = (per_object + 4, per_object) if len(result["objects"]) > 1 else (4, 0)
    real_render, calls = flows.stage.render_frame, []

    def failing_render(*args):
        calls.append(1)
        if len(calls) > crash_after:
            raise RuntimeError("simulated crash")
        return real_render(*args)

    monkeypatch.setattr(flows.stage, "render_frame", failing_render)
    with pytest.raises(RuntimeError, match="simulated crash"):
        flows.stage.demo(CONFIG, DemoInputs(), tmp_path / "demo")
    monkeypatch.setattr(flows.stage, "render_frame", real_render)
    resumed = flows.stage.demo(CONFIG, DemoInputs(), tmp_path / "demo")
    assert resumed["frames_resumed"] == resumable
    assert resumed["frames_rendered"] == _frames_made(result) - resumable
    for split in SPLITS:
        assert _shard_digests(tmp_path / "demo" / split) == _shard_digests(root / "demo" / split)


def test_labels_agree_with_pixels(demo, hand_model):
    """Joints of the hand where no object hides it fall on mask = 1; visible object points on 2.
    What hides what is re-rendered from the stored labels alone (the object alone: the hand
    moved behind the camera)."""
    from pipeline.objects import load_object_library
    from renderers.conditions import ConditionRenderer

    root, _ = demo
    rows = _rows(root / "demo" / "s0_train", [*LABELS, "mask"])
    library = load_object_library("builtin")
    size = read_manifest(root / "demo" / "s0_train")[1]["image_size"]
    renderer = ConditionRenderer(size)
    hits = {"joint": [], "object": []}
    for i in range(len(rows["sample_id"])):
        mask = np.asarray(Image.open(io.BytesIO(rows["mask"][i])))
        K = rows["K"][i].reshape(3, 3)
        with torch.no_grad():
            vertices, joints = (t[0].numpy() for t in hand_model(*(torch.as_tensor(rows[k][i:i + 1]) for k in (
                "hand_pose", "hand_betas", "hand_trans"))))
        np.testing.assert_allclose(joints.ravel(), rows["joints_3d"][i], atol=1e-5)
        np.testing.assert_allclose(project(joints, K).ravel(), rows["joints_2d"][i], atol=1e-2)
        asset, pose = library[rows["object_id"][i]], pose12_matrix(rows["object_pose"][i])
        scene = renderer.render(vertices, hand_model.faces, [(asset, pose)], K)["depth"]
        alone = {"joint": renderer.render(vertices, hand_model.faces, [], K)["depth"],
                 "object": renderer.render(vertices - [0, 0, 10], hand_model.faces, [(asset, pose)], K)["depth"]}
        points = {"joint": rows["joints_2d"][i].reshape(21, 2),
                  "object": project(asset.vertices @ pose[:3, :3].T + pose[:3, 3], K)}
        for what, label in (("joint", 1), ("object", 2)):
            pixel = np.round(points[what]).astype(int)
            inside = ((pixel >= 0) & (pixel < size)).all(axis=1)
            u, v = pixel[inside].T
            front = (alone[what][v, u] > 0) & (np.abs(scene[v, u] - alone[what][v, u]) < 1e-3)  # not hidden
            hits[what].extend(mask[v[front], u[front]] == label)
    for what in hits:
        assert len(hits[what]) > 500 and np.mean(hits[what]) >= 0.9, (what, len(hits[what]), np.mean(hits[what]))


def test_grasping_split_finds_the_lift_frames(demo):
    from pipeline.data.grasp_split import grasping_frames

    root, _ = demo
    for split in SPLITS:
        rows = _rows(root / "demo" / split)
        lifting = rows["frame"].astype(int) > TINY.approach_frames
        np.testing.assert_array_equal(rows["is_grasping"].astype(bool), lifting)
        poses = pose12_matrix(rows["object_pose"])
        found = grasping_frames(poses[:, :3, :3], poses[:, :3, 3], rows["sequence_id"], rows["frame"].astype(int))
        np.testing.assert_array_equal(found, lifting)


def test_splits_are_disjoint(demo):
    root, _ = demo
    rows = {split: _rows(root / "demo" / split) for split in SPLITS}
    sequences = {split: set(rows[split]["sequence_id"]) for split in SPLITS}
    subjects = {split: {s.split("/")[1] for s in sequences[split]} for split in SPLITS}
    for protocol in ("s0", "s1"):
        assert not sequences[f"{protocol}_train"] & sequences[f"{protocol}_test"]
        assert sequences[f"{protocol}_train"] | sequences[f"{protocol}_test"] == sequences["s0_train"] | sequences[
            "s0_test"]
    assert subjects["s1_test"] == {"subject-02"} and "subject-02" not in subjects["s1_train"]
    assert not sequences["s0_test"] & sequences["s1_test"]
    for protocol in ("s0", "s1"):
        train, test = (read_manifest(root / "demo" / f"{protocol}_{part}")[1]["grasp_ids"]
                       for part in ("train", "test"))
        assert train and test and not set(train) & set(test)
        # The same check on the pixels' labels: the closed fingers (grasp frame on) of train and test differ.
        fingers = {part: {tuple(np.round(pose[3:], 4)) for pose, frame in zip(
            rows[f"{protocol}_{part}"]["hand_pose"], rows[f"{protocol}_{part}"]["frame"])
            if frame >= TINY.approach_frames} for part in ("train", "test")}
        assert fingers["train"] and fingers["test"] and not fingers["train"] & fingers["test"]


def test_demo_split_folders_open_in_every_arrow_tool(demo, tmp_path):
    """A dataset folder is what pandas, pyarrow, DuckDB and Hugging Face datasets open as it is."""
    import duckdb
    import pandas as pd
    import pyarrow.parquet as pq

    root, result = demo
    folder = root / "demo" / "s0_train"
    rows = result["splits"]["s0_train"]["rows"]
    assert len(pd.read_parquet(folder)) == rows
    assert pq.read_table(folder, columns=["sample_id"]).num_rows == rows
    assert duckdb.sql(f"select count(*) from read_parquet('{folder}/*.parquet')").fetchall()[0][0] == rows
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    loaded = datasets.load_dataset("parquet", data_dir=str(folder), cache_dir=str(tmp_path / "hf"))
    assert loaded["train"].num_rows == rows and "image" in loaded["train"].column_names


def test_plan_rules_without_rendering_or_grasp_optimisation():
    """Splits and grasp pools are plain functions of the plan: no OpenGL, no optimiser."""
    from pipeline.demo.plan import grasp_pools, sequence_splits

    size = SIZES["small"]
    splits = [sequence_splits(o, s, q, size) for o in range(3) for s in range(size.subjects)
              for q in range(size.sequences)]
    unseen = [sp for i, sp in enumerate(splits) if i % size.subjects == size.subjects - 1]
    assert unseen and all(sp == {"s0": "train", "s1": "test"} for sp in unseen)
    assert sum(sp["s0"] == "test" for sp in splits) >= 1
    ids = np.array(["a"] * 8 + ["b"] * 2)
    pools = grasp_pools(ids, np.ones(10, bool), np.arange(10))
    assert set(pools) == {"a"}  # b has fewer than three accepted grasps
    flat = [i for pool in pools["a"].values() for i in pool]
    assert sorted(flat) == list(range(8)) and len(pools["a"]["train"]) == 4


def test_test_sequences_close_into_distinct_grasps_while_their_pool_lasts():
    """A pool's grasps are dealt without replacement: the bench size's four test sequences per
    object and protocol get four grasps when its rounds reached the 16 accepted it aims for."""
    from dataclasses import replace

    from pipeline.demo.plan import SIZES, plan_demo
    from pipeline.objects import load_object_library

    size = replace(SIZES["bench"], objects=("tennis_ball", "mug"))
    count = size.accepted_per_object
    rng = np.random.default_rng(0)
    grasps = {"grasp_id": np.array([f"g{i:03d}" for i in range(2 * count)]),
              "object_id": np.array(["tennis_ball"] * count + ["mug"] * count), "accepted": np.ones(2 * count, bool),
              "hand_pose": rng.normal(size=(2 * count, 48)), "hand_betas": np.zeros((2 * count, 10)),
              "hand_trans": rng.normal(size=(2 * count, 3)),
              "resting_pose": np.tile(np.concatenate([np.eye(3).ravel(), np.zeros(3)]), (2 * count, 1))}
    plan = plan_demo(grasps, load_object_library("builtin"), 10, size, seed=3)
    for name in size.objects:
        for protocol in ("s0", "s1"):
            chosen = [s["grasp_id"] for s in plan["sequences"]
                      if s["object"] == name and s["splits"][protocol] == "test"]
            assert len(chosen) == size.sequences and len(set(chosen)) == len(chosen)


def test_cli_refuses_a_folder_holding_another_dataset(tmp_path, capsys):
    from flows.cli import main
    from pipeline.data.shards import ShardWriter

    with ShardWriter(tmp_path / "demo" / "s1_test", name="something_else"):
        pass
    code = main(["data", "demo", "--out", str(tmp_path / "demo"), "--registry", str(tmp_path / "registry"),
                 "--size", "tiny"])
    error = capsys.readouterr().err
    assert code == 2 and "s1_test" in error and "different dataset" in error
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["s1_test"]  # no grasps, no other split
    assert not (tmp_path / "registry").exists()


def test_grasp_rounds_ask_for_what_the_acceptance_seen_says_is_missing():
    from flows.stage import ATTEMPT_CAP, ROUND_CAP, next_round_attempts

    assert next_round_attempts(accepted=3, attempted=12, per_object=12) == 12  # never fewer than a round 0
    assert next_round_attempts(accepted=0, attempted=12, per_object=12) == ROUND_CAP * 12  # none yet: the most
    assert next_round_attempts(accepted=2, attempted=48, per_object=12) == 25  # 1.5 x 1 missing / (3 / 50)
    assert next_round_attempts(accepted=0, attempted=ATTEMPT_CAP * 12 - 5, per_object=12) == 5  # up to the cap
    assert next_round_attempts(accepted=0, attempted=ATTEMPT_CAP * 12, per_object=12) == 0
    assert next_round_attempts(accepted=10, attempted=40, per_object=12, target=16) == 35  # 1.5 x 6 / (11 / 42)
