"""Prefect flows: the boost flow end to end, resume under Dask after SIGKILL, the UI's deployments,
signals, and where the local Dask and Ray clusters listen.

The ``prefect`` xdist group runs them on one worker, so one Prefect test server (``prefect_api``,
about 30 s to start) serves them all (the lock keeps pytest under 9.2, where xdist 3.8 cannot group).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import assert_kill_leaves_no_process, make_config

pytestmark = pytest.mark.xdist_group("prefect")


def boost_config(tiny_demo, arms: tuple[str, ...] = ("real_only", "full")) -> dict:
    root, _ = tiny_demo
    return {
        "seed": 0, "run": {"workers": 2},
        "grasp": {"per_object": 8, "iterations": 100, "batch_size": 8, "resting_drops": 4},
        "sampling": {"real_per_object": 4, "synthetic_per_object": 6, "total": 8, "views_per_pose": 2},
        "synthesis": {"preset": "tiny", "max_steps": 4, "batch_size": 4, "num_workers": 0, "sample_steps": 2,
                      "checkpoint_every": 2, "generate_batch_size": 8},
        "reconstruction": {"max_steps": 4, "eval_every": 4, "checkpoint_every": 4, "batch_size": 8,
                           "image_size": 32, "num_workers": 0},
        "boost": {"real": str(root / "demo" / "s0_train"), "tests": [str(root / "demo" / "s0_test")],
                  "render_chunk_rows": 24, "generate_chunk_rows": 6, "arms": list(arms), "synthetic_count": 8,
                  "filter_rounds": 2},
    }


def digests(run: Path) -> dict[str, str]:
    """What a boost run made, by content: every Parquet shard and every weight file (the DDPM,
    the filter's and every arm's reconstructors), by path in the run folder."""
    return {str(path.relative_to(run)): hashlib.sha256(path.read_bytes()).hexdigest()
            for pattern in ("*.parquet", "*.safetensors") for path in sorted(run.rglob(pattern))}


def assert_same_bytes(run: Path, reference: Path) -> None:
    """Every shard and weight file of ``run`` is in ``reference`` (which ran every arm) with the same bytes."""
    mine, theirs = digests(run), digests(reference)
    assert any(name.startswith("main/experiment/") for name in mine)  # the arms' reconstructors are compared too
    assert {name: theirs.get(name) for name in mine} == mine


@pytest.fixture(scope="module")
def uninterrupted(prefect_api, tiny_demo, tmp_path_factory):
    from flows.launch import run_flow
    from pipeline.boost.arms import ARM_NAMES as ARMS
    from pipeline.config import PipelineConfig, validate_config

    out = tmp_path_factory.mktemp("boost") / "run"
    config = validate_config(boost_config(tiny_demo, ARMS), PipelineConfig, "test")
    result = run_flow("boost", config, str(out), "thread", echo=False)
    return out, result


def test_boost_flow_runs_end_to_end_and_publishes_what_it_did(uninterrupted, prefect_api):
    from prefect import get_client

    from pipeline.boost.arms import ARM_NAMES as ARMS
    from pipeline.data.manifest import read_manifest

    out, result = uninterrupted
    stages = [row["stage"] for row in result["steps"]]
    objects = read_manifest(out / "grasps" / "all")[1]["counts"]["object_id"]  # one grasp task per real object
    assert stages[:len(objects) + 1] == ["grasps"] * len(objects) + ["merge"] and stages[-1] == "experiment"
    assert {"sample", "synth_train", "synth_generate", "conditions", "recon_filter", "synth_eval", "photos",
            "plain_renders"} <= set(stages)
    assert not result["reused_steps"]
    main = out / "main"
    synthetic = json.loads((main / "synthetic" / "cross" / "all" / ".manifest.json").read_text())
    assert synthetic["rows"] > 0 and synthetic["counts"]["source"] == {"synthetic": synthetic["rows"]}
    report = json.loads((main / "experiment" / "boost_report.json").read_text())
    assert list(report["arms"]) == list(ARMS) and report["tests"] == ["demo_s0_test"] and not report["dropped"]
    assert all(entry["demo_s0_test"]["rr_mm"] > 0 for entry in report["table"].values())
    assert report["protocol"]["guard"]["passed"] and report["protocol"]["train"].endswith("s0_train")
    assert {"constant", "nearest_pose"} <= set(report["references"]["demo_s0_test"])
    assert all(len(report["table"][arm]["demo_s0_test"]["rr_change_ci95"]) == 2 for arm in ARMS if arm != "real_only")
    assert json.loads((out / "boost_report.json").read_text())["protocols"]["main"] == report
    assert "| real only |" in (out / "boost_report.md").read_text()
    # every component of the protocol learned from its own training split (the summaries' records)
    synth = json.loads((main / "synth" / ".summary.json").read_text())
    real_only = json.loads((main / "experiment" / "arms" / "real_only" / "seed-0" / "train" / ".summary.json").read_text())
    assert synth["datasets"]["train"]["name"] == real_only["datasets"]["real"]["name"] == "demo_s0_train"
    # equal K: every synthetic arm trained on K rows, or on all its dataset had; the filter repaints until K
    filtered = result["protocols"]["main"]["filter"]
    for arm, used in report["synthetic_rows"].items():
        data = result["paths"]["main"]["arm_data"][arm]
        assert used == (0 if not data else min(8, read_manifest(data)[1]["rows"])), arm
    assert filtered["kept"] >= 8 or filtered["rounds"] == 2 or not filtered["last_round"]["rejected"]
    assert read_manifest(main / "filter" / "kept")[1]["rows"] == filtered["kept"]
    assert result["protocols"]["main"]["synth_eval"]["frechet_distance"] >= 0
    index = (out / "index.html").read_text()
    assert "main/specs/cross/__report__/similarity.png" in index and "main/experiment/pck.png" in index
    assert json.loads((out / "boost_summary.json").read_text())["steps"] == result["steps"]
    assert (out / "flow.log").stat().st_size > 0
    with get_client(sync_client=True) as client:  # the client's reads work against this server (fastapi pin)
        runs = client.read_flow_runs()
        artifacts = {a.key for a in client.read_artifacts()}
        tasks = client.read_task_runs()
    assert any(r.state.is_completed() and r.flow_id for r in runs)
    assert {"boost-progress", "boost-steps", "boost-plots"} <= artifacts and len(tasks) >= len(stages)


def test_a_run_killed_after_its_first_stage_resumes_under_dask_to_the_same_bytes(uninterrupted, prefect_api,
                                                                                 tiny_demo, tmp_path):
    """Killed (SIGKILL) once its first stage finished, resumed with the Dask runner: the same
    bytes as the uninterrupted thread run, so resume and Dask = threads are checked by one run."""
    reference, _ = uninterrupted
    config = tmp_path / "boost.yaml"
    config.write_text(yaml.safe_dump(boost_config(tiny_demo)))
    out = tmp_path / "run"
    command = [str(Path(sys.executable).with_name("handbooster")), "run", "boost", "--config", str(config),
               "--out", str(out)]
    import torch

    # the same bytes need the same float sums: this process's thread count (conftest sets one)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "grasps").glob("*/.summary.json")):
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = list((out / "grasps").glob("*/.summary.json"))
    assert finished, "the first stage never finished"
    assert not (out / "boost_summary.json").exists()  # killed mid-way
    done = subprocess.run(command + ["--json", "--runner", "dask"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Task run" not in done.stderr  # the workers' Prefect lines stay off the terminal, as with threads
    result = json.loads(done.stdout)
    assert result["runner"] == "dask"
    reused = [row["step"] for row in result["steps"] if row["reused"]]
    assert len(reused) >= len(finished)
    assert_same_bytes(out, reference)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or p.name == ".progress.json" or p.name == ".lock"]
    from prefect import get_client

    with get_client(sync_client=True) as client:  # the killed run does not stay RUNNING
        running = [r for r in client.read_flow_runs() if r.state.is_running()]
    assert not running


def test_a_single_stage_runs_as_its_own_flow(prefect_api, tiny_demo, tmp_path):
    from flows.launch import run_flow
    from pipeline.config import PipelineConfig

    root, _ = tiny_demo
    inputs = {"datasets": [str(root / "demo" / "s0_test"), str(root / "demo" / "s1_test")], "name": "tests"}
    summary = run_flow("merge", PipelineConfig(), str(tmp_path / "merged"), "thread", inputs=inputs, echo=False)
    assert summary["rows"] == sum(json.loads((root / "demo" / s / ".manifest.json").read_text())["rows"]
                                  for s in ("s0_test", "s1_test"))


def imported(fmt: str, tmp_path: Path) -> tuple[Path, dict]:
    """The tests' tiny dataset of ``fmt`` in its official layout, imported at 64 px; and what it holds."""
    from pipeline.data.importers import ImportInputs, import_data

    import dataset_fixtures as fx

    root, out = tmp_path / fmt, tmp_path / f"{fmt}_imported"
    root.mkdir()
    info = {"ho3d": fx.make_ho3d, "dexycb": fx.make_dexycb, "handoccnet-json": fx.make_handoccnet}[fmt](root)
    import_data(make_config({"data.image_size": 64}), ImportInputs(format=fmt, root=str(root), split=info["split"]), out)
    return out, info


