"""The ``handbooster`` command: a few lines over each stage function.

Every command loads the config (``--config``), turns its flags into dotted config keys and
applies them through :func:`pipeline.config.with_overrides` (so a bad flag value gets the
same error as a bad YAML value), builds the stage's inputs and calls the stage. Heavy
libraries are imported inside the commands, so ``handbooster --help`` is instant.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import typing
from pathlib import Path

import click

from pipeline.errors import InputError

# Parameters that library messages name, and the flags that set them on the command line.
FLAG_HINTS = {"overwrite=True": "--overwrite", "resume=True": "--resume"}
# Environment faults a user can fix (a read-only or full disk, a path that is a file...).
USER_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
               errno.ENAMETOOLONG}


def preflight_file(out_path, inputs=()):
    from pipeline.stage import preflight_file as check

    return check(out_path, list(inputs))


def _emit(result, as_json: bool) -> None:
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True), file=_json_stream)
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value}")


# Where --json output goes: the real stdout, saved while the command's own stdout goes to stderr.
_json_stream = None


@contextlib.contextmanager
def stdout_to_stderr(active: bool):
    """While active, send everything written to stdout, by C libraries too (pybullet prints on
    import), to stderr, and keep the real stdout for the JSON result alone."""
    global _json_stream
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
    _json_stream = os.fdopen(os.dup(saved), "w")
    try:
        yield
    finally:
        sys.stdout.flush()
        _json_stream.close()
        _json_stream = None
        os.dup2(saved, 1)
        os.close(saved)


def common_options(func):
    """--config, --seed and --json, shared by every subcommand."""
    func = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)
    func = click.option("--seed", type=int, default=None, help="Random seed (overrides the config's).")(func)
    func = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                        help="YAML config file.")(func)
    return func


def overwrite_option(func):
    return click.option("--overwrite", is_flag=True, default=None,
                        help="Replace a different dataset already in --out.")(func)


def workers_option(func):
    return click.option("--workers", type=int, default=None,
                        help="Processes for parallel work (0: this one; default: config run.workers).")(func)


def device_option(func):
    return click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (default: config run.device).")(func)


def configure(config_path, seed=None, flags: dict | None = None):
    """The config file with the flags applied: ``flags`` maps a dotted key to ``(flag, value)``."""
    from pipeline.config import load_config, with_overrides

    flags = {"seed": ("--seed", seed), **(flags or {})}
    return with_overrides(load_config(config_path), {key: value for key, (_, value) in flags.items()},
                          names={key: flag for key, (flag, _) in flags.items()})


def run_flags(overwrite=None, workers=None, device=None) -> dict:
    return {"run.overwrite": ("--overwrite", overwrite), "run.workers": ("--workers", workers),
            "run.device": ("--device", device)}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="handbooster")
def cli() -> None:
    """HandBooster: synthesise hand-object training data."""


@cli.command()
@common_options
def info(config_path, seed, as_json) -> None:
    """Versions, compute device, render platform and available hand models."""
    from flows.info import gather_info

    _emit(gather_info(configure(config_path, seed)), as_json)


@cli.group()
def hand() -> None:
    """Hand models: export meshes, convert official MANO files."""


@hand.command("export")
@click.option("--model", "model_spec", default=None, help="'builtin' or a MANO file/folder (default: config).")
@click.option("--side", type=click.Choice(["right", "left"]), default=None)
@click.option("--pose", "pose_name", type=click.Choice(["flat", "relaxed", "fist", "random"]), default="relaxed")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="FILE.obj, FILE.ply or FILE.png")
@common_options
def hand_export(model_spec, side, pose_name, out_path, config_path, seed, as_json) -> None:
    """Write the hand in a named or random pose as a watertight mesh or a picture."""
    from pipeline.hand.export import check_export_path, export_hand
    from renderers.preview import hand_picture

    config = configure(config_path, seed, {"hand.model": ("--model", model_spec), "hand.side": ("--side", side)})
    check_export_path(preflight_file(out_path))
    _emit(export_hand(config.hand.model, config.hand.side, pose_name, config.seed, Path(out_path),
                      picture=hand_picture), as_json)


@hand.command("convert-mano")
@click.argument("mano_path", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@common_options
def hand_convert_mano(mano_path, out_dir, config_path, seed, as_json) -> None:
    """Convert an official MANO pickle (no chumpy needed) into MANO_RIGHT.npz / MANO_LEFT.npz."""
    from pipeline.hand.export import convert_mano
    from pipeline.stage import preflight_output

    configure(config_path, seed)
    preflight_output(out_dir, [mano_path])
    _emit(convert_mano(Path(mano_path), Path(out_dir)), as_json)


@cli.group()
def objects() -> None:
    """Object library: list, prepare SDFs and convex pieces, render a contact sheet."""


def _library_options(func):
    func = click.option("--objects", "names", default=None,
                        help="Comma-separated object names (default: the whole library).")(func)
    func = click.option("--library", default=None,
                        help="'builtin', a YCB folder or a folder of meshes (default: config).")(func)
    return func


def _names(names: str | None) -> list[str] | None:
    return [n.strip() for n in names.split(",") if n.strip()] if names else None


@objects.command("list")
@_library_options
@common_options
def objects_list(library, names, config_path, seed, as_json) -> None:
    """Name, category, extents (m), watertightness and faces of every object."""
    from pipeline.objects.commands import list_objects

    config = configure(config_path, seed, {"objects.library": ("--library", library)})
    result = list_objects(config.objects, _names(names))
    if as_json:
        _emit(result, True)
        return
    click.echo(f"{result['count']} objects in {result['library']}")
    click.echo(f"{'name':24s} {'category':10s} {'extents (m)':24s} {'watertight':10s} {'faces':>6s}  sdf")
    for obj in result["objects"]:
        extents = " x ".join(f"{e:.3f}" for e in obj["extents_m"])
        click.echo(f"{obj['name']:24s} {obj['category']:10s} {extents:24s} {obj['watertight']!s:10s} "
                   f"{obj['faces']:6d}  {obj['sdf']}")


@objects.command("prepare")
@_library_options
@click.option("--workers", type=int, default=0, show_default=True,
              help="Objects prepared at once in separate processes (0: one at a time in this one).")
@common_options
def objects_prepare(library, names, workers, config_path, seed, as_json) -> None:
    """Precompute and cache SDF grids and convex decompositions (progress bar)."""
    from pipeline.objects.commands import prepare_objects

    config = configure(config_path, seed, {"objects.library": ("--library", library), **run_flags(workers=workers)})
    _emit(prepare_objects(config.objects, _names(names), workers=config.run.workers), as_json)


@objects.command("sheet")
@_library_options
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="FILE.png")
@click.option("--columns", type=click.IntRange(1, 20), default=5)
@common_options
def objects_sheet(library, names, out_path, columns, config_path, seed, as_json) -> None:
    """Render a labelled contact sheet of the library."""
    from renderers.sheet import object_sheet

    config = configure(config_path, seed, {"objects.library": ("--library", library)})
    _emit(object_sheet(config.objects, preflight_file(out_path), _names(names), columns), as_json)


@cli.group()
def data() -> None:
    """Datasets: import real ones, validate, inspect, register and list Parquet shards."""


@data.command("validate")
@click.argument("dataset")
@click.option("--deep", is_flag=True, help="Also decode every image and check its PNG mode and size.")
@common_options
def data_validate(dataset, deep, config_path, seed, as_json) -> None:
    """Re-check checksums, row counts, counts, schema and leftovers of every shard; list every problem."""
    from pipeline.data.manifest import validate_dataset

    configure(config_path, seed)
    result = validate_dataset(dataset, deep=deep)
    _emit(result, as_json)
    if result["problems"]:
        raise InputError(f"{len(result['problems'])} problem(s): " + "; ".join(result["problems"]), dataset)


@data.command("inspect")
@click.argument("dataset")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="FILE.png: a grid of random samples (image | normal | texture | mask, joints drawn).")
@click.option("--samples", type=click.IntRange(1, 64), default=8, help="Rows in the grid.")
@common_options
def data_inspect(dataset, out_path, samples, config_path, seed, as_json) -> None:
    """Counts by source, split, object and origin, and a grid of random samples."""
    from pipeline.data.overview import inspect_dataset

    seed = configure(config_path, seed).seed
    result = inspect_dataset(dataset, preflight_file(out_path, [dataset]) if out_path else None, samples, seed)
    if as_json:
        _emit(result, True)
        return
    click.echo(f"{result['name']}: {result['rows']} rows in {result['shards']} shard(s), "
               f"{result['kind']} records, {result['image_size']} px")
    for column, counts in result["counts"].items():
        click.echo(f"  by {column}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if "grid" in result:
        click.echo(f"grid of {result['grid_samples']} samples: {result['grid']}")


@data.command("register")
@click.argument("dataset")
@click.option("--registry", type=click.Path(file_okay=False), default="data_manifests", show_default=True,
              help="Folder of registered manifests.")
@click.option("--overwrite", is_flag=True, help="Replace a record of the same name that points elsewhere.")
@common_options
def data_register(dataset, registry, overwrite, config_path, seed, as_json) -> None:
    """Validate a dataset and copy its manifest into the registry as NAME.json (relative location)."""
    from pipeline.data.registry import register_dataset
    from pipeline.stage import preflight_output

    configure(config_path, seed)
    preflight_output(registry, [dataset])
    _emit(register_dataset(dataset, registry, overwrite), as_json)


@data.command("list")
@click.option("--registry", type=click.Path(file_okay=False), default="data_manifests", show_default=True)
@common_options
def data_list(registry, config_path, seed, as_json) -> None:
    """What is registered, where it lives, and whether it is there and valid."""
    from pipeline.data.registry import list_registry

    configure(config_path, seed)
    entries = list_registry(registry)
    if as_json:
        _emit(entries, True)
        return
    click.echo(f"{len(entries)} registered dataset(s) in {registry}")
    for entry in entries:
        state = "valid" if entry["valid"] else "reachable, INVALID" if entry["reachable"] else "not reachable"
        click.echo(f"  {entry['name']:24s} {entry['rows']!s:>8s} rows  {state:18s} {entry['location']}  "
                   f"({entry['record']})")
        if entry["problems"] and entry["reachable"]:
            click.echo(f"      {entry['problems'][0]}")


@data.command("migrate")
@click.argument("dataset")
@common_options
def data_migrate(dataset, config_path, seed, as_json) -> None:
    """Give a folder written by handbooster 0.1 the layout pandas, pyarrow, DuckDB and datasets open."""
    from pipeline.data.registry import migrate_dataset

    configure(config_path, seed)
    _emit(migrate_dataset(dataset), as_json)


@data.command("demo")
@click.option("--out", "out_dir", required=True,
              help="Output folder: OUT/s0_train, s0_test, s1_train, s1_test and OUT/grasps.")
@click.option("--size", type=click.Choice(["tiny", "small", "medium", "large"]), default=None,
              help="tiny: tests; small (default): 8 objects, 4 subjects, 512 frames, minutes on a laptop CPU; "
                   "medium, large: GPU machines.")
@click.option("--registry", type=click.Path(file_okay=False), default="data_manifests", show_default=True,
              help="Folder the dataset is registered in, as demo-FOLDER.json (FOLDER: --out, relative to its parent).")
@overwrite_option
@workers_option
@device_option
@common_options
def data_demo(out_dir, size, registry, overwrite, workers, device, config_path, seed, as_json) -> None:
    """Make the embedded demo dataset: grasps, rendered capture sequences, s0/s1 splits (resumable)."""
    from flows.stage import DemoInputs, demo

    config = configure(config_path, seed, {"demo.size": ("--size", size), **run_flags(overwrite, workers, device)})
    _emit(demo(config, DemoInputs(registry=registry), out_dir), as_json)


@data.command("import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["dexycb", "ho3d", "handoccnet-json"]))
@click.argument("root", type=click.Path())
@click.option("--split", required=True,
              help="dexycb: s0_train, s1_test...; ho3d: train or evaluation; handoccnet-json: the split in the file name.")
@click.option("--mano", default=None, help="MANO folder/file the dataset was annotated with (default: config hand.model).")
@click.option("--out", "out_dir", required=True, help="Output dataset folder or URI.")
@click.option("--image-size", type=int, default=None, help="Crop side in pixels (default: config data.image_size).")
@click.option("--annotations", default=None, help="handoccnet-json: the annotation JSON, if not ROOT/annotations/*_SPLIT_data.json.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Import only the first N frames.")
@workers_option
@overwrite_option
@common_options
def data_import(fmt, root, split, mano, out_dir, image_size, annotations, limit, workers, overwrite,
                config_path, seed, as_json) -> None:
    """Import a real dataset in its official layout into canonical shards (resumable)."""
    from pipeline.data.importers import ImportInputs, import_data

    config = configure(config_path, seed, {"hand.model": ("--mano", mano), "data.image_size": ("--image-size", image_size),
                                           **run_flags(overwrite, workers)})
    inputs = ImportInputs(format=fmt, root=root, split=split, annotations=annotations, limit=limit)
    _emit(import_data(config, inputs, out_dir), as_json)


@cli.group()
def grasp() -> None:
    """Novel grasps: optimise and validate them on objects, report how good they are."""


def parse_objects(spec: str) -> tuple[str, list[str] | None]:
    """``'builtin:mug,banana'`` -> ('builtin', ['mug', 'banana']); ``'builtin'`` -> all of it.

    The part before the last colon is the library ('builtin', a YCB or mesh folder)."""
    library, _, names = spec.rpartition(":") if ":" in spec else (spec, "", "")
    return library, _names(names)


@grasp.command("run")
@click.option("--objects", "objects", default="builtin", show_default=True,
              help="LIBRARY[:NAME,NAME...]: 'builtin:mug,banana', a YCB or mesh folder; no names: all objects.")
@click.option("--per-object", type=int, default=None, help="Grasps optimised and validated per object (default: config).")
@click.option("--out", "out_dir", required=True, help="Output dataset folder or URI (grasp records).")
@click.option("--iterations", type=int, default=None, help="Optimisation steps (default: config).")
@click.option("--batch-size", type=int, default=None, help="Hands optimised together (default: config).")
@device_option
@overwrite_option
@common_options
def grasp_run(objects, per_object, out_dir, iterations, batch_size, device, overwrite, config_path, seed,
              as_json) -> None:
    """Resting poses, batched grasp optimisation and validation -> grasp records (resumable per object)."""
    from grasp_sim.stage import GraspInputs, grasps

    library, names = parse_objects(objects)
    config = configure(config_path, seed, {
        "objects.library": ("--objects", library), "grasp.per_object": ("--per-object", per_object),
        "grasp.iterations": ("--iterations", iterations), "grasp.batch_size": ("--batch-size", batch_size),
        **run_flags(overwrite, device=device)})
    _emit(grasps(config, GraspInputs(objects=names), out_dir), as_json)


@grasp.command("report")
@click.argument("dataset")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for report.json, histograms.png and contact_sheet.png.")
@click.option("--per-object", type=click.IntRange(0, 50), default=3, show_default=True,
              help="Accepted grasps of each object on the contact sheet.")
@common_options
def grasp_report(dataset, out_dir, per_object, config_path, seed, as_json) -> None:
    """Pass rate of each check per object, value histograms, a contact sheet of accepted grasps."""
    from grasp_sim.report import grasp_report as make_report
    from pipeline.stage import preflight_output
    from renderers.sheet import grasp_sheet

    configure(config_path, seed)
    preflight_output(out_dir, [dataset])
    result = make_report(dataset, out_dir, sheet_per_object=per_object, sheet=grasp_sheet)
    if as_json:
        _emit(result, True)
        return
    overall = result["overall"]
    click.echo(f"{overall['accepted']} of {overall['grasps']} grasps accepted; pass rate per check: "
               + ", ".join(f"{k} {v:.0%}" for k, v in overall["pass_rate"].items() if v is not None))
    for name, entry in result["objects"].items():
        click.echo(f"  {name}: {entry['accepted']}/{entry['grasps']}"
                   + (f", diversity {entry['diversity_mm']} mm" if "diversity_mm" in entry else ""))
    click.echo(f"report: {Path(out_dir) / 'report.json'}")


@cli.group()
def render() -> None:
    """Renderers: condition maps for datasets, previews of random scenes."""


def _render_command(what: str):
    @click.option("--dataset", "dataset", required=True, help="Imported dataset or condition specs.")
    @click.option("--out", "out_dir", required=True, help="Output dataset folder or URI (a new copy with maps).")
    @click.option("--library", default=None, help="Object library holding the dataset's objects (default: config).")
    @click.option("--mano", default=None, help="Hand model (default: the dataset's, else config hand.model).")
    @workers_option
    @overwrite_option
    @common_options
    def command(dataset, out_dir, library, mano, workers, overwrite, config_path, seed, as_json) -> None:
        import renderers.stage

        config = configure(config_path, seed, {"objects.library": ("--library", library), "hand.model": ("--mano", mano),
                                               **run_flags(overwrite, workers)})
        _emit(getattr(renderers.stage, what)(config, renderers.stage.RenderInputs(dataset=dataset), out_dir), as_json)

    return command


render.command("conditions", help="Fill the normal, texture and mask columns of a dataset (writes new shards, "
                                  "resumable).")(_render_command("conditions"))
render.command("photos", help="Like 'conditions', and paint the image column with the demo domain's photo "
                              "renderer (the boost experiment's oracle arm).")(_render_command("photos"))


@render.command("preview")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="FILE.png")
@click.option("--scenes", type=click.IntRange(1, 32), default=4)
@click.option("--size", type=click.IntRange(32, 1024), default=256, help="Panel side in pixels.")
@click.option("--library", default=None, help="Object library (default: config).")
@common_options
def render_preview_command(out_path, scenes, size, library, config_path, seed, as_json) -> None:
    """photo | normal | texture | mask of random hand-object scenes, joints drawn."""
    from renderers.random_scenes import render_preview

    config = configure(config_path, seed, {"objects.library": ("--library", library)})
    _emit(render_preview(config, preflight_file(out_path), scenes, size), as_json)


@cli.group()
def synth() -> None:
    """The image synthesizer: train the conditional DDPM, generate images for condition rows, evaluate it."""


@synth.command("train")
@click.option("--data", "data_dir", required=True, help="Shards with image, normal, texture, mask, hand_quat.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint folder.")
@click.option("--preset", type=click.Choice(["tiny", "small", "base"]), default=None,
              help="tiny (default): 32 px, narrow (smoke tests, CPU demo); small: 64 px; base: the 128 px model.")
@click.option("--max-steps", type=int, default=None, help="Optimiser steps (default: preset/config).")
@click.option("--resume", is_flag=True, default=None, help="Continue from the newest checkpoint in --out.")
@common_options
def synth_train(data_dir, out_dir, preset, max_steps, resume, config_path, seed, as_json) -> None:
    """Train the DDPM (accelerate: CPU, a GPU, or several with 'accelerate launch')."""
    from pipeline.synthesis.stage import TrainInputs
    from pipeline.synthesis.stage import synth_train as train

    config = configure(config_path, seed, {"synthesis.preset": ("--preset", preset),
                                           "synthesis.max_steps": ("--max-steps", max_steps),
                                           "run.resume": ("--resume", resume)})
    _emit(train(config, TrainInputs(data=data_dir), out_dir), as_json)


@synth.command("generate")
@click.option("--ckpt", required=True, type=click.Path(file_okay=False), help="Folder written by 'synth train'.")
@click.option("--specs", required=True, help="Rows with condition maps: rendered specs or a real dataset.")
@click.option("--out", "out_dir", required=True, help="Output dataset folder or URI.")
@click.option("--scheduler", type=click.Choice(["ddpm", "ddim", "dpm"]), default=None, help="Default: dpm.")
@click.option("--steps", type=int, default=None, help="Denoising steps (default: 25).")
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale (default: training's).")
@click.option("--batch-size", type=int, default=None, help="Images generated together (default: 16).")
@overwrite_option
@common_options
def synth_generate(ckpt, specs, out_dir, scheduler, steps, guidance, batch_size, overwrite, config_path, seed,
                   as_json) -> None:
    """Paint an image for every condition row; writes synthetic shards with generator provenance."""
    from pipeline.synthesis.stage import GenerateInputs
    from pipeline.synthesis.stage import synth_generate as generate

    config = configure(config_path, seed, {
        "synthesis.sample_scheduler": ("--scheduler", scheduler), "synthesis.sample_steps": ("--steps", steps),
        "synthesis.guidance": ("--guidance", guidance), "synthesis.generate_batch_size": ("--batch-size", batch_size),
        **run_flags(overwrite)})
    _emit(generate(config, GenerateInputs(ckpt=ckpt, specs=specs), out_dir), as_json)


@synth.command("eval")
@click.option("--ckpt", required=True, type=click.Path(file_okay=False), help="Folder written by 'synth train'.")
@click.option("--real", "real_dir", required=True, help="Real test images with their condition maps.")
@click.option("--out", "out_dir", required=True, help="Report folder.")
@click.option("--recon", default=None,
              help="A reconstructor trained on real data ('recon train'): condition fidelity on its errors.")
@click.option("--scheduler", type=click.Choice(["ddpm", "ddim", "dpm"]), default=None, help="Default: dpm.")
@click.option("--steps", type=int, default=None, help="Denoising steps (default: 25).")
@device_option
@common_options
def synth_eval(ckpt, real_dir, out_dir, recon, scheduler, steps, device, config_path, seed, as_json) -> None:
    """Fréchet distance to real test images (shipped ImageNet features), condition fidelity, a
    grid of real vs re-synthesised images."""
    from pipeline.synthesis.stage import EvalInputs
    from pipeline.synthesis.stage import synth_eval as evaluate

    config = configure(config_path, seed, {"synthesis.sample_scheduler": ("--scheduler", scheduler),
                                           "synthesis.sample_steps": ("--steps", steps), **run_flags(device=device)})
    _emit(evaluate(config, EvalInputs(ckpt=ckpt, real=real_dir, recon=recon), out_dir), as_json)


@cli.command("sample")
@click.option("--real", "real_dir", required=True, help="Real dataset (imported or demo) with the grasping split.")
@click.option("--grasps", "grasps_dir", required=True, help="Grasp records from 'handbooster grasp run'.")
@click.option("--out", "out_dir", required=True, help="Output folder or URI for the condition specs.")
@click.option("--per-object", default=None, metavar="M,N",
              help="Real and simulated poses kept per object by farthest pose sampling (default: config 10,500).")
@click.option("--total", type=int, default=None, help="Novel grasps drawn in all (default: config).")
@click.option("--views", type=int, default=None, help="Novel views per kept real pose (default: config).")
@click.option("--sampler", type=click.Choice(["cross", "fps", "random"]), default=None,
              help="cross (default): FPS then cross-distribution draws; fps: uniform draws from FPS; random: no FPS.")
@click.option("--mano", default=None, help="Hand model (default: the real dataset's, else config hand.model).")
@overwrite_option
@common_options
def sample(real_dir, grasps_dir, out_dir, per_object, total, views, sampler, mano, overwrite, config_path, seed,
           as_json) -> None:
    """Pick diverse, novel poses: FPS on real and simulated grasps, cross-distribution sampling, novel views."""
    from pipeline.sampling.stage import SampleInputs
    from pipeline.sampling.stage import sample as sample_stage

    real_per_object = synthetic_per_object = None
    if per_object is not None:
        try:
            real_per_object, synthetic_per_object = (int(v) for v in per_object.split(","))
        except ValueError:
            raise InputError(f"--per-object: expected two integers M,N, got {per_object!r}") from None
    config = configure(config_path, seed, {
        "sampling.real_per_object": ("--per-object", real_per_object),
        "sampling.synthetic_per_object": ("--per-object", synthetic_per_object),
        "sampling.total": ("--total", total), "sampling.views_per_pose": ("--views", views),
        "sampling.sampler": ("--sampler", sampler), "hand.model": ("--mano", mano), **run_flags(overwrite)})
    _emit(sample_stage(config, SampleInputs(real=real_dir, grasps=grasps_dir), out_dir), as_json)


def runner_options(func):
    func = click.option("--registry", default=None,
                        help="boost with the demo: register it in this folder (demo-FOLDER.json).")(func)
    func = click.option("--address", default=None,
                        help="Dask scheduler or Ray cluster address (default: start one here).")(func)
    return click.option("--runner", type=click.Choice(["thread", "dask", "ray"]), default="thread",
                        show_default=True,
                        help="thread: a thread pool in this process; dask: a LocalCluster (or --address); "
                             "ray: prefect-ray.")(func)


def launch(what, out_dir, runner, address, inputs, registry, workers, device, overwrite, config_path, seed,
           as_json) -> None:
    """Check the config, inputs and output, then run the flow ``what`` (boost or a stage)."""
    from pipeline.stage import preflight_output

    config = configure(config_path, seed, {"boost.registry": ("--registry", registry),
                                           **run_flags(overwrite, workers, device)})
    parsed = {}
    if what != "boost":
        from flows.stages import load_stage
        from pipeline.config import validate_config

        inputs_model = load_stage(what).inputs_model
        for item in inputs:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise InputError(f"--input: expected KEY=VALUE, got {item!r}")
            parsed[key] = value.split(",") if takes_list(inputs_model, key) else value
        checked = validate_config(parsed, inputs_model, "--input")
        preflight_output(out_dir, list(checked.input_paths().values()))
    elif inputs:
        raise InputError("--input: boost reads its inputs from the config (boost.real, boost.tests)")
    else:
        if out_dir is None:
            out_dir = str(Path("out") / config.name)
        preflight_output(out_dir, [config.boost.real] if config.boost.real != "demo" else [])
    from flows.launch import run_flow
    from flows.runtime import stop_on_signals

    stop_on_signals()
    result = run_flow(what, config, out_dir, runner, address, parsed, echo=not as_json)
    if as_json:
        _emit(result, True)


def takes_list(model, key: str) -> bool:
    """Whether the inputs model's field ``key`` holds a list (given on the command line as KEY=A,B)."""
    field = model.model_fields.get(key)
    pending = [field.annotation] if field is not None else []
    while pending:
        annotation = pending.pop()
        if typing.get_origin(annotation) in (list, tuple):
            return True
        pending.extend(typing.get_args(annotation))
    return False


