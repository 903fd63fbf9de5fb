"""``boost``: the whole pipeline as one resumable Prefect flow, under each protocol.

real data (the embedded demo, or imported datasets) -> novel grasps, one task per object,
merged (simulated: shared by every protocol) -> then per protocol, learning only from its
training split: pose sampling, one variant per arm (views only, random, FPS, FPS +
cross-distribution) -> condition maps, one task per chunk of rows, merged -> the DDPM trained on
the real images -> images generated for the conditions, one task per chunk, merged -> every
arm's reconstructors trained (real only first: it is also the filter's) -> the filter on the
full method's images, repainting what it rejects until it keeps K -> evaluation on the
protocol's tests, the synthesizer's evaluation, the protocol's report (its guard refuses a
test that shares a sequence with anything the protocol learned from). Every task runs a
stage function on paths; a task whose output already holds a finished run of the same
identity is reused, so a run killed at any moment and started again redoes nothing it
finished and ends with the same bytes.

The run folder: ``real/`` (the demo), ``grasps/<object>/`` and ``grasps/all/``, and per
protocol ``<protocol>/`` with ``real_maps/`` and ``test_maps/`` (where imported data has no
condition maps), ``specs/``, ``conditions/``, ``synth/``, ``synthetic/``,
``plain_renders/``, ``oracle/``, ``filter/round-N/`` and ``filter/kept/``, ``synth_eval/``,
``experiment/`` (arms, boost_report.md/json, pck.png); ``boost_report.md/json`` (every
protocol's), ``flow.log``, ``index.html`` (links to every artefact) and ``boost_summary.json``.
The UI shows a progress artifact, a table of the steps and a markdown page with the plots.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.runtime import keep_stopping_on_signals
from flows.tasks import flow_threads, run_stage
from pipeline.boost.arms import ARMS
from pipeline.config import PipelineConfig, ProtocolConfig, with_overrides
from pipeline.data.manifest import dataset_name
from pipeline.errors import ConfigError, InputError
from pipeline.storage import refuse_uri

SUMMARY_FILE = "boost_summary.json"
REPORT_FILE = "boost_report.md"
STEP_LABEL_WIDTH = 48  # the step log's label column: "s0: eval plain_renders seed-4 demo_s0_test" fits


class Steps:
    """Submits stage tasks (a batch at a time), waits for them, and reports each step."""

    def __init__(self, config: PipelineConfig, out: Path, echo: bool, total: int):
        self.config, self.out, self.echo = config, out, echo
        self.rows: list[dict] = []
        self.total = total
        self.progress = create_progress_artifact(progress=0.0, key="boost-progress",
                                                 description="stages of the boost flow done, %")

    def config_json(self, overrides: dict | None = None) -> dict:
        config = with_overrides(self.config, {"run.progress": False, **(overrides or {})}, source="boost flow")
        return config.model_dump(mode="json", exclude_unset=True)

    def run(self, items: list[tuple[str, str, dict, Path, dict | None]]) -> list[dict]:
        """Submit every ``(label, stage, inputs, out, overrides)`` at once; their summaries, in order."""
        threads = flow_threads()
        futures = [run_stage.submit(label, stage, self.config_json(overrides), inputs, str(out), threads)
                   for label, stage, inputs, out, overrides in items]
        summaries = [future.result() for future in futures]
        for (label, stage, *_), summary in zip(items, summaries):
            self.rows.append({"step": label, "stage": stage, "seconds": summary["seconds"],
                              "reused": summary["reused"], "out": summary["out"], **_highlights(summary)})
            if self.echo:
                print(f"{label:{STEP_LABEL_WIDTH}s} {summary['seconds']:8.1f} s"
                      f"{'  (reused)' if summary['reused'] else ''}", flush=True)
        update_progress_artifact(self.progress, progress=min(100.0, 100.0 * len(self.rows) / max(self.total, 1)))
        return summaries

    def one(self, label: str, stage: str, inputs: dict, out: Path, overrides: dict | None = None) -> dict:
        return self.run([(label, stage, inputs, out, overrides)])[0]

    def chunked(self, label: str, stage: str, inputs: dict, rows: int, chunk: int, out: Path, name: str,
                overrides: dict | None = None) -> str:
        """``stage`` over rows ``[a, a + chunk)`` as separate tasks, then merged into ``out/all``."""
        ranges = [(start, min(start + chunk, rows)) for start in range(0, rows, chunk)] or [(0, 0)]
        parts = [out / "chunks" / f"{start:07d}-{stop:07d}" for start, stop in ranges]
        self.run([(f"{label} rows {start}-{stop}", stage, {**inputs, "rows": [start, stop]}, part, overrides)
                  for (start, stop), part in zip(ranges, parts)])
        self.one(f"{label} merge", "merge", {"datasets": [str(p) for p in parts], "name": name,
                                             "rows_per_shard": self.config.data.rows_per_shard}, out / "all")
        return str(out / "all")


def _highlights(summary: dict) -> dict:
    keys = ("rows", "specs", "accepted", "grasps", "steps", "loss_last", "frames_rendered")
    return {key: summary[key] for key in keys if key in summary}


def _object_ids(dataset: str) -> list[str]:
    from pipeline.data.manifest import read_columns

    _, table = read_columns(dataset, ["object_id"])
    return sorted({o for o in table.column("object_id").to_pylist() if o is not None})


def _has_maps(dataset: str) -> bool:
    from pipeline.data.manifest import column_nulls

    nulls, rows = column_nulls(dataset, ["normal"])
    return rows > 0 and nulls["normal"] == 0


def protocols_of(steps: Steps, config: PipelineConfig) -> list[ProtocolConfig]:
    """The protocols the run is scored under: the configured ones, the one of ``real`` and
    ``tests``, or the demo's (built first) named in ``demo_protocols``."""
    boost = config.boost
    if config.filter.thresholds == "auto" and config.reconstruction.val_fraction == 0 and \
            any(ARMS[arm].source == "filtered" for arm in boost.arms):  # found by the filter, after hours of work
        raise ConfigError("reconstruction.val_fraction: 0 holds no real rows out, and the filter's auto thresholds "
                          "(filter.thresholds) come from the real-only reconstructor's errors on held-out rows of "
                          "its training split: set val_fraction above 0, or fixed thresholds")
    if boost.protocols or boost.real != "demo":
        from pipeline.data.manifest import require_labels
        from pipeline.objects import load_object_library
        from pipeline.reconstruction.train import require_one_batch

        chosen = boost.protocols or [ProtocolConfig(name="main", train=boost.real, tests=boost.tests)]
        library = load_object_library(config.objects.library)
        for protocol in chosen:  # before any grasp is simulated
            for dataset in (protocol.train, *protocol.tests):
                require_labels(dataset)
            # grasps and condition maps are made of their objects (before, a YCB-named dataset with the
            # builtin library got no grasps and stopped at "merge needs at least one dataset")
            for dataset in [protocol.train, *([] if _has_maps(protocol.tests[0]) else protocol.tests[:1])]:
                library.require(_object_ids(dataset), dataset)
            # every arm's reconstructor trains on the split (real only on it alone), after the grasps and the DDPM
            require_one_batch(protocol.train, config.reconstruction, boost.seeds_of("real_only"))
        return chosen
    registry = {"registry": boost.registry} if boost.registry else {}
    steps.one("real: demo dataset", "demo", registry, steps.out / "real")
    return [ProtocolConfig(name=name, train=str(steps.out / "real" / f"{name}_train"),
                           tests=[str(steps.out / "real" / f"{name}_test")]) for name in boost.demo_protocols]