@pytest.mark.parametrize("fmt, settings, message", [
    ("dexycb", {}, "025_mug not in the object library 'builtin'"),
    ("handoccnet-json", {"reconstruction": {"batch_size": 2}}, "no row names an object"),
    ("ho3d", {"reconstruction": {"batch_size": 2}, "boost": {"grasp_objects": ["mug"]}},
     "none of mug is an object of the training split \\(mustard_bottle\\)"),
    ("ho3d", {}, "training rows, fewer than one batch of 8 \\(reconstruction.batch_size\\)"),
    ("ho3d", {"reconstruction": {"batch_size": 2, "val_fraction": 0.0}}, "val_fraction: 0 holds no real rows out")])
def test_what_the_flow_cannot_use_is_refused_before_any_grasp(fmt, settings, message, prefect_api, tiny_demo,
                                                              tmp_path):
    """DexYCB names its objects as YCB does (025_mug), which the builtin library (the default)
    lacks; HandOccNet's JSON names none: the flow had no object to grasp and stopped at "merge
    needs at least one dataset". Grasps of objects the real frames do not hold (HO3D's mustard
    bottle) failed at the sampling, which samples poses per object, and a training split smaller
    than a batch (5 HO3D frames, one of them held out) at the first reconstructor, and auto
    thresholds without held-out rows at the filter: all after every grasp and the DDPM."""
    from flows.launch import run_flow
    from pipeline.config import PipelineConfig, validate_config
    from pipeline.errors import InputError

    real, _ = imported(fmt, tmp_path)
    config = boost_config(tiny_demo)
    config["boost"]["real"] = str(real)
    for section, values in settings.items():
        config[section].update(values)
    with pytest.raises(InputError, match=message):
        run_flow("boost", validate_config(config, PipelineConfig, "test"), str(tmp_path / "run"), "thread",
                 echo=False)
    assert not (tmp_path / "run").exists()


