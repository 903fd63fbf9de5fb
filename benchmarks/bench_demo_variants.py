"""How the demo's grasp rounds vary with the float path: threads, math-library ISA and seed.

Run: ``.venv/bin/python benchmarks/bench_demo_variants.py [--sizes tiny small] [--seeds 0 1]``.
Each variant is a fresh process running the demo's grasp rounds (``flows.stage.demo_grasps``,
the part of ``handbooster data demo`` whose outcome the float path changes) with the variant's
environment: 1 or 2 torch threads, and the native ISA or a limited one (ATen's vector kernels,
oneDNN and MKL held to SSE4, a stand-in for a CPU unlike this one). It prints, per object, the
accepted grasps of round 0 out of its attempts, the rounds and attempts it took to reach the
three grasps the demo needs, and the margin: round 0's accepted grasps over the three needed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "native": {},
    "sse4": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def one_variant(size_name: str, seed: int, out: str) -> dict:
    """The grasp rounds of one demo size and seed, in this process; per object, each round's
    (attempts, accepted)."""
    import numpy as np

    from flows.stage import ATTEMPT_CAP, demo_grasps
    from pipeline.config import PipelineConfig, with_overrides
    from pipeline.demo.plan import SIZES
    from pipeline.objects.commands import prepare_objects
    from pipeline.storage import Location

    size = SIZES[size_name]
    config = with_overrides(PipelineConfig(), {"seed": seed, "run.progress": False, "run.workers": 0})
    prepare_objects(config.objects.model_copy(update={"library": "builtin"}), list(size.objects), progress=False)
    started = time.perf_counter()
    grasps, folders, shortfall = demo_grasps(config, Location.parse(out), size.objects, size.grasps_per_object,
                                             size.grasp_iterations)
    rounds = np.array([int(g.split("/")[0].split("-")[1]) for g in grasps["grasp_id"]])
    objects = {}
    for name in size.objects:
        mine = grasps["object_id"] == name
        objects[name] = [[int((mine & (rounds == r)).sum()), int((mine & (rounds == r) & grasps["accepted"]).sum())]
                         for r in range(len(folders)) if (mine & (rounds == r)).any()]
    return {"objects": objects, "seconds": round(time.perf_counter() - started, 1), "shortfall": shortfall,
            "cap": ATTEMPT_CAP * size.grasps_per_object, "threads": __import__("torch").get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--isa", nargs="+", default=list(VARIANTS))
    parser.add_argument("--json-out", default="out/bench_demo_variants.json")
    parser.add_argument("--report", metavar="JSON", help="print the table of a saved run (its --json-out)")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "SEED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_variant(args.one[0], int(args.one[1]), args.one[2])))
        return
    if args.report:
        report(json.loads(Path(args.report).read_text()))
        return
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for size, seed, threads, isa in itertools.product(args.sizes, args.seeds, args.threads, args.isa):
            env = {**os.environ, **VARIANTS[isa], "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                   "HANDBOOSTER_CACHE": os.environ.get("HANDBOOSTER_CACHE", str(Path(scratch) / "cache"))}
            out = Path(scratch) / f"{size}-{seed}-{threads}-{isa}"
            done = subprocess.run([sys.executable, __file__, "--one", size, str(seed), str(out)], env=env,
                                  check=True, stdout=subprocess.PIPE, text=True)
            result = {"size": size, "seed": seed, "threads": threads, "isa": isa,
                      **json.loads(done.stdout.strip().splitlines()[-1])}
            results.append(result)
            print(f"{size} seed {seed} threads {threads} {isa}: {result['objects']} ({result['seconds']} s)",
                  file=sys.stderr)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(results, indent=1))
    report(results)


def report(results: list[dict]) -> None:
    """One row per variant: each object's accepted grasps in round 0 / in all, and the rounds."""
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}\n")
    for size in dict.fromkeys(r["size"] for r in results):
        rows = [r for r in results if r["size"] == size]
        names = list(rows[0]["objects"])
        print(f"{size}: accepted grasps per object, round 0 / after every round (rounds, if more than one)\n")
        print("| seed | threads | ISA | " + " | ".join(names) + " | attempts | seconds |")
        print("|---:|---:|---|" + "---:|" * (len(names) + 2))
        for r in rows:
            cells = []
            for name in names:
                rounds = r["objects"][name]
                cell = f"{rounds[0][1]} / {sum(a for _, a in rounds)}"
                cells.append(cell + (f" ({len(rounds)})" if len(rounds) > 1 else ""))
            attempts = sum(n for rounds in r["objects"].values() for n, _ in rounds)
            print(f"| {r['seed']} | {r['threads']} | {r['isa']} | " + " | ".join(cells) + f" | {attempts} "
                  f"| {r['seconds']:.0f} |")
        first = [rounds[0][1] for r in rows for rounds in r["objects"].values()]
        print(f"\nRound 0 alone gave the 3 grasps needed for {sum(a >= 3 for a in first)} of {len(first)} "
              f"object-variants (accepted in round 0: min {min(first)}, max {max(first)}).\n")
    short = [r for r in results if r["shortfall"]]
    print(f"Variants with an object left out: {len(short)} of {len(results)}"
          + "".join(f"\n- {r['size']} seed {r['seed']} {r['threads']}t {r['isa']}: {r['shortfall']}" for r in short))

if __name__ == "__main__":
    main()