def novel_grasps(steps: Steps, config: PipelineConfig, trains: list[str]) -> str:
    """Grasps of every object the training splits hold (simulated: nothing here learns from real data)."""
    held = sorted({o for real in trains for o in _object_ids(real)})
    if not held:  # before, the run stopped at "merge needs at least one dataset"
        raise InputError("no row names an object (object_id): the flow grasps the real frames' objects and samples "
                         "poses per object; import a dataset with object labels (DexYCB, HO3D: HandOccNet's JSON "
                         "has none)", trains[0])
    objects = config.boost.grasp_objects or held
    if not set(objects) & set(held):  # before, found by the sampling, after every grasp
        raise InputError(f"boost.grasp_objects: none of {', '.join(objects)} is an object of the training split "
                         f"({', '.join(held)}), and poses are sampled per object", trains[0])
    folders = [steps.out / "grasps" / name for name in objects]
    steps.run([(f"grasps: {name}", "grasps", {"objects": [name]}, folder, {"run.workers": 0})  # objects side by side
               for name, folder in zip(objects, folders)])
    steps.one("grasps: merge", "merge", {"datasets": [str(f) for f in folders], "name": "grasps"},
              steps.out / "grasps" / "all")
    return str(steps.out / "grasps" / "all")


def conditions(steps: Steps, dataset: str, rows: int, out: Path, label: str, render_workers: int) -> str:
    return steps.chunked(label, "conditions", {"dataset": dataset}, rows, steps.config.boost.render_chunk_rows, out,
                         f"{dataset_name(dataset)}_conditions", {"run.workers": render_workers})


