import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from PIL import Image

from flows.cli import main
from pipeline.config import PipelineConfig, load_config
from pipeline.errors import InputError


def test_config_defaults_and_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 4\nhand:\n  side: left\n")
    config = load_config(path)
    assert config.seed == 4 and config.hand.side == "left" and config.hand.model == "builtin"
    assert load_config(None) == PipelineConfig()


def test_relative_paths_in_a_config_are_made_absolute_and_keywords_kept(tmp_path, monkeypatch):
    """What a run hands its tasks: the folder typed in, whatever folder a worker runs in."""
    from pipeline.config import absolute_paths

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text("hand: {model: mano}\nfilter: {thresholds: dexycb}\nboost:\n  real: demo\n  registry: reg\n"
                    "  protocols: [{name: p, train: d/train, tests: [d/test, 's3://b/t?region=us-east-1']}]\n"
                    "objects: {library: ~/ycb}\n")
    config = absolute_paths(load_config(path))
    assert config.hand.model == str(tmp_path / "mano") and config.boost.registry == str(tmp_path / "reg")
    assert (config.filter.thresholds, config.boost.real, config.objects.library) == ("dexycb", "demo", "~/ycb")
    assert config.boost.protocols[0].train == str(tmp_path / "d" / "train")
    assert config.boost.protocols[0].tests == [str(tmp_path / "d" / "test"), "s3://b/t?region=us-east-1"]
    assert absolute_paths(PipelineConfig()) == PipelineConfig()


