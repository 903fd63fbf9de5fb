import os
import tempfile

# Hermetic caches: every test session builds what it needs (the builtin hand takes seconds).
os.environ.setdefault("HANDBOOSTER_CACHE", tempfile.mkdtemp(prefix="handbooster-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one thread per xdist worker: more only spin against the other worker


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


def make_config(overrides: dict | None = None, base=None):
    """A PipelineConfig with dotted keys set (``{"data.image_size": 64}``), quiet and in-process
    unless the test says otherwise."""
    from pipeline.config import PipelineConfig, with_overrides

    defaults = {"run.progress": False, "run.workers": 0}
    return with_overrides(base or PipelineConfig(), {**defaults, **(overrides or {})}, source="test")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """One tiny demo dataset per test session (seed 3): the first xdist worker builds it, the
    others wait on the lock and find it finished (the demo stage reuses a finished run)."""
    from filelock import FileLock

    from flows.stage import DemoInputs, demo

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-demo"
    root.mkdir(exist_ok=True)
    with FileLock(f"{root}.lock"):
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