def generate(steps: Steps, ckpt: str, specs: str, rows: int, out: Path, label: str) -> str:
    return steps.chunked(label, "synth_generate", {"ckpt": ckpt, "specs": specs}, rows,
                         steps.config.boost.generate_chunk_rows, out, f"{dataset_name(specs)}_synthetic")


def with_maps(steps: Steps, dataset: str, out: Path, label: str, render_workers: int) -> str:
    """``dataset``, or its rows with their condition maps rendered into ``out`` where it has none
    (an imported dataset: the demo's splits come with theirs)."""
    if _has_maps(dataset):
        return dataset
    from pipeline.data.manifest import read_manifest

    return conditions(steps, dataset, read_manifest(dataset)[1]["rows"], out, label, render_workers)


def protocol_data(steps: Steps, config: PipelineConfig, protocol: ProtocolConfig, grasps: str, runner: str) -> dict:
    """The synthetic data of every arm (``pipeline.boost.arms``) under one protocol, in
    ``OUT/<protocol>/``: everything learns from and samples the protocol's training split."""
    from flows.runtime import in_worker_processes
    from pipeline.boost.arms import ONLY_FOR_DEMO, VARIANTS, ddpm_variants, variants_of
    from pipeline.demo.plan import made_by_demo

    render_workers = 0 if in_worker_processes(runner) else 1  # GL stays out of the flow's threads
    root, name, real = steps.out / protocol.name, protocol.name, protocol.train
    train_maps = with_maps(steps, real, root / "real_maps", f"{name}: real condition maps", render_workers)
    # the synthesizer's evaluation paints the test rows again from their maps (an imported test has none)
    test_maps = with_maps(steps, protocol.tests[0], root / "test_maps", f"{name}: test condition maps", render_workers)
    demo = made_by_demo(real)
    arms = [arm for arm in config.boost.arms if demo or arm not in ONLY_FOR_DEMO]
    variants = variants_of(arms)
    specs = dict(zip(variants, steps.run([(f"{name}: sample {variant}", "sample", {"real": real, "grasps": grasps},
                                           root / "specs" / variant, VARIANTS[variant]) for variant in variants])))
    maps = {variant: conditions(steps, str(root / "specs" / variant), specs[variant]["specs"],
                                root / "conditions" / variant, f"{name}: conditions {variant}", render_workers)
            for variant in variants}
    steps.one(f"{name}: synth train", "synth_train", {"data": train_maps}, root / "synth", {"run.resume": True})
    synthetic = {variant: generate(steps, str(root / "synth"), maps[variant], specs[variant]["specs"],
                                   root / "synthetic" / variant, f"{name}: synth generate {variant}")
                 for variant in ddpm_variants(arms)}
    arm_data, filtered = {}, {}
    for arm_name in arms:
        arm = ARMS[arm_name]
        if arm.source is None:
            arm_data[arm_name] = ""
        elif arm.source == "ddpm":
            arm_data[arm_name] = synthetic[arm.variant]
        elif arm.source == "filtered":  # kept by the filter, which runs once real only is trained
            filtered[arm_name] = synthetic[arm.variant]
            arm_data[arm_name] = str(root / "filter" / "kept")
        elif arm.source == "plain_renders":
            steps.one(f"{name}: plain renders (texture as image)", "plain_renders", {"dataset": maps[arm.variant]},
                      root / arm_name)
            arm_data[arm_name] = str(root / arm_name)
        elif arm.source == "photos":
            source = str(root / "specs" / arm.variant)
            arm_data[arm_name] = steps.chunked(f"{name}: {arm_name} photo renderer", "photos", {"dataset": source},
                                               specs[arm.variant]["specs"], config.boost.render_chunk_rows,
                                               root / arm_name, f"{dataset_name(source)}_photos",
                                               {"run.workers": render_workers})
    return {"protocol": protocol.model_dump(), "train_maps": train_maps, "test_maps": test_maps, "synthetic": synthetic,
            "arm_data": arm_data, "filtered": filtered, "synth": str(root / "synth")}


