"""The one parallel map: spawned worker processes, results in input order, a progress bar.

Spawned, not forked: a forked child inherits the parent's GL contexts, torch thread pools
and open files, and can hang in them. Work that needs state (a hand model, a renderer, a
physics world) passes ``make_worker``: each process then builds one worker
``make_worker(*worker_args)`` and calls it on every item it gets. A spawned process keeps its
worker in a global of its own; when the items run in the calling process, the worker is this
call's own, so threads that map side by side (a flow's tasks) never share one. Results come
back in the order of ``items``, so what a caller writes does not depend on which worker was faster.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm import tqdm

_WORKER: Callable[[Any], Any] | None = None  # a spawned process's own worker


def _start_worker(make_worker: Callable[..., Callable], worker_args: tuple) -> None:
    global _WORKER
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
        if workers > 0 and len(items) > 1:
            with ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("spawn"),
                                     initializer=None if make_worker is None else _start_worker,
                                     initargs=() if make_worker is None else (make_worker, worker_args)) as pool:
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
