"""Every failure a one-line error before any work, and no way to lose data.

A table of every subcommand that writes, each run with a bad output (unwritable, a file,
the input itself or a folder inside it), a negative seed and non-finite numbers: each must
exit 2 with one line naming the path or option, do no work, and leave its input as it was.
Then the cases that need a run in flight: two writers of one folder, a full disk, shards
whose checksums are right but whose PNG bytes do not decode, and a refused checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flows.cli import main
from pipeline.data import ShardWriter
from pipeline.data.schema import GRASP

import dataset_fixtures as fx
from conftest import expect_one_line_error, make_config


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One of each input the commands read: samples with maps, labelled real samples, grasp
    records, a synthesizer checkpoint, a raw DexYCB folder and a MANO-like file."""
    from pipeline.data.importers import ImportInputs, import_data
    from pipeline.synthesis.stage import TrainInputs, synth_train

    root = tmp_path_factory.mktemp("inputs")
    with ShardWriter(root / "maps", name="maps", image_size=32, rows_per_shard=8) as writer:
        writer.write_rows(fx.make_map_rows(8))
    with ShardWriter(root / "grasps", GRASP, name="grasps") as writer:
        writer.write_rows(fx.make_grasp_rows("025_mug", 6, seed=1))
    (root / "ho3d").mkdir()
    info = fx.make_ho3d(root / "ho3d")
    import_data(make_config({"data.image_size": 64}), ImportInputs(format="ho3d", root=str(root / "ho3d"),
                                                                   split=info["split"]), root / "real")
    (root / "dex").mkdir()
    fx.make_dexycb(root / "dex")
    synth_train(make_config({"synthesis.max_steps": 1, "synthesis.batch_size": 4, "synthesis.num_workers": 0}),
                TrainInputs(data=str(root / "maps")), root / "ckpt")
    (root / "MANO_RIGHT.pkl").write_bytes(b"not read: the output check comes first")
    return root


def _dataset_args(name):
    return lambda i, out: [name, str(i / "real"), "--out", str(out)]


# command -> (argv given inputs and an output path, the input folder the output must not be or be inside)
COMMANDS = {
    "hand export": (lambda i, out: ["hand", "export", "--out", str(out)], None),
    "hand convert-mano": (lambda i, out: ["hand", "convert-mano", str(i / "MANO_RIGHT.pkl"), "--out", str(out)], None),
    "objects sheet": (lambda i, out: ["objects", "sheet", "--objects", "golf_ball", "--out", str(out)], None),
    "data import": (lambda i, out: ["data", "import", "dexycb", str(i / "dex"), "--split", "s0_train", "--mano",
                                    "builtin", "--out", str(out)], "dex"),
    "data sheet": (lambda i, out: ["data", "sheet", str(i / "real"), "--out", str(out)], "real"),
    "data register": (lambda i, out: ["data", "register", str(i / "real"), "--registry", str(out)], "real"),
    "data demo": (lambda i, out: ["data", "demo", "--size", "tiny", "--out", str(out), "--registry",
                                  str(out / "registry")], None),
    "grasp run": (lambda i, out: ["grasp", "run", "--objects", "golf_ball", "--per-object", "2", "--out",
                                  str(out)], None),
    "grasp report": (lambda i, out: ["grasp", "report", str(i / "grasps"), "--out", str(out)], "grasps"),
    "sample": (lambda i, out: ["sample", "--real", str(i / "real"), "--grasps", str(i / "grasps"), "--out",
                               str(out)], "real"),
    "render conditions": (lambda i, out: ["render", "conditions", "--dataset", str(i / "real"), "--out", str(out)],
                          "real"),
    "render photos": (lambda i, out: ["render", "photos", "--dataset", str(i / "real"), "--out", str(out)], "real"),
    "render preview": (lambda i, out: ["render", "preview", "--out", str(out)], None),
    "synth train": (lambda i, out: ["synth", "train", "--data", str(i / "maps"), "--out", str(out)], "maps"),
    "synth generate": (lambda i, out: ["synth", "generate", "--ckpt", str(i / "ckpt"), "--specs", str(i / "maps"),
                                       "--out", str(out)], "maps"),
}


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def readonly_dir(tmp_path_factory):
    """A read-only file system (root ignores permission bits, so a mount is the honest test)."""
    path = tmp_path_factory.mktemp("readonly")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                      capture_output=True).returncode:
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here")
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_outputs_fail_before_any_work(command, inputs, tmp_path, capsys, readonly_dir):
    argv_of, source = COMMANDS[command]
    before = tree_digest(inputs)
    # An output that is a file (or lies under one).
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"keep me")
    expect_one_line_error(argv_of(inputs, blocker), capsys, str(blocker))
    assert blocker.read_bytes() == b"keep me"
    # An output on a read-only file system.
    expect_one_line_error(argv_of(inputs, readonly_dir / "out"), capsys, str(readonly_dir))
    # The input itself, or a folder inside it.
    if source is not None:
        expect_one_line_error(argv_of(inputs, inputs / source), capsys, str(inputs / source))
        expect_one_line_error(argv_of(inputs, inputs / source / "inside"), capsys, str(inputs / source))
    # A negative seed, and a non-finite number in the config.
    fresh = tmp_path / "fresh"
    expect_one_line_error(argv_of(inputs, fresh) + ["--seed", "-1"], capsys, "--seed")
    nan_config = tmp_path / "nan.yaml"
    nan_config.write_text("synthesis:\n  guidance: .nan\n")
    expect_one_line_error(argv_of(inputs, fresh) + ["--config", str(nan_config)], capsys, "synthesis.guidance")
    assert not fresh.exists()
    assert tree_digest(inputs) == before