@cli.command("run")
@click.argument("what", metavar="boost|STAGE")
@click.option("--out", "out_dir", required=True, help="Run folder (boost) or the stage's output folder.")
@click.option("--input", "inputs", multiple=True, metavar="KEY=VALUE",
              help="A single stage's inputs, e.g. --input real=DIR --input grasps=DIR (lists: KEY=A,B).")
@runner_options
@workers_option
@device_option
@overwrite_option
@common_options
def run_command(what, out_dir, inputs, runner, address, registry, workers, device, overwrite, config_path, seed,
                as_json) -> None:
    """Run the whole pipeline (boost) or one stage as a Prefect flow; resumable, on threads, Dask or Ray."""
    launch(what, out_dir, runner, address, inputs, registry, workers, device, overwrite, config_path, seed, as_json)


@cli.command("boost")
@click.option("--out", "out_dir", default=None, help="Run folder (default: out/NAME, NAME the config's name).")
@runner_options
@workers_option
@device_option
@overwrite_option
@common_options
def boost_command(out_dir, runner, address, registry, workers, device, overwrite, config_path, seed,
                  as_json) -> None:
    """The boost experiment, end to end: 'run boost' (real data, grasps, sampling, conditions, DDPM,
    generation, filter, every arm's reconstructors, the table)."""
    launch("boost", out_dir, runner, address, (), registry, workers, device, overwrite, config_path, seed, as_json)