def test_an_imported_test_set_without_condition_maps_gets_them_for_the_synthesizers_evaluation(prefect_api, tiny_demo,
                                                                                             tmp_path):
    """An imported test split has images and labels but no condition maps, which the synthesizer's
    evaluation paints the test rows again from: before, such a run failed at its end ("rows
    without 'normal'"), after every training."""
    from flows.launch import run_flow
    from pipeline.config import PipelineConfig, validate_config
    from pipeline.data.manifest import read_columns

    test, info = imported("ho3d", tmp_path)
    settings = boost_config(tiny_demo, ("real_only",))
    settings["boost"].update(tests=[str(test)], grasp_objects=["tennis_ball"])
    settings["grasp"].update(per_object=4, batch_size=4, iterations=20)
    out = tmp_path / "run"
    result = run_flow("boost", validate_config(settings, PipelineConfig, "test"), str(out), "thread", echo=False)
    evaluation = result["protocols"]["main"]["synth_eval"]
    assert evaluation["count"] == info["frames"] - info["unlabelled"] and evaluation["fidelity"]
    assert read_columns(result["paths"]["main"]["test_maps"], ["normal"])[1].column("normal").null_count == 0
    assert read_columns(test, ["normal"])[1].column("normal").null_count > 0  # the test set itself is as imported
    assert "main: test condition maps merge" in [row["step"] for row in result["steps"]]


