"""Same inputs, same result; changed inputs, a new one; bad inputs, one line before any work.

Identities see every input's content (predictions, thresholds, checkpoints), a stage that
fails on bad input removes what it began, and each probe that used to end in a traceback or in
a silent exit 0 is a one-line error naming the file and field.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from pipeline.errors import BadData, ConfigError, DatasetConflict, MissingResource

from conftest import expect_one_line_error, make_config


@pytest.fixture(scope="module")
def scored(tiny_demo, tmp_path_factory):
    """The demo's s0_test and an npz of its true joints as predictions (metres, camera frame)."""
    from pipeline.data.manifest import column_arrays, read_columns

    root, _ = tiny_demo
    data = root / "demo" / "s0_test"
    _, table = read_columns(data, ["sample_id", "joints_3d"])
    arrays = column_arrays(table, ["sample_id", "joints_3d"])
    folder = tmp_path_factory.mktemp("predictions")
    ids = np.array([str(s) for s in arrays["sample_id"]])
    np.savez(folder / "truth.npz", sample_id=ids, joints=arrays["joints_3d"].reshape(-1, 21, 3))
    return data, folder / "truth.npz", ids, arrays["joints_3d"].reshape(-1, 21, 3)


def test_rewritten_predictions_are_scored_again(scored, tmp_path):
    from pipeline.reconstruction.stage import ScoreInputs, recon_score

    data, truth, ids, joints = scored
    pred = tmp_path / "pred.npz"
    shutil.copy(truth, pred)
    inputs, config = ScoreInputs(pred=str(pred), data=str(data)), make_config()
    first = recon_score(config, inputs, tmp_path / "score")
    again = recon_score(config, inputs, tmp_path / "score")
    assert again.reused and first.rerun_because is None
    np.savez(pred, sample_id=ids, joints=joints + 0.01)  # every joint 17 mm off
    changed = recon_score(config, inputs, tmp_path / "score")
    assert not changed.reused and changed.rerun_because == "input pred changed"
    assert changed.joints["absolute"]["mean_mm"] > first.joints["absolute"]["mean_mm"] + 10


def test_fingerprints_see_content_and_ignore_hidden_files(tmp_path, monkeypatch):
    import pipeline.stage
    from pipeline.stage import fingerprint

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"\x00" * 64)
    (folder / ".summary.json").write_text("{}")
    before = fingerprint(str(folder))
    (folder / ".summary.json").write_text('{"seconds": 3}')  # timings and locks are not content
    assert fingerprint(str(folder)) == before and before.startswith("content:")
    (folder / "weights.safetensors").write_bytes(b"\x00" * 63 + b"\x01")  # one byte: new content
    assert fingerprint(str(folder)) != before
    assert fingerprint(str(folder / "weights.safetensors")) != fingerprint(str(tmp_path / "missing"))
    monkeypatch.setattr(pipeline.stage, "CONTENT_BYTES", 10)  # a raw dataset's size: names, sizes, times
    assert fingerprint(str(folder)).startswith("listing:")


def test_a_stage_failing_on_bad_input_removes_what_it_began(tmp_path):
    from pipeline.stage import StageInputs, StageSummary, stage

    @stage("probe", StageInputs, StageSummary, ())
    def probe(config, inputs, out):
        out.write_json("half.json", {"written": True})
        raise failure

    for failure, kept in ((BadData("wrong shape"), False), (MissingResource("disk full"), True)):
        out = tmp_path / type(failure).__name__
        with pytest.raises(type(failure)):
            probe(make_config(), StageInputs(), out)
        assert (out / "half.json").exists() == kept, failure