@pytest.mark.parametrize(
    "text, message",
    [
        ("hand:\n  modle: builtin\n", "unknown key 'hand.modle'"),
        ("hand:\n  side: up\n", "'hand.side': Input should be 'right' or 'left' (got 'up')"),
        ("seed: -1\n", "'seed': Input should be greater than or equal to 0"),
        ("seed: [1\n", "not valid YAML at line"),
        ("- 1\n- 2\n", "expected a mapping"),
        # a repeat would run the same work twice (one folder, two writers) or count a seed twice in the intervals
        ("boost: {seeds: [0, 1, 0]}\n", "'boost.seeds': Value error, expected each value once, got 0 more than once"),
        ("boost: {arms: [full, full]}\n", "'boost.arms': Value error, expected each value once"),
        ("boost: {seeds: [-1]}\n", "'boost.seeds.0': Input should be greater than or equal to 0"),
        ("demo: {objects: [mug, mug]}\n", "'demo.objects': Value error, expected each value once, got mug"),
        ("boost: {protocols: [{name: a, train: x, tests: [y]}, {name: a, train: x, tests: [z]}]}\n",
         "protocols: expected each name once, got ['a', 'a']"),
        # before: a traceback from numpy's uniform draw, or hands started inside the object or a kilometre away
        ("grasp: {init_distance_m: [0.05, 0.02]}\n", "expected a range, its first value <= its second, got 0.05,0.02"),
        ("grasp: {init_distance_m: [-1, 0.05]}\n", "'grasp.init_distance_m.0': Input should be greater than or equal"),
        ("synthesis: {adam_betas: [1.5, 0.9]}\n", "'synthesis.adam_betas.0': Input should be less than 1"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_cli_bad_config_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("bogus: 1\n")
    assert main(["hand", "export", "--config", str(path), "--out", str(tmp_path / "h")]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_export_fist_obj_is_watertight(tmp_path, capsys):
    assert main(["hand", "export", "--model", "builtin", "--pose", "fist", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    mesh = trimesh.load(report["files"]["hand"], process=False)
    details = report["details"]
    assert mesh.is_watertight and details["watertight"] and details["vertices"] == len(mesh.vertices)


def test_json_output_is_json_alone_when_libraries_print_to_stdout():
    """pybullet prints its build time from C on import; --json must still give parseable JSON."""
    script = ("import os, sys\n"
              "from flows.cli import emit, stdout_to_stderr\n"
              "with stdout_to_stderr(True):\n"
              "    os.write(1, b'library noise\\n'); print('python noise')\n"
              "    emit({'answer': 42}, True)\n"
              "print('after')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.removesuffix("after\n")) == {"answer": 42} and done.stdout.endswith("after\n")
    assert "library noise" in done.stderr and "python noise" in done.stderr


def test_threads_silencing_native_output_at_once_leave_the_terminal_working():
    """Grasp tasks importing pybullet or loading hands at once used to leave stdout on /dev/null
    or on a StringIO for good: the flow's step lines vanished."""
    script = ("import threading, time\n"
              "from pipeline.hand import load_hand_model\n"
              "from pipeline.quiet import silenced_native_output\n"
              "def quiet(pause):\n"
              "    with silenced_native_output():\n"
              "        print('hidden', flush=True); time.sleep(pause)\n"
              "    for _ in range(10):\n"
              "        load_hand_model('builtin')  # smplx prints a note while a hand loads\n"
              "threads = [threading.Thread(target=quiet, args=(p,)) for p in (0.2, 0.4, 0.1, 0.0, 0.0, 0.0)]\n"
              "[t.start() for t in threads]; [t.join() for t in threads]\n"
              "print('shown', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout == "shown\n"


def test_figures_drawn_from_parallel_threads_all_render():
    """The flows train reconstructors in threads that each draw log-scale curves; matplotlib's
    tick-label parser is not thread-safe, so figure_png draws one figure at a time."""
    import threading

    from pipeline.imaging import figure_png, pyplot

    errors, sizes = [], []

    def draw():
        try:
            for _ in range(8):
                fig, axis = pyplot().subplots()
                axis.plot([1, 2, 3], [1e-3, 1e-1, 10])
                axis.set_yscale("log")
                sizes.append(len(figure_png(fig)))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(exc))

    threads = [threading.Thread(target=draw) for _ in range(6)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert errors == [] and len(sizes) == 48 and min(sizes) > 1000


def test_export_png_and_random_seed(tmp_path):
    assert main(["hand", "export", "--pose", "random", "--seed", "3", "--format", "png", "--out", str(tmp_path)]) == 0
    image = np.asarray(Image.open(tmp_path / "hand.png"))
    assert image.shape[0] > 100 and image.shape[1] == 3 * image.shape[0]
    assert (image < 250).any(axis=-1).mean() > 0.05, "the hand is drawn"
    for name in ("a", "b"):
        assert main(["hand", "export", "--pose", "random", "--seed", "3", "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "hand.obj").read_bytes() == (tmp_path / "b" / "hand.obj").read_bytes()


def test_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys):
    assert main(["hand", "export", "--format", "stl", "--out", str(tmp_path / "hand")]) == 2
    assert main(["hand", "export", "--model", "nowhere", "--out", str(tmp_path / "hand")]) == 2
    err = capsys.readouterr().err
    assert "'stl' is not one of 'obj', 'ply', 'png'" in err and "nowhere: hand model not found" in err
    grasps = ["grasp", "run", "--out", str(tmp_path / "grasps"), "--per-object", "1", "--iterations", "1"]
    assert main([*grasps, "--objects", "mug,banana,mug"]) == 2  # before: optimised, then refused at writing
    assert main([*grasps, "--objects", " "]) == 2  # before: an empty list meant the default, all 20 objects
    assert main(["run", "grasps", "--input", "objects=", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "builtin: object(s) mug named more than once" in err and "--objects: expected comma-separated values" in err
    assert "--input objects: expected comma-separated values, got ''" in err
    assert list(tmp_path.iterdir()) == []


def test_info_json_and_console_script():
    result = subprocess.run([sys.executable, "-m", "flows.cli", "info", "--json"], capture_output=True, text=True,
                            check=True)
    info = json.loads(result.stdout)
    assert info["torch_device"] in ("cpu", "cuda") and "builtin" in info["hand_models"]
    assert info["render_platform"]["ok"], info["render_platform"]
    bad = subprocess.run([sys.executable, "-m", "flows.cli", "hand", "export", "--format", "stl", "--out", "x"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)


def test_help_loads_no_heavy_library():
    """``handbooster --help`` (and every group's) answers without torch, pyrender or pybullet."""
    script = ("import sys\nfrom flows.cli import cli, main\n"
              "for args in [['--help']] + [[name, '--help'] for name in cli.commands if name != 'sample']:\n"
              "    main(args)\n"
              "print(sorted(m for m in ('torch', 'pyrender', 'pybullet', 'prefect', 'diffusers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_flags_go_through_the_same_validation_as_the_config_file(tmp_path, capsys):
    assert main(["hand", "export", "--seed", "-1", "--out", str(tmp_path / "h")]) == 2
    assert "--seed (seed): Input should be greater than or equal to 0 (got -1)" in capsys.readouterr().err
    assert main(["synth", "generate", "--ckpt", str(tmp_path), "--specs", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--guidance", "nan"]) == 2
    assert "--guidance (synthesis.guidance)" in capsys.readouterr().err
    assert main(["grasp", "run", "--per-object", "0", "--out", str(tmp_path / "g")]) == 2
    assert "--per-object (grasp.per_object)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