def test_served_deployments_run_with_parameters_and_refuse_bad_ones(prefect_api, tiny_demo, tmp_path):
    """Deployments as ``handbooster ui`` serves them, triggered through the client."""
    from prefect import get_client

    from pipeline.config import PipelineConfig

    root, _ = tiny_demo
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    server = subprocess.Popen([sys.executable, "-c", "from prefect import serve\nfrom flows.ui import deployments\n"
                               "serve(*deployments(), print_starting_message=False)"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[2])
    try:
        with get_client(sync_client=True) as client:
            deadline = time.time() + 120
            deployment = None
            while deployment is None and time.time() < deadline:
                try:
                    deployment = client.read_deployment_by_name("merge/merge")
                except Exception:  # not served yet
                    time.sleep(1)
            assert deployment is not None
            schema = client.read_deployment_by_name("boost/boost").parameter_openapi_schema
            assert "description" in schema["definitions"]["SamplingConfig"]["properties"]["sampler"]
            good = {"config": PipelineConfig().model_dump(mode="json"), "out": str(tmp_path / "merged"),
                    "inputs": {"datasets": [str(root / "demo" / "s1_test")], "name": "one"}}
            bad = {**good, "config": {"seed": -1}, "out": str(tmp_path / "never")}
            states = {}
            for name, parameters in (("good", good), ("bad", bad)):
                run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
                while not client.read_flow_run(run.id).state.is_final() and time.time() < deadline + 120:
                    time.sleep(1)
                states[name] = client.read_flow_run(run.id).state
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert states["good"].is_completed() and (tmp_path / "merged" / ".manifest.json").exists()
    assert states["bad"].is_failed() and not (tmp_path / "never").exists()
    # The same words as the command line's: --seed (seed): Input should be greater than or equal to 0 (got -1)
    assert "'seed': Input should be greater than or equal to 0 (got -1)" in states["bad"].message


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_ui_run_form_shows_the_config_fields(tmp_path):
    """``handbooster ui`` in a real browser: the boost deployment's run form lists the config's fields."""
    import urllib.request

    ui, port = start_ui()
    try:
        api = f"http://127.0.0.1:{port}/api"
        deadline = time.time() + 120
        deployment_id = None
        while deployment_id is None and time.time() < deadline:
            request = urllib.request.Request(f"{api}/deployments/filter", data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json"})
            found = [d for d in json.loads(urllib.request.urlopen(request).read()) if d["name"] == "boost"]
            deployment_id = found[0]["id"] if found else time.sleep(1)
        dom = subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                              "--no-first-run", "--disable-background-networking", "--disable-component-update",
                              "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
                              "--dump-dom", f"http://127.0.0.1:{port}/deployments/deployment/{deployment_id}/run"],
                             capture_output=True, text=True, timeout=120).stdout
    finally:
        ui.send_signal(signal.SIGINT)
        ui.wait(timeout=60)
    for text in ("every stage's random seed", "Sampler", "Reconstruction", "Boost"):
        assert text in dom, text


def test_a_trainer_stage_runs_as_a_flow_into_a_new_folder(prefect_api, tiny_demo, tmp_path):
    """``handbooster run recon_train`` writes its log into the new folder before the trainer starts."""
    from flows.launch import run_flow
    from pipeline.config import PipelineConfig, validate_config

    root, _ = tiny_demo
    config = validate_config({"reconstruction": {"max_steps": 2, "checkpoint_every": 2, "batch_size": 8,
                                                 "image_size": 32, "num_workers": 0}}, PipelineConfig, "test")
    summary = run_flow("recon_train", config, str(tmp_path / "new"), "thread",
                       inputs={"data": str(root / "demo" / "s0_train")}, echo=False)
    assert summary["steps"] == 2 and (tmp_path / "new" / "flow.log").exists()


