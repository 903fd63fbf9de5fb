import atexit
import os
import shutil
import tempfile
from contextlib import contextmanager

# Hermetic caches: every test session builds what it needs (the builtin hand takes seconds). The process that
# makes the folder (the xdist controller; its workers inherit it) removes it when it exits.
if "HANDBOOSTER_CACHE" not in os.environ:
    os.environ["HANDBOOSTER_CACHE"] = tempfile.mkdtemp(prefix="handbooster-cache-")
    atexit.register(shutil.rmtree, os.environ["HANDBOOSTER_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker (more only spin against the other worker); HANDBOOSTER_TEST_THREADS
    # runs the suite on another float path (the suite must pass on any thread count)
    torch.set_num_threads(int(os.environ.get("HANDBOOSTER_TEST_THREADS", "1")))


def pytest_collection_modifyitems(items):
    """The tests that need no tiny demo run first, and within each part the ``slow`` ones first (a
    stable sort). While one xdist worker builds the demo for its first test (the Prefect group,
    the largest unit, goes out first), the other runs tests instead of waiting on the demo's
    lock; and the long tests start before their part's short ones, which then fill in beside
    them, so less of the run is one worker alone."""
    items.sort(key=lambda item: ("tiny_demo" in getattr(item, "fixturenames", ()),
                                 item.get_closest_marker("slow") is None))


@pytest.fixture(scope="session")
def hand_model():
    from pipeline.hand import load_hand_model

    return load_hand_model("builtin", dtype=torch.float64)


@pytest.fixture(scope="session")
def left_hand_model():
    from pipeline.hand import load_hand_model

    return load_hand_model("builtin", side="left", dtype=torch.float64)


@pytest.fixture(scope="session")
def builtin_arrays():
    from pipeline.hand.builtin import builtin_arrays

    return builtin_arrays()


def random_rotations(n: int, seed: int) -> torch.Tensor:
    """Random axis-angle vectors (n, 3) with angles up to pi."""
    from scipy.spatial.transform import Rotation

    return torch.as_tensor(Rotation.random(n, random_state=seed).as_rotvec())


NO_WORK_SECONDS = 5.0  # "a second or two" on the 2-core machine, with room for a busy CI runner


def expect_one_line_error(argv, capsys, *needles, within_s: float | None = NO_WORK_SECONDS) -> str:
    """Run the command line: exit 2 with one ``error:`` line holding every needle, no traceback,
    within ``within_s`` (it failed before doing the work; None: a failure that comes mid-work)."""
    import time

    from flows.cli import main

    capsys.readouterr()
    started = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # progress bars may come before
    assert len(errors) == 1 and "Traceback" not in err and err.rstrip().endswith(errors[0]), err
    err = errors[0]
    for needle in needles:
        assert needle in err, (needle, err)
    assert within_s is None or seconds < within_s, f"{argv[:2]} took {seconds:.1f} s before failing: it did work first"
    return err


def assert_kill_leaves_no_process(command, children: int, settle_s: float, select=None) -> None:
    """Once ``command`` (a Popen) has ``children`` child processes (those ``select`` picks) and
    ``settle_s`` more seconds have passed, SIGKILL it, which runs no handler; each of those
    children must be gone within 15 s."""
    import time

    import psutil

    try:
        deadline, found = time.time() + 60, []
        while time.time() < deadline and len(found) < children:
            found = [p for p in psutil.Process(command.pid).children() if select is None or select(p)]
            time.sleep(0.2)
        assert len(found) == children, found
        time.sleep(settle_s)
    finally:
        command.kill()
        command.wait()
    _, alive = psutil.wait_procs(found, timeout=15)
    assert not alive, [p.cmdline() for p in alive]


def make_config(overrides: dict | None = None, base=None):
    """A PipelineConfig with dotted keys set (``{"data.image_size": 64}``), quiet and in-process
    unless the test says otherwise."""
    from pipeline.config import PipelineConfig, with_overrides

    defaults = {"run.progress": False, "run.workers": 0}
    return with_overrides(base or PipelineConfig(), {**defaults, **(overrides or {})}, source="test")


@contextmanager
def shared_folder(tmp_path_factory, name: str):
    """A folder every xdist worker of the session sees, held under a lock while the block runs:
    the first worker builds what goes in it, the others wait and find it finished (a stage
    reuses a finished run), so a fixture is built once per session, not once per worker."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    with FileLock(f"{folder}.lock"):
        yield folder


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """One tiny demo dataset per test session (seed 3), shared by the xdist workers."""
    from flows.stage import DemoInputs, demo

    with shared_folder(tmp_path_factory, "shared-demo") as root:
        result = demo(make_config({"seed": 3, "demo.size": "tiny"}), DemoInputs(registry=str(root / "registry")),
                      root / "demo")
    return root, result


@pytest.fixture(scope="session")
def prefect_api():
    """A Prefect test server for the session (its own PREFECT_HOME under the test cache); the URL
    subprocesses can be pointed at."""
    from flows.runtime import prepare_environment

    prepare_environment()
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()
