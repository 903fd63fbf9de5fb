"""grasp_sim: resting poses, the optimiser, the four validation checks, the stage and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.config import GraspConfig
from pipeline.data.schema import pose12_matrix

from conftest import make_config

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def library():
    from pipeline.objects import load_object_library

    return load_object_library("builtin")


@pytest.fixture(scope="module")
def geometry(hand_model):
    from grasp_sim.hand_geometry import build_hand_geometry

    return build_hand_geometry(hand_model)


@pytest.fixture(scope="module")
def can_grasp():
    """A grasp of the soup can made by ``grasp run`` and accepted (see its "source")."""
    record = json.loads((DATA / "can_grasp.json").read_text())
    return {k: torch.tensor([record[k]], dtype=torch.float64) for k in ("hand_pose", "hand_betas", "hand_trans")} | {
        "resting": pose12_matrix(record["resting_pose"])[None], "object": record["object"]}


@pytest.fixture(scope="module")
def validate(library, hand_model, geometry):
    """Validate one grasp of the can (pose, betas, trans, resting)."""
    from grasp_sim.physics import PhysicsWorld
    from grasp_sim.validation import GraspValidator

    world = PhysicsWorld()
    validator = GraspValidator(library["tomato_soup_can"], hand_model, geometry, GraspConfig(), world)
    yield lambda pose, betas, trans, resting: validator(pose, betas, trans, resting)[0]
    world.close()


def _towards_axis(hand_model, grasp) -> torch.Tensor:
    """Unit horizontal direction (object frame; the can's axis is z) from the hand to the can's axis."""
    with torch.no_grad():
        vertices, _ = hand_model(grasp["hand_pose"], grasp["hand_betas"], grasp["hand_trans"])
    centre = vertices[0].mean(dim=0)
    direction = -torch.tensor([centre[0], centre[1], 0.0], dtype=torch.float64)
    return direction / direction.norm()


def test_known_good_grasp_passes_every_check(validate, can_grasp):
    result = validate(can_grasp["hand_pose"], can_grasp["hand_betas"], can_grasp["hand_trans"], can_grasp["resting"])
    assert result["accepted"], result
    assert result["thumb_contact"] and result["contact_fingers"] >= 2
    assert result["intersection_volume_cm3"] < 1.0 and result["sim_displacement_mm"] < 20


def test_grasp_pushed_into_the_object_fails_on_intersection(validate, can_grasp, hand_model):
    pushed = can_grasp["hand_trans"] + 0.01 * _towards_axis(hand_model, can_grasp)
    result = validate(can_grasp["hand_pose"], can_grasp["hand_betas"], pushed, can_grasp["resting"])
    assert "intersection" in result["reject_reasons"].split(",")
    assert result["intersection_volume_cm3"] > 1.0 and result["penetration_depth_mm"] > 5


def test_grasp_three_centimetres_away_fails_on_contact(validate, can_grasp, hand_model):
    away = can_grasp["hand_trans"] - 0.03 * _towards_axis(hand_model, can_grasp)
    result = validate(can_grasp["hand_pose"], can_grasp["hand_betas"], away, can_grasp["resting"])
    assert "contact" in result["reject_reasons"].split(",")
    assert result["intersection_volume_cm3"] == 0.0


def test_crossed_fingers_fail_on_self_penetration(validate, can_grasp, hand_model):
    angles = hand_model.anatomy.from_axis_angle(can_grasp["hand_pose"][:, 3:])
    angles[0, 0, 1] = np.deg2rad(-60)  # index MCP spread far towards the middle finger...
    angles[0, 0, 0] += np.deg2rad(30)  # ...and bent: it crosses the middle finger
    crossed = torch.cat([can_grasp["hand_pose"][:, :3], hand_model.anatomy.to_axis_angle(angles)], dim=1)
    result = validate(crossed, can_grasp["hand_betas"], can_grasp["hand_trans"], can_grasp["resting"])
    assert "self_penetration" in result["reject_reasons"].split(",")
    assert result["self_penetration_mm"] > 3


def test_an_early_stopping_stability_test_gives_the_full_tests_verdicts(library, hand_model, geometry, can_grasp):
    from grasp_sim.physics import PhysicsWorld
    from grasp_sim.validation import GraspValidator

    towards = _towards_axis(hand_model, can_grasp)
    cases = [can_grasp["hand_trans"] + shift * towards for shift in (0.0, -0.005, -0.03)]
    with PhysicsWorld() as world:
        verdicts = {}
        for early_stop in (True, False):
            validator = GraspValidator(library["tomato_soup_can"], hand_model, geometry,
                                       GraspConfig(stability_early_stop=early_stop), world)
            verdicts[early_stop] = [validator(can_grasp["hand_pose"], can_grasp["hand_betas"], trans,
                                              can_grasp["resting"])[0] for trans in cases]
    limit = GraspConfig().max_displacement_mm
    stable = [full["sim_displacement_mm"] <= limit for full in verdicts[False]]
    assert any(stable) and not all(stable), "the cases include a held and a lost can"
    for early, full, held in zip(verdicts[True], verdicts[False], stable):
        assert early["accepted"] == full["accepted"] and early["reject_reasons"] == full["reject_reasons"]
        if held:
            assert early["sim_displacement_mm"] == full["sim_displacement_mm"]
        else:
            assert early["sim_displacement_mm"] > limit


def test_flat_and_relaxed_hands_have_no_self_penetration(hand_model, geometry):
    for name in ("flat", "relaxed"):
        _, joints = hand_model(hand_model.pose_from_name(name))
        assert geometry.segment_overlap(joints).max() == 0


def test_contact_candidates_cover_the_thumb_fingers_and_palm(geometry):
    assert set(np.unique(geometry.candidate_part)) == set(range(6))
    assert (geometry.candidate_part[geometry.thumb_candidates.numpy()] == 1).all()


def test_segment_distance_matches_dense_sampling():
    from grasp_sim.hand_geometry import segment_distance

    rng = np.random.default_rng(0)
    ends = rng.normal(size=(50, 4, 3))
    exact = segment_distance(*(torch.as_tensor(ends[:, k]) for k in range(4))).numpy()
    t = np.linspace(0, 1, 401)
    for (p0, p1, q0, q1), d in zip(ends, exact):
        a = p0 + t[:, None] * (p1 - p0)
        b = q0 + t[:, None] * (q1 - q0)
        dense = np.linalg.norm(a[:, None] - b[None], axis=-1).min()
        assert d <= dense + 1e-9 and dense - d < 1e-2 * np.linalg.norm(p1 - p0) + 1e-2 * np.linalg.norm(q1 - q0)


def test_intersection_volume_of_half_a_ball_in_a_box():
    import trimesh

    from grasp_sim.validation import intersection_volume

    radius = 0.03
    box = trimesh.creation.box(extents=(0.1, 0.1, 0.05))
    box.apply_translation((0, 0, -0.025))  # covers z < 0: half of the ball
    ball = lambda p: p.norm(dim=-1) - radius  # noqa: E731
    bounds = np.array([[-radius] * 3, [radius] * 3])
    volume = intersection_volume(ball, bounds, np.asarray(box.vertices), np.asarray(box.faces), 0.001)
    assert volume == pytest.approx(2 / 3 * np.pi * radius**3, rel=0.02)


def test_box_resting_poses_are_its_faces(library):
    from grasp_sim.resting import find_resting_poses

    box = library["cracker_box"]
    half = 0.5 * box.extents
    poses = find_resting_poses(box, drops=24, seed=1)
    assert 2 <= len(poses) <= 6
    assert sum(p.frequency for p in poses) == pytest.approx(1.0)
    for pose in poses:
        axis = int(np.argmax(np.abs(pose.up)))
        assert abs(pose.up[axis]) > np.cos(np.deg2rad(3)), pose.up  # a face, not an edge or corner
        assert pose.matrix[2, 3] == pytest.approx(half[axis], abs=0.003)  # resting on that face
    largest = int(np.argmin(box.extents))  # the two biggest faces face along the thinnest axis
    assert any(abs(p.up[largest]) > 0.99 for p in poses)


def test_optimiser_lowers_the_energy(library, hand_model, geometry):
    from grasp_sim.resting import find_resting_poses
    from grasp_sim.stage import optimise_batch

    ball = library["tennis_ball"]
    batch = optimise_batch(ball, hand_model, geometry, find_resting_poses(ball, drops=4), 6, seed=3,
                           config=GraspConfig(iterations=80))
    history = batch["history"]
    assert history[-1] < 0.5 * history[0]
    assert np.mean(history[-10:]) < np.mean(history[:10])


def _grasp_table(folder):
    from pipeline.data.manifest import read_columns

    _, table = read_columns(folder)
    return table.to_pydict()


def run_grasps(names: list[str], out, per_object: int, seed: int = 0, device: str = "cpu", workers: int = 0,
               **grasp):
    from grasp_sim.stage import GraspInputs, grasps

    config = make_config({"seed": seed, "grasp.per_object": per_object, "run.device": device, "run.workers": workers,
                          **{f"grasp.{key}": value for key, value in grasp.items()}})
    return grasps(config, GraspInputs(objects=names), out)


def test_same_seed_same_grasps_and_resume_skips_finished_objects(tmp_path, monkeypatch):
    import grasp_sim.stage as run

    config = {"iterations": 15, "batch_size": 3, "resting_drops": 4}
    objects = ["golf_ball", "tennis_ball"]
    first = run_grasps(objects, tmp_path / "a", per_object=4, seed=7, **config)
    assert first["grasps"] == 8
    run_grasps(objects, tmp_path / "b", per_object=4, seed=7, **config)
    assert _grasp_table(tmp_path / "a") == _grasp_table(tmp_path / "b")

    calls = []
    real = run.optimise_batch

    def interrupted(asset, *args, **kwargs):
        calls.append(asset.name)
        if asset.name == "tennis_ball" and len(calls) == 3:
            raise KeyboardInterrupt
        return real(asset, *args, **kwargs)

    monkeypatch.setattr(run, "optimise_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_grasps(objects, tmp_path / "c", per_object=4, seed=7, **config)
    calls.clear()
    run_grasps(objects, tmp_path / "c", per_object=4, seed=7, **config)
    assert calls == ["tennis_ball", "tennis_ball"]  # the golf ball's shard was kept
    assert _grasp_table(tmp_path / "c") == _grasp_table(tmp_path / "a")


def test_worker_processes_write_what_one_process_writes(tmp_path):
    """Batches made in two worker processes (one torch thread each) come back in order: the
    records and the resting poses equal a one-thread run in this process."""
    import json

    config = {"iterations": 15, "batch_size": 2, "resting_drops": 4}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_grasps(["golf_ball", "tennis_ball"], tmp_path / "one", per_object=4, seed=5, **config)
    finally:
        torch.set_num_threads(threads)
    summary = run_grasps(["golf_ball", "tennis_ball"], tmp_path / "two", per_object=4, seed=5, workers=2, **config)
    assert summary["grasps"] == 8
    assert _grasp_table(tmp_path / "two") == _grasp_table(tmp_path / "one")
    info = [json.loads((tmp_path / run / ".manifest.json").read_text()) for run in ("one", "two")]
    assert info[0]["resting_poses"] == info[1]["resting_poses"]
    assert list(info[1]["resting_poses"]) == ["golf_ball", "tennis_ball"]


def test_cli_grasp_run_and_report(tmp_path):
    from flows.cli import cli

    out, report = tmp_path / "grasps", tmp_path / "report"
    runner = CliRunner()
    result = runner.invoke(cli, ["grasp", "run", "--objects", "tennis_ball", "--per-object", "3",
                                 "--iterations", "30", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["grasps"] == 3
    result = runner.invoke(cli, ["grasp", "report", str(out), "--out", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads((report / "report.json").read_text())
    assert data["overall"]["grasps"] == 3
    assert set(data["overall"]["pass_rate"]) == {"contact", "intersection", "self_penetration", "stability", "all"}
    entry = data["objects"]["tennis_ball"]
    assert ("diversity_mm" in entry) == (entry["accepted"] >= 2)  # one grasp has no spread: no figure, not 0
    assert entry.get("diversity_mm", 1.0) > 0
    assert ("placement_mm" in entry) == ("articulation_mm" in entry) == ("diversity_mm" in entry)
    assert set(entry["thumb_opposition"]) == {"accepted", "rejected"}
    assert all(value is None or -1 <= value <= 1 for value in entry["thumb_opposition"].values())
    assert (report / "histograms.png").stat().st_size > 1000


def test_cli_unknown_object_is_a_clear_error(tmp_path, capsys):
    from flows.cli import main

    code = main(["grasp", "run", "--objects", "teapot", "--per-object", "2", "--out", str(tmp_path / "g")])
    assert code == 2
    message = capsys.readouterr().err
    assert "teapot" in message and "tennis_ball" in message
    assert not (tmp_path / "g").exists()


def test_grasp_records_feed_pose_sampling(tmp_path):
    """What grasp run writes is what the sampling stage reads."""
    from pipeline.sampling.stage import load_accepted_grasps

    run_grasps(["golf_ball"], tmp_path / "g", per_object=2, iterations=5, resting_drops=2)
    grasps = load_accepted_grasps(tmp_path / "g")
    assert set(grasps) >= {"hand_pose", "hand_betas", "hand_trans", "object_id"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_makes_valid_records(tmp_path):
    summary = run_grasps(["tennis_ball"], tmp_path / "g", per_object=4, device="cuda", iterations=50,
                         resting_drops=2)
    assert summary["grasps"] == 4
    table = _grasp_table(tmp_path / "g")
    assert np.isfinite(np.asarray(table["hand_pose"])).all()


def test_accepted_grasps_pass_an_independent_contact_and_penetration_check(tmp_path, library, hand_model):
    """The validator reads a grid SDF; trimesh's exact signed distance to the mesh must agree on
    what the optimiser's accepted grasps touch and how deep they go (within the grid's error)."""
    import trimesh

    run_grasps(["tennis_ball"], tmp_path / "g", per_object=8, seed=1, iterations=120, batch_size=8, resting_drops=4)
    table = _grasp_table(tmp_path / "g")
    accepted = [i for i, ok in enumerate(table["accepted"]) if ok]
    if not accepted:
        pytest.skip("no grasp of 8 accepted at test size on this machine")
    mesh = library["tennis_ball"].trimesh
    parts = np.asarray(hand_model.vertex_parts)
    reach = GraspConfig().contact_mm / 1000 + 0.001  # the SDF grid's error
    for i in accepted:
        as_tensor = {k: torch.tensor([table[k][i]], dtype=hand_model.dtype) for k in ("hand_pose", "hand_betas",
                                                                                      "hand_trans")}
        with torch.no_grad():
            vertices, _ = hand_model(as_tensor["hand_pose"], as_tensor["hand_betas"], as_tensor["hand_trans"])
        inside = trimesh.proximity.signed_distance(mesh, vertices[0].double().numpy())  # positive inside
        touching = [bool((-inside[parts == finger] <= reach).any()) for finger in range(1, 6)]
        assert touching[0] and sum(touching) >= 2, f"grasp {table['grasp_id'][i]} touches with {touching}"
        assert inside.max() < 0.015, f"grasp {table['grasp_id'][i]} goes {inside.max() * 1000:.1f} mm deep"