def test_overwrite_replaces_what_changed_and_reuses_what_did_not(tiny_demo, tmp_path):
    """What ``handbooster run boost --overwrite`` after a changed setting relies on: every step
    whose finished output is the same run is reused, and only the changed ones are replaced
    (a dataset written anew, a trainer started again)."""
    from pipeline.data.stage import MergeInputs, merge
    from pipeline.reconstruction.stage import TrainInputs, recon_train

    root, _ = tiny_demo
    s0, s1 = str(root / "demo" / "s0_train"), str(root / "demo" / "s1_train")
    overwrite = {"run.overwrite": True}
    merge(make_config(), MergeInputs(datasets=[s0], name="m"), tmp_path / "merged")
    assert merge(make_config(overwrite), MergeInputs(datasets=[s0], name="m"), tmp_path / "merged").reused
    with pytest.raises(DatasetConflict, match=r"differs in inputs.datasets\[0\].*overwrite"):  # once kept s0's rows
        merge(make_config(), MergeInputs(datasets=[s1], name="m"), tmp_path / "merged")
    replaced = merge(make_config(overwrite), MergeInputs(datasets=[s1], name="m"), tmp_path / "merged")
    assert not replaced.reused and replaced.rows == json.loads((root / "demo" / "s1_train" / ".manifest.json")
                                                                 .read_text())["rows"]

    small = {"reconstruction.image_size": 32, "reconstruction.batch_size": 8, "reconstruction.max_steps": 2,
             "reconstruction.checkpoint_every": 2, "reconstruction.num_workers": 0, "run.resume": True}
    first = recon_train(make_config(small), TrainInputs(data=s0), tmp_path / "recon")
    again = recon_train(make_config({**small, **overwrite}), TrainInputs(data=s0), tmp_path / "recon")
    assert again.reused and again.identity == first.identity
    changed = recon_train(make_config({**small, **overwrite, "reconstruction.learning_rate": 5e-4}),
                          TrainInputs(data=s0), tmp_path / "recon")
    assert not changed.reused and changed.steps == 2 and changed.loss_last != first.loss_last
    record = json.loads((tmp_path / "recon" / ".training.json").read_text())
    assert record["settings"]["reconstruction"]["learning_rate"] == 5e-4


def _json(text: str):
    return lambda path: path.write_text(text)


def _npz(**arrays):
    return lambda path: np.savez(path, **arrays)


SID = "demo/x"
GOOD_JOINTS = [[0.0, 0.0, 0.5]] * 21
PREDICTION_PROBES = {  # name -> (write the file, words the error must contain)
    "a number too large for a float": (_json('{"a": {"joints": [[1' + "0" * 400 + ", 0, 0]]}}"), ["'joints'"]),
    "brackets nested 200k deep": (_json("[" * 200_000 + "]" * 200_000), ["not valid JSON"]),
    "a garbage npz": (lambda path: path.write_bytes(b"PK\x03\x04 not a zip"), ["npz"]),
    "0-d npz arrays": (_npz(sample_id=np.array("a"), joints=np.array(1.0)), ["'sample_id'", "1-D"]),
    "string joints": (_npz(sample_id=np.array([SID]), joints=np.full((1, 21, 3), "x")), ["'joints'", "real numbers"]),
    "complex joints": (_npz(sample_id=np.array([SID]), joints=np.full((1, 21, 3), 1j)), ["'joints'", "complex"]),
    "a duplicated id": (_npz(sample_id=np.array([SID, SID]), joints=np.zeros((2, 21, 3))), ["more than once"]),
    "a duplicated JSON key": (_json(json.dumps({SID: {"joints": GOOD_JOINTS}})[:-1] + ", "
                                    + json.dumps({SID: {"joints": GOOD_JOINTS}})[1:]), ["more than once"]),
    "booleans": (_json(json.dumps({SID: {"joints": [[True, 0, 0.5]] * 21}})), ["'joints'", "bool"]),
    "1e300": (_json(json.dumps({SID: {"joints": [[1e300, 0, 0.5]] * 21}})), ["'joints'", "metres"]),
    "millimetres": (_json(json.dumps({SID: {"joints": [[10.0, -20.0, 500.0]] * 21}})), ["millimetres"]),
}


