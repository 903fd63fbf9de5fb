"""The one parallel map: results in input order, and a stateful worker that belongs to its process
or, in this process, to its call (a flow's threads map side by side)."""

import threading

import pytest

from pipeline.parallel import parallel_map


class TaggingWorker:
    """Returns (its tag, the item); waits at a barrier on its first item so that two calls overlap."""

    closed: list[str] = []

    def __init__(self, tag: str, barrier: threading.Barrier | None = None):
        self.tag, self.barrier = tag, barrier

    def __call__(self, item: int) -> tuple[str, int]:
        if self.barrier is not None and item == 0:
            self.barrier.wait(timeout=30)
        return self.tag, item

    def close(self) -> None:
        TaggingWorker.closed.append(self.tag)


def test_calls_side_by_side_in_threads_each_keep_their_own_worker():
    barrier, results = threading.Barrier(2), {}

    def run(tag):
        results[tag] = list(parallel_map(None, range(5), make_worker=TaggingWorker, worker_args=(tag, barrier),
                                         progress=False))

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("conditions", "photos")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for tag in ("conditions", "photos"):
        assert results[tag] == [(tag, item) for item in range(5)]
        assert tag in TaggingWorker.closed


def test_spawned_workers_return_every_result_in_input_order():
    assert list(parallel_map(None, range(9), workers=2, make_worker=TaggingWorker, worker_args=("spawned",),
                             progress=False, chunksize=2)) == [("spawned", item) for item in range(9)]
    assert list(parallel_map(abs, [-3, 2, -1], workers=2, progress=False)) == [3, 2, 1]


def test_it_takes_a_function_or_a_worker_not_both():
    with pytest.raises(ValueError, match="either func or make_worker"):
        list(parallel_map(abs, [1], make_worker=TaggingWorker))