@cli.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=4200, show_default=True)
def ui(host, port) -> None:
    """Start a Prefect server with the UI and serve every flow (boost and one per stage) as a deployment."""
    from flows.ui import serve_ui

    serve_ui(host, port)


def _close_progress_bars() -> None:
    """End every live progress bar's line, so that an error starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


@cli.group()
def recon() -> None:
    """Reconstructors: train MobRecon-/HandOccNet-style models, evaluate them, score any predictions, filter
    generated images."""


@recon.command("train")
@click.option("--model", type=click.Choice(["mobrecon", "handoccnet", "diffhand", "m3dhmr"]), default=None,
              help="Default: mobrecon (config reconstruction.model).")
@click.option("--data", "data_dir", required=True, help="Real training dataset (images with MANO labels).")
@click.option("--synthetic", default=None, help="Synthetic dataset mixed into training.")
@click.option("--synthetic-fraction", type=float, default=None,
              help="Share of synthetic samples per epoch (default: every synthetic sample once).")
@click.option("--val", default=None, help="Validation dataset (default: held-out sequences of --data).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint folder.")
@click.option("--preset", type=click.Choice(["tiny", "paper"]), default=None,
              help="tiny (default): tests and the CPU demo; paper: the published sizes and schedules.")
@click.option("--max-steps", type=int, default=None, help="Optimiser steps (default: preset/config).")
@click.option("--mano", default=None, help="Hand model (default: the dataset's).")
@click.option("--resume", is_flag=True, default=None, help="Continue from the newest checkpoint in --out.")
@device_option
@common_options
def recon_train(model, data_dir, synthetic, synthetic_fraction, val, out_dir, preset, max_steps, mano, resume, device,
                config_path, seed, as_json) -> None:
    """Train a reconstructor (accelerate: CPU, a GPU, or several with 'accelerate launch')."""
    from pipeline.reconstruction.stage import TrainInputs
    from pipeline.reconstruction.stage import recon_train as train

    config = configure(config_path, seed, {
        "reconstruction.model": ("--model", model), "reconstruction.preset": ("--preset", preset),
        "reconstruction.max_steps": ("--max-steps", max_steps),
        "reconstruction.synthetic_fraction": ("--synthetic-fraction", synthetic_fraction),
        "hand.model": ("--mano", mano), "run.resume": ("--resume", resume), **run_flags(device=device)})
    _emit(train(config, TrainInputs(data=data_dir, synthetic=synthetic, val=val), out_dir), as_json)


@recon.command("eval")
@click.option("--ckpt", required=True, type=click.Path(file_okay=False), help="Folder written by 'recon train'.")
@click.option("--data", "data_dir", required=True, help="Dataset to evaluate on.")
@click.option("--out", "out_dir", required=True, help="Report folder.")
@click.option("--procrustes", type=click.Choice(["freihand", "handoccnet"]), default=None,
              help="freihand (default): align_w_scale; handoccnet: rigid_align.")
@click.option("--mano", default=None, help="Hand model (default: the dataset's).")
@device_option
@common_options
def recon_eval(ckpt, data_dir, out_dir, procrustes, mano, device, config_path, seed, as_json) -> None:
    """Official metrics, PCK curves, the worst predictions drawn, breakdowns by object and grasping."""
    from pipeline.reconstruction.stage import EvalInputs
    from pipeline.reconstruction.stage import recon_eval as evaluate

    config = configure(config_path, seed, {"reconstruction.procrustes": ("--procrustes", procrustes),
                                           "hand.model": ("--mano", mano), **run_flags(device=device)})
    _emit(evaluate(config, EvalInputs(ckpt=ckpt, data=data_dir), out_dir), as_json)


@recon.command("filter")
@click.option("--ckpt", required=True, type=click.Path(file_okay=False),
              help="A reconstructor trained on the real training split ('recon train').")
@click.option("--data", "data_dir", required=True, help="Generated dataset to judge ('synth generate').")
@click.option("--out", "out_dir", required=True, help="Folder: kept/, rejected/, report.json, pictures.")
@click.option("--thresholds", default=None,
              help="dexycb (25/25/10/10 mm), ho3d (50/50/20/20), auto (default: a percentile of the "
                   "reconstructor's errors on --val) or a JSON file {mpjpe, mpvpe, pa_mpjpe, pa_mpvpe}.")
@click.option("--val", default=None,
              help="Real images for auto: the reconstructor's training dataset (its held-out rows are used).")
@click.option("--percentile", type=float, default=None, help="auto: the percentile (default: 95).")
@device_option
@overwrite_option
@common_options
def recon_filter(ckpt, data_dir, out_dir, thresholds, val, percentile, device, overwrite, config_path, seed,
                 as_json) -> None:
    """Judge generated images with a reconstructor trained on real data; keep those it reconstructs."""
    from pipeline.reconstruction.stage import FilterInputs
    from pipeline.reconstruction.stage import recon_filter as judge

    config = configure(config_path, seed, {"filter.thresholds": ("--thresholds", thresholds),
                                           "filter.auto_percentile": ("--percentile", percentile),
                                           **run_flags(overwrite, device=device)})
    _emit(judge(config, FilterInputs(ckpt=ckpt, data=data_dir, val=val), out_dir), as_json)


@recon.command("score")
@click.option("--pred", required=True, help="Predictions: JSON or npz, sample_id -> joints [21,3] (+ vertices [V,3]).")
@click.option("--data", "data_dir", required=True, help="Dataset the predictions are for.")
@click.option("--out", "out_dir", required=True, help="Report folder: metrics.json, per_sample.csv, pck.png.")
@click.option("--procrustes", type=click.Choice(["freihand", "handoccnet"]), default=None)
@click.option("--mano", default=None, help="Hand model of the ground-truth vertices (default: the dataset's).")
@common_options
def recon_score(pred, data_dir, out_dir, procrustes, mano, config_path, seed, as_json) -> None:
    """Score any model's predictions with the official-parity metrics."""
    from pipeline.reconstruction.stage import ScoreInputs
    from pipeline.reconstruction.stage import recon_score as score

    config = configure(config_path, seed, {"reconstruction.procrustes": ("--procrustes", procrustes),
                                           "hand.model": ("--mano", mano)})
    _emit(score(config, ScoreInputs(pred=pred, data=data_dir), out_dir), as_json)


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