@pytest.mark.parametrize("probe", list(PREDICTION_PROBES))
def test_bad_prediction_files_are_one_line_errors(probe, scored, tmp_path, capsys):
    data, _, _, _ = scored
    write, words = PREDICTION_PROBES[probe]
    pred = tmp_path / ("pred.npz" if "npz" in probe or probe in ("string joints", "complex joints",
                                                                  "a duplicated id") else "pred.json")
    write(pred)
    expect_one_line_error(["recon", "score", "--pred", str(pred), "--data", str(data), "--out",
                           str(tmp_path / "out")], capsys, str(pred), *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, words", [
    ('{"mpjpe": NaN, "mpvpe": 1, "pa_mpjpe": 1, "pa_mpvpe": 1}', ["'mpjpe'", "positive finite"]),
    ('{"mpjpe": -5, "mpvpe": 1, "pa_mpjpe": 1, "pa_mpvpe": 1}', ["'mpjpe'", "positive finite"]),
    ('{"mpjpe": true, "mpvpe": 1, "pa_mpjpe": 1, "pa_mpvpe": 1}', ["'mpjpe'", "positive finite"]),
    ('{"mpjpe": 25, "mpvpe": 25, "pa_mpjpe": 10}', ["'pa_mpvpe'"]),
    ("[25, 25, 10, 10]", ["expected dexycb"]),
    ("not json", ["not valid JSON"]),
])
def test_bad_thresholds_files_are_refused_before_any_model_runs(content, words, tmp_path):
    from pipeline.reconstruction.filter import fixed_thresholds

    path = tmp_path / "thresholds.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        fixed_thresholds(str(path), has_val=True)
    for word in words:
        assert word in str(caught.value)
    with pytest.raises(ConfigError, match="no such word or file"):
        fixed_thresholds("dexycbb", has_val=True)
    with pytest.raises(ConfigError, match="needs real validation images"):
        fixed_thresholds("auto", has_val=False)


