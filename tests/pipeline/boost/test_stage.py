"""The edge-case filter, the synthesizer's evaluation and the boost report."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from pipeline.data import ShardWriter, validate_dataset

from conftest import make_config, shared_folder


@pytest.fixture(scope="module")
def reconstructor(tiny_demo, tmp_path_factory):
    """A MobRecon-style model trained briefly on the demo's s0_train (the filter's reconstructor)."""
    from pipeline.reconstruction.stage import TrainInputs, recon_train

    root, _ = tiny_demo
    with shared_folder(tmp_path_factory, "filter-reconstructor") as folder:  # one training for both workers
        recon_train(make_config({"reconstruction.max_steps": 150, "reconstruction.eval_every": 150,
                                 "reconstruction.checkpoint_every": 150, "reconstruction.num_workers": 0,
                                 "run.resume": True}),
                    TrainInputs(data=str(root / "demo" / "s0_train")), folder / "recon")
    return folder / "recon"


def swapped_copy(source, out, whole_rows: bool = False):
    """Every image moved 7 rows on (or, ``whole_rows``, the rows moved with their images)."""
    from pipeline.boost.swap import write_swapped

    write_swapped(source, out, 7, whole_rows)


def filter_ids(folder) -> list[str]:
    """The sample ids of the rows the filter judged, in the order of :func:`filter_errors`."""
    from pipeline.data.reader import ShardDataset

    parts = [folder / part for part in ("kept", "rejected") if (folder / part / ".manifest.json").exists()]
    return [row["sample_id"] for part in parts for row in ShardDataset(part, columns=["sample_id"])]


def filter_errors(folder) -> np.ndarray:
    """The filter's root-relative MPJPE of every row it judged, kept or rejected."""
    from pipeline.data.reader import ShardDataset

    parts = [folder / part for part in ("kept", "rejected") if (folder / part / ".manifest.json").exists()]
    return np.asarray([row["filter"]["mpjpe"] for part in parts for row in ShardDataset(part, columns=["filter"])])


def test_the_filter_scores_each_row_by_its_own_image_and_labels(reconstructor, tiny_demo, tmp_path, capsys):
    from flows.cli import main
    from pipeline.reconstruction.stage import FilterInputs, FilterSummary, recon_filter

    root, _ = tiny_demo
    test = root / "demo" / "s0_test"  # frames the model never saw
    swapped_copy(test, tmp_path / "swapped")
    config = make_config()
    command = ["recon", "filter", "--ckpt", str(reconstructor), "--data", str(test), "--out", str(tmp_path / "intact")]
    capsys.readouterr()
    assert main(command) == 2  # auto thresholds need real images
    assert "needs real validation images" in capsys.readouterr().err and not (tmp_path / "intact").exists()
    # Thresholds from the intact test images' own errors: by the percentile's definition about 95% of them pass,
    # however well the tiny model trained (thresholds from its training frames can reject every unseen frame).
    assert main([*command, "--val", str(test), "--json"]) == 0
    intact = FilterSummary.model_validate(json.loads(capsys.readouterr().out))
    swapped = recon_filter(config, FilterInputs(ckpt=str(reconstructor), data=str(tmp_path / "swapped"),
                                                val=str(test)), tmp_path / "out_swapped")
    assert intact.thresholds == swapped.thresholds  # the same reconstructor, the same real errors
    # Each row is scored by its own image against its own labels: moved whole, the rows keep their errors; with
    # the images moved, the errors change. Whether wrong images score worse is an outcome of training (a briefly
    # trained model is nearly constant): bench_boost.py measures it at the benchmark size, no test asserts it.
    swapped_copy(test, tmp_path / "moved", whole_rows=True)
    recon_filter(config, FilterInputs(ckpt=str(reconstructor), data=str(tmp_path / "moved"), val=str(test)),
                 tmp_path / "out_moved")
    right, wrong = filter_errors(tmp_path / "intact"), filter_errors(tmp_path / "out_swapped")
    assert len(right) == len(wrong) == intact.rows
    by_id = dict(zip(filter_ids(tmp_path / "intact"), right))
    moved = dict(zip(filter_ids(tmp_path / "out_moved"), filter_errors(tmp_path / "out_moved")))
    assert set(moved) == set(by_id) and all(np.isclose(moved[i], by_id[i], rtol=1e-4) for i in by_id)
    assert not np.allclose(np.sort(wrong), np.sort(right), rtol=1e-4)
    for folder in (tmp_path / "intact" / "kept", tmp_path / "intact" / "rejected"):
        assert validate_dataset(folder)["ok"]
    from pipeline.data.reader import ShardDataset

    kept = [row["filter"] for row in ShardDataset(tmp_path / "intact" / "kept", columns=["filter"])]
    assert kept and all(f["kept"] and f["mpjpe"] <= intact.thresholds["mpjpe"] for f in kept)
    assert intact.kept + intact.rejected == intact.rows and set(intact.by_origin) == {"real"}
    for name in ("report.json", "histograms.png", "kept_grid.png"):
        assert (tmp_path / "intact" / name).stat().st_size > 500


