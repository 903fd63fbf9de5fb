"""Demo-dataset benchmark: ``handbooster data demo --size small`` from a cold cache, per stage.

Run: ``.venv/bin/python benchmarks/bench_demo.py [--size small] [--out out/bench_demo]``.
Each run is the real command in a fresh process with an empty object cache (what a fresh
machine does). Baseline measured in the same run: the objects prepared one at a time
(``--workers 0``). A last row re-runs the finished build, which must resume everything.
The target is the issue's: ``small`` within 3 minutes on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_S = 180.0
STAGES = ("prepare_objects", "grasps", "frames")


def run_demo(out: Path, size: str, workers: int, cache: Path) -> dict:
    command = [str(Path(sys.executable).with_name("handbooster")), "data", "demo", "--out", str(out), "--size", size,
               "--workers", str(workers), "--registry", str(out / "registry"), "--json"]
    done = subprocess.run(command, env={**os.environ, "HANDBOOSTER_CACHE": str(cache)}, check=True,
                          stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--out", default="out/bench_demo")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    rows = []
    with tempfile.TemporaryDirectory() as caches:
        for label, workers in (("baseline: objects prepared one at a time", 0), ("default: 2 objects at once", 2)):
            result = run_demo(out / f"workers{workers}", args.size, workers, Path(caches) / f"cache{workers}")
            rows.append((label, result))
        rows.append(("re-run of the finished build (resume)",
                     run_demo(out / "workers2", args.size, 2, Path(caches) / "cache2")))
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"size {args.size}, cold object cache per run\n")
    print("| run | " + " | ".join(f"{s} s" for s in STAGES) + " | total s | frames rendered | frames/s (render) |")
    print("|---|" + "---:|" * (len(STAGES) + 3))
    for label, result in rows:
        stages = result["stage_seconds"]
        rate = result["frames_rendered"] / stages["frames"] if result["frames_rendered"] else 0.0
        print(f"| {label} | " + " | ".join(f"{stages[s]:.1f}" for s in STAGES)
              + f" | {result['seconds']:.1f} | {result['frames_rendered']} | {rate:.1f} |")
    baseline, default = rows[0][1]["seconds"], rows[1][1]["seconds"]
    print(f"\nTotal, baseline / default: {baseline / default:.2f}x; target {TARGET_S:.0f} s: "
          f"{'met' if default <= TARGET_S else 'NOT met'} ({default:.1f} s).")
    print("Splits:", json.dumps(rows[1][1]["splits"]))


if __name__ == "__main__":
    main()