def test_broken_or_foreign_model_folders_are_bad_data(tmp_path):
    """A truncated weights file, a bad config.json, weights of another shape, and a DDPM given
    as a reconstructor: each a one-line error naming the folder."""
    import torch

    from pipeline.config import ReconstructionConfig
    from pipeline.reconstruction.models import load_reconstructor
    from pipeline.reconstruction.presets import resolve
    from pipeline.reconstruction.train import build_model, export
    from pipeline.synthesis.model import HandObjectUNet
    from pipeline.synthesis.presets import resolve as synth_preset

    config = resolve(ReconstructionConfig(preset="tiny", image_size=32))
    torch.manual_seed(0)
    export(tmp_path / "good", build_model(config, "builtin"), config, "builtin", {})
    assert load_reconstructor(tmp_path / "good") is not None
    cases = {}
    for name in ("truncated", "config", "shape", "ddpm"):
        shutil.copytree(tmp_path / "good", tmp_path / name)
        cases[name] = tmp_path / name
    weights = next(cases["truncated"].glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    (cases["config"] / "config.json").write_text("{not json")
    wide = resolve(ReconstructionConfig(preset="tiny", image_size=32, width=config.width * 2))
    build_model(wide, "builtin").save_pretrained(tmp_path / "wide")
    shutil.copy(next((tmp_path / "wide").glob("*.safetensors")), next(cases["shape"].glob("*.safetensors")))
    HandObjectUNet.from_synthesis_config(synth_preset("tiny")).save_pretrained(cases["ddpm"])
    for name, folder in cases.items():
        with pytest.raises(BadData) as caught:
            load_reconstructor(folder)
        assert str(folder) in str(caught.value) and "\n" not in str(caught.value), name
    uri = "s3://bucket/recon?region=us-east-1"  # read as a path it would be the local folder s3:/bucket/recon
    with pytest.raises(BadData, match="s3://bucket/recon.*not a filesystem URI"):
        load_reconstructor(uri)


def test_list_inputs_are_read_from_the_inputs_model():
    from flows.cli import takes_list
    from pipeline.boost.stage import ExperimentInputs
    from pipeline.reconstruction.stage import TrainInputs

    assert not takes_list(TrainInputs, "synthetic") and not takes_list(TrainInputs, "data")
    assert takes_list(ExperimentInputs, "tests")


def test_an_unreachable_dask_scheduler_is_one_line_at_once():
    import time

    from flows.runtime import reachable

    started = time.perf_counter()
    with pytest.raises(MissingResource, match="no scheduler answers there"):
        reachable("tcp://127.0.0.1:1")
    with pytest.raises(MissingResource, match="HOST:PORT"):
        reachable("nonsense")
    assert time.perf_counter() - started < 5


def test_the_trainers_split_their_batches_over_launched_processes(tiny_demo, tmp_path):
    """`accelerate launch` starts a trainer once per GPU (here two CPU processes over gloo): only
    the first locks and writes the folder, and the result is printed once; a refusal reaches
    every process (none is left waiting for the others), and a stage that is not a trainer is
    refused."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root, _ = tiny_demo
    s0, s1 = root / "demo" / "s0_train", root / "demo" / "s1_train"
    config = tmp_path / "small.yaml"
    config.write_text("reconstruction: {image_size: 32, batch_size: 8, checkpoint_every: 2, num_workers: 0}\n")
    scripts = Path(sys.executable).parent

    def launched(*argv):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [str(scripts / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
                   "1", "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
                   str(scripts / "handbooster"), *argv, "--config", str(config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=240,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})

    trained = launched("recon", "train", "--data", str(s0), "--out", str(tmp_path / "recon"), "--preset", "tiny",
                       "--max-steps", "2", "--device", "cpu")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert trained.stdout.count("stage: recon_train") == 1
    assert json.loads((tmp_path / "recon" / ".summary.json").read_text())["steps"] == 2
    assert len(json.loads((tmp_path / "recon" / "loss.json").read_text())["loss"]) == 2
    assert (tmp_path / "recon" / "model" / "reconstruction.json").exists()

    painted = launched("synth", "train", "--data", str(s0), "--out", str(tmp_path / "ddpm"), "--preset", "tiny",
                       "--max-steps", "2", "--device", "cpu")
    assert painted.returncode == 0, painted.stderr[-2000:]
    assert painted.stdout.count("stage: synth_train") == 1 and (tmp_path / "ddpm" / "model").is_dir()

    other = launched("recon", "train", "--data", str(s1), "--out", str(tmp_path / "recon"), "--preset", "tiny",
                     "--max-steps", "4", "--resume", "--device", "cpu")
    assert other.returncode != 0 and "holds a training run of other inputs (data)" in other.stderr
    one = launched("data", "sheet", str(s0), "--out", str(tmp_path / "sheet"))
    assert one.returncode != 0 and "data_sheet runs in one process" in one.stderr
    assert not (tmp_path / "sheet").exists()


def test_a_diverged_training_stops_at_once_with_one_line(tiny_demo, tmp_path, capsys):
    """A learning rate far too high: before, the reconstructor went on to NaN weights and a
    traceback from the Procrustes SVD, and the DDPM saved NaN weights, then failed writing its
    summary; now both stop at the first NaN loss, saying which setting to lower."""
    root, _ = tiny_demo
    config = tmp_path / "diverges.yaml"
    config.write_text("reconstruction: {image_size: 32, batch_size: 8, num_workers: 0, learning_rate: 1.0e+30}\n"
                      "synthesis: {image_size: 32, batch_size: 4, num_workers: 0, learning_rate: 1.0e+30}\n")
    data = str(root / "demo" / "s0_train")
    for trainer, setting in (("recon", "reconstruction.learning_rate"), ("synth", "synthesis.learning_rate")):
        argv = [trainer, "train", "--data", data, "--out", str(tmp_path / trainer), "--preset", "tiny",
                "--max-steps", "6", "--device", "cpu", "--config", str(config)]
        expect_one_line_error(argv, capsys, "the training diverged: its loss is", f"lower {setting} (1e+30)",
                              within_s=None)
        assert not (tmp_path / trainer).exists()  # it saved nothing: its first checkpoint comes later