def test_auto_thresholds_follow_the_real_error_percentile(reconstructor, tiny_demo, tmp_path):
    from pipeline.reconstruction.filter import CRITERIA, auto_thresholds, fixed_thresholds
    from pipeline.reconstruction.stage import FilterInputs, recon_filter

    errors = {name: np.arange(1.0, 101.0) * (i + 1) for i, name in enumerate(CRITERIA)}
    assert auto_thresholds(errors, 80.0) == {name: round(float(np.percentile(errors[name], 80.0)), 3)
                                             for name in CRITERIA}
    assert fixed_thresholds("dexycb", False)["pa_mpjpe"] == 10.0 and fixed_thresholds("ho3d", False)["mpjpe"] == 50
    assert fixed_thresholds("auto", True) is None
    root, _ = tiny_demo
    inputs = FilterInputs(ckpt=str(reconstructor), data=str(root / "demo" / "s1_test"),
                          val=str(root / "demo" / "s0_train"))
    loose = recon_filter(make_config({"filter.auto_percentile": 99.0}), inputs, tmp_path / "loose")
    strict = recon_filter(make_config({"filter.auto_percentile": 60.0}), inputs, tmp_path / "strict")
    assert all(strict.thresholds[c] < loose.thresholds[c] for c in CRITERIA) and strict.kept <= loose.kept
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({"mpjpe": 1.0, "mpvpe": 1.0, "pa_mpjpe": 1.0, "pa_mpvpe": 1.0}))
    assert recon_filter(make_config({"filter.thresholds": str(fixed)}), inputs, tmp_path / "fixed").kept == 0


def test_auto_thresholds_refuse_the_frames_the_reconstructor_trained_on(tiny_demo, tmp_path, capsys):
    """A reconstructor validated on another dataset held none of its training data out: its own
    training frames would set thresholds from errors smaller than any new image's."""
    from flows.cli import main
    from pipeline.reconstruction.stage import TrainInputs, recon_train

    root, _ = tiny_demo
    train, other = root / "demo" / "s0_train", root / "demo" / "s1_test"
    recon_train(make_config({"reconstruction.max_steps": 2, "reconstruction.image_size": 32,
                             "reconstruction.num_workers": 0}),
                TrainInputs(data=str(train), val=str(other)), tmp_path / "recon")
    command = ["recon", "filter", "--ckpt", str(tmp_path / "recon"), "--data", str(other), "--thresholds", "auto"]
    capsys.readouterr()
    assert main([*command, "--val", str(train), "--out", str(tmp_path / "refused")]) == 2
    message = capsys.readouterr().err
    assert f"{train}: val: is the training data" in message and "demo_s1_test" in message
    assert not (tmp_path / "refused").exists()
    assert main([*command, "--val", str(other), "--out", str(tmp_path / "kept")]) == 0
    recon_train(make_config({"reconstruction.max_steps": 1, "reconstruction.image_size": 32,
                             "reconstruction.num_workers": 0, "reconstruction.val_fraction": 0.0}),
                TrainInputs(data=str(train)), tmp_path / "all_rows")
    command[3] = str(tmp_path / "all_rows")
    assert main([*command, "--val", str(train), "--out", str(tmp_path / "refused")]) == 2
    assert "its reconstruction.val_fraction was 0" in capsys.readouterr().err


