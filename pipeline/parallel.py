"""The one parallel map: spawned worker processes, results in input order, a progress bar.

Spawned, not forked: a forked child inherits the parent's GL contexts, torch thread pools
and open files, and can hang in them. Work that needs state (a hand model, a renderer, a
physics world) passes ``make_worker``: each process then builds one worker
``make_worker(*worker_args)`` and calls it on every item it gets. A spawned process keeps its
worker in a global of its own; when the items run in the calling process, the worker is this
call's own, so threads that map side by side (a flow's tasks) never share one. Results come
back in the order of ``items``, so what a caller writes does not depend on which worker was faster.
A worker ends itself when the process that started it is gone: a caller killed outright (SIGKILL,
the kernel's OOM killer) cannot end its workers, and they would otherwise wait on their queue
forever, holding their memory. A daemonic process (a Dask worker, by Dask's default) may not
start processes at all: there the items run in the process itself, and a warning says so.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm import tqdm

_WORKER: Callable[[Any], Any] | None = None  # a spawned process's own worker
PARENT_CHECK_S = 1.0


def can_start_processes(what: str, count: int) -> bool:
    """Whether this process may start ``count`` > 0 child processes for ``what``; a daemonic one
    may not (multiprocessing refuses), and the caller then does the work in this process."""
    if count <= 0 or not multiprocessing.current_process().daemon:
        return count > 0
    logging.getLogger(__name__).warning(
        "%s: this process is a daemon (as Dask starts its workers), which may not start processes; the work "
        "runs in this process instead of %d (start Dask workers with DASK_DISTRIBUTED__WORKER__DAEMON=False)",
        what, count)
    return False


def _exit_with_parent(parent_pid: int) -> None:
    """A daemon thread that ends this process once its parent is gone (it is then re-parented)."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_worker(parent_pid: int, make_worker: Callable[..., Callable] | None, worker_args: tuple) -> None:
    global _WORKER
    _exit_with_parent(parent_pid)
    if make_worker is None:
        return
    import torch

    os.environ["LP_NUM_THREADS"] = "1"  # one llvmpipe and one torch thread per process: the processes use the cores
    torch.set_num_threads(1)
    _WORKER = make_worker(*worker_args)


def _call_worker(item):
    return _WORKER(item)


def parallel_map(func: Callable[[Any], Any] | None, items: Iterable, *, workers: int = 0, desc: str = "",
                 unit: str = "it", progress: bool = True, make_worker: Callable[..., Callable] | None = None,
                 worker_args: tuple = (), chunksize: int = 8, total: int | None = None) -> Iterator:
    """Yield the result of every item, in order: ``func(item)``, or with ``make_worker`` (and
    ``func`` None) each process's worker's. ``workers`` > 0 runs them in that many spawned
    processes, 0 in this one; a worker with a ``close`` method is closed when this one's is done."""
    if (func is None) == (make_worker is None):
        raise ValueError("parallel_map takes either func or make_worker")
    items = list(items)
    bar = tqdm(total=len(items) if total is None else total, desc=desc, unit=unit, disable=not progress)
    try:
        if len(items) > 1 and can_start_processes(desc or "parallel map", workers):
            with ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_start_worker, initargs=(os.getpid(), make_worker, worker_args)) as pool:
                for result in pool.map(func or _call_worker, items, chunksize=max(1, chunksize)):
                    bar.update()
                    yield result
        else:
            worker = func or make_worker(*worker_args)
            try:
                for item in items:
                    result = worker(item)
                    bar.update()
                    yield result
            finally:
                if func is None and hasattr(worker, "close"):
                    worker.close()
    finally:
        bar.close()