# A URI that parses without a network (its region and endpoint given): nothing is sent to it.
S3_URI = "s3://bucket/out?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http"
LOCAL_FILES = ("hand export", "hand convert-mano", "objects sheet", "data sheet", "data register", "grasp report",
               "render preview", "synth train")  # trainers and pictures: written with local file APIs


def test_commands_that_write_local_files_refuse_a_filesystem_uri(inputs, tmp_path, capsys, monkeypatch):
    """An ``s3://`` output for a command that writes with local file APIs is refused in one line,
    where it was taken for a relative path and made a local folder named after the bucket."""
    monkeypatch.chdir(tmp_path)
    for command in LOCAL_FILES:
        expect_one_line_error(COMMANDS[command][0](inputs, S3_URI), capsys, S3_URI, "local file APIs")
    expect_one_line_error(["data", "demo", "--size", "tiny", "--out", S3_URI], capsys, S3_URI)
    expect_one_line_error(["run", "boost", "--out", S3_URI], capsys, S3_URI)
    expect_one_line_error(["data", "validate", "s4://bucket/x"], capsys, "s4://bucket/x", "cannot open the filesystem")
    # Checkpoints, predictions and raw datasets are read with local file APIs: refused before any work (no attempt
    # to reach the store), named as typed rather than as the local path s3:/bucket/...
    for argv in (["recon", "eval", "--ckpt", S3_URI, "--data", str(inputs / "real")],
                 ["synth", "generate", "--ckpt", S3_URI, "--specs", str(inputs / "maps")],
                 ["recon", "score", "--pred", S3_URI, "--data", str(inputs / "real")],
                 ["data", "import", "dexycb", S3_URI, "--split", "s0_train", "--mano", "builtin"]):
        expect_one_line_error(argv + ["--out", "out"], capsys, S3_URI, "reads", "with local file APIs")
    assert not os.listdir(tmp_path)