def _descendants(pid: int) -> list:
    import psutil

    return psutil.Process(pid).children(recursive=True)


def _servers(processes) -> list:
    """The Prefect API servers among ``processes``."""
    import psutil

    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if "prefect.server.api.server:create_app" in process.cmdline():
                found.append(process)
    return found


@pytest.mark.parametrize("how, runner", [("ctrl-c to the group", "thread"), ("sigterm", "dask")])
def test_a_signal_ends_the_run_and_every_process_it_started(how, runner, tiny_demo, tmp_path):
    """Without PREFECT_API_URL the run starts its own API server, and its Dask workers report to
    it (none starts one of its own): one Ctrl-C (SIGINT to the terminal's process group) or one
    SIGTERM ends the run, its tasks, its workers and that server."""
    import psutil

    config = tmp_path / "boost.yaml"
    config.write_text(yaml.safe_dump(boost_config(tiny_demo)))
    out = tmp_path / "run"
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    process = subprocess.Popen([str(Path(sys.executable).with_name("handbooster")), "run", "boost", "--config",
                                str(config), "--out", str(out), "--runner", runner], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "grasps").exists():
        time.sleep(0.2)
    children = _descendants(process.pid)
    servers = [" ".join(server.cmdline()) for server in _servers(children)]  # checked once the run has ended
    if how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)  # a grasp step in native code finishes first; a loaded machine takes longer
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert process.returncode in (130, 143) and "stopping" in process.stderr.read()
    assert len(servers) == 1, servers


def test_a_command_killed_outright_leaves_no_process_behind():
    """SIGKILL runs no handler: the watchdog a command starts ends what the command had started
    (here a stand-in for the Prefect API server), then itself."""
    script = ("import subprocess, sys, time\nfrom flows.runtime import start_watchdog\nstart_watchdog()\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\ntime.sleep(120)\n")
    command = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert_kill_leaves_no_process(command, 2, settle_s=3)  # the watchdog and the server; it has listed the server


def test_a_flow_run_puts_the_commands_signal_handler_back():
    """Prefect's flow engine swaps in a SIGTERM handler that waits for the running tasks (a
    training: minutes); the flow puts the command's back, so one SIGTERM ends it at once."""
    from prefect.utilities.engine import capture_sigterm

    import flows.runtime as runtime

    before = {name: signal.getsignal(name) for name in (signal.SIGINT, signal.SIGTERM)}
    try:
        runtime.stop_on_signals()
        ours = signal.getsignal(signal.SIGTERM)
        with capture_sigterm():
            assert signal.getsignal(signal.SIGTERM) is not ours  # the engine's
            runtime.keep_stopping_on_signals()
            assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        runtime._COMMAND_STOP = None
        for name, handler in before.items():
            signal.signal(name, handler)
    with capture_sigterm():  # a served run: no command handler, the engine's stays
        engine = signal.getsignal(signal.SIGTERM)
        runtime.keep_stopping_on_signals()
        assert signal.getsignal(signal.SIGTERM) is engine


