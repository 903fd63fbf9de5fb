"""The one parallel map: results in input order, and a stateful worker that belongs to its process
or, in this process, to its call (a flow's threads map side by side)."""

import subprocess
import sys
import textwrap
import threading

import pytest

from pipeline.parallel import PARENT_CHECK_S, parallel_map

from conftest import assert_kill_leaves_no_process


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


def _run_script(script: str, output=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=output, stderr=output, text=True)


def test_workers_end_when_their_caller_is_killed_outright():
    """SIGKILL (or the OOM killer) runs no handler in the caller; its spawned workers notice they
    were re-parented and end, where they used to wait on their queue for ever."""
    caller = _run_script("""
        import time
        from pipeline.parallel import parallel_map
        list(parallel_map(time.sleep, [120, 120], workers=2, progress=False, chunksize=1))
    """, output=subprocess.DEVNULL)  # workers left behind would hold a pipe open
    assert_kill_leaves_no_process(caller, 2, settle_s=2 * PARENT_CHECK_S,  # their initialisers have run
                                  select=lambda process: "spawn_main" in " ".join(process.cmdline()))


def test_a_daemonic_process_maps_and_loads_batches_in_itself():
    """A Dask worker is a daemonic process by default, which may not start processes: the map and
    the data loader then work in it, with a warning, instead of failing."""
    script = _run_script("""
        import multiprocessing
        from pipeline.parallel import parallel_map

        def work(queue):
            from pipeline.training import data_loader
            batches = [batch.tolist() for batch in data_loader(list(range(4)), batch_size=2, num_workers=2)]
            queue.put((list(parallel_map(abs, [-1, -2, -3], workers=2, progress=False)), batches))

        if __name__ == "__main__":
            context = multiprocessing.get_context("fork")  # a fresh process: nothing to inherit but this
            queue = context.Queue()
            context.Process(target=work, args=(queue,), daemon=True).start()
            print(queue.get(timeout=120))
    """)
    out, err = script.communicate(timeout=180)
    assert script.returncode == 0, err[-2000:]
    assert out.strip() == "([1, 2, 3], [[0, 1], [2, 3]])"
    assert err.count("this process is a daemon") == 2