def test_frechet_distance_is_zero_against_itself_and_grows_with_a_shift(tiny_demo):
    from pipeline.data.reader import ShardDataset
    from pipeline.synthesis.evaluate import frechet_distance, image_features

    root, _ = tiny_demo
    rows = ShardDataset(root / "demo" / "s0_train", columns=["image"])
    images = torch.stack([rows[i]["image"] for i in range(min(48, len(rows)))])
    features = image_features(images)
    assert features.shape == (len(images), 320)
    same = frechet_distance(features, features)

    def shifted(amount):
        return frechet_distance(features, image_features((images.float() * (1 - amount) + 255 * amount * 0.6)
                                                         .clamp(0, 255).byte()))

    mild, strong = shifted(0.2), shifted(0.6)
    assert same < 1e-6 and strong > mild > 1.0, (same, mild, strong)


def test_synth_eval_and_the_boost_report(tiny_demo, reconstructor, tmp_path, capsys):
    from pipeline.synthesis.stage import EvalInputs, TrainInputs, synth_eval, synth_train

    root, _ = tiny_demo
    config = make_config({"synthesis.max_steps": 2, "synthesis.batch_size": 4, "synthesis.num_workers": 0,
                          "synthesis.sample_steps": 2})
    synth_train(config, TrainInputs(data=str(root / "demo" / "s0_train")), tmp_path / "ddpm")
    test = str(root / "demo" / "s1_test")
    result = synth_eval(config, EvalInputs(ckpt=str(tmp_path / "ddpm"), real=test, recon=str(reconstructor),
                                           train=test), tmp_path / "eval")
    from flows.cli import main

    (tmp_path / "c.yaml").write_text("synthesis:\n  sample_steps: 2\nrun:\n  progress: false\n")
    capsys.readouterr()
    assert main(["synth", "eval", "--ckpt", str(tmp_path / "ddpm"), "--real", str(root / "demo" / "s1_test"),
                 "--recon", str(reconstructor), "--train", test, "--out", str(tmp_path / "eval"),
                 "--config", str(tmp_path / "c.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frechet_distance"] == result.frechet_distance  # the run reused
    assert result.frechet_distance > 0 and set(result.fidelity) == {"real", "resynthesised"}
    # the toy floor is the test set against itself: about 0; its texture maps, a shifted set, score more
    assert result.frechet_distance_real_floor < 1e-3 < result.frechet_distance_plain_renders
    assert "not comparable" in result.feature_network
    assert (tmp_path / "eval" / "real_vs_resynthesised.png").stat().st_size > 1000

    from pipeline.boost.report import collect, markdown, test_sequences

    run, test = tmp_path / "arms", str(root / "demo" / "s1_test")
    ids, _ = test_sequences(test)
    for (arm, error), seed in itertools.product((("real_only", 20.0), ("full", 18.0)), (0, 1)):
        write_evaluation(run / arm / f"seed-{seed}" / "eval-t", ids, error)
    table = collect({arm: {s: run / arm / f"seed-{s}" for s in (0, 1)} for arm in ("real_only", "full")}, {"t": test})
    assert table["full"]["t"]["rr_change_pct"] == -10.0 and table["real_only"]["t"]["rr_change_pct"] == 0.0
    assert table["full"]["t"]["rr_change_ci95"] == [-10.0, -10.0] and table["full"]["t"]["significant"]
    assert table["full"]["t"]["pa_change_ci95"] == [0.0, 0.0]
    text = markdown(table, ["t"], ["oracle"], "note")
    assert "-10.0%* [-10.0, -10.0]" in text and "Arms not run: oracle" in text and "\nnote\n" in text
    learned = markdown(table, ["t"], [], "", informative={"t": {"real_only_over_constant": 0.3, "at_most": 0.6,
                                                                "informative": True}})
    guessed = markdown(table, ["t"], [], "", informative={"t": {"real_only_over_constant": 0.9, "at_most": 0.6,
                                                                "informative": False}})
    assert "0.30x the constant" in learned and "measure the data" in learned and "smoke test" not in learned
    assert "0.90x the constant" in guessed and "smoke test" in guessed


def write_evaluation(folder, ids: list[str], error: float) -> None:
    """What recon_eval leaves for the report: every row of the test errs ``error`` mm (PA 9 mm)."""
    folder.mkdir(parents=True)
    metrics = {"joints": {"root_relative": {"mean_mm": error, "auc": 0.5}, "procrustes": {"mean_mm": 9.0, "auc": 0.7}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "per_sample.csv").write_text("sample_id,joints_root_relative_mm,joints_procrustes_mm\n" +
                                           "".join(f"{i},{error},9.0\n" for i in ids))


def test_an_arm_on_fewer_seeds_is_compared_with_real_only_on_those_seeds(tiny_demo, tmp_path):
    """The sampler-ablation arms may train on fewer seeds (boost.arm_seeds): their change is
    against real only on the same seeds, not on all of real only's."""
    from pipeline.boost.arms import arm_jobs
    from pipeline.boost.report import collect, markdown, test_sequences
    from pipeline.errors import ConfigError

    root, _ = tiny_demo
    test = str(root / "demo" / "s1_test")
    config = make_config({"boost.seeds": [0, 1], "boost.arm_seeds": {"fps_grasps": [0]}})
    jobs = arm_jobs(config.boost, "real", [test], {"real_only": "", "fps_grasps": "fps"}, tmp_path)
    assert [job.label for job in jobs] == ["real_only seed-0", "real_only seed-1", "fps_grasps seed-0"]
    for wrong in ({"fps_grasps": [2]}, {"real_only": [0]}, {"fps_grasps": []}):
        with pytest.raises(ConfigError, match="arm_seeds"):
            make_config({"boost.seeds": [0, 1], "boost.arm_seeds": wrong})

    ids, _ = test_sequences(test)
    for arm, seed, error in (("real_only", 0, 20.0), ("real_only", 1, 30.0), ("fps_grasps", 0, 18.0)):
        write_evaluation(tmp_path / arm / f"seed-{seed}" / "eval-t", ids, error)
    table = collect({"real_only": {s: tmp_path / "real_only" / f"seed-{s}" for s in (0, 1)},
                     "fps_grasps": {0: tmp_path / "fps_grasps" / "seed-0"}}, {"t": test})
    assert table["fps_grasps"]["t"]["rr_change_pct"] == -10.0  # against seed 0's 20 mm, not the mean 25
    assert table["fps_grasps"]["t"]["rr_change_ci95"] == [-10.0, -10.0]
    assert table["real_only"]["t"]["rr_mm"] == 25.0 and table["fps_grasps"]["t"]["seeds"] == 1
    text = markdown(table, ["t"], [], "")
    assert "over 2 seeds; + novel grasps, FPS: 1, against real only on the same seeds" in text
    # one seed's interval excludes 0 but leaves out the training's noise: the change is not marked
    assert not table["fps_grasps"]["t"]["significant"] and "| 18.00 | -10.0% [-10.0, -10.0] |" in text
    assert "| 25.00 ± 5.00 |" in text


def test_the_interval_matches_a_hand_computed_case():
    """One seed, two sequences of one frame each: real only errs 10 mm on both, the arm 5 and 15.
    Drawing the two sequences with replacement gives the arm's mean 5, 10 or 15 with
    probabilities 1/4, 1/2, 1/4: changes of -50%, 0 and +50%, so the 95% interval is [-50, +50]."""
    from pipeline.boost.intervals import relative_change_interval, significant

    sequences = np.array(["a", "b"])
    assert relative_change_interval({0: np.array([5.0, 15.0])}, {0: np.array([10.0, 10.0])}, sequences) == \
        [-50.0, 50.0]
    # the same ratio on every sequence and seed: no spread at all, and a significant change
    same = relative_change_interval({0: np.array([9.0, 18.0]), 1: np.array([4.5, 9.0])},
                                    {0: np.array([10.0, 20.0]), 1: np.array([5.0, 10.0])}, sequences)
    assert same == [-10.0, -10.0] and significant(same, 2) and not significant([-50.0, 50.0], 2)
    assert not significant(same, 1)  # one seed: the test set's sampling only
    assert relative_change_interval({1: np.ones(2)}, {0: np.ones(2)}, sequences) is None  # no seed in common


def test_projected_intervals_narrow_with_more_seeds_and_sequences():
    """Drawing as many units as were measured is the interval itself; more seeds or more test
    sequences narrow it, four times of both about halve it, as 1 / sqrt(n) says."""
    from pipeline.boost.intervals import projected_half_widths, relative_change_interval

    rng = np.random.default_rng(0)
    sequences = np.repeat(np.arange(8), 4)
    base = {s: rng.uniform(20, 40, 32) for s in range(4)}
    by_sequence = np.repeat(rng.uniform(0.8, 1.2, 8), 4)
    arm = {s: base[s] * (0.9 + 0.1 * s) * by_sequence for s in range(4)}  # the seed and the sequence
    low, high = relative_change_interval(arm, base, sequences)
    widths = projected_half_widths(arm, base, sequences, seed_counts=(4, 16), sequence_scales=(1, 4))
    assert widths[4, 1] == round((high - low) / 2, 2)
    assert widths[16, 4] < widths[16, 1] < widths[4, 1] and widths[16, 4] < widths[4, 4] < widths[4, 1]
    assert 0.35 < widths[16, 4] / widths[4, 1] < 0.65  # four times of both units: about half as wide


def test_the_guard_refuses_a_test_seen_in_training_and_synthetic_rows_from_test_frames(tiny_demo, tmp_path):
    from pipeline.boost.guard import check_protocol
    from pipeline.boost.stage import ExperimentInputs, experiment
    from pipeline.errors import ConfigError
    from pipeline.reconstruction.stage import recon_train

    root, _ = tiny_demo
    demo = root / "demo"
    calls = []
    original = recon_train.func
    recon_train.func = lambda *args: calls.append(args)  # nothing may train before the guard has spoken
    try:
        with pytest.raises(ConfigError, match="shares .* sequence"):
            experiment(make_config({"boost.arms": ["real_only"]}), ExperimentInputs(
                real=str(demo / "s0_train"), tests=[str(demo / "s1_test")], synthetic=[""], protocol="s0"),
                tmp_path / "leaky")
    finally:
        recon_train.func = original
    assert not calls and not (tmp_path / "leaky" / "arms").exists()
    # synthetic rows derived from test frames keep the test frames' sequences
    derived = tmp_path / "derived"
    with ShardWriter(derived, name="derived", image_size=None) as writer:
        from pipeline.data.reader import ShardDataset

        rows = ShardDataset(demo / "s0_test", decode=False)
        writer.write_rows([{**rows.raw(i), "sample_id": f"derived/{i}", "source": "synthetic"} for i in range(3)])
    with pytest.raises(ConfigError, match="synthetic data"):
        check_protocol("s0", [str(demo / "s0_test")], {"train": [str(demo / "s0_train")],
                                                       "synthetic": [str(derived)]})
    record = check_protocol("s0", [str(demo / "s0_test")], {"train": [str(demo / "s0_train")]})
    assert record["passed"] and record["tests"]["demo_s0_test"]["sequences"] > 0


def test_reference_rows_bracket_what_a_reconstructor_can_do(tiny_demo):
    from pipeline.boost.references import reference_errors

    root, _ = tiny_demo
    found = reference_errors(root / "demo" / "s0_train", root / "demo" / "s0_test")
    assert 0 < found["nearest_pose"]["rr_mm"] < found["constant"]["rr_mm"]
    itself = reference_errors(root / "demo" / "s0_test", root / "demo" / "s0_test")
    assert itself["nearest_pose"]["rr_mm"] == pytest.approx(0.0, abs=1e-9)  # every pose is its own nearest


@pytest.mark.slow
def test_the_filter_can_reject_on_the_spread_of_diffusion_hypotheses(reconstructor, tiny_demo, tmp_path, capsys):
    """A diffusion reconstructor trained by recon train (its training path) samples several meshes
    per image; images whose meshes disagree more than filter.hypotheses_spread_mm are rejected."""
    from flows.cli import main
    from pipeline.reconstruction.stage import FilterInputs, TrainInputs, recon_filter, recon_train

    root, _ = tiny_demo
    test = str(root / "demo" / "s1_test")
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps(dict.fromkeys(("mpjpe", "mpvpe", "pa_mpjpe", "pa_mpvpe"), 1e6)))
    capsys.readouterr()
    assert main(["recon", "filter", "--ckpt", str(reconstructor), "--data", test, "--out", str(tmp_path / "one"),
                 "--thresholds", str(loose), "--config", str(_config_file(tmp_path, 5.0))]) == 2
    assert "samples one mesh" in capsys.readouterr().err

    recon_train(make_config({"reconstruction.model": "diffhand", "reconstruction.max_steps": 30,
                             "reconstruction.eval_every": 30, "reconstruction.checkpoint_every": 30}),
                TrainInputs(data=str(root / "demo" / "s0_train")), tmp_path / "diffhand")
    inputs = FilterInputs(ckpt=str(tmp_path / "diffhand"), data=test)
    everything = recon_filter(make_config({"filter.thresholds": str(loose), "filter.hypotheses_spread_mm": 1e6}),
                              inputs, tmp_path / "all")
    spreads = np.array(json.loads((tmp_path / "all" / "report.json").read_text())["errors_mm"]["spread_mm"])
    assert everything.kept == everything.rows == len(spreads) and (spreads > 0).all()
    limit = float(np.median(spreads))
    judged = recon_filter(make_config({"filter.thresholds": str(loose), "filter.hypotheses_spread_mm": limit}),
                          inputs, tmp_path / "judged")
    assert judged.kept == int((spreads <= limit).sum()) and 0 < judged.kept < judged.rows


def _config_file(folder, spread_mm: float):
    path = folder / "spread.yaml"
    path.write_text(f"filter:\n  hypotheses_spread_mm: {spread_mm}\n")
    return path


def test_device_cpu_keeps_every_computing_stage_on_the_cpu_where_cuda_exists(tiny_demo, reconstructor, tmp_path,
                                                                              monkeypatch):
    """torch is told a GPU exists: 'auto' then picks CUDA (which this build cannot use), and
    every computing stage asked for the CPU must never touch it."""
    from grasp_sim.stage import GraspInputs, grasps
    from pipeline import stage as stage_module
    from pipeline.reconstruction.stage import EvalInputs as ReconEval
    from pipeline.reconstruction.stage import FilterInputs, TrainInputs, recon_eval, recon_filter, recon_train
    from pipeline.synthesis.stage import EvalInputs, GenerateInputs, synth_eval, synth_generate, synth_train
    from pipeline.synthesis.stage import TrainInputs as SynthTrain

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert stage_module.resolved_device(make_config()).run.device == "cuda"  # the fake is seen
    root, _ = tiny_demo
    train, test = str(root / "demo" / "s0_train"), str(root / "demo" / "s0_test")
    config = make_config({"run.device": "cpu", "reconstruction.max_steps": 1, "reconstruction.num_workers": 0,
                          "reconstruction.batch_size": 4, "synthesis.max_steps": 1, "synthesis.batch_size": 4,
                          "synthesis.num_workers": 0, "synthesis.sample_steps": 1, "grasp.per_object": 2,
                          "grasp.batch_size": 2, "grasp.iterations": 2})
    grasps(config, GraspInputs(objects=["golf_ball"]), tmp_path / "grasps")
    recon_train(config, TrainInputs(data=train), tmp_path / "recon")
    recon_eval(config, ReconEval(ckpt=str(reconstructor), data=test), tmp_path / "eval")
    synth_train(config, SynthTrain(data=train), tmp_path / "ddpm")
    synth_generate(config, GenerateInputs(ckpt=str(tmp_path / "ddpm"), specs=test), tmp_path / "generated")
    recon_filter(config, FilterInputs(ckpt=str(reconstructor), data=str(tmp_path / "generated"), val=train),
                 tmp_path / "filter")
    synth_eval(config, EvalInputs(ckpt=str(tmp_path / "ddpm"), real=test, recon=str(reconstructor)),
               tmp_path / "synth_eval")
    with pytest.raises(AssertionError, match="CUDA"):  # the control: asked for 'auto', the stage goes to CUDA
        recon_eval(make_config({"run.device": "auto"}), ReconEval(ckpt=str(reconstructor), data=test),
                   tmp_path / "eval-auto")
