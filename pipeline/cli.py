"""The ``handbooster`` command. Subcommands import their heavy dependencies lazily."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipeline.errors import InputError


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value}")


def common_options(func):
    """--config, --seed and --json, shared by every subcommand."""
    func = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)
    func = click.option("--seed", type=int, default=None, help="Random seed (overrides the config's).")(func)
    func = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                        help="YAML config file.")(func)
    return func


def _config(config_path):
    from pipeline.config import load_config

    return load_config(config_path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="handbooster")
def cli() -> None:
    """HandBooster: synthesise hand-object training data."""


@cli.command()
@common_options
def info(config_path, seed, as_json) -> None:
    """Versions, compute device, render platform and available hand models."""
    from pipeline.info import gather_info

    _emit(gather_info(_config(config_path)), as_json)


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
    from pipeline.hand.export import export_hand

    config = _config(config_path)
    result = export_hand(
        model_spec or config.hand.model, side or config.hand.side, pose_name,
        config.seed if seed is None else seed, Path(out_path),
    )
    _emit(result, as_json)


@hand.command("convert-mano")
@click.argument("mano_path", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@common_options
def hand_convert_mano(mano_path, out_dir, config_path, seed, as_json) -> None:
    """Convert an official MANO pickle (no chumpy needed) into MANO_RIGHT.npz / MANO_LEFT.npz."""
    from pipeline.hand.export import convert_mano

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


def _objects_config(config_path, library):
    config = _config(config_path).objects
    if library is not None:
        config = config.model_copy(update={"library": library})
    return config


def _names(names: str | None) -> list[str] | None:
    return [n.strip() for n in names.split(",") if n.strip()] if names else None


@objects.command("list")
@_library_options
@common_options
def objects_list(library, names, config_path, seed, as_json) -> None:
    """Name, category, extents (m), watertightness and faces of every object."""
    from pipeline.objects.commands import list_objects

    result = list_objects(_objects_config(config_path, library), _names(names))
    if as_json:
        _emit(result, True)
        return
    click.echo(f"{result['count']} objects in {result['library']}")
    click.echo(f"{'name':24s} {'category':10s} {'extents (m)':24s} {'watertight':10s} {'faces':>6s}  sdf")
    for obj in result["objects"]:
        extents = " x ".join(f"{e:.3f}" for e in obj["extents_m"])
        click.echo(f"{obj['name']:24s} {obj['category']:10s} {extents:24s} {str(obj['watertight']):10s} "
                   f"{obj['faces']:6d}  {obj['sdf']}")


@objects.command("prepare")
@_library_options
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Objects prepared at once in separate processes (0: one at a time in this one).")
@common_options
def objects_prepare(library, names, workers, config_path, seed, as_json) -> None:
    """Precompute and cache SDF grids and convex decompositions (progress bar)."""
    from pipeline.objects.commands import prepare_objects

    _emit(prepare_objects(_objects_config(config_path, library), _names(names), workers=workers), as_json)


@objects.command("sheet")
@_library_options
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="FILE.png")
@click.option("--columns", type=click.IntRange(1, 20), default=5)
@common_options
def objects_sheet(library, names, out_path, columns, config_path, seed, as_json) -> None:
    """Render a labelled contact sheet of the library."""
    from pipeline.objects.commands import object_sheet

    _emit(object_sheet(_objects_config(config_path, library), Path(out_path), _names(names), columns), as_json)


@cli.group()
def data() -> None:
    """Datasets: import real ones, validate, inspect and register Parquet shards."""


@data.command("validate")
@click.argument("dataset")
@common_options
def data_validate(dataset, config_path, seed, as_json) -> None:
    """Re-check checksums, row counts and schema of every shard; list every problem."""
    from pipeline.data.manifest import validate_dataset

    result = validate_dataset(dataset)
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

    result = inspect_dataset(dataset, out_path, samples, _config(config_path).seed if seed is None else seed)
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
@click.option("--overwrite", is_flag=True, help="Replace a different dataset registered under the same name.")
@common_options
def data_register(dataset, registry, overwrite, config_path, seed, as_json) -> None:
    """Validate a dataset and copy its manifest into the registry as NAME.json."""
    from pipeline.data.overview import register_dataset

    _emit(register_dataset(dataset, registry, overwrite), as_json)


@data.command("demo")
@click.option("--out", "out_dir", required=True,
              help="Output folder: OUT/s0_train, s0_test, s1_train, s1_test and OUT/grasps.")
@click.option("--size", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True,
              help="small: 8 objects, 4 subjects, 512 frames (minutes on a laptop CPU); medium, large: GPU machines.")
@click.option("--registry", type=click.Path(file_okay=False), default="data_manifests", show_default=True,
              help="Folder the dataset is registered in, as demo.json.")
@click.option("--overwrite", is_flag=True, help="Replace a different demo dataset (or record) already there.")
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True,
              help="Objects prepared at once on a cold cache (0: one at a time in this process).")
@click.option("--device", default="cpu", show_default=True, help="Where grasps are optimised: cpu, cuda or cuda:N.")
@common_options
def data_demo(out_dir, size, registry, overwrite, workers, device, config_path, seed, as_json) -> None:
    """Make the embedded demo dataset: grasps, rendered capture sequences, s0/s1 splits (resumable)."""
    from flows.demo_data import build_demo

    config = _config(config_path)
    _emit(build_demo(out_dir, size, seed=config.seed if seed is None else seed, config=config, registry=registry,
                     overwrite=overwrite, workers=workers, device=device), as_json)


@data.command("import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["dexycb", "ho3d", "handoccnet-json"]))
@click.argument("root", type=click.Path())
@click.option("--split", required=True,
              help="dexycb: s0_train, s1_test...; ho3d: train or evaluation; handoccnet-json: the split in the file name.")
@click.option("--mano", default=None, help="MANO folder/file the dataset was annotated with (default: config hand.model).")
@click.option("--out", "out_dir", required=True, help="Output dataset folder or URI.")
@click.option("--image-size", type=click.IntRange(16, 1024), default=None, help="Crop side in pixels (default: config, 128).")
@click.option("--annotations", default=None, help="handoccnet-json: the annotation JSON, if not ROOT/annotations/*_SPLIT_data.json.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Import only the first N frames.")
@click.option("--workers", type=click.IntRange(0, 256), default=0, help="Processes cropping images (0: this one).")
@click.option("--overwrite", is_flag=True, help="Replace a different dataset already in --out.")
@common_options
def data_import(fmt, root, split, mano, out_dir, image_size, annotations, limit, workers, overwrite,
                config_path, seed, as_json) -> None:
    """Import a real dataset in its official layout into canonical shards (resumable)."""
    from pipeline.data.importers import import_dataset

    config = _config(config_path)
    data_config = config.data if image_size is None else config.data.model_copy(update={"image_size": image_size})
    options = {"annotations": annotations} if fmt == "handoccnet-json" and annotations else {}
    if annotations and fmt != "handoccnet-json":
        raise InputError("--annotations only applies to handoccnet-json")
    result = import_dataset(fmt, root, split, out_dir, mano=mano or config.hand.model, data=data_config,
                            sampling=config.sampling, overwrite=overwrite, limit=limit, workers=workers, **options)
    _emit(result, as_json)


@cli.group()
def grasp() -> None:
    """Novel grasps: optimise and validate them on objects, report how good they are."""


@grasp.command("run")
@click.option("--objects", "objects", default="builtin", show_default=True,
              help="LIBRARY[:NAME,NAME...]: 'builtin:mug,banana', a YCB or mesh folder; no names: all objects.")
@click.option("--per-object", type=click.IntRange(1), required=True, help="Grasps optimised and validated per object.")
@click.option("--out", "out_dir", required=True, help="Output dataset folder or URI (grasp records).")
@click.option("--iterations", type=click.IntRange(1), default=None, help="Optimisation steps (default: config).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Hands optimised together (default: config).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace a different dataset already in --out.")
@common_options
def grasp_run(objects, per_object, out_dir, iterations, batch_size, device, overwrite, config_path, seed,
              as_json) -> None:
    """Resting poses, batched grasp optimisation and validation -> grasp records (resumable per object)."""
    from grasp_sim.run import run_grasps

    config = _config(config_path)
    updates = {k: v for k, v in (("iterations", iterations), ("batch_size", batch_size)) if v is not None}
    result = run_grasps(objects, out_dir, per_object=per_object, seed=config.seed if seed is None else seed,
                        config=config.grasp.model_copy(update=updates), hand=config.hand.model,
                        vhacd=config.objects.vhacd.pybullet_params(), device=device,
                        rows_per_shard=config.data.rows_per_shard, overwrite=overwrite)
    _emit(result, as_json)


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

    result = make_report(dataset, out_dir, sheet_per_object=per_object)
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


@render.command("conditions")
@click.option("--dataset", "dataset", required=True, help="Imported dataset or condition specs.")
@click.option("--out", "out_dir", required=True, help="Output dataset folder or URI (a new copy with maps).")
@click.option("--library", default=None, help="Object library holding the dataset's objects (default: config).")
@click.option("--mano", default=None, help="Hand model (default: the dataset's, else config hand.model).")
@click.option("--workers", type=click.IntRange(0, 256), default=0,
              help="Rendering processes, each with its own GL context (0: this one).")
@click.option("--overwrite", is_flag=True, help="Replace a different dataset already in --out.")
@common_options
def render_conditions(dataset, out_dir, library, mano, workers, overwrite, config_path, seed, as_json) -> None:
    """Fill the normal, texture and mask columns of a dataset (writes new shards, resumable)."""
    from renderers.commands import render_dataset_conditions

    config = _config(config_path)
    _emit(render_dataset_conditions(dataset, out_dir, objects=_objects_config(config_path, library), hand=mano,
                                    default_hand=config.hand.model, workers=workers, overwrite=overwrite), as_json)


@render.command("preview")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="FILE.png")
@click.option("--scenes", type=click.IntRange(1, 32), default=4)
@click.option("--size", type=click.IntRange(32, 1024), default=256, help="Panel side in pixels.")
@click.option("--library", default=None, help="Object library (default: config).")
@common_options
def render_preview_command(out_path, scenes, size, library, config_path, seed, as_json) -> None:
    """photo | normal | texture | mask of random hand-object scenes, joints drawn."""
    from renderers.commands import render_preview

    config = _config(config_path)
    _emit(render_preview(Path(out_path), scenes, config.seed if seed is None else seed, size,
                         _objects_config(config_path, library), config.hand.model), as_json)


@cli.group()
def synth() -> None:
    """The image synthesizer: train the conditional DDPM, generate images for condition rows."""


@synth.command("train")
@click.option("--data", "data_dir", required=True, help="Shards with image, normal, texture, mask, hand_quat.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint folder.")
@click.option("--preset", type=click.Choice(["tiny", "small", "base"]), default="tiny", show_default=True,
              help="tiny: 32 px, narrow (smoke tests, CPU demo); small: 64 px; base: the 128 px model.")
@click.option("--max-steps", type=click.IntRange(1), default=None, help="Optimiser steps (default: preset/config).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@common_options
def synth_train(data_dir, out_dir, preset, max_steps, resume, config_path, seed, as_json) -> None:
    """Train the DDPM (accelerate: CPU, a GPU, or several with 'accelerate launch')."""
    from pipeline.synthesis.presets import resolve
    from pipeline.synthesis.train import train

    config = _config(config_path)
    synthesis = resolve(preset, config.synthesis)
    _emit(train(data_dir, out_dir, synthesis, seed=config.seed if seed is None else seed, max_steps=max_steps,
                resume=resume), as_json)


@synth.command("generate")
@click.option("--ckpt", required=True, type=click.Path(file_okay=False), help="Folder written by 'synth train'.")
@click.option("--specs", required=True, help="Rows with condition maps: rendered specs or a real dataset.")
@click.option("--out", "out_dir", required=True, help="Output dataset folder or URI.")
@click.option("--scheduler", type=click.Choice(["ddpm", "ddim", "dpm"]), default="dpm", show_default=True)
@click.option("--steps", type=click.IntRange(1, 1000), default=25, show_default=True)
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale (default: training's).")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a different dataset already in --out.")
@common_options
def synth_generate(ckpt, specs, out_dir, scheduler, steps, guidance, batch_size, overwrite, config_path, seed,
                   as_json) -> None:
    """Paint an image for every condition row; writes synthetic shards with generator provenance."""
    from pipeline.synthesis.sample import generate

    config = _config(config_path)
    _emit(generate(ckpt, specs, out_dir, scheduler=scheduler, steps=steps, guidance=guidance,
                   seed=config.seed if seed is None else seed, batch_size=batch_size, overwrite=overwrite), as_json)


@cli.command("sample")
@click.option("--real", "real_dir", required=True, help="Real dataset (imported or demo) with the grasping split.")
@click.option("--grasps", "grasps_dir", required=True, help="Grasp records from 'handbooster grasp run'.")
@click.option("--out", "out_dir", required=True, help="Output folder or URI for the condition specs.")
@click.option("--per-object", default=None, metavar="M,N",
              help="Real and simulated poses kept per object by farthest pose sampling (default: config 10,500).")
@click.option("--total", type=click.IntRange(0), default=None, help="Novel grasps drawn in all (default: config).")
@click.option("--views", type=click.IntRange(0), default=None, help="Novel views per kept real pose (default: config).")
@click.option("--mano", default=None, help="Hand model (default: the real dataset's, else config hand.model).")
@click.option("--overwrite", is_flag=True, help="Replace a different dataset already in --out.")
@common_options
def sample(real_dir, grasps_dir, out_dir, per_object, total, views, mano, overwrite, config_path, seed, as_json) -> None:
    """Pick diverse, novel poses: FPS on real and simulated grasps, cross-distribution sampling, novel views."""
    from pipeline.sampling.stage import sample_conditions

    config = _config(config_path)
    updates = {"total": total, "views_per_pose": views}
    if per_object is not None:
        try:
            updates["real_per_object"], updates["synthetic_per_object"] = (int(v) for v in per_object.split(","))
        except ValueError:
            raise InputError(f"--per-object: expected two integers M,N, got {per_object!r}") from None
    sampling = config.sampling.model_validate({**config.sampling.model_dump(),
                                               **{k: v for k, v in updates.items() if v is not None}})
    result = sample_conditions(real_dir, grasps_dir, out_dir, mano=mano, default_mano=config.hand.model,
                               sampling=sampling, data=config.data, seed=config.seed if seed is None else seed,
                               overwrite=overwrite)
    _emit(result, as_json)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2; bugs keep their traceback."""
    try:
        cli.main(args=argv, prog_name="handbooster", standalone_mode=False)
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
