"""Starting a flow: a flow per stage and ``boost``, on the runner asked for, from the CLI or the UI.

``stage_flow(name)`` is the Prefect flow of one stage: its parameters are the pipeline config,
the stage's inputs model and the output folder, so the UI shows a form with every field's
description and default. ``run_flow`` runs one of them (or ``boost``) in this process, with
the task runner asked for, tagged with this process so that a later run can mark it crashed
if the process is killed.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from flows.runtime import (
    crash_stale_runs,
    keep_stopping_on_signals,
    prepare_environment,
    process_tag,
    quiet_logging,
    task_runner,
)

prepare_environment()

from prefect import flow, tags  # noqa: E402

from flows.boost import STEP_LABEL_WIDTH, boost  # noqa: E402
from flows.stages import STAGES, load_stage  # noqa: E402
from flows.tasks import flow_threads, run_stage  # noqa: E402
from pipeline.config import PipelineConfig, absolute_path, absolute_paths  # noqa: E402
from pipeline.errors import InputError  # noqa: E402
from pipeline.paths import FLOW_LOG  # noqa: E402
from pipeline.stage import URI_OUTPUT_HINT  # noqa: E402
from pipeline.storage import refuse_uri  # noqa: E402


def form_config(stage) -> type:
    """The config model of a stage's form: ``seed``, ``run`` and the sections the stage reads
    (those its identity names), each with its defaults and descriptions; nothing else."""
    from pydantic import create_model

    names = ["seed", "run", *dict.fromkeys(section.split(".")[0] for section in stage.sections)]
    fields = {name: (PipelineConfig.model_fields[name].annotation, PipelineConfig.model_fields[name])
              for name in names}
    return create_model(f"{stage.name}_config", __config__=PipelineConfig.model_config, **fields)


@functools.cache
def stage_flow(name: str):
    """The flow running the stage ``name`` as one task; parameters: its inputs, out, and config
    (the sections it reads; a full config is accepted too)."""
    stage = load_stage(name)

    def run(inputs, out, config):
        keep_stopping_on_signals()
        config, inputs = stage.coerce(config, inputs)  # the CLI's validation and messages, also for the UI
        overrides = config.model_dump(mode="json", exclude_unset=True)
        return run_stage.submit(name, name, overrides, inputs.model_dump(mode="json"), out, flow_threads()).result()

    run.__doc__ = (stage.__doc__ or "").strip().splitlines()[0] if stage.__doc__ else name
    run.__annotations__ = {"inputs": stage.inputs_model, "out": str, "config": form_config(stage), "return": dict}
    run.__name__ = run.__qualname__ = f"{name}_flow"  # the module global below: served runs import it by name
    return flow(name=name.replace("_", "-"), description=run.__doc__, validate_parameters=False)(run)


for _name in STAGES:  # module globals, so that a deployment's entrypoint (flows/launch.py:NAME_flow) imports
    globals()[f"{_name}_flow"] = stage_flow(_name)


def all_flows() -> dict:
    """Every flow by its name: one per stage, and ``boost``."""
    return {"boost": boost, **{name.replace("_", "-"): stage_flow(name) for name in STAGES}}


def _drop_lone_log(out: Path, log, created: bool) -> None:
    """A run refused before it made anything leaves nothing behind: not its log, nor the folder."""
    if {p.name for p in out.iterdir()} <= {FLOW_LOG}:
        log.close()
        (out / FLOW_LOG).unlink(missing_ok=True)
        if created:
            out.rmdir()


def run_flow(what: str, config: PipelineConfig, out: str, runner: str = "thread", address: str | None = None,
             inputs: dict | None = None, echo: bool = True) -> dict:
    """Run ``boost`` or the stage ``what`` into ``out`` on ``runner``; returns its result."""
    started = time.perf_counter()
    refuse_uri(out, f"handbooster run {what} writes its log", URI_OUTPUT_HINT)  # and the boost flow its folder
    out, config = absolute_path(out), absolute_paths(config)  # the same files for a worker started elsewhere
    created = not Path(out).exists()
    log = quiet_logging(Path(out) / FLOW_LOG)
    try:
        stale = crash_stale_runs()
        if stale and echo:
            print(f"marked {len(stale)} run(s) left RUNNING by a killed process as crashed: {', '.join(stale)}")
        workers = max(1, config.run.workers)
        with tags(process_tag()):
            if what == "boost":
                result = boost.with_options(task_runner=task_runner(runner, workers, address))(
                    config=config, out=out, runner=runner, echo=echo)
            else:
                stage = load_stage(what)
                chosen = stage_flow(stage.name).with_options(task_runner=task_runner(runner, workers, address))
                result = chosen(config=config, inputs=stage.inputs_model.model_validate(inputs or {}).absolute(),
                                out=out)
    except InputError:
        _drop_lone_log(Path(out), log, created)
        raise
    finally:
        logging.getLogger().removeHandler(log)
        log.close()
    if echo:
        print(f"{'total':{STEP_LABEL_WIDTH}s} {time.perf_counter() - started:8.1f} s")
    return result
