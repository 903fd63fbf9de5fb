"""``python -m flows.watchdog PID``: end a command's processes when the command is killed outright.

A command's signal handler (:func:`flows.runtime.stop_on_signals`) ends the processes it
started, but SIGKILL and the kernel's OOM killer run no handler, and the Prefect API server,
Dask workers and their worker processes would live on without it. This small process, started
by the command, notes the command's descendants every second; once the command is gone (this
process is then re-parented), it ends the ones it last saw: SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import os
import signal
import sys
import time

CHECK_S = 1.0
GRACE_S = 3.0


def watch(command_pid: int) -> None:
    import psutil

    try:
        command = psutil.Process(command_pid)
    except psutil.NoSuchProcess:
        return
    print("watching", flush=True)  # the command waits for this line before it starts anything
    seen: list = []
    while os.getppid() == command_pid:
        try:
            now = [process for process in command.children(recursive=True) if process.pid != os.getpid()]
        except psutil.Error:
            break
        if os.getppid() != command_pid:  # the command died while it was listed: keep the last full list
            break
        seen = now
        time.sleep(CHECK_S)
    end_processes(seen)


def end_processes(processes: list, grace_s: float = GRACE_S) -> None:
    """SIGTERM to each of ``processes`` (psutil ones), then SIGKILL to those still there after
    ``grace_s``. psutil checks each is still the process listed, not a reused pid."""
    import psutil

    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the terminal's group is the command's to handle
    watch(int(sys.argv[1]))
