"""The ``handbooster`` command: a group per stage package, each command generated from the
stage and query tables (``flows.commands``), ``run`` (boost or any stage as a Prefect flow)
and ``ui``; user errors print one line and exit 2. ``handbooster --help`` imports no stage.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from pathlib import Path

import click

from flows import commands
from flows.commands import TableGroup, configure, emit, field_type, listed
from flows.stages import GROUPS
from pipeline.errors import InputError

# Parameters that library messages name, and the flags that set them on the command line.
FLAG_HINTS = {"overwrite=True": "--overwrite", "resume=True": "--resume"}
# Environment faults a user can fix (a read-only or full disk, a path that is a file...).
USER_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
               errno.ENAMETOOLONG}
@contextlib.contextmanager
def stdout_to_stderr(active: bool):
    """While active, send everything written to stdout, by C libraries too (pybullet prints on
    import), to stderr, and keep the real stdout for the JSON result alone."""
    try:
        real_stdout = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # replaced by a capturing stream (tests, notebooks)
        real_stdout = False
    if not (active and real_stdout):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    commands._json_stream = os.fdopen(os.dup(saved), "w")
    try:
        yield
    finally:
        sys.stdout.flush()
        commands._json_stream.close()
        commands._json_stream = None
        os.dup2(saved, 1)
        os.close(saved)


@click.group(cls=TableGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="handbooster")
def cli() -> None:
    """HandBooster: synthesise hand-object training data."""


for _group, _help in GROUPS.items():
    cli.add_command(TableGroup(_group, help=_help, prefix=_group))


def takes_list(model, key: str) -> bool:
    """Whether the inputs model's field ``key`` holds a list (given on the command line as KEY=A,B)."""
    field = model.model_fields.get(key)
    return field is not None and field_type(field.annotation)[1]


@cli.command("run")
@click.argument("what", metavar="boost|STAGE")
@click.option("--out", "out_dir", default=None, help="Run folder (boost; default out/NAME) or the stage's output.")
@click.option("--input", "inputs", multiple=True, metavar="KEY=VALUE",
              help="A single stage's inputs, e.g. --input real=DIR --input grasps=DIR (lists: KEY=A,B).")
@click.option("--runner", type=click.Choice(["thread", "dask", "ray"]), default="thread", show_default=True,
              help="thread: a thread pool in this process; dask: a LocalCluster (or --address); ray: prefect-ray.")
@click.option("--address", default=None, help="Dask scheduler or Ray cluster address (default: start one here).")
@click.option("--registry", default=None, help="boost with the demo: register it in this folder (demo-FOLDER.json).")
@click.option("--workers", type=int, default=None, help="Parallel tasks and processes (default: config run.workers).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (default: config run.device).")
@click.option("--overwrite", is_flag=True, default=None, help="Replace what holds another run in --out (a finished run of the same inputs and settings is reused).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="YAML config file.")
@click.option("--seed", type=int, default=None, help="Random seed (overrides the config's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run_command(what, out_dir, inputs, runner, address, registry, workers, device, overwrite, config_path, seed,
                as_json) -> None:
    """Run the whole pipeline (boost: real data, grasps, sampling, conditions, DDPM, generation, filter, every
    arm's reconstructors, the table) or one stage as a Prefect flow; resumable, on threads, Dask or Ray."""
    from flows.launch import run_flow
    from flows.runtime import stop_on_signals
    from pipeline.stage import preflight_output

    config = configure(config_path, seed, {"boost.registry": ("--registry", registry),
                                           "run.overwrite": ("--overwrite", overwrite),
                                           "run.workers": ("--workers", workers), "run.device": ("--device", device)})
    parsed = {}
    if what == "boost":
        if inputs:
            raise InputError("--input: boost reads its inputs from the config (boost.real, boost.tests)")
        out_dir = out_dir or str(Path("out") / config.name)
        preflight_output(out_dir, [config.boost.real] if config.boost.real != "demo" else [])
    else:
        from flows.stages import load_stage
        from pipeline.config import validate_config

        if out_dir is None:
            raise InputError("--out: a stage needs its output folder")
        inputs_model = load_stage(what).inputs_model
        for item in inputs:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise InputError(f"--input: expected KEY=VALUE, got {item!r}")
            parsed[key] = listed(f"--input {key}", value) if takes_list(inputs_model, key) else value
        preflight_output(out_dir, list(validate_config(parsed, inputs_model, "--input").input_paths().values()))
    stop_on_signals()
    result = run_flow(what, config, out_dir, runner, address, parsed, echo=not as_json)
    if as_json:
        emit(result, True)


@cli.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=4200, show_default=True)
def ui(host, port) -> None:
    """Start a Prefect server with the UI and serve every flow (boost and one per stage) as a deployment."""
    from flows.ui import serve_ui

    serve_ui(host, port)


def _close_progress_bars() -> None:
    """End every live progress bar's line, so that an error starts on a line of its own."""
    tqdm = importlib.import_module("tqdm").tqdm
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _with_flag_hints(message: str) -> str:
    for parameter, flag in FLAG_HINTS.items():
        message = message.replace(parameter, f"{parameter} ({flag})")
    return message


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors and environment faults print one line and exit 2; bugs keep
    their traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        with stdout_to_stderr("--json" in args):
            cli.main(args=args, prog_name="handbooster", standalone_mode=False)
    except InputError as exc:
        _close_progress_bars()
        click.echo(f"error: {_with_flag_hints(str(exc))}", err=True)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in USER_ERRNOS:
            raise
        _close_progress_bars()
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        command = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else "handbooster"
        click.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
