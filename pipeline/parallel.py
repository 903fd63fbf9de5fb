"""The one parallel map: spawned worker processes, results in input order, a progress bar.

Spawned, not forked: a forked child inherits the parent's GL contexts, torch thread pools
and open files, and can hang in them. Each worker runs ``initializer(*initargs)`` once (load a
hand model, open a renderer) and then ``func`` on chunks of items. Results come back in the
order of ``items``, so what a caller writes does not depend on which worker was faster.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm import tqdm


def parallel_map(func: Callable[[Any], Any], items: Iterable, *, workers: int = 0, desc: str = "",
                 unit: str = "it", progress: bool = True, initializer: Callable | None = None,
                 initargs: tuple = (), chunksize: int = 8, total: int | None = None) -> Iterator:
    """Yield ``func(item)`` for every item, in order; ``workers`` > 0 runs them in that many
    spawned processes (each first calling ``initializer(*initargs)``), 0 in this one."""
    items = list(items)
    bar = tqdm(total=len(items) if total is None else total, desc=desc, unit=unit, disable=not progress)
    try:
        if workers > 0 and len(items) > 1:
            with ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("spawn"),
                                     initializer=initializer, initargs=initargs) as pool:
                for result in pool.map(func, items, chunksize=max(1, chunksize)):
                    bar.update()
                    yield result
        else:
            if initializer is not None:
                initializer(*initargs)
            for item in items:
                result = func(item)
                bar.update()
                yield result
    finally:
        bar.close()
