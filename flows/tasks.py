"""The one Prefect task: run a stage on a batch, passing configs and paths, never arrays.

Reuse is the stage's own: a stage whose output folder holds a finished run of the same
identity (config sections, input content fingerprints, code version) returns that run's
summary marked ``reused``, so Prefect's result cache is off (its default keys include the run
id, and its input hashing sees path strings, not what the files hold).
"""

from __future__ import annotations

from flows.runtime import prepare_environment

prepare_environment()

from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402


@task(cache_policy=NO_CACHE, task_run_name="{label}")
def run_stage(label: str, stage: str, config: dict, inputs: dict, out: str, threads: int | None = None) -> dict:
    """``stage(config, inputs, out)`` computing on ``threads`` torch threads (the flow's count: a
    runner's thread starts with the machine's default, and float sums follow the thread count);
    returns its summary as JSON values."""
    from flows.stages import load_stage

    if threads:
        import torch

        torch.set_num_threads(threads)
    return load_stage(stage)(config, inputs, out).model_dump(mode="json")


def flow_threads() -> int:
    """The torch thread count of the calling (flow) thread, for :func:`run_stage`."""
    import torch

    return torch.get_num_threads()