def filter_rounds(steps: Steps, config: PipelineConfig, root: Path, label: str, generated: str, model: str,
                  real: str) -> dict:
    """The filter over the generated rows; while it has kept fewer than K, the rows it rejected
    are painted again (another seed) and judged again, up to ``boost.filter_rounds`` rounds.
    The kept rows of every round, merged, are ``root/filter/kept``."""
    wanted, kept, parts, summary = config.boost.synthetic_count, 0, [], None
    for index in range(config.boost.filter_rounds):
        folder = root / "filter" / f"round-{index}"
        if index:
            rejected = str(root / "filter" / f"round-{index - 1}" / "rejected")
            generated = steps.chunked(f"{label} repaint round {index}", "synth_generate",
                                      {"ckpt": str(root / "synth"), "specs": rejected}, summary["rejected"],
                                      config.boost.generate_chunk_rows, root / "synthetic" / f"repaint-{index}",
                                      f"{dataset_name(rejected)}_repainted", {"seed": config.seed + index})
        summary = steps.one(f"{label} round {index}", "recon_filter", {"ckpt": model, "data": generated, "val": real},
                            folder)
        kept, parts = kept + summary["kept"], [*parts, str(folder / "kept")]
        if kept >= wanted or not summary["rejected"]:
            break
    steps.one(f"{label} kept, merged", "merge", {"datasets": parts, "name": "filter_kept"}, root / "filter" / "kept")
    return {"rounds": len(parts), "kept": kept, "wanted": wanted, "last_round": summary}


