"""How the Prefect flows run here: offline and quiet, on threads, Dask or Ray, and after a crash.

- Environment (set before Prefect is imported): Prefect's own folder under the project cache
  (``PREFECT_HOME``), no telemetry or analytics, a generous start-up time for the temporary
  API server a CLI run starts when no ``PREFECT_API_URL`` is set.
- Task runners: ``thread`` (Prefect's ThreadPoolTaskRunner), ``dask`` (prefect-dask on a
  LocalCluster of single-threaded worker processes, or the scheduler at ``address``), ``ray``
  (prefect-ray, an optional extra: ``pip install 'handbooster[ray]'``). The local clusters
  listen on 127.0.0.1 only: Dask's does by default; Ray's local instance would listen on every
  interface (its GCS, raylet and agents), so it is started in the loopback mode Ray uses on
  macOS and Windows (:data:`RAY_LOOPBACK`).
- Logs: the terminal shows warnings and the CLI's own lines; everything Prefect logs goes to
  ``OUT/flow.log`` and to the API (the UI).
- A flow run killed with SIGKILL stays RUNNING in the API; runs carry the process that ran
  them as a tag (``pid:N@host``), and the next run marks such runs whose process is gone as
  CRASHED before it starts.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from flows.watchdog import GRACE_S, end_processes

RUNNERS = ("thread", "dask", "ray")
# Ray reads this when it is imported: 0 puts a local instance's servers on the loopback address.
RAY_LOOPBACK = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def prepare_environment() -> None:
    """Offline, quiet Prefect defaults (an existing setting in the environment wins)."""
    from pipeline.paths import cache_dir

    defaults = {
        "PREFECT_HOME": str(cache_dir("prefect")),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def task_runner(kind: str, workers: int, address: str | None = None):
    """The task runner of ``kind`` with ``workers`` parallel workers (at least one)."""
    workers = max(1, workers)
    if kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        import dask
        from prefect_dask import DaskTaskRunner

        if address:
            reachable(address)
            return DaskTaskRunner(address=address)
        # The workers are not daemons, so that a stage in one may start its worker processes and data loaders.
        dask.config.set({"distributed.worker.daemon": False,
                         "distributed.nanny.pre-spawn-environ": {**worker_environment(), "MALLOC_TRIM_THRESHOLD_": "65536"}})
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                              "worker_class": patient_nanny(), "dashboard_address": None})
    if kind == "ray":
        if not address:
            os.environ.setdefault(*RAY_LOOPBACK)
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            from pipeline.errors import MissingResource

            raise MissingResource("the ray runner needs prefect-ray: pip install 'handbooster[ray]'") from None
        if address and address != "auto":  # auto: the cluster `ray start` left on this machine
            reachable(address, "Ray head", "HOST:PORT, ray://HOST:PORT or auto")
        quiet = {"logging_level": logging.WARNING, "runtime_env": {"env_vars": worker_environment(local=not address)}}
        if address:  # a cluster's workers stream their lines to this terminal too
            return RayTaskRunner(address=address, init_kwargs=quiet)
        return RayTaskRunner(init_kwargs={"num_cpus": workers, "include_dashboard": False, **quiet})
    raise ValueError(f"unknown runner {kind!r}; expected one of {', '.join(RUNNERS)}")


def worker_environment(local: bool = True) -> dict[str, str]:
    """What the workers of a local Dask or Ray cluster start with: this process's thread count (float
    sums, and so the bytes, match the thread runner's), the API this process reports to, and
    Prefect's console lines off (the terminal is the command's, as with threads: before, a bad input
    under Dask or Ray printed every worker's Prefect lines and the task's traceback there). A Ray
    cluster's (``local=False``), on other machines: the console setting, and the API only where
    one is set (the temporary server of this process is not theirs to reach)."""
    quiet = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}
    if not local:
        from prefect.settings import PREFECT_API_URL

        return {**quiet, "PREFECT_API_URL": PREFECT_API_URL.value()} if PREFECT_API_URL.value() else quiet
    import torch

    threads = str(torch.get_num_threads())
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
            "PREFECT_API_URL": flow_api_url(), **quiet}


def flow_api_url() -> str:
    """The API this process reports to: ``PREFECT_API_URL``, or the temporary server Prefect starts
    without one. Worker processes are given it: on their own, each would start a temporary server
    of its own, another writer of the same database (benchmarks/RESULTS.md: a reused make demo run
    under Dask took 77 s with the two workers' servers, 48-54 s without)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return PREFECT_API_URL.value()
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one Prefect's clients in this process use; started once
    server.start()
    return server.api_url


NANNY_CLOSE_TIMEOUT_S = 60.0


@functools.cache
def patient_nanny():
    """Dask's Nanny, waiting up to ``NANNY_CLOSE_TIMEOUT_S`` for its worker process to exit when the
    cluster closes. Dask's own 5 s ran out on a loaded 2-core machine: a worker that had finished
    every task took longer to be reaped, and the finished run exited 1 with a TimeoutError."""
    from distributed import Nanny

    class PatientNanny(Nanny):
        async def close(self, timeout: float = NANNY_CLOSE_TIMEOUT_S, reason: str = "nanny-close"):
            return await super().close(timeout=max(timeout, NANNY_CLOSE_TIMEOUT_S), reason=reason)

    return PatientNanny


def reachable(address: str, what: str = "scheduler", form: str = "[tcp://]HOST:PORT", timeout_s: float = 5.0) -> None:
    """A cluster's ``address`` answers a TCP connection, or a one-line error (before Dask's own
    30 s timeout and traceback, or Ray's retrying for minutes)."""
    from urllib.parse import urlsplit

    from pipeline.errors import MissingResource

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise MissingResource(f"--address {address!r}: expected {form} of a {what}")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise MissingResource(f"--address {address}: no {what} answers there ({exc.strerror or exc})") from None


def in_worker_processes(kind: str) -> bool:
    """Whether tasks run in processes of their own (Dask, Ray) rather than threads of the flow's."""
    return kind in ("dask", "ray")


def process_tag() -> str:
    return f"pid:{os.getpid()}@{socket.gethostname()}"


def quiet_logging(log_file: Path | None) -> logging.Handler | None:
    """Prefect's console lines off (a failure reaches the user as the CLI's error); everything into
    ``log_file`` (the handler is returned, for the caller to remove when its run ends)."""
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler":
            handler.setLevel(logging.CRITICAL)  # failures reach the user as the CLI's one-line error
    for name in ("prefect", "distributed", "ray", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.INFO if name == "prefect" else logging.WARNING)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        return handler
    return None


def crash_stale_runs() -> list[str]:
    """Mark RUNNING flow runs of this host whose process is gone as CRASHED; returns their names."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    host = socket.gethostname()
    crashed = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.RUNNING]))))
        for run in runs:
            tags = [t for t in run.tags if t.startswith("pid:") and t.endswith(f"@{host}")]
            if not tags:
                continue
            pid = int(tags[0][4:].split("@")[0])
            if pid != os.getpid() and not _alive(pid):
                client.set_flow_run_state(run.id, Crashed(message=f"process {pid} ended without finishing the run"),
                                          force=True)
                crashed.append(run.name)
    return crashed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_children(grace_s: float = GRACE_S) -> None:
    """SIGTERM to every process this one started (the Prefect API server, Dask workers, the UI's
    server), then SIGKILL to those still there after ``grace_s``."""
    import psutil

    end_processes(psutil.Process().children(recursive=True), grace_s)


_COMMAND_STOP = None  # the handler stop_on_signals set in this process, if any


def stop_on_signals() -> None:
    """One Ctrl-C (SIGINT) or SIGTERM ends this command within seconds, with every process it
    started; so does a SIGKILL, through :mod:`flows.watchdog`. What the stages finished stays
    (they write under temporary names and rename, and the folder locks die with the process), so
    the same command run again resumes; the flow run this one leaves RUNNING in the API is marked
    crashed by the next run."""

    terminal = os.dup(2)  # the message must reach the terminal even while native output is silenced (fd 2 moved)

    def stop(signum, _frame):
        for name in (signal.SIGINT, signal.SIGTERM):
            signal.signal(name, signal.SIG_IGN)
        os.write(terminal, f"\nstopping ({signal.Signals(signum).name}): ending the run and the processes it "
                           "started; the same command resumes it\n".encode())
        end_children()
        os._exit(128 + signum)

    global _COMMAND_STOP
    _COMMAND_STOP = stop
    for name in (signal.SIGINT, signal.SIGTERM):
        signal.signal(name, stop)
    start_watchdog()


@functools.cache
def start_watchdog() -> subprocess.Popen:
    """:mod:`flows.watchdog` for this process, once: for a SIGKILL, which no handler sees. Returns
    once it watches (or has failed), so that every process started after this call is seen."""
    watchdog = subprocess.Popen([sys.executable, "-m", "flows.watchdog", str(os.getpid())], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watchdog.stdout.readline()
    watchdog.stdout.close()
    return watchdog


def keep_stopping_on_signals() -> None:
    """Called first in a flow run. Prefect's flow engine swaps in its own SIGTERM handler, which
    ends the run only once the running tasks finish (a reconstructor training: minutes); where
    the command set :func:`stop_on_signals`'s handler, it is put back, so a SIGTERM ends the
    command at once. Served runs keep Prefect's (its runner cancels them with SIGTERM)."""
    import threading

    if _COMMAND_STOP is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _COMMAND_STOP)