def test_option_values_are_checked_like_config_values(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    for flag, value in (("--guidance", "nan"), ("--guidance", "inf"), ("--guidance", "-1"), ("--steps", "0")):
        expect_one_line_error(COMMANDS["synth generate"][0](inputs, out) + [flag, value], capsys, flag)
    expect_one_line_error(COMMANDS["sample"][0](inputs, out) + ["--per-object", "-1,5"], capsys, "--per-object")
    expect_one_line_error(COMMANDS["grasp run"][0](inputs, out) + ["--device", "bogus"], capsys, "--device")
    for command in ("synth generate", "render conditions"):  # rows [START, STOP): none silently empty or wrapped
        for rows, says in (("5,2", "its first value <= its second"), ("-3,2", "greater than or equal to 0"), ("0,1,2", "at most 2")):
            expect_one_line_error(COMMANDS[command][0](inputs, out) + ["--rows", rows], capsys, "rows", says)
    expect_one_line_error(["synth", "generate", "--ckpt", str(inputs / "ckpt"), "--specs", str(inputs / "grasps"),
                           "--out", str(out)], capsys, "grasp records")
    bad_config = tmp_path / "latin1.yaml"
    bad_config.write_bytes("seed: 1 # caf\xe9\n".encode("latin-1"))
    expect_one_line_error(["info", "--config", str(bad_config)], capsys, str(bad_config), "UTF-8")
    assert not out.exists()


def test_render_into_its_own_input_deletes_nothing(inputs, capsys):
    before = tree_digest(inputs / "real")
    expect_one_line_error(["render", "conditions", "--dataset", str(inputs / "real"), "--out", str(inputs / "real"),
                           "--overwrite"], capsys, "input")
    assert tree_digest(inputs / "real") == before


def holds_lock(folder: Path) -> bool:
    """Whether a process holds ``folder``'s lock: it names itself in the file once it does."""
    try:
        return (folder / ".lock").read_text().startswith("process")
    except FileNotFoundError:
        return False


def test_a_second_writer_of_the_same_folder_is_refused(tmp_path):
    """Two grasp runs with different seeds into one folder: the second is refused at once. The
    first is paused (SIGSTOP) while it holds the folder, so the second meets it however fast the
    first would have finished; resumed, the first ends its run."""
    out = tmp_path / "grasps"
    code = ("import sys\nfrom flows.cli import main\n"
            "sys.exit(main(['grasp', 'run', '--objects', 'golf_ball', '--per-object', '4', '--iterations', "
            "'20', '--batch-size', '4', '--out', sys.argv[1], '--seed', sys.argv[2]]))")
    first = subprocess.Popen([sys.executable, "-c", code, str(out), "1"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not holds_lock(out) and time.time() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run([sys.executable, "-c", code, str(out), "2"], capture_output=True, text=True,
                                timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr
    assert "is being written by process" in second.stderr and str(out) in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert not (out / ".lock").exists()
    from pipeline.data.manifest import read_manifest

    assert read_manifest(out)[1]["config"]["seed"] == 1


@pytest.fixture()
def small_disk(tmp_path):
    path = tmp_path / "small"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(path)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_a_clean_error_and_the_rerun_resumes(tmp_path, small_disk, capsys):
    """Shards of incompressible images fill a 1.2 MB disk mid-run: exit 2 naming the folder,
    no temporary file left, the finished shards kept; with room, the re-run resumes and ends
    with the bytes of an uninterrupted run."""
    source = tmp_path / "noise"
    rng = np.random.default_rng(0)
    rows = [{**fx.make_map_rows(1, size=64, seed=i)[0], "sample_id": f"noise/{i:03d}",
             "image": fx.png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))} for i in range(150)]
    with ShardWriter(source, name="noise", image_size=64, rows_per_shard=16) as writer:
        writer.write_rows(rows)
    ckpt = tmp_path / "ckpt"
    from pipeline.synthesis.stage import TrainInputs, synth_train

    synth_train(make_config({"synthesis.max_steps": 1, "synthesis.batch_size": 4, "synthesis.num_workers": 0}),
                TrainInputs(data=str(source)), ckpt)
    argv = ["synth", "generate", "--ckpt", str(ckpt), "--specs", str(source), "--scheduler", "ddim", "--steps", "1"]
    out = small_disk / "gen"
    expect_one_line_error([*argv, "--out", str(out)], capsys, "no space left", str(out), within_s=None)
    left = sorted(p.name for p in out.iterdir())
    assert not [name for name in left if ".tmp-" in name] and ".progress.json" in left
    kept = len([name for name in left if name.startswith("part-")])
    assert kept >= 1
    subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)
    assert main([*argv, "--out", str(out), "--json"]) == 0
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    for name in sorted(p.name for p in (tmp_path / "whole").glob("part-*.parquet")):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


@pytest.fixture()
def garbage_png_dataset(tmp_path):
    """A dataset whose manifest checksums are right but one row's image and normal are not PNG
    (as a buggy writer, or an edit followed by a new manifest, would leave it)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "garbage"
    with ShardWriter(out, name="garbage", image_size=32, rows_per_shard=8) as writer:
        writer.write_rows(fx.make_map_rows(8))
    shard = out / "part-00000.parquet"
    table = pq.read_table(shard)
    for column, junk in (("image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), ("normal", b"\x89PNG\r\n\x1a\ngarbage")):
        values = table.column(column).to_pylist()
        values[5] = junk
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.binary()))
    pq.write_table(table, shard, row_group_size=256, compression="zstd")
    manifest = json.loads((out / ".manifest.json").read_text())
    data = shard.read_bytes()
    manifest["shards"][0].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (out / ".manifest.json").write_text(json.dumps(manifest))
    return out


def test_png_that_does_not_decode_is_named_by_sample_and_column(garbage_png_dataset, inputs, tmp_path, capsys):
    data = str(garbage_png_dataset)
    assert main(["data", "validate", data]) == 0  # checksums, sizes and schema are right
    expect_one_line_error(["data", "validate", data, "--deep"], capsys, "maps/00005", "'image'")
    expect_one_line_error(["data", "sheet", data, "--out", str(tmp_path / "g"), "--samples", "8"], capsys,
                          "maps/00005")
    expect_one_line_error(["synth", "generate", "--ckpt", str(inputs / "ckpt"), "--specs", data, "--out",
                           str(tmp_path / "gen")], capsys, "maps/00005", "normal")
    err = expect_one_line_error(["synth", "train", "--data", data, "--out", str(tmp_path / "ckpt"), "--max-steps",
                                 "1"], capsys, "maps/00005")
    assert "'image'" in err or "'normal'" in err


def test_validate_finds_what_a_checksum_misses(inputs, tmp_path, capsys):
    import json
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(inputs / "maps", folder)
    manifest = json.loads((folder / ".manifest.json").read_text())
    assert main(["data", "validate", str(folder)]) == 0
    edited = {**manifest, "counts": {**manifest["counts"], "source": {"real": 7, "synthetic": 1}}}
    (folder / ".manifest.json").write_text(json.dumps(edited))
    expect_one_line_error(["data", "validate", str(folder)], capsys, "counts.source")
    outside = {**manifest, "shards": [{**manifest["shards"][0], "path": "../other/part-00000.parquet"}]}
    (folder / ".manifest.json").write_text(json.dumps(outside))
    expect_one_line_error(["data", "validate", str(folder)], capsys, "../other/part-00000.parquet")
    (folder / ".manifest.json").write_text(json.dumps(manifest))
    (folder / ".part-00001.parquet.tmp-123-4").write_bytes(b"half a shard")
    expect_one_line_error(["data", "validate", str(folder)], capsys, ".tmp-123-4", "temporary")


def test_datasets_of_other_image_sizes_are_not_merged_and_each_is_named(inputs, tmp_path, capsys):
    expect_one_line_error(["data", "merge", "--datasets", f"{inputs / 'maps'},{inputs / 'real'}", "--name", "mix",
                           "--out", str(tmp_path / "mix")], capsys, "maps: sample, 32 px", "real: sample, 64 px",
                          "data.image_size")
    assert not (tmp_path / "mix").exists()


def test_rows_without_images_are_refused_before_a_reconstructor_trains(tmp_path, capsys):
    """Found from the footers, whichever rows they are (a check of the first row missed these)."""
    with ShardWriter(tmp_path / "part", name="part", image_size=fx.SIZE) as writer:
        writer.write_rows([{**fx.make_row(i), **({"image": None} if i in (3, 5) else {})} for i in range(8)])
    expect_one_line_error(["recon", "train", "--data", str(tmp_path / "part"), "--out", str(tmp_path / "recon"),
                           "--preset", "tiny"], capsys, str(tmp_path / "part"), "'image' is null in 2 of 8 rows")
    assert not (tmp_path / "recon").exists()


def test_a_refused_checkpoint_is_an_error_not_a_traceback(inputs, tmp_path, capsys):
    import pickle
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(inputs / "ckpt", ckpt)
    state = next(ckpt.glob("checkpoint-*")) / "training_state.pt"

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo owned > /dev/null",))

    state.write_bytes(pickle.dumps({"x": Payload()}))
    config = tmp_path / "same.yaml"  # the checkpoint's own settings: a resume may change only its steps
    config.write_text("synthesis: {batch_size: 4, num_workers: 0}\n")
    expect_one_line_error(["synth", "train", "--data", str(inputs / "maps"), "--out", str(ckpt), "--resume",
                           "--max-steps", "2", "--config", str(config)], capsys, "training_state.pt", "refused")


def test_a_camera_matrix_without_numbers_is_bad_data_naming_file_and_field(tmp_path, capsys):
    import pickle

    (tmp_path / "ho3d").mkdir()
    info = fx.make_ho3d(tmp_path / "ho3d")
    meta = sorted(tmp_path.glob("ho3d/train/*/meta/*.pkl"))[0]
    values = pickle.loads(meta.read_bytes())
    meta.write_bytes(pickle.dumps({**values, "camMat": np.zeros((3, 3))}))
    expect_one_line_error(["data", "import", "ho3d", str(tmp_path / "ho3d"), "--split", info["split"], "--mano", "builtin",
                           "--out", str(tmp_path / "out")], capsys, str(meta), "camMat")