def protocol_experiment(steps: Steps, config: PipelineConfig, paths: dict, note: str) -> dict:
    """Every arm of one protocol trained (in parallel batches), the filter, the synthesizer's
    evaluation on the protocol's first test, and the protocol's report."""
    from pipeline.boost.arms import arm_jobs, arm_run

    protocol = ProtocolConfig.model_validate(paths["protocol"])
    name, root = protocol.name, steps.out / protocol.name
    out = root / "experiment"
    jobs = arm_jobs(config.boost, protocol.train, protocol.tests, paths["arm_data"], out)
    later = [job for job in jobs if job.arm in paths["filtered"]]  # trained once the filter has kept their rows
    trainings = lambda batch: [(f"{name}: train {job.label}", "recon_train", job.train, job.train_folder,
                                job.overrides) for job in batch]
    steps.run(trainings([job for job in jobs if job not in later]))
    filter_model = str(arm_run(out, "real_only", config.boost.seeds[0]) / "train")
    filtered = None
    for generated in paths["filtered"].values():
        filtered = filter_rounds(steps, config, root, f"{name}: filter", generated, filter_model, protocol.train)
    steps.run(trainings(later))
    steps.run([(f"{name}: eval {job.label} {folder.name[5:]}", "recon_eval", inputs, folder, job.overrides)
               for job in jobs for inputs, folder in job.evals])
    evaluated = steps.one(f"{name}: synth eval", "synth_eval", {"ckpt": paths["synth"], "real": paths["test_maps"],
                                                                "recon": filter_model, "train": protocol.train},
                          root / "synth_eval")
    ordered = list(paths["arm_data"])
    report = steps.one(f"{name}: boost report", "experiment", {
        "real": protocol.train, "tests": protocol.tests, "synthetic": [paths["arm_data"][a] for a in ordered],
        "synthesizer_train": paths["train_maps"], "filter_train": protocol.train, "protocol": name, "note": note},
        out, {"boost.arms": ordered})
    return {"filter": filtered, "synth_eval": evaluated, "report": report}


STEP_ESTIMATE = 40  # the progress artifact's denominator (about the steps of a run with every arm)


@flow(name="boost", description="The HandBooster pipeline end to end: real data, novel grasps, pose sampling, "
                                "condition maps, the DDPM, synthetic data.", validate_parameters=False)
def boost(config: PipelineConfig, out: str, runner: str = "thread", echo: bool = False,
          note: str = "") -> dict:
    """Run (or finish) the boost pipeline into ``out``; returns what each step did. ``note``: a
    line the report prints about what its numbers are (the report itself says whether real only
    learned from the images, the measure of what the arms' differences are worth)."""
    from pipeline.config import validate_config

    keep_stopping_on_signals()
    if not isinstance(config, PipelineConfig):  # from the UI: validated as the CLI validates, with its messages
        config = validate_config(config, PipelineConfig, "config")
    refuse_uri(out, "the boost flow writes its files")  # from the UI; the command line refused it already
    started = time.perf_counter()
    out_path = Path(out)
    steps = Steps(config, out_path, echo, STEP_ESTIMATE + 2 * len(config.boost.grasp_objects or []))
    protocols = protocols_of(steps, config)
    grasps = novel_grasps(steps, config, [protocol.train for protocol in protocols])
    paths, experiments = {}, {}
    for protocol in protocols:
        paths[protocol.name] = protocol_data(steps, config, protocol, grasps, runner)
        experiments[protocol.name] = protocol_experiment(steps, config, paths[protocol.name], note)
    update_progress_artifact(steps.progress, progress=100.0)
    result = {"out": out, "runner": runner, "seconds": round(time.perf_counter() - started, 1),
              "steps": steps.rows, "reused_steps": sum(r["reused"] for r in steps.rows), "grasps": grasps,
              "paths": paths, "protocols": experiments}
    combined_report(out_path, list(experiments))
    if echo:
        print("\n" + (out_path / REPORT_FILE).read_text(), flush=True)
    publish(out_path, result)
    return result


def combined_report(out: Path, protocols: list[str]) -> None:
    """``OUT/boost_report.md`` and ``.json``: every protocol's report, one after the other."""
    from pipeline.paths import atomic_write_bytes

    reports = {name: json.loads((out / name / "experiment" / "boost_report.json").read_text()) for name in protocols}
    atomic_write_bytes(out / "boost_report.json",
                       (json.dumps({"protocols": reports}, indent=2, sort_keys=True) + "\n").encode())
    parts = [f"## Protocol {name}\n\n" + (out / name / "experiment" / "boost_report.md").read_text()
             for name in protocols]
    atomic_write_bytes(out / REPORT_FILE, "\n".join(parts).encode())