def start_ui() -> tuple[subprocess.Popen, int]:
    """``handbooster ui`` on a free port, in a session of its own, once it says where it serves."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    ui = subprocess.Popen([str(Path(sys.executable).with_name("handbooster")), "ui", "--port", str(port)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert "Prefect UI: http://127.0.0.1" in ui.stdout.readline()
    return ui, port


def test_sigterm_ends_the_ui_and_its_server():
    import psutil

    ui, _ = start_ui()
    try:
        children = _descendants(ui.pid)
        assert children
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)


def test_a_stage_form_shows_its_inputs_first_and_only_the_sections_it_reads():
    from prefect.utilities.callables import parameter_schema

    from flows.launch import stage_flow
    from flows.stages import load_stage

    schema = parameter_schema(stage_flow("sample").fn)
    assert [name for name, _ in sorted(schema.properties.items(), key=lambda item: item[1]["position"])] == \
        ["inputs", "out", "config"]
    config = schema.definitions["sample_config"]["properties"]
    assert set(config) == {"seed", "run", "sampling", "data", "hand"}
    assert {section.split(".")[0] for section in load_stage("sample").sections} | {"seed", "run"} == set(config)


def _listening(processes) -> list[tuple[str, str]]:
    """(process name, address) of every TCP socket ``processes`` listen on."""
    import psutil

    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            found += [(process.name(), c.laddr.ip) for c in process.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
    return found


def _loopback(ip: str) -> bool:
    return ip.removeprefix("::ffff:") in ("127.0.0.1", "::1")


def test_the_local_dask_cluster_listens_on_loopback_and_gives_its_workers_time_to_exit():
    """The Dask runner's nannies wait NANNY_CLOSE_TIMEOUT_S (not Dask's 5 s) for a worker process
    to go: on a loaded machine a finished run otherwise exited 1 while its cluster closed. Its
    scheduler, nanny and worker listen on 127.0.0.1 only. Its workers are not daemons, so that a
    stage in one may start processes (render workers, data loaders)."""
    import multiprocessing

    import psutil

    from flows.runtime import patient_nanny, task_runner

    runner = task_runner("dask", 1)
    with runner:
        assert runner.client.submit(sum, [1, 2]).result() == 3  # the cluster starts on the first use
        assert runner.client.submit(lambda: multiprocessing.current_process().daemon).result() is False
        nannies = list(runner._cluster.workers.values())
        assert nannies and all(isinstance(nanny, patient_nanny()) for nanny in nannies)
        listening = _listening([psutil.Process(), *_descendants(os.getpid())])
    assert all(nanny.status.name == "closed" for nanny in nannies)
    assert listening and all(_loopback(ip) for _, ip in listening), listening


def test_relative_paths_mean_the_same_files_to_workers_started_in_another_folder(prefect_api, tiny_demo, tmp_path,
                                                                                monkeypatch):
    """A Dask cluster at --address runs its tasks in the folder its workers were started in: the
    run's relative output and input paths name the files of the folder the command was typed in."""
    from distributed import LocalCluster

    from flows.launch import run_flow
    from pipeline.config import PipelineConfig

    root, _ = tiny_demo
    (tmp_path / "workers").mkdir()
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "data").symlink_to(root / "demo")
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the workers report to the test server
    monkeypatch.chdir(tmp_path / "workers")
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        monkeypatch.chdir(tmp_path / "here")
        summary = run_flow("merge", PipelineConfig(), "merged", "dask", address=cluster.scheduler_address,
                           inputs={"datasets": ["data/s0_test"], "name": "tests"}, echo=False)
    assert summary["out"] == str(tmp_path / "here" / "merged") and summary["rows"] > 0
    assert (tmp_path / "here" / "merged" / ".manifest.json").exists() and not os.listdir(tmp_path / "workers")


@pytest.mark.skipif(importlib.util.find_spec("prefect_ray") is None, reason="needs the ray extra")
def test_the_local_ray_instance_listens_on_loopback_only():
    """Ray's own servers (GCS, raylet, agents) listen on every interface unless started in its
    loopback mode; a run without --address starts them so. The suite cannot run this where
    the ray extra is not installed (CI)."""
    import psutil

    from flows.runtime import RAY_LOOPBACK

    script = ("from flows.runtime import task_runner\nimport json, psutil\n"
              "with task_runner('ray', 1):\n"
              "    import ray\n"
              "    ray.get(ray.remote(lambda: 0).remote())\n"
              "    print(json.dumps([c.pid for c in psutil.Process().children(recursive=True)]), flush=True)\n"
              "    input()\n")
    env = {key: value for key, value in os.environ.items() if key != RAY_LOOPBACK[0]}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).parents[2])
    try:
        pids = json.loads(process.stdout.readline())
        listening = _listening([psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)])
    finally:
        process.communicate("\n", timeout=120)
    assert listening and all(_loopback(ip) for _, ip in listening), listening


