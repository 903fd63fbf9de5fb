"""``handbooster ui``: a Prefect server on 127.0.0.1 serving a deployment of every flow.

The server runs as a child process with the project's own ``PREFECT_HOME`` (the run history
the CLI's runs wrote is there too); this process serves the deployments (``boost`` and one
per stage), whose parameter forms come from the pydantic models: every field with its
description and default. Ctrl-C stops both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flows.runtime import prepare_environment, quiet_logging, stop_on_signals

prepare_environment()

from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.errors import MissingResource  # noqa: E402

HEALTH_TIMEOUT_S = 180


def start_server(host: str, port: int, log: Path) -> subprocess.Popen:
    """``prefect server start`` as a child process; returns once its API answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
                               stdout=handle, stderr=subprocess.STDOUT,
                               env={**os.environ, "PREFECT_API_URL": "", "PREFECT_UI_API_URL": f"http://{host}:{port}/api"})
    deadline = time.time() + HEALTH_TIMEOUT_S
    while time.time() < deadline:
        if process.poll() is not None:
            raise MissingResource(f"the Prefect server stopped at start (exit {process.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/api/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise MissingResource(f"the Prefect server did not answer on {host}:{port} within {HEALTH_TIMEOUT_S} s; see {log}")


def deployments(out_root: str = "out/ui") -> list:
    """A deployment of ``boost`` and of every stage, with defaults a form can start from. The
    flows validate their parameters themselves, so a bad one fails the run with the message
    the command line prints for it."""
    from flows.launch import all_flows, form_config
    from flows.stages import load_stage

    found = []
    for name, flow in all_flows().items():
        model = PipelineConfig if name == "boost" else form_config(load_stage(name))
        parameters = {"config": model().model_dump(mode="json"), "out": f"{out_root}/{name}"}
        found.append(flow.to_deployment(name=name, parameters=parameters, description=flow.description,
                                        tags=["handbooster"], enforce_parameter_schema=False))
    return found


def serve_ui(host: str = "127.0.0.1", port: int = 4200, log_dir: Path | None = None) -> None:
    """Start the server, serve every deployment, print the URL; blocks until Ctrl-C."""
    from prefect import serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.paths import cache_dir

    log_dir = log_dir or cache_dir("prefect")
    stop_on_signals()  # Ctrl-C or SIGTERM: the server child ends with this process
    server = start_server(host, port, log_dir / "server.log")
    try:
        with temporary_settings({PREFECT_API_URL: f"http://{host}:{port}/api"}):
            quiet_logging(log_dir / "serve.log")
            print(f"Prefect UI: http://{host}:{port}  (deployments: boost and one per stage; Ctrl-C stops)", flush=True)
            serve(*deployments(), print_starting_message=False)
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