def publish(out: Path, result: dict) -> None:
    """The run's summary, index page and UI artifacts (a table of the steps, the plots)."""
    from pipeline.paths import atomic_write_bytes

    atomic_write_bytes(out / SUMMARY_FILE, (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
    create_table_artifact(key="boost-steps", table=[{k: v for k, v in row.items() if k != "out"}
                                                    for row in result["steps"]],
                          description="each step of the boost flow: seconds, reused, what it made")
    pictures = pictures_of(out)
    markdown = ["# boost run", f"`{out}`: {len(result['steps'])} steps in {result['seconds']} s, "
                f"{result['reused_steps']} reused.", ""]
    report = out / REPORT_FILE
    if report.exists():
        markdown += ["## boost experiment", report.read_text(), ""]
    for label, path in pictures:
        if label.partition("/")[2] not in HEADLINE_PICTURES:
            continue
        data = base64.b64encode(thumbnail(path)).decode()
        shown = label.replace("_", "\\_")  # markdown would read __report__ as bold
        markdown += [f"## {shown}", f"![{shown}](data:image/jpeg;base64,{data})", ""]
    create_markdown_artifact(key="boost-plots", markdown="\n".join(markdown), description="plots of the boost run")
    atomic_write_bytes(out / "index.html", index_html(out, result, pictures).encode())


HEADLINE_PICTURES = ("experiment/pck.png", "filter/round-0/histograms.png", "filter/round-0/kept_grid.png",
                     "filter/round-0/rejected_grid.png",
                     "synth_eval/real_vs_resynthesised.png", "synth/loss_curve.png",
                     "specs/cross/__report__/similarity.png")
# Prefect's events carry the artifact and refuse ones over 1.5 MB: small JPEGs keep the page in.
THUMBNAIL_SIDE = 720
THUMBNAIL_QUALITY = 80


def thumbnail(path: Path) -> bytes:
    """The picture, scaled down to at most ``THUMBNAIL_SIDE`` pixels wide, as JPEG."""
    import io

    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > THUMBNAIL_SIDE:
            image = image.resize((THUMBNAIL_SIDE, round(image.height * THUMBNAIL_SIDE / image.width)))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
        return buffer.getvalue()


def pictures_of(out: Path) -> list[tuple[str, Path]]:
    """The PNGs of a run folder worth a look (not the chunks' own), labelled by where they are."""
    found = sorted(p for p in out.rglob("*.png") if "chunks" not in p.parts and "checkpoint-" not in str(p))
    return [(str(p.relative_to(out)), p) for p in found]


def index_html(out: Path, result: dict, pictures: list[tuple[str, Path]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['step'])}</td><td>{r['stage']}</td><td>{r['seconds']:.1f}</td>"
        f"<td>{'yes' if r['reused'] else ''}</td><td><a href='{html.escape(_relative(out, r['out']))}'>"
        f"{html.escape(_relative(out, r['out']))}</a></td></tr>" for r in result["steps"])
    images = "".join(f"<h3>{html.escape(label)}</h3><a href='{html.escape(label)}'><img src='{html.escape(label)}' "
                     f"style='max-width:900px'></a>" for label, _ in pictures)
    return (f"<!doctype html><meta charset='utf-8'><title>HandBooster boost run</title>"
            f"<h1>HandBooster boost run</h1><p>{len(result['steps'])} steps in {result['seconds']} s "
            f"({result['reused_steps']} reused), runner {result['runner']}. "
            f"<a href='{SUMMARY_FILE}'>{SUMMARY_FILE}</a> · <a href='flow.log'>flow.log</a></p>"
            f"<table border=1 cellpadding=4><tr><th>step</th><th>stage</th><th>s</th><th>reused</th><th>output</th></tr>"
            f"{rows}</table>{images}")


def _relative(out: Path, path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return path