@pytest.fixture
def fake_prefect_ray(monkeypatch):
    """prefect_ray stood in by a module that records what the runner is given and the loopback
    setting as the runner imports it (Ray reads it at its own import): for the suite without the extra."""
    import types

    from flows.runtime import RAY_LOOPBACK

    seen = {}

    class RayTaskRunner:
        def __init__(self, address=None, init_kwargs=None):
            seen["address"], seen["init_kwargs"] = address, init_kwargs

    def module_attribute(name):
        seen["at import"] = os.environ.get(RAY_LOOPBACK[0])
        if name != "RayTaskRunner":
            raise AttributeError(name)
        return RayTaskRunner

    fake = types.ModuleType("prefect_ray")
    fake.__getattr__ = module_attribute
    monkeypatch.setitem(sys.modules, "prefect_ray", fake)
    monkeypatch.setenv(RAY_LOOPBACK[0], "")  # put back as it was after the test
    monkeypatch.delenv(RAY_LOOPBACK[0])
    return seen


def test_the_ray_runner_asks_for_loopback_before_ray_is_imported(fake_prefect_ray):
    from flows.runtime import RAY_LOOPBACK, task_runner

    seen = fake_prefect_ray
    task_runner("ray", 1, address="auto")
    assert {k: seen[k] for k in ("address", "at import")} == {"address": "auto", "at import": None}
    task_runner("ray", 1)  # a remote cluster is left as it is; a local one listens on loopback
    assert seen["at import"] == RAY_LOOPBACK[1]


def test_ray_workers_compute_and_log_as_the_command_does(fake_prefect_ray, prefect_api):
    """A local Ray instance's workers start with this process's thread count (the thread runner's
    float sums), its API, and Prefect's console lines off: before, a bad input under Ray printed
    every worker's Prefect lines and the task's traceback on the terminal, as Dask's did. A
    cluster's workers (at --address) stream their lines to the terminal too: theirs are off as
    well, and they get the API only where one is set (checked by hand on a `ray start` head)."""
    import torch

    from flows.runtime import task_runner

    quiet = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}
    task_runner("ray", 2)
    threads = str(torch.get_num_threads())
    assert fake_prefect_ray["init_kwargs"]["num_cpus"] == 2
    assert fake_prefect_ray["init_kwargs"]["runtime_env"]["env_vars"] == {
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
        "PREFECT_API_URL": prefect_api, **quiet}
    task_runner("ray", 2, address="auto")
    assert fake_prefect_ray["address"] == "auto" and "num_cpus" not in fake_prefect_ray["init_kwargs"]
    assert fake_prefect_ray["init_kwargs"]["runtime_env"]["env_vars"] == {"PREFECT_API_URL": prefect_api, **quiet}


def test_an_unreachable_ray_head_is_one_line_at_once(fake_prefect_ray):
    """Ray retried an address where nothing listens for minutes, printing a warning every few
    seconds; the runner now tries it first, as it does a Dask scheduler's."""
    from flows.runtime import task_runner
    from pipeline.errors import MissingResource

    started = time.perf_counter()
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        with pytest.raises(MissingResource, match=f"--address {address}: no Ray head answers there"):
            task_runner("ray", 1, address=address)
    with pytest.raises(MissingResource, match="expected HOST:PORT, ray://HOST:PORT or auto of a Ray head"):
        task_runner("ray", 1, address="head")
    assert time.perf_counter() - started < 5 and "address" not in fake_prefect_ray


@pytest.mark.skipif(importlib.util.find_spec("prefect_ray") is None, reason="needs the ray extra")
def test_a_bad_input_under_ray_is_one_line_on_the_terminal(prefect_api, tmp_path):
    (tmp_path / "not_a_dataset").mkdir()
    done = subprocess.run([str(Path(sys.executable).with_name("handbooster")), "run", "conditions", "--runner", "ray",
                           "--input", "dataset=not_a_dataset", "--out", "maps"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PREFECT_API_URL": prefect_api})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "no .manifest.json" in done.stderr
    assert "Task run" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
